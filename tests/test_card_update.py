"""`card update` as a library plan (evalsuite.publish.card_update): `read_card_inputs` reads, `plan_card_update`
decides every file's old and new text without writing anything, `write_card_update` writes; the CLI only checks
flags, prints, writes and pushes. Fixtures: the Sakura-SOLAR run (the leaderboard's published numbers as a
run), the leaderboard's contents table copy and a contamination check, as in test_card.py and test_peers.py.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from conftest import FIXTURES, SAKURA
from typer.testing import CliRunner

from evalsuite.archive import LeaderboardModel
from evalsuite.cli import app
from evalsuite.cli._app import flag
from evalsuite.errors import CardError, OptionError, in_terms
from evalsuite.publish import benchmarks
from evalsuite.publish.card_update import (
    CardUpdate,
    CardUpdateRequest,
    plan_card_update,
    read_card_inputs,
    write_card_update,
)
from evalsuite.publish.model_index import CardSource

CONTENTS = FIXTURES / "archive" / "contents.csv"
MINE = "---\nlicense: apache-2.0\n---\n# My model\n\nKept as is.\n"


def _plan(request: CardUpdateRequest) -> CardUpdate:
    return plan_card_update(request, read_card_inputs(request))


def test_the_plan_holds_every_files_old_and_new_text_and_writes_nothing(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(benchmarks, "from_hub", benchmarks.from_spec)  # the spec's benchmarks: no network here
    readme = tmp_path / "README.md"
    readme.write_text(MINE)
    request = CardUpdateRequest(
        readme=readme, results=SAKURA, eval_results=True, peers=[LeaderboardModel.parse("Qwen/Qwen-14B")],
        published_contents=CONTENTS,
    )  # fmt: skip
    update = _plan(request)
    assert [(f.in_repo, f.path) for f in update.files] == [
        ("README.md", readme),
        (".eval_results/h6-leaderboard-v1.yaml", tmp_path / ".eval_results/h6-leaderboard-v1.yaml"),
    ]
    card, results_file = update.files
    assert card.old == MINE and card.new.endswith("<!-- evalsuite:peers:end -->\n") and "Kept as is." in card.new
    assert results_file.old == "" and "openai/gsm8k" in results_file.new
    assert update.stale == list(update.files)
    assert update.notes and update.notes[0].startswith("left out of .eval_results, not known to be Hub benchmarks")
    assert "+++ b/.eval_results/h6-leaderboard-v1.yaml" in update.diff() and "+++ b/README.md" in update.diff()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"] and readme.read_text() == MINE  # unwritten

    said = write_card_update(update)
    assert said == [f"wrote {results_file.path}", f"updated {readme}"]
    assert readme.read_text() == card.new and results_file.path.read_text() == results_file.new
    again = _plan(request)
    assert again.stale == [] and write_card_update(again) == [
        f"{f.path} already up to date" for f in reversed(again.files)
    ]


def test_plan_card_update_is_pure_given_its_inputs(tmp_path: Path):
    """The same request and inputs give the same plan, whatever the files say by then."""
    readme = tmp_path / "README.md"
    readme.write_text(MINE)
    request = CardUpdateRequest(readme=readme, results=SAKURA, model_name="mine")
    inputs = read_card_inputs(request)
    readme.write_text("changed underneath\n")
    first, second = plan_card_update(request, inputs), plan_card_update(request, inputs)
    assert first == second and first.files[0].old == MINE and "name: mine" in first.files[0].new


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "give results RUN, contamination CHECK, peers MODELS or from_leaderboard MODEL"),
        ({"results": SAKURA, "from_leaderboard": LeaderboardModel("a/b")}, "both write the card's model-index"),
        ({"from_leaderboard": LeaderboardModel("a/b"), "source": CardSource("x", "y")}, "'s source is the leaderboard"),
        ({"contamination": SAKURA, "eval_results": True}, "eval_results writes a run's results; give results RUN"),
        ({"contamination": SAKURA, "published_contents": CONTENTS}, "published_contents is the table peers come from"),
        ({"contamination": SAKURA, "allow_partial": True}, "allow_partial goes with results RUN; it publishes a run"),
        ({"peers": [LeaderboardModel("a/b")], "model_name": "x"}, "model_name names model-index results, which"),
    ],
)
def test_options_that_do_not_go_together_are_one_option_error_before_anything_is_read(given, message, tmp_path):
    request = CardUpdateRequest(readme=tmp_path / "missing-folder" / "README.md", **given)
    with pytest.raises(OptionError, match=message):
        read_card_inputs(request)  # the request is checked before the README (whose folder is missing) is read


def test_check_suggests_the_command_with_every_option_that_changes_the_card(tmp_path: Path):
    """`card update --check` on a stale card says the command that updates it: the README and every option that
    changes what is written (`CardUpdateRequest.command`, its options in the library's terms and the CLI's
    flags), quoted for a shell; not --check, --dry-run or --push."""
    readme = tmp_path / "my card" / "README.md"
    readme.parent.mkdir()
    readme.write_text(MINE)
    request = CardUpdateRequest(
        readme=readme, results=SAKURA, peers=[LeaderboardModel.parse("Qwen/Qwen-14B")], published_contents=CONTENTS,
        allow_partial=True, allow_not_comparable=True, model_name="My model",
        source=CardSource(name="evalsuite", url="https://example.org/run"),
    )  # fmt: skip
    options = (
        f"results {SAKURA} peers Qwen/Qwen-14B published_contents {CONTENTS} allow_partial allow_not_comparable "
        "model_name 'My model' source_name evalsuite source_url https://example.org/run"
    )
    assert in_terms(request.command()) == f"evalsuite card update '{readme}' {options}"
    flags = (
        f"--results {SAKURA} --peers Qwen/Qwen-14B --published-contents {CONTENTS} --allow-partial "
        "--allow-not-comparable --model-name 'My model' --source-name evalsuite --source-url https://example.org/run"
    )
    command = f"evalsuite card update '{readme}' {flags}"
    assert in_terms(request.command(), flag) == command
    assert shlex.split(command)[3:] == [str(readme), "--results", str(SAKURA), "--peers", "Qwen/Qwen-14B",
                                        "--published-contents", str(CONTENTS), "--allow-partial",
                                        "--allow-not-comparable", "--model-name", "My model", "--source-name",
                                        "evalsuite", "--source-url", "https://example.org/run"]  # fmt: skip

    check = CliRunner().invoke(app, ["card", "update", str(readme), "--check", *shlex.split(flags)])
    assert check.exit_code == 1, check.stderr
    assert check.stderr.splitlines()[-1] == f"{readme} is out of date; run `{command}`"
    assert readme.read_text() == MINE
    assert in_terms(CardUpdateRequest(readme=Path("README.md"), contamination=SAKURA, eval_results=False).command(),
                    flag) == f"evalsuite card update README.md --contamination {SAKURA}"  # fmt: skip


def test_files_of_two_models_are_one_card_error(tmp_path: Path):
    check = tmp_path / "contamination-1"
    check.mkdir()
    model = {"id": "someone/else", "source": "hub", "location": "someone/else", "revision": None, "file_sha256": None}
    (check / "contamination.json").write_text(json.dumps({
        "schema_version": 1, "kind": "contamination", "run_id": "1", "created_at": "2024-01-01T00:00:00Z",
        "target": model, "reference": model, "tasks": [], "versions": {"evalsuite": "0.2.0"}, "total_seconds": 1.0,
        "settings": {"items": 1, "neighbours": 2, "prefix_ratio": 0.4, "threshold": 0.1, "seed": 0, "batch_size": 1,
                     "dtype": "float32", "device": "cpu", "data_dir": None},
    }))  # fmt: skip
    request = CardUpdateRequest(readme=tmp_path / "README.md", results=SAKURA, contamination=check)
    with pytest.raises(CardError, match="results is a run of kyujinpy/Sakura-SOLAR-Instruct but contamination che"):
        _plan(request)
    assert not (tmp_path / "README.md").exists()


def test_one_parser_for_org_name_precision():
    assert LeaderboardModel.parse("Qwen/Qwen-14B:float16") == LeaderboardModel("Qwen/Qwen-14B", "float16")
    assert str(LeaderboardModel.parse("Qwen/Qwen-14B")) == "Qwen/Qwen-14B"
    for bad in ("Qwen-14B", "Qwen/Qwen-14B:", "a/b/c", "/b", "a/b:c:d"):
        with pytest.raises(OptionError, match="give a Hub model id, ORG/NAME or ORG/NAME:PRECISION"):
            LeaderboardModel.parse(bad, "peers")
    with pytest.raises(OptionError, match="^leaderboard:x: give leaderboard:ORG/NAME or leaderboard:ORG/NAME:PRECI"):
        LeaderboardModel.parse("x", prefix="leaderboard:")

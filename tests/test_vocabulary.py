"""One vocabulary across commands: the same name for the same thing (`--output`, `--published-contents`,
`--format json`, `--seed`, MODEL as an argument), old spellings kept hidden for one release with a deprecation
line, and an option that does not apply refused, never ignored. Fixtures: the Sakura-SOLAR run and the
leaderboard's contents table copy (tests/fixtures/archive/SOURCES.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO, SAKURA
from typer.testing import CliRunner

from evalsuite.cli import app

runner = CliRunner()
CONTENTS = FIXTURES / "archive" / "contents.csv"
RESULTS = FIXTURES / "results"
GPT2 = "openai-community/gpt2"
DEPRECATED = "is deprecated (removed in evalsuite 0.5): use"


def _ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (["tasks", "--json"], ["tasks", "--format", "json"]),
        (["leaderboard", str(SAKURA), "--peers", "Qwen/Qwen-14B", "--published", str(CONTENTS)],
         ["leaderboard", str(SAKURA), "--peers", "Qwen/Qwen-14B", "--published-contents", str(CONTENTS)]),
        (["history", str(RESULTS), "--model", GPT2], ["history", GPT2, str(RESULTS)]),
        (["history", "--model", GPT2, str(RESULTS)], ["history", GPT2, str(RESULTS)]),
    ],
    ids=["tasks --json", "--published", "history DIR --model", "history --model M DIR"],
)  # fmt: skip
def test_an_old_spelling_still_works_for_one_release_and_says_so(old: list[str], new: list[str]):
    before, after = _ok(old), _ok(new)
    assert before.stdout == after.stdout
    (line,) = [line for line in before.stderr.splitlines() if DEPRECATED in line]
    assert line.startswith("warning: --")
    assert DEPRECATED not in after.stderr


def test_an_output_file_is_output_everywhere(tmp_path: Path):
    new, old = tmp_path / "new.md", tmp_path / "old.md"
    _ok(["leaderboard", str(RESULTS), "--output", str(new)])
    result = _ok(["leaderboard", str(RESULTS), "--out", str(old)])
    assert new.read_text() == old.read_text() and "warning: --out is deprecated" in result.stderr
    both = runner.invoke(app, ["leaderboard", str(RESULTS), "--out", str(old), "--output", str(new)])
    assert both.exit_code == 1 and both.stderr == "error: --out is the old name of --output; give --output only\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "leaderboard:kyujinpy/Sakura-SOLAR-Instruct", str(SAKURA), "--alpha", "0.01"],
         "error: --alpha and --max-drop judge two runs of evalsuite"),
        (["compare", "leaderboard:kyujinpy/Sakura-SOLAR-Instruct", str(SAKURA), "--max-drop", "1"],
         "error: --alpha and --max-drop judge two runs of evalsuite"),
        (["card", "render", str(SAKURA), "--format", "markdown", "--model-name", "x"],
         "error: --model-name names the model-index entry; it goes with --format model-index"),
        (["card", "render", str(SAKURA), "--format", "markdown", "--source-name", "a", "--source-url", "b"],
         "error: --source-name/--source-url are the source of model-index and .eval_results entries"),
        (["leaderboard", str(RESULTS), "--format", "compact", "--model-size"],
         "error: --model-size adds a column --format compact always has; leave it out"),
        (["leaderboard", str(RESULTS), "--format", "json", "--model-size"],
         "error: --model-size adds a column --format json always has; leave it out"),
        (["card", "update", "README.md", "--results", str(SAKURA), "--check", "--dry-run"],
         "error: --check and --dry-run both change nothing; give one"),
        (["card", "update", "README.md", "--results", str(SAKURA), "--check", "--push", "org/model"],
         "error: --push uploads the updated README; leave out --check/--dry-run"),
        (["card", "update", "README.md", "--results", str(SAKURA), "--create-pr"],
         "error: --create-pr needs --push REPO_ID"),
        (["card", "update", "README.md", "--peers", "Qwen/Qwen-14B", "--allow-partial"],
         "error: --allow-partial goes with --results RUN; it publishes a run"),
    ],
)  # fmt: skip
def test_an_option_that_does_not_apply_is_refused_never_ignored(args: list[str], message: str, tmp_path: Path):
    result = runner.invoke(app, args)
    assert result.exit_code in (1, 2), result.output  # compare's errors exit 2 (1 means a regression)
    assert result.stderr.startswith(message), result.stderr
    assert not Path("README.md").exists() or Path("README.md").resolve() == REPO / "README.md"


def test_json_wherever_there_is_json():
    board = json.loads(_ok(["leaderboard", str(RESULTS), "--format", "json"]).stdout)
    assert board["rows"][0]["rank"] == 1 and {"model", "average", "scores", "source", "size"} <= board["rows"][0].keys()
    averages = [row["average"] for row in board["rows"] if row["average"] is not None]
    assert averages == sorted(averages, reverse=True) and all(0 <= a <= 1 for a in averages)
    history = json.loads(_ok(["history", "openai-community/gpt2", str(RESULTS), "--format", "json"]).stdout)
    assert history["model"] == "openai-community/gpt2" and history["runs"][0]["scores"]["ARC"]["value"] <= 1
    spec = json.loads(_ok(["tasks", "--format", "json"]).stdout)
    assert [t["key"] for t in spec["tasks"]] == ["arc", "hellaswag", "mmlu", "truthfulqa", "winogrande", "gsm8k"]
    peers = ["--peers", "Qwen/Qwen-14B", "--published-contents", str(CONTENTS)]
    with_peers = json.loads(_ok(["leaderboard", str(SAKURA), *peers, "--format", "json"]).stdout)
    assert {row["source"] for row in with_peers["rows"]} == {"measured", "Open LLM Leaderboard"}
    assert "not measured here" in with_peers["note"]


def test_history_takes_model_as_an_argument_like_every_command_about_one_model():
    missing = runner.invoke(app, ["history"])
    assert missing.exit_code == 2 and missing.stderr.startswith("error: give MODEL")


def test_contamination_takes_seeds_as_run_does(tmp_path: Path):
    """`--seed` is lm-eval's four seeds in both commands: one int for all, or random,numpy,torch,fewshot."""
    from evalsuite.run import ContaminationRequest
    from evalsuite.settings import Seeds

    request = ContaminationRequest(model="a/b", reference="a/b", seeds="0,1,2,3")
    assert request.seeds == Seeds(random=0, numpy=1, torch=2, fewshot=3)
    assert ContaminationRequest(model="a/b", reference="a/b", seeds=7).seeds == Seeds.all(7)
    bad = runner.invoke(app, ["contamination", "a/b", "--reference", "a/b", "--seed", "x"])
    run_bad = runner.invoke(app, ["run", "a/b", "--seed", "x"])
    assert bad.stderr == run_bad.stderr == "error: --seed 'x': give an int or four comma-separated ints\n"
    with pytest.warns(DeprecationWarning, match=r"\(seed=\) is deprecated: use seeds="):
        old = ContaminationRequest.model_validate({"model": "a/b", "reference": "a/b", "seed": 5})
    assert old.seeds == Seeds.all(5)


def test_the_command_reference_shows_no_old_spelling():
    reference = (REPO / "docs" / "commands.md").read_text()
    for old in ("`--out ", "`--published ", "`--json`", "`--model <"):
        assert old not in reference, old

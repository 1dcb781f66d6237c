"""The leaderboard's published numbers in tables and cards: `leaderboard --peers`, its compact card table,
`card update --peers` and `card update --from-leaderboard`, from the real contents rows in
tests/fixtures/archive (SOURCES.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURES, SAKURA
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.publish.card import LEADERBOARD_END_MARKER, LEADERBOARD_START_MARKER, PEERS_START_MARKER

CONTENTS = FIXTURES / "archive" / "contents.csv"
CARDS = FIXTURES / "cards" / "real"
SAKURA_CARD = CARDS / "kyujinpy__Sakura-SOLAR-Instruct.md"
runner = CliRunner()

# upstage/SOLAR-10.7B-Instruct-v1.0's card, "Evaluation Results": its models in its order, with the H6 values
# the card prints. 13 of the 14 are the archive's rows as the row rule picks them; 01-ai/Yi-34B-200K's card
# value (70.81) is not the archive's (63.96, its later evaluation of 2024-04-15), so it is checked apart.
SOLAR_CARD_TABLE = [
    ("upstage/SOLAR-10.7B-Instruct-v1.0", "74.20"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "72.62"),
    ("01-ai/Yi-34B", "69.42"),
    ("mistralai/Mixtral-8x7B-v0.1", "68.42"),
    ("meta-llama/Llama-2-70b-hf", "67.87"),
    ("tiiuae/falcon-180B", "67.85"),
    ("upstage/SOLAR-10.7B-v1.0", "66.04"),
    ("Qwen/Qwen-14B", "65.86"),
    ("mistralai/Mistral-7B-Instruct-v0.2", "65.71"),
    ("01-ai/Yi-34B-Chat", "65.32"),
    ("meta-llama/Llama-2-70b-chat-hf", "62.40"),
    ("mistralai/Mistral-7B-v0.1", "60.97"),
    ("mistralai/Mistral-7B-Instruct-v0.1", "54.96"),
]
SOLAR_PEERS = ",".join([m for m, _ in SOLAR_CARD_TABLE] + ["01-ai/Yi-34B-200K"])


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_solars_table_from_the_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`leaderboard --peers` with the models of SOLAR's card, peers alone (no results folder), compact:
    the card's H6 values, in its order, each row the leaderboard's published one."""
    monkeypatch.chdir(tmp_path)  # no results/ here
    result = runner.invoke(
        app, ["leaderboard", "--peers", SOLAR_PEERS, "--published-contents", str(CONTENTS), "--format", "compact"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "| Model | H6 | Model Size |"
    rows = [_cells(line) for line in lines[2:] if line.startswith("| ")]
    by_model = {model.split(" (")[0]: (h6, size) for model, h6, size in rows}
    assert [(m, by_model[m][0]) for m, _ in SOLAR_CARD_TABLE] == SOLAR_CARD_TABLE
    assert by_model["01-ai/Yi-34B-200K"][0] == "63.96"
    assert [r[0].split(" (")[0] for r in rows][:2] == [
        "upstage/SOLAR-10.7B-Instruct-v1.0",
        "mistralai/Mixtral-8x7B-Instruct-v0.1",
    ]
    # where the archive holds a model in several precisions, the table says which it used
    assert "mistralai/Mixtral-8x7B-Instruct-v0.1 (bfloat16)" in [r[0] for r in rows]
    assert "tiiuae/falcon-180B (8bit)" in [r[0] for r in rows]
    assert by_model["tiiuae/falcon-180B"][1] == "~ 179B"  # Model Size from #Params (B)
    assert not any("**" in line for line in lines)  # nothing measured here: nothing in bold
    assert "published numbers" in lines[-1] and "not measured here" in lines[-1]


def test_a_run_beside_its_peers_is_in_bold_and_marked_measured(tmp_path: Path):
    peers = "kyujinpy/Sakura-SOLAR-Instruct-DPO-v2,kyujinpy/Sakura-SOLRCA-Instruct-DPO"
    compact = runner.invoke(
        app,
        ["leaderboard", str(SAKURA), "--peers", peers, "--published-contents", str(CONTENTS), "--format", "compact"],
    )
    assert compact.exit_code == 0, compact.output
    assert compact.stdout.splitlines()[2:5] == [
        "| **kyujinpy/Sakura-SOLAR-Instruct** | **74.40** | **~ 11B** |",
        "| kyujinpy/Sakura-SOLAR-Instruct-DPO-v2 | 74.14 | ~ 10B |",
        "| kyujinpy/Sakura-SOLRCA-Instruct-DPO | 74.05 | ~ 10B |",
    ]
    assert "In bold: measured with evalsuite" in compact.stdout

    markdown = runner.invoke(
        app, ["leaderboard", str(SAKURA), "--peers", peers, "--published-contents", str(CONTENTS), "--model-size"]
    )
    lines = markdown.stdout.splitlines()
    assert lines[0] == "|Model|Average|ARC|HellaSwag|MMLU|TruthfulQA|Winogrande|GSM8K|Model Size|Source|"
    assert lines[2] == "|kyujinpy/Sakura-SOLAR-Instruct|74.40|70.99|88.42|66.33|71.79|83.66|65.20|~ 11B|measured|"
    assert (
        lines[3] == "|kyujinpy/Sakura-SOLAR-Instruct-DPO-v2|74.14|70.90|88.41|66.48|71.86|83.43|63.76|~ 10B|"
        "Open LLM Leaderboard|"
    )
    assert lines[-1].startswith("Rows from the Open LLM Leaderboard are its published numbers")

    csv = runner.invoke(
        app, ["leaderboard", str(SAKURA), "--peers", peers, "--published-contents", str(CONTENTS), "--format", "csv"]
    )
    assert csv.stdout.splitlines()[0].endswith(",Source")
    assert (
        "kyujinpy/Sakura-SOLRCA-Instruct-DPO,74.05,71.16,88.49,66.17,72.10,82.95,63.46,Open LLM Leaderboard"
        in csv.stdout
    )

    html = runner.invoke(
        app, ["leaderboard", str(SAKURA), "--peers", peers, "--published-contents", str(CONTENTS), "--format", "html"]
    )
    assert html.stdout.count('<span class="published"') == 2 and "not measured here" in html.stdout


def test_the_same_model_measured_and_published_sits_side_by_side():
    """A run of a model the archive holds, beside the leaderboard's row for it: both, each marked."""
    result = runner.invoke(app, ["leaderboard", str(SAKURA), "--peers", "kyujinpy/Sakura-SOLAR-Instruct",
                                 "--published-contents", str(CONTENTS)])  # fmt: skip
    rows = [line for line in result.stdout.splitlines() if line.startswith("|kyujinpy/")]
    assert sorted(line.rsplit("|", 2)[1] for line in rows) == ["Open LLM Leaderboard", "measured"]


def test_peers_with_an_empty_results_folder(tmp_path: Path):
    empty = tmp_path / "results"
    empty.mkdir()
    result = runner.invoke(
        app, ["leaderboard", str(empty), "--peers", "Qwen/Qwen-14B", "--published-contents", str(CONTENTS)]
    )
    assert result.exit_code == 0 and "|Qwen/Qwen-14B|65.86|58.28|" in result.stdout
    (truncated := empty / "org__m" / "run-1" / "results.json").parent.mkdir(parents=True)
    truncated.write_text('{"schema_version": 2, "mod')
    result = runner.invoke(  # its only results.json unreadable: skipped, said so, and the peers alone
        app, ["leaderboard", str(empty), "--peers", "Qwen/Qwen-14B", "--published-contents", str(CONTENTS)]
    )
    assert result.exit_code == 0 and "|Qwen/Qwen-14B|65.86|58.28|" in result.stdout
    assert result.stderr == f"warning: skipped: {truncated}: not JSON (Unterminated string starting at line 1)\n"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--peers", "Qwen-14B"], "error: --peers Qwen-14B: give a Hub model id, ORG/NAME or ORG/NAME:PRECISION"),
        (
            ["--peers", "Qwen/Qwen-14B:"],
            "error: --peers Qwen/Qwen-14B:: give a Hub model id, ORG/NAME or ORG/NAME:PRECISION",
        ),
        (
            ["--peers", "nobody/Qwen-14B"],
            "error: nobody/Qwen-14B is not in the Open LLM Leaderboard's archive (24 "
            "evaluations in " + str(CONTENTS) + "); close names: Qwen/Qwen-14B",
        ),
        (
            ["--peers", "Qwen/Qwen-14B:4bit"],
            "error: the archive holds Qwen/Qwen-14B in float16, not in 4bit; give Qwen/Qwen-14B:float16",
        ),
        (
            ["--published-contents", str(CONTENTS)],
            "error: --published-contents is the table peers come from; give --peers too",
        ),
    ],
)
def test_bad_peers_are_one_line_and_write_nothing(tmp_path: Path, args, message):
    out = tmp_path / "board.md"
    extra = [] if "--published-contents" in args else ["--published-contents", str(CONTENTS)]
    result = runner.invoke(app, ["leaderboard", str(SAKURA), *args, *extra, "--output", str(out)])
    assert result.exit_code == 1
    assert result.stderr.strip() == message
    assert not out.exists()


def test_a_missing_published_file_is_one_line(tmp_path: Path):
    result = runner.invoke(
        app, ["leaderboard", "--peers", "Qwen/Qwen-14B", "--published-contents", str(tmp_path / "x.parquet")]
    )
    assert (
        result.exit_code == 1
        and result.stderr.strip() == f"error: --published-contents {tmp_path / 'x.parquet'}: no such file"
    )


# ------------------------------------------------------------------------------------------------ cards


def test_card_update_peers_is_a_managed_section(tmp_path: Path):
    readme = tmp_path / "README.md"
    shutil.copy(SAKURA_CARD, readme)
    original = readme.read_text()
    peers = ["--peers", "kyujinpy/Sakura-SOLAR-Instruct-DPO-v2,kyujinpy/Sakura-SOLRCA-Instruct-DPO",
             "--published-contents", str(CONTENTS)]  # fmt: skip
    args = ["card", "update", str(readme), *peers]
    check = runner.invoke(app, [*args, "--check"])
    assert check.exit_code == 1 and "--peers kyujinpy/Sakura-SOLAR-Instruct-DPO-v2," in check.stderr
    assert readme.read_text() == original
    assert runner.invoke(app, args).exit_code == 0
    updated = readme.read_text()
    assert updated.startswith(original)  # every byte the author wrote stays; the section comes after
    assert updated[len(original) :].lstrip("\n").startswith(PEERS_START_MARKER + "\n| Model | H6 | Model Size |\n")
    assert runner.invoke(app, [*args, "--check"]).exit_code == 0  # idempotent
    assert runner.invoke(app, args).stderr.strip().endswith("already up to date")

    # with the card's own run: it is the row in bold, and the section is replaced, not repeated
    with_run = runner.invoke(app, ["card", "update", str(readme), "--results", str(SAKURA), *peers])
    assert with_run.exit_code == 0, with_run.output
    text = readme.read_text()
    assert text.count(PEERS_START_MARKER) == 1
    section = text.split(PEERS_START_MARKER + "\n", 1)[1].split("<!--", 1)[0]
    assert section.splitlines()[2] == "| **kyujinpy/Sakura-SOLAR-Instruct** | **74.40** | **~ 11B** |"
    assert "In bold: measured with evalsuite" in section


def test_from_leaderboard_on_the_bots_own_card_changes_nothing(tmp_path: Path):
    """The Sakura card is the leaderboard bot's output: writing the leaderboard's numbers again is a no-op."""
    readme = tmp_path / "README.md"
    shutil.copy(SAKURA_CARD, readme)
    args = ["card", "update", str(readme), "--from-leaderboard", "kyujinpy/Sakura-SOLAR-Instruct",
            "--published-contents", str(CONTENTS)]  # fmt: skip
    result = runner.invoke(app, [*args, "--check"])
    assert result.exit_code == 0, result.output
    assert readme.read_bytes() == SAKURA_CARD.read_bytes()


def _front_matter(text: str) -> dict:
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_from_leaderboard_writes_what_the_bot_wrote(tmp_path: Path):
    """The Sakura card without the bot's model-index and section, then --from-leaderboard: the same
    model-index (entry named after the repo, the leaderboard as source) and the same `|Metric|Value|` section,
    now between evalsuite's markers."""
    original = SAKURA_CARD.read_text()
    front, body = original.split("\n---\n", 1)
    bot_at = body.index("# [Open LLM Leaderboard Evaluation Results]")
    stripped_front = front.split("model-index:")[0]
    readme = tmp_path / "README.md"
    readme.write_text(stripped_front + "---\n" + body[:bot_at])
    result = runner.invoke(app, ["card", "update", str(readme), "--from-leaderboard", "kyujinpy/Sakura-SOLAR-Instruct",
                                 "--published-contents", str(CONTENTS)])  # fmt: skip
    assert result.exit_code == 0, result.output
    new = readme.read_text()
    assert _front_matter(new) == _front_matter(original)
    ours = new.split(LEADERBOARD_START_MARKER + "\n", 1)[1].split(LEADERBOARD_END_MARKER, 1)[0]
    assert ours == body[bot_at:].rstrip(" \n") + "\n"
    again = runner.invoke(app, ["card", "update", str(readme), "--from-leaderboard", "kyujinpy/Sakura-SOLAR-Instruct",
                                "--published-contents", str(CONTENTS), "--check"])  # fmt: skip
    assert again.exit_code == 0


def test_from_leaderboard_names_a_quantized_rows_precision(tmp_path: Path):
    """falcon-180B's archive rows are 8bit and 4bit (no 16-bit one): the model-index results of the one asked
    for say its precision in each metric's name, the only text model-index shows beside a value."""
    readme = tmp_path / "README.md"
    readme.write_text("# falcon\n")
    result = runner.invoke(app, ["card", "update", str(readme), "--from-leaderboard", "tiiuae/falcon-180B:4bit",
                                 "--published-contents", str(CONTENTS)])  # fmt: skip
    assert result.exit_code == 0, result.output
    (entry,) = _front_matter(readme.read_text())["model-index"]
    metrics = [r["metrics"][0] for r in entry["results"]]
    assert [m["name"] for m in metrics] == ["normalized accuracy (4bit)", "normalized accuracy (4bit)",
                                            "accuracy (4bit)", "mc2 (4bit)", "accuracy (4bit)", "accuracy (4bit)"]
    assert [m["value"] for m in metrics] == [69.2, 88.89, 69.59, 45.16, 86.74, 33.21]  # the 4bit row, as published


def test_from_leaderboard_conflicts_are_one_line(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text("# card\n")
    both = runner.invoke(app, ["card", "update", str(readme), "--results", str(SAKURA), "--from-leaderboard",
                               "kyujinpy/Sakura-SOLAR-Instruct", "--published-contents", str(CONTENTS)])  # fmt: skip
    assert both.exit_code == 1
    assert (
        both.stderr.strip()
        == "error: --results and --from-leaderboard both write the card's model-index results; give one"
    )
    unknown = runner.invoke(app, ["card", "update", str(readme), "--from-leaderboard", "kyujinpy/Sakura",
                                  "--published-contents", str(CONTENTS)])  # fmt: skip
    assert unknown.exit_code == 1 and "kyujinpy/Sakura is not in the Open LLM Leaderboard's archive" in unknown.stderr
    assert readme.read_text() == "# card\n"


def test_the_docs_show_what_the_command_prints(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """docs/archive.md's SOLAR table is this command's output, line for line."""
    from conftest import REPO

    doc = (REPO / "docs" / "archive.md").read_text()
    (command,) = [line for line in doc.splitlines() if line.startswith("evalsuite leaderboard --peers upstage/")]
    after = doc.split(command, 1)[1].split("\n\n| Model |", 1)[1]
    shown = ["| Model |" + after.split("\n\n", 1)[0]][0].splitlines()  # the table right below the command
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*command.split()[1:], "--published-contents", str(CONTENTS)])
    assert result.exit_code == 0, result.output
    assert [line for line in result.stdout.splitlines() if line.startswith("|")] == shown

"""A results file is validated when read: an impossible number is never rendered, put in a card or compared.

Each case edits the real-format Sakura fixture one way; every reader refuses it with one line: `card render`
and `card update` exit 1 (nothing written), `compare` exits 2 (an error, not a "regression").
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SAKURA
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.errors import ResultsSchemaError
from evalsuite.results import read_results

runner = CliRunner()


def _task(raw: dict, key: str) -> dict:
    return next(t for t in raw["tasks"] if t["key"] == key)


def _set(key: str, field: str, value) -> Callable[[dict], None]:
    def edit(raw: dict) -> None:
        _task(raw, key)[field] = value

    return edit


BAD: dict[str, tuple[Callable[[dict], None], str]] = {
    "NaN value": (_set("arc", "value", float("nan")), "tasks.0.value: Input should be a finite number"),
    "170 %": (_set("gsm8k", "value", 1.7), "tasks.5.value: Input should be less than or equal to 1"),
    "negative value": (_set("mmlu", "value", -0.01), "tasks.2.value: Input should be greater than or equal to 0"),
    "infinite stderr": (_set("hellaswag", "stderr", float("inf")), "tasks.1.stderr"),
    "more documents than the split": (
        _set("winogrande", "documents", 1268), "1268 documents scored of a split of 1267"),
    "stored average not the mean": (
        lambda raw: raw.update(h6_average=0.80), "h6_average 0.8 is not the mean of the task values"),
    "complete run without an average": (
        lambda raw: raw.update(h6_average=None), "status complete with h6_average None"),
    "comparable partial run": (
        lambda raw: raw.update(status="partial", partial_reasons=["x"], h6_average=None),
        "leaderboard_comparable is true but the run is partial"),
    "schema_version as a string": (lambda raw: raw.update(schema_version="2"), "no integer schema_version"),
    "schema_version as a bool": (lambda raw: raw.update(schema_version=True), "no integer schema_version"),
    "a task twice": (lambda raw: raw["tasks"].append(dict(raw["tasks"][0])), "a task appears twice (arc)"),
}  # fmt: skip


def _bad_run(tmp_path: Path, edit: Callable[[dict], None]) -> Path:
    raw = json.loads((SAKURA / "results.json").read_text())
    edit(raw)
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(raw))  # json.dumps writes NaN/Infinity as Python's json does
    return folder


@pytest.mark.parametrize("case", list(BAD))
def test_impossible_results_are_refused_by_every_reader(case: str, tmp_path: Path):
    edit, expected = BAD[case]
    run = _bad_run(tmp_path, edit)
    with pytest.raises(ResultsSchemaError, match="invalid results file|no integer schema_version") as raised:
        read_results(run)
    assert expected in str(raised.value)

    render = runner.invoke(app, ["card", "render", str(run), "--format", "model-index"])
    assert render.exit_code == 1 and render.stdout == ""
    (line,) = render.stderr.strip().splitlines()
    assert line.startswith("error: ") and expected in line

    readme = tmp_path / "README.md"
    readme.write_text("# my card\n")
    update = runner.invoke(app, ["card", "update", str(readme), "--results", str(run)])
    assert update.exit_code == 1 and readme.read_text() == "# my card\n"

    for pair in ([str(SAKURA), str(run)], [str(run), str(SAKURA)]):
        compare = runner.invoke(app, ["compare", *pair])
        assert compare.exit_code == 2, compare.output
        (line,) = compare.stderr.strip().splitlines()
        assert line.startswith("error: ") and expected in line


def test_a_non_utf8_results_file_is_one_line_and_exit_2(tmp_path: Path):
    folder = tmp_path / "latin1"
    folder.mkdir()
    (folder / "results.json").write_bytes((SAKURA / "results.json").read_bytes().replace(b"Sakura", b"Sak\xfcra"))
    result = runner.invoke(app, ["compare", str(SAKURA), str(folder)])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "not UTF-8" in line


def test_the_fixture_itself_is_valid():
    assert read_results(SAKURA).h6_average == pytest.approx(0.74398, abs=1e-5)


# --- a model's results folder instead of a run folder


def _model_folder(tmp_path: Path) -> Path:
    """results/org__name with an older complete run and a newer partial one."""
    model = tmp_path / "kyujinpy__Sakura-SOLAR-Instruct"
    shutil.copytree(SAKURA, model / "20240101T000000Z-0000")
    raw = json.loads((SAKURA / "results.json").read_text())
    raw |= {"run_id": "20240201T000000Z-0000", "status": "partial", "partial_reasons": ["--limit 4"],
            "h6_average": None, "leaderboard_comparable": False}  # fmt: skip
    (model / "20240201T000000Z-0000").mkdir()
    (model / "20240201T000000Z-0000" / "results.json").write_text(json.dumps(raw))
    return model


def test_card_commands_take_the_newest_complete_run_of_a_model_folder(tmp_path: Path):
    model = _model_folder(tmp_path)
    result = runner.invoke(app, ["card", "render", str(model), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert "|Avg.|74.40|" in result.stdout
    assert result.stderr.strip() == f"using {model / '20240101T000000Z-0000'}, the newest complete run of 2"


def test_compare_lists_the_runs_of_a_model_folder(tmp_path: Path):
    model = _model_folder(tmp_path)
    result = runner.invoke(app, ["compare", str(model), str(SAKURA)])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == (f"error: {model} holds 2 runs (20240101T000000Z-0000, 20240201T000000Z-0000); give one run folder")

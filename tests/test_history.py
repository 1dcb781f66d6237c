"""`evalsuite history`: a model's runs as a table and a PNG chart."""

from __future__ import annotations

from pathlib import Path

from conftest import FIXTURES
from typer.testing import CliRunner

from evalsuite.cli import app

RESULTS = FIXTURES / "results"
runner = CliRunner()


def test_table_lists_runs_oldest_first_with_stderr():
    result = runner.invoke(app, ["history", "openai-community/gpt2", str(RESULTS)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| Run (UTC)") and "| GSM8K |" in lines[0].replace(" ", "").replace(
        "|GSM8K|", "| GSM8K |"
    )
    assert "20240103T000000Z-0000 | complete | yes        | bfloat16  |   28.45 | 22.01 ± 1.00" in lines[2]
    assert "20240104T000000Z-0000 | partial  | no         | bfloat16  |       - | 50.00 ± 1.00" in lines[3]


def test_folder_name_works_as_model(tmp_path: Path):
    result = runner.invoke(app, ["history", "openai-community__gpt2", str(RESULTS)])
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 4  # header, rule, gpt2's two runs
    rows = result.stdout.splitlines()[2:]
    assert "20240103T000000Z-0000" in rows[0] and "20240104T000000Z-0000" in rows[1]  # gpt2's, oldest first


def test_plot_is_a_png(tmp_path: Path):
    plot = tmp_path / "gpt2.png"
    result = runner.invoke(app, ["history", "openai-community/gpt2", str(RESULTS), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    data = plot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["gpt2.png"]  # no temporary file left


def _refused(args: list[str], expected: str) -> None:
    result = runner.invoke(app, ["history", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def test_empty_history(tmp_path: Path):
    _refused(["x", str(tmp_path)], "no results.json under")
    _refused(["nobody/model", str(RESULTS)], "no runs of 'nobody/model'; models with runs:")


def test_the_only_results_file_unreadable_says_why(tmp_path: Path):
    """A truncated results.json, the only one there: the line says it is unreadable and why, not that there is
    none (and JSON's "starting at" is not doubled)."""
    truncated = tmp_path / "org__m" / "run-1" / "results.json"
    truncated.parent.mkdir(parents=True)
    truncated.write_text('{\n  "schema_version": 2,\n  "model": "org/m')
    _refused(["org/m", str(tmp_path)], f"error: the only results.json under {tmp_path} is unreadable: {truncated}: "
             "not JSON (Unterminated string starting at line 3)")  # fmt: skip


def test_plot_in_a_missing_folder_writes_nothing(tmp_path: Path):
    target = tmp_path / "missing" / "plot.png"
    _refused(["tiny", str(RESULTS), "--plot", str(target)], "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_history_finds_a_local_model_by_its_results_folder_name():
    folder = FIXTURES / "results" / "other-models" / "local__tiny"
    result = runner.invoke(app, ["history", "local__tiny", str(folder.parent)])
    assert result.exit_code == 0, result.output
    assert "20240105T000000Z-0000" in result.stdout

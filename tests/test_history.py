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


def _two_loras(tmp_path: Path) -> Path:
    """Runs of two local models both named `lora` (at /a/lora and /b/lora), each in the folder a run files it in:
    `local__lora` for the first, `local__lora__<8 hex of its location's sha256>` for the second."""
    import hashlib
    import json

    gpt2 = RESULTS / "other-models" / "openai-community__gpt2" / "20240103T000000Z-0000" / "results.json"
    out = tmp_path / "out"
    for location, run_id in (("/a/lora", "20240103T000000Z-0000"), ("/b/lora", "20240104T000000Z-0000")):
        raw = json.loads(gpt2.read_text())
        raw["run_id"], raw["created_at"] = run_id, f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}T00:00:00Z"
        raw["model"] |= {"id": "lora", "source": "local", "location": location, "sha": None}
        tag = hashlib.sha256(location.encode()).hexdigest()[:8]
        folder = "local__lora" if location == "/a/lora" else f"local__lora__{tag}"
        (out / folder / run_id).mkdir(parents=True)
        (out / folder / run_id / "results.json").write_text(json.dumps(raw))
    return out


def test_an_id_two_local_models_share_is_refused_and_each_folder_name_gives_its_own_runs(tmp_path: Path):
    """`history lora` mixed two models' runs into one line of scores; now it names their folders, and each folder
    name gives exactly its model's runs."""
    out = _two_loras(tmp_path)
    distinct = next(p.name for p in out.iterdir() if p.name != "local__lora")
    _refused(["lora", str(out)], f"'lora' names models at 2 locations; give one of their results folders instead: "
             f"local__lora, {distinct}")  # fmt: skip
    for folder, run_id in (("local__lora", "20240103T000000Z-0000"), (distinct, "20240104T000000Z-0000")):
        result = runner.invoke(app, ["history", folder, str(out)])
        assert result.exit_code == 0, result.output
        rows = result.stdout.splitlines()[2:]
        assert len(rows) == 1 and run_id in rows[0], result.stdout

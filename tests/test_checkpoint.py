"""The checkpoint's recovery rules on their own (no model; test_faults.py has them on a real run): a damaged
state.json, task record or request cache is named in one line and only that part is redone; a record edited by
hand is never believed. And the readers: in-progress and staging folders are never runs, and a table of many
runs goes on without an unreadable one, saying so."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import SAKURA
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.errors import OutputDirError, ResultsSchemaError
from evalsuite.records import FrozenRecord
from evalsuite.results import find_runs
from evalsuite.run.checkpoint import Checkpoint

NOW = datetime(2026, 12, 4, tzinfo=UTC)
cli = CliRunner()


class Task(FrozenRecord):
    value: float


def _saved(tmp_path: Path) -> Path:
    """A checkpoint holding two finished tasks and a request cache with one answer, released."""
    checkpoint = Checkpoint.open(tmp_path, "k", "run-1", NOW, Task)
    checkpoint.save("arc", Task(value=0.25))
    checkpoint.save("gsm8k", Task(value=0.5), files={"jsonl": "{}\n"})
    with sqlite3.connect(checkpoint.folder / "requests-mmlu_rank0.db") as conn:
        conn.execute("CREATE TABLE unnamed (key TEXT PRIMARY KEY, value BLOB)")
        conn.execute("INSERT INTO unnamed VALUES ('a', 'b')")
    checkpoint.release()
    return checkpoint.folder


def test_a_saved_checkpoint_resumes_as_it_was(tmp_path: Path):
    folder = _saved(tmp_path)
    again = Checkpoint.open(tmp_path, "k", "run-2", NOW, Task)
    assert (again.run_id, again.resumed, again.notes) == ("run-1", True, ())
    assert again.finished_at_open == {"arc", "gsm8k"} and again.finished("arc", Task).value == 0.25
    assert again.cached_requests("mmlu") == 1 and again.finished_file("gsm8k", "jsonl") == "{}\n"
    assert json.loads((folder / "tasks" / "arc.json").read_text())["sha256"]  # the record carries its checksum


@pytest.mark.parametrize(
    ("damage", "note"),
    [
        (lambda f: (f / "tasks" / "arc.json").write_text('{"sha256": "x", "rec'), "not a record evalsuite wrote"),
        (lambda f: (f / "tasks" / "arc.json").write_text(
            (f / "tasks" / "arc.json").read_text().replace("0.25", "0.75")), "does not match its checksum"),
        (lambda f: (f / "tasks" / "arc.json").write_text(json.dumps(_envelope({"value": 1e9, "extra": 1}))),
         "invalid record at extra: Extra inputs are not permitted"),
    ],
    ids=["truncated", "edited by hand", "not a record of this kind"],
)  # fmt: skip
def test_a_damaged_record_is_dropped_and_its_task_runs_again(tmp_path: Path, damage, note: str):
    folder = _saved(tmp_path)
    damage(folder)
    again = Checkpoint.open(tmp_path, "k", "run-2", NOW, Task)
    assert again.finished_at_open == {"gsm8k"} and again.run_id == "run-1"
    (line,) = again.notes
    assert line.startswith(f"warning: {folder}: task arc's saved record is damaged (") and note in line
    assert line.endswith("it runs again")
    assert not (folder / "tasks" / "arc.json").exists()


def _envelope(record: dict) -> dict:
    from evalsuite.run.checkpoint import _canonical_sha256

    return {"sha256": _canonical_sha256(record), "record": record}


def test_a_damaged_state_starts_a_new_run_id_over_the_saved_tasks(tmp_path: Path):
    folder = _saved(tmp_path)
    (folder / "state.json").write_text('{"run_id": "run')
    again = Checkpoint.open(tmp_path, "k", "run-2", NOW, Task)
    assert again.run_id == "run-2" and again.finished_at_open == {"arc", "gsm8k"} and again.resumed
    assert again.notes == (
        f"warning: {folder / 'state.json'} was damaged; the run goes on as run run-2, keeping 2 finished task(s) "
        "and the answered requests",
    )


@pytest.mark.parametrize("content", [b"not a database, random bytes" * 100, b""])
def test_a_damaged_request_cache_is_dropped_and_an_empty_one_kept(tmp_path: Path, content: bytes):
    folder = _saved(tmp_path)
    (folder / "requests-mmlu_rank0.db").write_bytes(content)
    again = Checkpoint.open(tmp_path, "k", "run-2", NOW, Task)
    if content:
        (line,) = again.notes
        assert line == (f"warning: {folder}: task mmlu's request cache is damaged (DatabaseError: file is not a "
                        "database); its requests are asked again")  # fmt: skip
        assert not (folder / "requests-mmlu_rank0.db").exists()
    else:  # an empty file is an empty database: nothing to reuse, nothing damaged
        assert again.notes == () and again.cached_requests("mmlu") == 0


def test_a_checkpoint_in_a_folder_that_cannot_be_made_is_one_line(tmp_path: Path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputDirError, match="cannot start the run under .*: Not a directory"):
        Checkpoint.open(tmp_path / "file" / "model", "k", "run-1", NOW, Task)


def test_readers_never_read_in_progress_or_staging_folders_and_say_which_file_they_skipped(tmp_path: Path):
    model = tmp_path / "kyujinpy__Sakura-SOLAR-Instruct"
    shutil.copytree(SAKURA, model / "20240101T000000Z-0000")
    shutil.copytree(SAKURA, model / ".inprogress-k" / ".20240101T000000Z-0000.abc.partial")  # a staged copy
    (model / ".20240101T000000Z-0000.def.partial").mkdir()
    (model / ".20240101T000000Z-0000.def.partial" / "results.json").write_text('{"schema_vers')  # half written
    assert [r.run_id for r in find_runs([tmp_path])] == ["20240101T000000Z-0000"]

    broken = tmp_path / "other__model" / "20240301T000000Z-0000"
    broken.mkdir(parents=True)
    (broken / "results.json").write_text("{}")
    with pytest.raises(ResultsSchemaError):
        find_runs([tmp_path])
    board = cli.invoke(app, ["leaderboard", str(tmp_path)])
    assert board.exit_code == 0 and board.stdout.count("Sakura-SOLAR-Instruct") == 1
    assert board.stderr.startswith(f"warning: skipped: {broken / 'results.json'}: not an evalsuite results file")
    history = cli.invoke(app, ["history", "kyujinpy/Sakura-SOLAR-Instruct", str(tmp_path)])
    assert history.exit_code == 0 and history.stdout.count("20240101T000000Z-0000") == 1

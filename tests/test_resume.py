"""Crash-safe runs: a real `evalsuite run` killed with SIGKILL mid-task resumes where it stopped."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import SAMPLE_DATA

from evalsuite.engine import FinishedTask
from evalsuite.errors import OutputDirError
from evalsuite.results import read_results
from evalsuite.run.checkpoint import Checkpoint


def _command(gguf: Path, out: Path) -> list[str]:
    # batch size 2: hellaswag's 8 requests take 4 forward passes, so a kill can land between two of them
    return [sys.executable, "-m", "evalsuite", "run", str(gguf), "--data-dir", str(SAMPLE_DATA),
            "--tasks", "arc,hellaswag", "--limit", "2", "--batch-size", "2", "--log-samples",
            "--output-dir", str(out)]  # fmt: skip


def _cached(folder: Path, task: str) -> int:
    total = 0
    for db in folder.glob(f"requests-{task}_rank*.db"):
        try:
            with sqlite3.connect(db) as conn:
                total += conn.execute("SELECT COUNT(*) FROM unnamed").fetchone()[0]
        except sqlite3.OperationalError:  # table not created yet
            pass
    return total


@pytest.mark.subprocess
def test_kill_9_mid_task_then_resume(gguf_path: Path, tmp_path: Path):
    started = time.perf_counter()
    reference = subprocess.run(_command(gguf_path, tmp_path / "ref"), capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr
    reference_seconds = time.perf_counter() - started
    expected_dir = Path(reference.stdout.strip().splitlines()[-1].removeprefix("results: ")).parent
    expected = read_results(expected_dir)

    out = tmp_path / "out"
    started = time.perf_counter()
    proc = subprocess.Popen(_command(gguf_path, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    model_dir = out / "local__SmolLM2-135M-Instruct.Q4_1"
    deadline = time.monotonic() + 600
    killed_with = None
    while time.monotonic() < deadline and proc.poll() is None:
        folders = list(model_dir.glob(".inprogress-*"))
        # arc (task 1 of 2) is finished; hellaswag has answered some of its 8 requests, not all
        tasks = folders[0] / "tasks" if folders else None
        hellaswag_done = tasks is not None and (tasks / "hellaswag.json").exists()
        if (
            tasks
            and (tasks / "arc.json").exists()
            and not hellaswag_done
            and (answered := _cached(folders[0], "hellaswag"))
        ):
            killed_with = answered
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    killed_seconds = time.perf_counter() - started
    assert killed_with is not None, "the run finished before it could be killed mid-task"
    assert proc.returncode == -signal.SIGKILL
    assert not [p for p in model_dir.iterdir() if not p.name.startswith(".inprogress-")], "no results folder yet"

    started = time.perf_counter()
    resumed = subprocess.run(_command(gguf_path, out), capture_output=True, text=True, timeout=600)
    resumed_seconds = time.perf_counter() - started
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming run" in resumed.stderr
    # the finished task is not rerun; the interrupted one reuses its answered requests
    assert "[1/2] arc: finished before the interruption, not rerun" in resumed.stderr
    assert "[1/2] arc: 25-shot" not in resumed.stderr
    reused = [line for line in resumed.stderr.splitlines() if "answered before the interruption are reused" in line]
    assert reused and reused[0].startswith("[2/2] hellaswag: ")
    assert killed_with <= int(reused[0].split(": ")[1].split()[0]) <= 8
    resumed_dir = Path(resumed.stdout.strip().splitlines()[-1].removeprefix("results: ")).parent
    results = read_results(resumed_dir)
    assert {t.key: t.value for t in results.tasks} == {t.key: t.value for t in expected.tasks}
    assert [t.documents for t in results.tasks] == [t.documents for t in expected.tasks]
    assert not list(model_dir.glob(".inprogress-*")), "the in-progress folder is removed once the run is written"
    # and `compare`, paired on the logged samples, sees no regression between the two real runs
    compared = subprocess.run(
        [sys.executable, "-m", "evalsuite", "compare", str(expected_dir), str(resumed_dir), "--format", "json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert [(t["test"], t["verdict"]) for t in json.loads(compared.stdout)["tasks"]] == [("mcnemar", "unchanged")] * 2
    values = json.dumps({t.key: t.value for t in results.tasks})
    print(
        f"\nresume: uninterrupted {reference_seconds:.1f}s; killed after {killed_seconds:.1f}s with {killed_with} "
        f"requests cached; resumed in {resumed_seconds:.1f}s; values {values}"
    )


@pytest.mark.subprocess
def test_sigterm_says_how_to_resume(gguf_path: Path, tmp_path: Path):
    proc = subprocess.Popen(_command(gguf_path, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if list(tmp_path.glob("*/.inprogress-*/tasks/arc.json")):  # something is saved: the message says so
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert stderr.strip().splitlines()[-1] == (
        "interrupted: finished tasks and answered requests are saved; run the same command again to resume"
    )


def test_two_runs_cannot_share_an_in_progress_folder(tmp_path: Path):
    now = datetime.now(UTC)
    first = Checkpoint.open(tmp_path, "abc", "run-1", now, FinishedTask)
    try:
        with pytest.raises(OutputDirError, match=r"is in use by another evalsuite run \(pid \d+\)"):
            Checkpoint.open(tmp_path, "abc", "run-2", now, FinishedTask)
    finally:
        first.release()
    again = Checkpoint.open(tmp_path, "abc", "run-3", now, FinishedTask)  # free once released (or its process died)
    assert again.resumed and again.run_id == "run-1"
    again.finish()
    assert not (tmp_path / ".inprogress-abc").exists()

"""Crash-safe runs: SIGTERM stops a real run the way Ctrl-C does, and two runs cannot share an in-progress folder.
A run killed with SIGKILL at every instant, mid-task among them, resumes: tests/test_faults.py."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import SAMPLE_DATA

from evalsuite.engine import FinishedTask
from evalsuite.errors import OutputDirError
from evalsuite.run.checkpoint import Checkpoint


def _command(gguf: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "evalsuite", "run", str(gguf), "--data-dir", str(SAMPLE_DATA),
            "--tasks", "truthfulqa,winogrande", "--limit", "2", "--output-dir", str(out)]  # fmt: skip


@pytest.mark.subprocess
def test_sigterm_says_how_to_resume(gguf_path: Path, tmp_path: Path):
    """SIGTERM (a scheduler's stop) is taken as Ctrl-C is: here right after the first task was saved."""
    env = {**os.environ, "EVALSUITE_KILL_AT": "task-saved:SIGTERM"}
    stopped = subprocess.run(_command(gguf_path, tmp_path), capture_output=True, text=True, env=env, timeout=600)
    assert stopped.returncode == 130
    assert stopped.stderr.strip().splitlines()[-1] == (
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

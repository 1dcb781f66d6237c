"""Faults as they happen, on a real run (SmolLM2, the sample rows, TruthfulQA and Winogrande at --limit 2):

- killed with SIGKILL at each named instant (evalsuite/faults.py), the same command again gives the
  uninterrupted run's values and leaves nothing behind, and `leaderboard`/`history` work on the folder at every
  instant in between;
- damaged state (state.json, task records, request caches, a hand-edited record) is named in one line each and
  only the damaged part is redone;
- a full disk (a tmpfs of our own: CI runs as root) at a write and at 0 bytes free is one line;
- two runs at once on an empty model cache: one waits for the dequantization, one line if they collide;
- Ctrl-C before anything was saved says so; two Ctrl-C 0.2 s apart print no `Exception ignored`.

The card update's faults (a README changed underneath, a Hub that moved on, a refused token, unwritable
files) are in test_card_faults.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, SAMPLE_DATA
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.results import read_results

pytestmark = pytest.mark.subprocess

EVALSUITE = str(Path(sys.executable).parent / "evalsuite")
MODEL_DIR = "local__SmolLM2-135M-Instruct.Q4_1"
cli = CliRunner()


def _command(gguf: Path, out: Path) -> list[str]:
    return [EVALSUITE, "run", str(gguf), "--data-dir", str(SAMPLE_DATA), "--tasks", "truthfulqa,winogrande",
            "--limit", "2", "--batch-size", "2", "--output-dir", str(out)]  # fmt: skip


def _run(gguf: Path, out: Path, kill_at: str | None = None, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ}
    env.pop("EVALSUITE_KILL_AT", None)
    if kill_at:
        env["EVALSUITE_KILL_AT"] = kill_at
    if cache is not None:
        env["EVALSUITE_CACHE_DIR"] = str(cache)
    return subprocess.run(_command(gguf, out), capture_output=True, text=True, env=env, timeout=600)


def _values(result: subprocess.CompletedProcess) -> dict[str, float]:
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1].removeprefix("results: ")).parent
    return {t.key: t.value for t in read_results(run_dir).tasks}


@pytest.fixture(scope="module")
def baseline(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """The uninterrupted run's values."""
    return _values(_run(gguf_path, tmp_path_factory.mktemp("baseline")))


def _readers_work(out: Path, runs: int) -> None:
    """`leaderboard` and `history` on the folder: the runs that are written, once each; never a leftover."""
    board = cli.invoke(app, ["leaderboard", str(out)])
    history = cli.invoke(app, ["history", "SmolLM2-135M-Instruct.Q4_1", str(out)])
    if runs == 0:  # nothing written yet (or not even the folder): one line that says so
        for result, code in ((board, 1), (history, 2)):
            assert result.exit_code == code and result.stderr.count("\n") == 1, result.output
            assert result.stderr.startswith(("error: no results.json under", f"error: {out}: no such directory"))
        return
    assert board.exit_code == 0, board.output
    assert board.stdout.count("SmolLM2-135M-Instruct.Q4_1") == 1
    assert history.exit_code == 0 and history.stdout.count("partial") == runs, history.output


INSTANTS = [
    "dequantizing", "model-loaded", "answers-cached", "replacing truthfulqa.json", "task-saved",
    "staging results.json", "staged", "renamed",
]  # fmt: skip


@pytest.mark.parametrize("instant", INSTANTS)
def test_a_run_killed_at_any_instant_resumes_with_the_same_values_and_leaves_nothing(
    instant: str, gguf_path: Path, baseline: dict[str, float], tmp_path: Path
):
    out = tmp_path / "out"
    cache = tmp_path / "cache" if instant == "dequantizing" else None  # an empty model cache to dequantize into
    killed = _run(gguf_path, out, kill_at=instant, cache=cache)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    _readers_work(out, runs=1 if instant == "renamed" else 0)

    again = _run(gguf_path, out, cache=cache)
    assert _values(again) == baseline
    model_dir = out / MODEL_DIR
    (run_dir,) = model_dir.iterdir()  # the run, and nothing else: no in-progress or staging folder
    assert not run_dir.name.startswith(".")
    if instant == "renamed":
        assert f"run {run_dir.name} was already written to {run_dir}" in again.stderr
    if cache is not None:  # the killed dequantization's staging folder is gone, the model is there once
        assert [p.name for p in (cache / "gguf").iterdir() if p.is_dir()] == [
            p.name for p in (cache / "gguf").iterdir() if p.is_dir() and not p.name.startswith(".")
        ]
        assert len([p for p in (cache / "gguf").iterdir() if p.is_dir()]) == 1
    _readers_work(out, runs=1)


def test_damaged_state_is_one_line_each_and_only_the_damaged_part_is_redone(
    gguf_path: Path, baseline: dict[str, float], tmp_path: Path
):
    """Killed with the run folder staged: both tasks saved. Then state.json truncated, TruthfulQA's record edited
    by hand (its value 0.14 -> 0.75) and its request cache overwritten with random bytes, Winogrande's record
    truncated and its cache emptied. The same command again: one line per damage, TruthfulQA and Winogrande
    run again (TruthfulQA from scratch, its cache being gone; Winogrande from its empty cache), the baseline's
    values, no leftovers."""
    out = tmp_path / "out"
    assert _run(gguf_path, out, kill_at="staged").returncode == -signal.SIGKILL
    (folder,) = (out / MODEL_DIR).glob(".inprogress-*")
    (folder / "state.json").write_text('{"run_id": "2026')
    record = folder / "tasks" / "truthfulqa.json"
    envelope = json.loads(record.read_text())
    envelope["record"]["lm_eval_output"]["results"]["truthfulqa_mc2"]["acc,none"] = 0.75
    record.write_text(json.dumps(envelope))
    (folder / "tasks" / "winogrande.json").write_text(record.read_text()[:100])
    (folder / "requests-truthfulqa_rank0.db").write_bytes(os.urandom(4096))
    (folder / "requests-winogrande_rank0.db").write_bytes(b"")

    again = _run(gguf_path, out)
    assert _values(again) == baseline  # not 0.75: an edited record is never believed
    warnings = [line for line in again.stderr.splitlines() if line.startswith("warning: ")]
    assert any("truthfulqa's request cache is damaged (DatabaseError: file is not a database)" in w for w in warnings)
    assert any("truthfulqa's saved record is damaged (its content does not match its checksum" in w for w in warnings)
    assert any("winogrande's saved record is damaged (JSONDecodeError: not a record evalsuite wrote)" in w
               for w in warnings)  # fmt: skip
    assert any("state.json was damaged; the run goes on as run" in w for w in warnings)
    assert "[1/2] truthfulqa: 0-shot" in again.stderr and "[2/2] winogrande: 5-shot" in again.stderr
    assert "Traceback" not in again.stderr
    (run_dir,) = (out / MODEL_DIR).iterdir()
    assert not run_dir.name.startswith(".")


# --- a full disk: a tmpfs of the test's own (needs root, as CI runs)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k,mode=0777", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip() or made.returncode}): needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(disk: Path) -> None:
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:  # ENOSPC: the disk is full
        pass
    finally:
        os.close(fd)


def test_a_full_disk_is_one_line_wherever_it_fills_and_the_run_resumes_once_there_is_room(
    gguf_path: Path, baseline: dict[str, float], small_disk: Path
):
    out = small_disk / "out"
    full = _run(gguf_path, out)
    assert full.returncode == 1, full.stderr[-2000:]
    (line,) = full.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and "No space left on device" in line and "Traceback" not in full.stderr
    assert not list((out / MODEL_DIR).glob(".*.partial")) if (out / MODEL_DIR).exists() else True
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    assert _values(_run(gguf_path, out)) == baseline


def test_zero_bytes_free_is_one_line_and_leaves_no_folder(gguf_path: Path, small_disk: Path):
    _fill(small_disk)
    out = small_disk / "out"
    full = _run(gguf_path, out)
    assert full.returncode == 1
    (line,) = full.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and "No space left on device" in line and "Traceback" not in full.stderr
    assert not out.exists(), list(out.rglob("*"))  # no empty .inprogress-*, no 0-byte lock


# --- concurrency: two runs at once on an empty model cache


def test_two_runs_at_once_on_an_empty_cache_dequantize_once_and_collide_in_one_line(gguf_path: Path, tmp_path: Path):
    env = {**os.environ, "EVALSUITE_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("EVALSUITE_KILL_AT", None)
    out = tmp_path / "out"
    both = [subprocess.Popen(_command(gguf_path, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env) for _ in range(2)]  # fmt: skip
    results = [(p.wait(timeout=600), p.communicate()[1]) for p in both]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 1]), results
    for code, stderr in results:
        assert "Traceback" not in stderr and "Directory not empty" not in stderr
        if code == 1:  # the other held the run's lock: one line that says what to do
            assert stderr.strip().splitlines()[-1].startswith("error: ") and "in use by another evalsuite run" in stderr
    gguf = tmp_path / "cache" / "gguf"
    assert len([p for p in gguf.iterdir() if p.is_dir()]) == 1  # dequantized once, no staging folder left
    assert not [p for p in (out / MODEL_DIR).iterdir() if p.name.startswith(".")]


# --- signals


def test_ctrl_c_before_anything_is_saved_says_so_and_leaves_nothing(gguf_path: Path, tmp_path: Path):
    stopped = _run(gguf_path, tmp_path / "out", kill_at="model-loaded:SIGINT")
    assert stopped.returncode == 130
    assert stopped.stderr.strip().splitlines()[-1] == (
        "interrupted before anything was saved; run the same command again to start over"
    )
    assert not (tmp_path / "out").exists()


def test_two_ctrl_c_in_a_row_are_one_interrupt_and_the_saved_work_is_said(gguf_path: Path, tmp_path: Path):
    stopped = _run(gguf_path, tmp_path / "out", kill_at="task-saved:SIGINT:2")
    assert stopped.returncode == 130
    assert "Exception ignored" not in stopped.stderr and "Traceback" not in stopped.stderr, stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == (
        "interrupted: finished tasks and answered requests are saved; run the same command again to resume"
    )
    assert list((tmp_path / "out" / MODEL_DIR).glob(".inprogress-*"))


def test_the_instants_the_tests_kill_at_are_the_ones_the_code_names():
    """A renamed instant fails here, not by silently never firing in the tests above."""
    source = "\n".join(p.read_text() for p in (REPO / "evalsuite").rglob("*.py"))
    named = {"dequantizing", "model-loaded", "answers-cached", "task-saved", "staged", "renamed"}
    for instant in named:
        assert f'faults.reached("{instant}")' in source, instant
    assert 'faults.reached(f"replacing {path.name}")' in source and 'faults.reached(f"staging {name}")' in source

"""Faults as they happen, on a real run (SmolLM2, the sample rows, TruthfulQA and Winogrande at --limit 2): in a
process of its own where a kill or a signal ends it (the process is the subject), else in the test's process;

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
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, SAMPLE_DATA, fill
from typer.testing import CliRunner, Result

from evalsuite import faults
from evalsuite.cli import app
from evalsuite.results import read_results

pytestmark = [
    pytest.mark.subprocess,
    # a run in this process (`_invoke`): an exception left unhandled in a thread, or by a finalizer, fails the test
    # as the Traceback it would print on a process's stderr would
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]

EVALSUITE = str(Path(sys.executable).parent / "evalsuite")
MODEL_DIR = "local__SmolLM2-135M-Instruct.Q4_1"
cli = CliRunner()


TASKS = "truthfulqa,winogrande"


def _command(gguf: Path, out: Path, tasks: str = TASKS) -> list[str]:
    return [EVALSUITE, "run", str(gguf), "--data-dir", str(SAMPLE_DATA), "--tasks", tasks,
            "--limit", "2", "--batch-size", "2", "--output-dir", str(out)]  # fmt: skip


def _run(
    gguf: Path, out: Path, kill_at: str | None = None, cache: Path | None = None, tasks: str = TASKS
) -> subprocess.CompletedProcess:
    """The command in a process of its own: for the runs a kill or a signal ends (the process is the subject)."""
    env = {**os.environ}
    env.pop(faults.ENV, None)
    if kill_at:
        env[faults.ENV] = kill_at
    if cache is not None:
        env["EVALSUITE_CACHE_DIR"] = str(cache)
    return subprocess.run(_command(gguf, out, tasks), capture_output=True, text=True, env=env, timeout=600)


def _invoke(gguf: Path, out: Path) -> Result:
    """The same command in this process (typer's CliRunner), for the runs no kill or signal ends: the same code,
    output and exit code, without a process's start-up. The model cache is this process's EVALSUITE_CACHE_DIR, as
    the process inherited it (evalsuite reads it at each use: evalsuite/paths.py). An exception the command did not
    turn into its one line, a Traceback on a process's stderr, is the result's exception here: none, or the exit."""
    command = _command(gguf, out)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(faults.ENV, raising=False)  # set, it would kill the test's own process
        patch.setattr(sys, "argv", command)  # what `run` reads of its command line (-v), not pytest's
        result = cli.invoke(app, command[1:])
    assert result.exception is None or isinstance(result.exception, SystemExit), "".join(
        traceback.format_exception(result.exception)
    )
    return result


def _values(result: subprocess.CompletedProcess | Result) -> dict[str, float]:
    code = result.returncode if isinstance(result, subprocess.CompletedProcess) else result.exit_code
    assert code == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1].removeprefix("results: ")).parent
    return {t.key: t.value for t in read_results(run_dir).tasks}


@pytest.fixture(scope="module")
def baseline(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """The uninterrupted run's values (in this process: the runs compared with it are the killed processes')."""
    return _values(_invoke(gguf_path, tmp_path_factory.mktemp("baseline")))


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


# In a run's order: each run of the chain resumes what the one before left, and is killed at the next instant.
CHAIN = [
    "model-loaded", "answers-cached", "replacing truthfulqa.json", "task-saved", "staging results.json", "staged",
    "renamed",
]  # fmt: skip


def test_a_run_killed_at_each_instant_in_turn_resumes_with_the_same_values_and_leaves_nothing(
    gguf_path: Path, baseline: dict[str, float], tmp_path: Path
):
    """The same command, killed with SIGKILL at each instant in turn (the state each kill leaves is what the next
    run starts from), then once more to the end: the uninterrupted run's values, one run folder and nothing
    else; `leaderboard` and `history` work on the folder after every kill.

    Then the folder as the kill at "staged" left it (both tasks saved), kept aside at that instant and put back at
    its path, damaged: `_damaged_state_is_one_line_each_and_only_the_damaged_part_is_redone`. A run killed at
    "staged" from the start leaves the same files, but for the temporary file the kill at "replacing
    truthfulqa.json" left in tasks/ (`.truthfulqa.json.*`, no record's name: nothing reads it) and the timings
    inside the records."""
    out, staged = tmp_path / "out", tmp_path / "staged"
    for before, instant in zip([None, *CHAIN], CHAIN, strict=False):
        killed = _run(gguf_path, out, kill_at=instant)
        assert killed.returncode == -signal.SIGKILL, (instant, killed.stderr[-2000:])
        assert "Traceback" not in killed.stderr
        if instant == "staged":  # what the damaged-state check below starts from
            shutil.copytree(out, staged, symlinks=True)
        if before == "answers-cached":  # the interrupted task reuses the answers its request cache kept
            reused = [line for line in killed.stderr.splitlines() if "answered before the interruption" in line]
            assert reused and reused[0].startswith("[1/2] truthfulqa: ") and "are reused" in reused[0]
        if before == "task-saved":  # a finished task is not run again
            assert "[1/2] truthfulqa: finished before the interruption, not rerun" in killed.stderr
        _readers_work(out, runs=1 if instant == "renamed" else 0)
    again = _run(gguf_path, out)
    assert _values(again) == baseline
    (run_dir,) = (out / MODEL_DIR).iterdir()  # the run, and nothing else: no in-progress or staging folder
    assert not run_dir.name.startswith(".")
    assert f"run {run_dir.name} was already written to {run_dir}" in again.stderr  # killed after the rename
    _readers_work(out, runs=1)

    shutil.rmtree(out)
    shutil.copytree(staged, out, symlinks=True)
    _damaged_state_is_one_line_each_and_only_the_damaged_part_is_redone(gguf_path, baseline, out)


def test_a_killed_dequantization_then_two_runs_at_once_dequantize_once_and_collide_in_one_line(
    gguf_path: Path, baseline: dict[str, float], tmp_path: Path
):
    """An empty model cache: a run killed while dequantizing the GGUF leaves its staging folder; then two runs of
    the same command start at once on that cache and output folder. One dequantizes (removing the leftover), the
    other waits for it; they finish, or the second stops in one line because the first holds the run. One task
    (TruthfulQA): the dequantization and the run's lock are the model's and the run's, whatever its tasks."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    killed = _run(gguf_path, out, kill_at="dequantizing", cache=cache, tasks="truthfulqa")
    assert killed.returncode == -signal.SIGKILL
    assert [p.name.startswith(".partial-") for p in (cache / "gguf").iterdir() if p.is_dir()] == [True]
    _readers_work(out, runs=0)

    env = {**os.environ, "EVALSUITE_CACHE_DIR": str(cache)}
    env.pop(faults.ENV, None)
    both = [subprocess.Popen(_command(gguf_path, out, "truthfulqa"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env) for _ in range(2)]  # fmt: skip
    results = [(p.wait(timeout=600), *p.communicate()) for p in both]
    expected = {"truthfulqa": baseline["truthfulqa"]}
    assert sorted(code for code, _, _ in results) in ([0, 0], [0, 1]), results
    for code, stdout, stderr in results:
        assert "Traceback" not in stderr and "Directory not empty" not in stderr
        if code == 1:  # the other held the run's lock: one line that says what to do
            assert stderr.strip().splitlines()[-1].startswith("error: ") and "in use by another evalsuite run" in stderr
        else:
            assert _values(subprocess.CompletedProcess([], code, stdout, stderr)) == expected
    models = [p.name for p in (cache / "gguf").iterdir() if p.is_dir()]
    assert len(models) == 1 and not models[0].startswith(".")  # dequantized once, the killed one's leftover gone
    assert not [p for p in (out / MODEL_DIR).iterdir() if p.name.startswith(".")]


def _damaged_state_is_one_line_each_and_only_the_damaged_part_is_redone(
    gguf_path: Path, baseline: dict[str, float], out: Path
) -> None:
    """Killed with the run folder staged: both tasks saved. Then state.json truncated, TruthfulQA's record edited
    by hand (its value 0.14 -> 0.75) and its request cache overwritten with random bytes, Winogrande's record
    truncated and its cache emptied. The same command again: one line per damage, TruthfulQA and Winogrande
    run again (TruthfulQA from scratch, its cache being gone; Winogrande from its empty cache), the baseline's
    values, no leftovers. (Was a test of its own, whose run killed at "staged" the chain above has made.)"""
    (folder,) = (out / MODEL_DIR).glob(".inprogress-*")
    (folder / "state.json").write_text('{"run_id": "2026')
    record = folder / "tasks" / "truthfulqa.json"
    envelope = json.loads(record.read_text())
    envelope["record"]["lm_eval_output"]["results"]["truthfulqa_mc2"]["acc,none"] = 0.75
    record.write_text(json.dumps(envelope))
    (folder / "tasks" / "winogrande.json").write_text(record.read_text()[:100])
    (folder / "requests-truthfulqa_rank0.db").write_bytes(os.urandom(4096))
    (folder / "requests-winogrande_rank0.db").write_bytes(b"")

    again = _invoke(gguf_path, out)
    assert _values(again) == baseline  # not 0.75: an edited record is never believed
    warnings = [line for line in again.stderr.splitlines() if line.startswith("warning: ")]
    assert any("truthfulqa's request cache is damaged (DatabaseError: file is not a database)" in w for w in warnings)
    assert any("truthfulqa's saved record is damaged (its content does not match its checksum" in w for w in warnings)
    assert any("winogrande's saved record is damaged (JSONDecodeError: not a record evalsuite wrote)" in w
               for w in warnings)  # fmt: skip
    assert any("state.json was damaged; the run goes on as run" in w for w in warnings)
    assert "[1/2] truthfulqa: 0-shot" in again.stderr and "[2/2] winogrande: 5-shot" in again.stderr
    assert "Traceback" not in again.stderr  # and no exception left unhandled (_invoke)
    (run_dir,) = (out / MODEL_DIR).iterdir()
    assert not run_dir.name.startswith(".")


# --- a full disk: a tmpfs of the test's own (needs root, as CI runs)


@pytest.fixture
def small_disk(tmpfs: Callable[[str], Path]) -> Path:
    return tmpfs("48k")


def test_a_full_disk_is_one_line_wherever_it_fills_and_the_run_resumes_once_there_is_room(
    gguf_path: Path, baseline: dict[str, float], small_disk: Path
):
    out = small_disk / "out"
    full = _invoke(gguf_path, out)  # in this process: the exit, not an exception left unhandled (_invoke)
    assert full.exit_code == 1, full.stderr[-2000:]
    (line,) = full.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and "No space left on device" in line and "Traceback" not in full.stderr
    assert not list((out / MODEL_DIR).glob(".*.partial")) if (out / MODEL_DIR).exists() else True
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    assert _values(_invoke(gguf_path, out)) == baseline


def test_zero_bytes_free_is_one_line_and_leaves_no_folder(gguf_path: Path, small_disk: Path):
    fill(small_disk)
    out = small_disk / "out"
    full = _invoke(gguf_path, out)  # in this process: the exit, not an exception left unhandled (_invoke)
    assert full.exit_code == 1
    (line,) = full.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and "No space left on device" in line and "Traceback" not in full.stderr
    assert not out.exists(), list(out.rglob("*"))  # no empty .inprogress-*, no 0-byte lock


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
    named = {"dequantizing", *CHAIN} - {"replacing truthfulqa.json", "staging results.json"}
    for instant in named:
        assert f'faults.reached("{instant}")' in source, instant
    assert 'faults.reached(f"replacing {path.name}")' in source and 'faults.reached(f"staging {name}")' in source

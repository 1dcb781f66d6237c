"""Crash-safe, resumable runs: the one resume mechanism of every command that runs a model (`evalsuite run` and
`evalsuite contamination`).

A run in progress lives in `<output_dir>/<org>__<name>/.inprogress-<key>/`, where `key` is the `fingerprint`
of every setting that moves its numbers (the command's kind among them), so running the same command again
finds it:

    lock            flock'ed by the process that owns the run (released by the OS even on kill -9)
    state.json      run id and start time, so the resumed run keeps them
    tasks/<key>.json  one finished task's record (a run's evalsuite.engine.FinishedTask: lm-eval's output, its
                      samples, its wall time; a contamination check's ContaminationTask), written last
    tasks/<key>.<x>   files that go with the record (a check's item lines), written before it
    requests-<key>_rank0.db  lm-eval's request cache (`use_cache`) of one task: each request as answered (runs)

Each file is written atomically (temp file + rename), so a kill at any instant leaves a usable state.
When the run completes, its results folder is written and this folder removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

from evalsuite.errors import OutputDirError, RunError, param
from evalsuite.files import missing_folders, remove_empty_folders, write_text_atomic
from evalsuite.model import LoadableModel
from evalsuite.results import lm_eval_files

STATE_FILE = "state.json"
LOCK_FILE = "lock"

Record = TypeVar("Record", bound=BaseModel)


def fingerprint(identity: dict[str, Any]) -> str:
    """A stable id of everything that moves a run's numbers (same command, same data -> same key)."""
    canonical = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def model_identity(model: LoadableModel) -> list[Any]:
    """A model as a resumed run must find it again: a .gguf by its sha256, a local folder by its files' names,
    sizes and times (cheap; retrained weights change them), a Hub model by id and revision."""
    folder = Path(model.pretrained)
    files = []
    if model.file_sha256 is None and folder.is_dir():
        files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    return [model.ref.source.value, model.pretrained, model.revision, model.file_sha256, files]


@dataclass(frozen=True)
class CheckpointState:
    """What the other processes of a data-parallel run need to know of rank 0's checkpoint."""

    folder: Path
    run_id: str
    created_at: datetime
    resumed: bool
    finished_at_open: frozenset[str]


class Checkpoint:
    """The in-progress folder of one run, held under an exclusive lock while this process works on it.

    In a data-parallel run only rank 0 opens (and writes) it; the other ranks `follow` it: they skip the
    tasks rank 0 found finished and write nothing.
    """

    def __init__(self, state: CheckpointState, lock: IO[str] | None, created: list[Path] | None = None) -> None:
        self.state = state
        self._lock = lock
        self._created = created or []  # folders open() made (the output dir, the model's folder, this one)

    @property
    def folder(self) -> Path:
        return self.state.folder

    @property
    def run_id(self) -> str:
        return self.state.run_id

    @property
    def created_at(self) -> datetime:
        return self.state.created_at

    @property
    def resumed(self) -> bool:
        return self.state.resumed

    @property
    def finished_at_open(self) -> frozenset[str]:
        """Suite tasks finished before this run started (an interrupted run's), which it does not rerun."""
        return self.state.finished_at_open

    @classmethod
    def follow(cls, state: CheckpointState) -> Checkpoint:
        return cls(state, lock=None)

    @classmethod
    def open(cls, model_dir: Path, key: str, run_id: str, created_at: datetime) -> Checkpoint:
        folder = model_dir / f".inprogress-{key}"
        created = missing_folders(folder)
        folder.mkdir(parents=True, exist_ok=True)
        lock = (folder / LOCK_FILE).open("a+", encoding="utf-8")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            lock.seek(0)
            owner = lock.read().strip() or "another process"
            lock.close()
            raise OutputDirError(
                f"{folder} is in use by another evalsuite run ({owner}); wait for it to finish, "
                f"or use another {param('output_dir')}"
            ) from e
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        state_path = folder / STATE_FILE
        finished = frozenset(path.stem for path in (folder / "tasks").glob("*.json"))
        if state_path.is_file():
            state = json.loads(state_path.read_text(encoding="utf-8"))
            run_id, created_at = state["run_id"], datetime.fromisoformat(state["created_at"])
            return cls(CheckpointState(folder, run_id, created_at, True, finished), lock)
        write_text_atomic(state_path, json.dumps({"run_id": run_id, "created_at": created_at.isoformat()}))
        return cls(CheckpointState(folder, run_id, created_at, False, finished), lock, created)

    def request_cache(self, task_key: str) -> str:
        """lm-eval's `use_cache` path for one suite task (one file each, so counts are per task)."""
        return lm_eval_files.request_cache_path(self.folder, task_key)

    def cached_requests(self, task_key: str) -> int:
        """How many of the task's requests were answered before an interruption (0 when none)."""
        return lm_eval_files.cached_request_counts(self.folder).get(task_key, 0)

    def finished(self, task_key: str, kind: type[Record]) -> Record:
        """The record of a task an interrupted run finished (one of `finished_at_open`), as it saved it."""
        path = self.folder / "tasks" / f"{task_key}.json"
        try:
            return kind.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as e:
            raise RunError(
                f"{self.folder}: task {task_key} is listed as finished but unreadable ({type(e).__name__}); delete "
                "that folder to start the run afresh"
            ) from e

    def finished_file(self, task_key: str, suffix: str) -> str:
        """A file saved with a finished task's record (`save(..., files={suffix: text})`)."""
        path = self.folder / "tasks" / f"{task_key}.{suffix}"
        try:
            return path.read_text(encoding="utf-8")
        except OSError as e:
            raise RunError(
                f"{self.folder}: task {task_key} is listed as finished but {path.name} is unreadable "
                f"({e.strerror}); delete that folder to start the run afresh"
            ) from e

    def save(self, task_key: str, record: BaseModel, files: Mapping[str, str] | None = None) -> None:
        """Store a finished task: its files, then its record (each atomically: a kill leaves the previous state
        or this one, and a record is only ever there with its files)."""
        assert self._lock is not None, "only the process that opened the checkpoint writes it"
        try:
            (self.folder / "tasks").mkdir(exist_ok=True)
            for suffix, text in (files or {}).items():
                write_text_atomic(self.folder / "tasks" / f"{task_key}.{suffix}", text)
            write_text_atomic(self.folder / "tasks" / f"{task_key}.json", record.model_dump_json())
        except OSError as e:
            raise OutputDirError(f"cannot save task {task_key} under {self.folder}: {e.strerror or e}") from e

    def holds_progress(self) -> bool:
        """Whether anything worth resuming is saved: a finished task or an answered request."""
        if any((self.folder / "tasks").glob("*.json")):
            return True
        return any(lm_eval_files.cached_request_counts(self.folder).values())

    def discard_if_empty(self) -> None:
        """A run that failed before saving anything leaves nothing behind: not its in-progress folder, nor the
        folders it created for it."""
        if self._lock is None or self.resumed or self.holds_progress():
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        remove_empty_folders(self._created)  # the folder itself is gone; then its new parents, if empty

    def finish(self) -> None:
        """The run is written: drop the in-progress folder and the lock."""
        assert self._lock is not None, "only the process that opened the checkpoint removes it"
        shutil.rmtree(self.folder, ignore_errors=True)
        self.release()

    def release(self) -> None:
        if self._lock is not None and not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

"""Crash-safe, resumable runs: the one resume mechanism of every command that runs a model (`evalsuite run`,
`evalsuite contamination`, and `evalsuite sweep` and `run --cluster`, whose driver holds each model's checkpoint).

A run in progress lives in `<model folder>/.inprogress-<key>/`, where the model folder is `model_folder`'s
(`<output_dir>/<org>__<name>`, `local__<name>` off the Hub) and `key` is the `fingerprint` of every setting that
moves its numbers (a run's `run_key`, which a sweep computes as a one-process run does, so each resumes what the
other finished; a contamination check's identity names its kind), so running the same command again finds it:

    lock            flock'ed by the one process that writes the run (its pid; released by the OS even on kill -9)
    state.json      run id, start time and the model's location, so the resumed run keeps them (and another
                    model of the same name is filed elsewhere: `model_folder`)
    tasks/<key>.json  one finished task's record and the checksum of its content (a run's or a sweep cell's
                      evalsuite.engine.FinishedTask; a contamination check's ContaminationTask), written last
    tasks/<key>.<x>   files that go with the record (`model`: the loaded model's facts; a check's item lines),
                      written before it
    requests-<key>_rank0.db  lm-eval's request cache (`use_cache`) of one task of a one-process run

Data-parallel ranks other than 0 `follow` rank 0's checkpoint and write nothing; damaged files are dropped on
`open`, one line each, and only their part is redone.

Each file is written atomically (temp file + rename), so a kill at any instant leaves a usable state.
When the run completes, its results folder is written and this folder removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

from evalsuite.errors import Interrupted, OutputDirError, RunError, invalid_file, param
from evalsuite.files import missing_folders, remove_empty_folders, write_text_atomic
from evalsuite.model import LoadableModel, ModelRef, ModelSource
from evalsuite.results import check_locations, lm_eval_files, run_locations

STATE_FILE = "state.json"
LOCK_FILE = "lock"
TASKS = "tasks"
IN_PROGRESS = ".inprogress-"  # <model folder>/.inprogress-<key>/

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


def model_folder(output_dir: Path, ref: ModelRef, key: str) -> Path:
    """The folder a model's runs and checks are filed in under `output_dir`, the one place that decides it (a run,
    a sweep, a contamination check): `ref.results_dir_name` (`org__name`; `local__<name>` for a local folder or
    .gguf), unless that folder already holds runs (results.json, contamination checks, or checkpoints of
    unfinished ones) of a local model at another location: then `local__<name>__<8 hex of its location's
    sha256>` (`ref.distinct_dir_name`). A run's own checkpoint (`key`) is resumed where it is."""
    plain = output_dir / ref.results_dir_name
    if ref.source is ModelSource.HUB:  # a Hub id names one model
        return plain
    distinct = output_dir / ref.distinct_dir_name
    for folder in (plain, distinct):
        if (folder / f"{IN_PROGRESS}{key}").is_dir():
            return folder
    others = run_locations(plain) | check_locations(plain) | checkpoint_locations(plain)
    return distinct if others - {ref.location} else plain


def checkpoint_locations(model_dir: Path) -> set[str]:
    """The model locations the unfinished runs in a model's folder recorded (a state.json written before evalsuite
    recorded it says none)."""
    locations = set()
    for path in model_dir.glob(f"{IN_PROGRESS}*/{STATE_FILE}"):
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            where = json.loads(path.read_bytes()).get("location")
            if isinstance(where, str):
                locations.add(where)
    return locations


def _canonical_sha256(record: Any) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class CheckpointState:
    """What the other processes of a data-parallel run need to know of rank 0's checkpoint."""

    folder: Path
    run_id: str
    created_at: datetime
    resumed: bool
    finished_at_open: frozenset[str]
    written: bool = False  # the run's folder is already in place (a run killed after writing it)


class Checkpoint:
    """The in-progress folder of one run, held under an exclusive lock while this process works on it.

    In a data-parallel run only rank 0 opens (and writes) it; the other ranks `follow` it: they skip the
    tasks rank 0 found finished and write nothing.

    What a kill or a damaged file can leave is recovered on `open`, each case said in `notes`: an unreadable
    state.json starts a new run id over the saved tasks; a task record that does not parse, fails validation
    or whose checksum does not match its content (edited by hand) is dropped, so the task runs again from the
    answers its request cache holds; a request cache that is not a database is dropped, so its requests are
    asked again. The rest is kept.
    """

    def __init__(
        self,
        state: CheckpointState,
        lock: IO[str] | None,
        created: list[Path] | None = None,
        notes: tuple[str, ...] = (),
    ) -> None:
        self.state = state
        self._lock = lock
        self._created = created or []  # folders open() made (the output dir, the model's folder, this one)
        self.notes = notes  # what open() found damaged and did about it, one line each

    @property
    def folder(self) -> Path:
        return self.state.folder

    @property
    def model_dir(self) -> Path:
        """The model's folder (`model_folder`) the run is written to, beside this one."""
        return self.state.folder.parent

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
    def open(
        cls,
        model_dir: Path,
        key: str,
        run_id: str,
        created_at: datetime,
        kind: type[BaseModel],
        location: str | None = None,
    ) -> Checkpoint:
        """Take the run's in-progress folder (made if need be) under its lock, and read what it holds: the run
        id and start time of an interrupted run, and its finished tasks' records of type `kind`. `location`: the
        model's (ModelRef.location), recorded in a new run's state.json for `model_folder`."""
        folder = model_dir / f"{IN_PROGRESS}{key}"
        created = missing_folders(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock = (folder / LOCK_FILE).open("a+", encoding="utf-8")
        except OSError as e:
            remove_empty_folders(created)
            raise OutputDirError(f"cannot start the run under {folder}: {e.strerror or e}") from e
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
        try:
            lock.seek(0)
            lock.truncate()
            lock.write(f"pid {os.getpid()}")
            lock.flush()
            notes = _drop_damaged(folder, kind)
            finished = frozenset(path.stem for path in (folder / TASKS).glob("*.json"))
            state = _read_state(folder / STATE_FILE)
            if state is not None:
                return cls(CheckpointState(folder, state[0], state[1], True, finished), lock, notes=notes)
            if (folder / STATE_FILE).exists():
                notes += (
                    f"warning: {folder / STATE_FILE} was damaged; the run goes on as run {run_id}, keeping "
                    f"{len(finished)} finished task(s) and the answered requests",
                )
            state_text = {"run_id": run_id, "created_at": created_at.isoformat(), "location": location}
            write_text_atomic(folder / STATE_FILE, json.dumps(state_text))
            resumed = bool(finished) or bool(notes)
            return cls(CheckpointState(folder, run_id, created_at, resumed, finished), lock, created, notes)
        except OSError as e:
            fcntl.flock(lock, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):  # closing flushes the pid that could not be written: it fails too
                lock.close()
            earlier = [p for p in folder.iterdir() if p.name != LOCK_FILE and not p.name.startswith(f".{STATE_FILE}.")]
            if not earlier:  # nothing of an earlier run in it: take it away
                shutil.rmtree(folder, ignore_errors=True)
                remove_empty_folders(created)
            raise OutputDirError(f"cannot start the run under {folder}: {e.strerror or e}") from e

    def request_cache(self, task_key: str) -> str:
        """lm-eval's `use_cache` path for one suite task (one file each, so counts are per task)."""
        return lm_eval_files.request_cache_path(self.folder, task_key)

    def cached_requests(self, task_key: str) -> int:
        """How many of the task's requests were answered before an interruption (0 when none)."""
        return lm_eval_files.cached_request_counts(self.folder).get(task_key, 0)

    def finished(self, task_key: str, kind: type[Record]) -> Record:
        """The record of a task an interrupted run finished (one of `finished_at_open`), as it saved it."""
        record, why = _read_record(self.folder / TASKS / f"{task_key}.json", kind)
        if record is None:  # damaged since `open` checked it
            raise RunError(f"{self.folder}: task {task_key}'s record is damaged ({why}); run the command again")
        return record

    def finished_file(self, task_key: str, suffix: str) -> str:
        """A file saved with a finished task's record (`save(..., files={suffix: text})`)."""
        path = self.folder / TASKS / f"{task_key}.{suffix}"
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise RunError(f"{self.folder}: task {task_key}'s {path.name} is unreadable ({e}); run the command "
                           "again") from e  # fmt: skip

    def save(self, task_key: str, record: BaseModel, files: Mapping[str, str] | None = None) -> None:
        """Store a finished task: its files, then its record with the checksum of its content (each atomically:
        a kill leaves the previous state or this one, and a record is only ever there with its files)."""
        assert self._lock is not None, "only the process that opened the checkpoint writes it"
        content = json.loads(record.model_dump_json())
        try:
            (self.folder / TASKS).mkdir(exist_ok=True)
            for suffix, text in (files or {}).items():
                write_text_atomic(self.folder / TASKS / f"{task_key}.{suffix}", text)
            envelope = {"sha256": _canonical_sha256(content), "record": content}
            write_text_atomic(self.folder / TASKS / f"{task_key}.json", json.dumps(envelope))
        except OSError as e:
            raise OutputDirError(
                f"cannot save task {task_key} under {self.folder}: {e.strerror or e}; free the space (or fix the "
                "folder) and run the same command again: what is saved is kept"
            ) from e

    def holds_progress(self) -> bool:
        """Whether anything worth resuming is saved: a finished task or an answered request."""
        if any((self.folder / TASKS).glob("*.json")):
            return True
        return any(lm_eval_files.cached_request_counts(self.folder).values())

    def discard_if_empty(self) -> None:
        """A run that failed before saving anything leaves nothing behind: not its in-progress folder, nor the
        folders it created for it."""
        if self._lock is None or self.resumed or self.holds_progress():
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        remove_empty_folders(self._created)  # the folder itself is gone; then its new parents, if empty

    @contextmanager
    def cleaning_up(self) -> Iterator[None]:
        """Within the block, a failure takes away what this run made if nothing was saved (`discard_if_empty`)
        and lets the lock go; Ctrl-C and SIGTERM come out as Interrupted, saying whether anything was saved."""
        try:
            yield
        except KeyboardInterrupt as e:
            saved = self.holds_progress()
            self.discard_if_empty()
            self.release()
            raise Interrupted(saved) from e
        except BaseException:
            self.discard_if_empty()
            self.release()
            raise

    def finish(self) -> None:
        """The run is written: drop the in-progress folder and the lock."""
        assert self._lock is not None, "only the process that opened the checkpoint removes it"
        shutil.rmtree(self.folder, ignore_errors=True)
        self.release()

    def release(self) -> None:
        if self._lock is not None and not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()


def _read_state(path: Path) -> tuple[str, datetime] | None:
    """(run id, start) of an interrupted run; None when there is none, or it is damaged."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        return str(state["run_id"]), datetime.fromisoformat(state["created_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read_record(path: Path, kind: type[Record]) -> tuple[Record | None, str]:
    """A saved task record, or None and why it cannot be believed."""
    try:
        envelope = json.loads(path.read_bytes())
        content, digest = envelope["record"], envelope["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"{type(e).__name__}: not a record evalsuite wrote"
    if _canonical_sha256(content) != digest:
        return None, "its content does not match its checksum: changed after it was saved"
    try:
        return kind.model_validate(content), ""
    except ValidationError as e:
        return None, invalid_file(path.name, "record", e).removeprefix(f"{path.name}: ")


def _drop_damaged(folder: Path, kind: type[BaseModel]) -> tuple[str, ...]:
    """Take away damaged request caches and damaged task records (with the files saved with them), so those
    tasks run again from what is left; one line each saying so."""
    notes = []
    for db, why in lm_eval_files.damaged_request_caches(folder).items():
        task = lm_eval_files.request_cache_task(db)
        for path in db.parent.glob(db.name + "*"):  # the database and its journal
            path.unlink(missing_ok=True)
        notes.append(f"warning: {folder}: task {task}'s request cache is damaged ({why}); its requests are asked again")
    for path in sorted((folder / TASKS).glob("*.json")):
        record, why = _read_record(path, kind)
        if record is not None:
            continue
        task = path.stem
        for companion in (folder / TASKS).glob(f"{task}.*"):
            companion.unlink(missing_ok=True)
        answered = lm_eval_files.cached_request_counts(folder).get(task, 0)
        reuse = f", reusing the {answered} answers its request cache holds" if answered else ""
        notes.append(f"warning: {folder}: task {task}'s saved record is damaged ({why}); it runs again{reuse}")
    return tuple(notes)

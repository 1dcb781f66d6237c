"""`run_sweep`: many models' runs on a Ray cluster, one cell per task of each model, with the folders a local
`evalsuite run` writes.

The driver (this process) owns every run folder and its checkpoint (run/checkpoint.py): it opens each model's
checkpoint, skips the tasks an earlier sweep or run finished, and submits the others as cells (run/cells.py)
through run/cluster.py. Workers write nothing: each sends back its task's record, which the driver saves in the
checkpoint as it comes, so a killed driver loses no finished cell; when a model's last task is in, the driver
builds and writes its run folder as `run_suite` does (`ResultsBuilder`, `write_run`). No shared filesystem is
needed beyond what the models and data are read from.

`sweep.json` in the output folder holds each model's and cell's state (pending, running, done, failed), the
error line of what failed, and where each cell ran; a sweep run again reads it back, so a model already
written by the same settings is not run again.

A cell that raises fails its model alone (its other cells are cancelled, what finished is kept); a cell lost
with its worker or node is run again elsewhere by Ray, up to `retries` times.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

from evalsuite import engine
from evalsuite.errors import (
    ClusterError,
    EvalsuiteError,
    Interrupted,
    OptionError,
    in_terms,
    invalid_file,
    param,
    params_in,
)
from evalsuite.files import write_text_atomic
from evalsuite.model import LoadableModel
from evalsuite.records import FrozenRecord, Record
from evalsuite.results import Versions, check_output_dir, is_written, read_results
from evalsuite.run.cells import Cell, CellResult
from evalsuite.run.checkpoint import Checkpoint
from evalsuite.run.common import Progress, progress_or_log
from evalsuite.run.executors import CellKey, Executor, Node, Started
from evalsuite.run.pipeline import (
    ModelFacts,
    PreparedRun,
    ResultsBuilder,
    RunOutcome,
    RunRequest,
    load_plan,
    open_checkpoint,
    prepare_run,
    read_finished,
    run_key,
    save_finished,
    write_results,
)

SWEEP_FILE = "sweep.json"
# How often the driver looks at the cluster's live nodes while cells wait, and for how long no node may have what a
# cell asks before its model fails (Ray would keep such a cell queued for ever: a node gone, not coming back).
NODES_CHECK_S = 5.0
INFEASIBLE_AFTER_S = 60.0


class EntryOrigin(FrozenRecord):
    """A models file's entry a sweep's model came from: `where` (`PATH entry N`) and the keys it set."""

    where: str
    keys: frozenset[str]

    def says(self, error: EvalsuiteError) -> str:
        """The error's line (marked) as the entry's: an error about a value the entry set (its `model_args`, its
        `adapter`) names the file and entry and the entry's key, not the option a command line would give; any
        other error (a sweep-wide option's) is left as it is."""
        if not set(params_in(error.marked)) & self.keys:
            return error.marked
        return f"{param('models_file')} {self.where}: {in_terms(error.marked)}"


class SweepRequest(FrozenRecord):
    """What `evalsuite sweep` asks: a run per model (their settings may differ; their output folder may not),
    and how the cluster runs their cells."""

    runs: Sequence[RunRequest] = Field(min_length=1)
    # where each run's own settings came from (a models file's entry), for its error lines; empty: all from the
    # command line
    origins: Sequence[EntryOrigin | None] = ()
    cluster: str = "local"  # a Ray address (HOST:PORT, ray://HOST:PORT, auto), or local: a private one here
    gpus_per_task: float | None = None  # None: 1 on a cluster that has GPUs, else 0
    cpus_per_task: float = 1.0
    retries: int = 3  # times a cell lost with its worker or node runs again
    status_file: bool = True  # write sweep.json (a single run spread over the cluster does not)

    # OptionError, not ValueError: pydantic passes it on as it is, one line naming the parameter
    @field_validator("gpus_per_task", "cpus_per_task", "retries")
    @classmethod
    def _not_negative(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and value < 0:
            raise OptionError(f"{param(str(info.field_name))} {value:g}: give 0 or more")
        return value

    @model_validator(mode="after")
    def _one_output_dir(self) -> SweepRequest:
        if len({run.output_dir for run in self.runs}) > 1:
            raise OptionError(f"every model's run of a sweep goes to one {param('output_dir')}")
        asked = [(run_name(run), loaded_by(run)) for run in self.runs]
        if twice := sorted({run for run in asked if asked.count(run) > 1}):
            name, how = twice[0]
            shown = name if len({a for a in asked if a[0] == name}) == 1 else f"{name} [{how}]"
            raise OptionError(f"model {shown} is given twice; give each model once")
        return self

    @model_validator(mode="after")
    def _bounded_cells(self) -> SweepRequest:
        if self.cpus_per_task == 0 and not self.gpus_per_task:  # nothing would bound how many cells run at once
            raise OptionError(
                f"{param('cpus_per_task')} 0: every task would start at once; give more than 0 "
                f"(or {param('gpus_per_task')} above 0, so that GPUs bound them)"
            )
        return self

    def labels(self) -> list[str]:
        """How the sweep names each run (its lines, the live view, sweep.json): the model evaluated (an
        adapter, not its base), and, where the sweep evaluates it more than once, how each run loads it:
        `org/m [precision 4bit]`, `org/m [dtype bfloat16]`, `org/m [default precision]`."""
        names = [run_name(run) for run in self.runs]
        return [
            name if names.count(name) == 1 else f"{name} [{loaded_by(run)}]"
            for name, run in zip(names, self.runs, strict=True)
        ]

    @property
    def output_dir(self) -> Path:
        return self.runs[0].output_dir


def run_name(run: RunRequest) -> str:
    """The model a run evaluates, as the user gave it: an adapter (its base is how it loads), else MODEL."""
    return str(run.adapter or run.model)


def loaded_by(run: RunRequest) -> str:
    """What a run asks of how its model loads, as a sweep tells two runs of one model apart."""
    parts = [f"precision {run.precision}"] if run.precision else []
    parts += [f"dtype {run.dtype}"] if run.dtype else []
    parts += [f"over {run.model}"] if run.adapter and run.model else []
    parts += [f"delta over {run.delta}"] if run.delta else []
    return ", ".join(parts) or "default precision"  # the device's dtype, or a quantized checkpoint's own


class SweepModel(FrozenRecord):
    """One model of a sweep, as a models file gives it: `MODEL[@REV]`, and the settings it runs with where they
    differ from the sweep's (a YAML entry's keys; an unknown key is refused)."""

    model: str | None = None  # None only with `adapter`: its config names the base model
    dtype: str | None = None
    batch_size: str | int | None = None
    model_args: str | dict[str, Any] | None = None
    backend: str | None = None
    backend_options: str | dict[str, Any] | None = None
    add_bos_token: bool | None = None
    precision: str | None = None
    adapter: str | None = None  # a PEFT adapter over `model`, or over the base its config names
    delta: str | None = None  # `model` holds delta weights over this base

    # the models file's entry this model came from (`PATH entry N`), for its error lines; None: a MODEL argument
    _entry: str | None = PrivateAttr(default=None)

    @property
    def origin(self) -> EntryOrigin | None:
        """Where this model's own settings came from: a models file's entry and the keys it set; None for a MODEL
        argument (its settings are the command line's)."""
        if self._entry is None:
            return None
        return EntryOrigin(where=self._entry, keys=frozenset(self.model_dump(exclude_none=True)))

    @model_validator(mode="after")
    def _a_model(self) -> SweepModel:
        if self.model is None and self.adapter is None:
            raise ValueError("give model (or adapter, whose config names its base model)")
        return self

    def request(self, base: RunRequest) -> RunRequest:
        """`base` (the sweep's settings) for this model, with its own settings over them, parsed as a run's. The
        model is always the entry's own: an entry with only `adapter` runs over the base its config names, never
        over a model `base` (or another entry) gives."""
        own = self.model_dump(exclude_none=True)
        own["model"] = self.model
        for key in ("model_args", "backend_options"):
            if isinstance(own.get(key), dict):  # YAML's typed values, as text, as a command line gives them
                own[key] = {k: str(v) for k, v in own[key].items()}
        return RunRequest(**{**dict(base), **own})


def read_models_file(path: Path) -> list[SweepModel]:
    """The models of a sweep from a file: YAML (.yaml/.yml: a list of `MODEL` strings or mappings with `model`
    and its settings), else text, one `MODEL[@REV]` per line (# comments and blank lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise OptionError(f"{param('models_file')} {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from e
    if path.suffix not in (".yaml", ".yml"):
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        models = [SweepModel(model=line) for line in lines if line]
    else:
        import yaml

        try:
            entries = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise OptionError(f"{param('models_file')} {path}: not YAML ({str(e).splitlines()[0]})") from e
        if not isinstance(entries, list):
            raise OptionError(f"{param('models_file')} {path}: give a YAML list of models (strings or mappings)")
        models = []
        for number, entry in enumerate(entries, start=1):
            where = f"{path} entry {number}"
            try:
                model = SweepModel(model=entry) if isinstance(entry, str) else SweepModel.model_validate(entry)
                model.request(RunRequest(model=None))  # its own values, parsed as a run's (a bad dtype, precision)
                model._entry = where
            except ValidationError as e:
                raise OptionError(f"{param('models_file')} {invalid_file(where, 'model', e)}") from e
            except OptionError as e:  # named by the entry's key, not by the option the command line would give
                raise OptionError(f"{param('models_file')} {where}: {in_terms(e.marked)}") from e
            models.append(model)
    if not models:
        raise OptionError(f"{param('models_file')} {path}: names no model")
    return models


class State(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM stopped the sweep before it finished (the next one resumes)


class CellStatus(Record):
    task: str
    state: State = State.PENDING
    attempts: int = 0  # times a worker started it (more than 1: its worker or node was lost)
    node: str | None = None
    gpus: str | None = None  # CUDA_VISIBLE_DEVICES as the cell saw it
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float | None = None
    reused: bool = False  # finished before this sweep started (a killed sweep's, a run's): not run again
    error: str | None = None


class ModelStatus(Record):
    model: str
    state: State = State.PENDING
    key: str | None = None  # the run's checkpoint key (run_key): the settings it was run with
    run_dir: str | None = None
    error: str | None = None
    cells: list[CellStatus] = []

    def cell(self, task: str) -> CellStatus:
        return next(c for c in self.cells if c.task == task)


class SweepStatus(Record):
    schema_: Literal["evalsuite.sweep/1"] = Field("evalsuite.sweep/1", alias="schema")
    cluster: str
    resources: str | None = None  # the cluster as the sweep found it: nodes, CPUs, GPUs
    started_at: datetime
    updated_at: datetime
    models: list[ModelStatus]

    @property
    def failed(self) -> list[ModelStatus]:
        return [m for m in self.models if m.state is State.FAILED]


def read_status(path: Path) -> SweepStatus | None:
    """A sweep's status file, or None when there is none; a damaged one is an error naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return SweepStatus.model_validate(json.loads(text))
    except (ValueError, ValidationError) as e:
        detail = invalid_file(path.name, "sweep status", e) if isinstance(e, ValidationError) else f"{path.name}: {e}"
        raise OptionError(f"{path.parent}: {detail}; move it away to start the sweep afresh") from e


@dataclass(frozen=True)
class ModelFailure:
    """A model of the sweep that did not finish, and why (one line)."""

    model: str
    line: str  # marked as errors.param marks it
    error: EvalsuiteError | None  # the error itself, when a cell or the checks raised one


@dataclass(frozen=True)
class SweepOutcome:
    """A finished sweep: its status (as sweep.json holds it), the runs it wrote, the models that failed."""

    status: SweepStatus
    runs: list[RunOutcome]  # every model written, in the order asked
    failures: list[ModelFailure]
    status_file: Path | None = None  # sweep.json, where one was written (none when every model failed its checks)


@dataclass
class _ModelRun:
    """The driver's view of one model's run while the sweep lasts."""

    status: ModelStatus
    request: RunRequest
    prepared: PreparedRun | None = None
    loadable: LoadableModel | None = None
    checkpoint: Checkpoint | None = None
    builder: ResultsBuilder | None = None
    cell: Cell | None = None  # the model's cells differ only in their task
    finished: dict[str, engine.FinishedTask] = field(default_factory=dict)
    facts: ModelFacts | None = None
    outcome: RunOutcome | None = None
    failure: ModelFailure | None = None


StatusView = Callable[[SweepStatus], None]


def run_sweep(
    request: SweepRequest,
    progress: Progress | None = None,
    view: StatusView | None = None,
    verbose: bool = False,
    executor: AbstractContextManager[Executor] | None = None,
) -> SweepOutcome:
    """Run every model's tasks on the cluster and write each model's run folder. `progress` gets one-line
    messages; `view` the status each time it changes (the CLI's live view). A model whose checks or cells fail
    is in `failures`, the others finish; Ctrl-C keeps every finished cell and raises Interrupted.

    `executor`: where the cells run; None, the Ray cluster `request.cluster` names (run/cluster.py). An
    `InProcessExecutor` (run/executors.py) runs them here, one after another.

    Before anything is written or the cluster is joined: the output folder, Ray and the address, and every
    model's checks; a sweep whose every model fails them joins no cluster and writes nothing. Resources that no
    node of the cluster has are a ClusterError before any cell is submitted."""
    check_output_dir(request.output_dir)
    if executor is None:
        from evalsuite.run import cluster as ray_cluster

        ray_cluster.check(request.cluster)  # Ray installed, the address answers: before anything else
        executor = ray_cluster.connect(request.cluster, verbose=verbose)
    say = progress_or_log(progress)
    status_path = request.output_dir / SWEEP_FILE
    previous = read_status(status_path) if request.status_file else None
    now = datetime.now(UTC)
    runs = [_ModelRun(ModelStatus(model=label), r) for label, r in zip(request.labels(), request.runs, strict=True)]
    origins = list(request.origins) or [None] * len(runs)
    for run, origin in zip(runs, origins, strict=True):  # every cheap check first: a bad model fails alone, before
        try:  # the cluster is asked
            run.prepared = prepare_run(run.request, here=False)
        except EvalsuiteError as e:
            _fail(run, ModelFailure(run.status.model, origin.says(e) if origin else e.marked, e), None)
        else:
            run.status.cells = [CellStatus(task=t.spec.key) for t in run.prepared.plan.tasks]
    status = SweepStatus(cluster=request.cluster, started_at=now, updated_at=now, models=[r.status for r in runs])
    if all(run.prepared is None for run in runs):  # nothing to run: no cluster joined, nothing written
        return SweepOutcome(status=status, runs=[], failures=[r.failure for r in runs if r.failure is not None])
    for run in runs:
        if run.failure is not None:
            say(f"{run.status.model}: failed: {run.failure.line}")
        for warning in run.prepared.warnings if run.prepared is not None else []:
            say(f"{run.status.model}: {warning}")

    with executor as cells:
        status.resources = cells.describe()
        gpus = request.gpus_per_task if request.gpus_per_task is not None else (1.0 if cells.has_gpus() else 0.0)
        if (lacking := _lacking(cells.nodes(), request.cpus_per_task, gpus)) is not None:
            raise ClusterError(f"{lacking} ({request.cluster}: {status.resources}); ask for less, or use a cluster "
                               "with such a node")  # fmt: skip
        say(f"cluster {request.cluster}: {status.resources}; each task asks {request.cpus_per_task:g} CPU(s), "
            f"{gpus:g} GPU(s)")  # fmt: skip
        started = time.perf_counter()
        nodes = _NodesWatch(cells, request.cpus_per_task, gpus)
        with _released_on_failure(runs, status, status_path, request.status_file):
            for index, run in enumerate(runs):
                if run.prepared is not None:
                    _open(run, gpus, previous, started, say)
                    for task in _to_run(run):
                        assert run.cell is not None
                        cells.submit(run.cell.model_copy(update={"task": task}), CellKey(index, task),
                                     request.cpus_per_task, gpus, request.retries)  # fmt: skip
                    _finish_if_done(run, say)
            _save(status, status_path, request.status_file, view)
            while cells.pending():
                changed = _note_starts(cells.started(), runs)
                for key, result in cells.wait(timeout=0.5):
                    run = runs[key.run]
                    changed = True
                    if isinstance(result, CellResult):
                        _done(run, result, say)
                        _finish_if_done(run, say)
                    elif run.status.state is not State.FAILED:
                        run.status.cell(key.task).state = State.FAILED
                        run.status.cell(key.task).error = in_terms(result.line)
                        failure = ModelFailure(run.status.model, f"{key.task}: {result.line}", result.error)
                        _give_up(cells, key.run, run, failure, say)
                if (lacking := nodes.lacking()) is not None:  # no live node can run what is left: never waits on
                    changed = True
                    line = f"{lacking} any more ({nodes.described()}); the cells left cannot run"
                    for index, run in enumerate(runs):
                        if run.status.state is not State.FAILED and _to_run(run):
                            _give_up(cells, index, run, ModelFailure(run.status.model, line, None), say)
                if changed:
                    _save(status, status_path, request.status_file, view)
    _release(runs)
    _save(status, status_path, request.status_file, view)
    return SweepOutcome(
        status=status,
        runs=[r.outcome for r in runs if r.outcome is not None],
        failures=[r.failure for r in runs if r.failure is not None],
        status_file=status_path if request.status_file else None,
    )


def _lacking(nodes: list[Node], cpus: float, gpus: float) -> str | None:
    """Why no node of `nodes` can run a cell asking `cpus` and `gpus` (marked as errors.param marks it), or None
    when one can."""
    if any(node.cpus >= cpus and node.gpus >= gpus for node in nodes):
        return None
    if not any(node.gpus >= gpus for node in nodes):
        return f"{param('gpus_per_task')} {gpus:g}: no node of the cluster has {gpus:g} GPU(s)"
    if not any(node.cpus >= cpus for node in nodes):
        return f"{param('cpus_per_task')} {cpus:g}: no node of the cluster has {cpus:g} CPU(s)"
    return (f"{param('cpus_per_task')} {cpus:g} with {param('gpus_per_task')} {gpus:g}: no node of the cluster has "
            f"both")  # fmt: skip


class _NodesWatch:
    """The cluster's live nodes looked at every NODES_CHECK_S while cells wait: `lacking` says why, once no node
    has been able to run a cell for INFEASIBLE_AFTER_S (a node lost for a moment, or replaced, is waited for)."""

    def __init__(self, cells: Executor, cpus: float, gpus: float) -> None:
        self._cells, self._cpus, self._gpus = cells, cpus, gpus
        self._looked = time.monotonic()
        self._since: float | None = None  # when no node could run a cell, first seen
        self._why: str | None = None

    def lacking(self) -> str | None:
        now = time.monotonic()
        if now - self._looked < NODES_CHECK_S:
            return None
        self._looked = now
        self._why = _lacking(self._cells.nodes(), self._cpus, self._gpus)
        if self._why is None:
            self._since = None
            return None
        self._since = now if self._since is None else self._since
        return self._why if now - self._since >= INFEASIBLE_AFTER_S else None

    def described(self) -> str:
        return self._cells.describe()


@contextmanager
def _released_on_failure(runs: list[_ModelRun], status: SweepStatus, path: Path, write: bool) -> Iterator[None]:
    """Every model's checkpoint let go (and taken away where nothing was saved) when the sweep stops early;
    Ctrl-C comes out as Interrupted, saying whether anything was saved, with the status file as it stood."""
    try:
        yield
    except KeyboardInterrupt as e:
        saved = any(r.checkpoint is not None and r.checkpoint.holds_progress() for r in runs)
        _release(runs)
        for model in status.models:  # what was left to do, said so (the next sweep runs it)
            if model.state in (State.PENDING, State.RUNNING):
                model.state = State.INTERRUPTED
            for cell in model.cells:
                if cell.state in (State.PENDING, State.RUNNING):
                    cell.state = State.INTERRUPTED
        _save(status, path, write, None)
        raise Interrupted(saved) from e
    except BaseException:
        _release(runs)
        raise


def _open(run: _ModelRun, gpus: float, previous: SweepStatus | None, started: float, say: Progress) -> None:
    """The model's run as the cluster will run it: its key, its checkpoint (resumed if an earlier sweep or run
    left one, as `evalsuite run` resumes it), its cells. A model an earlier sweep wrote with the same key is
    done."""
    prepared = run.prepared
    assert prepared is not None
    # where the cells run: the driver may have no GPU
    plan = load_plan(prepared, device=prepared.request.device or ("cuda" if gpus > 0 else "cpu"))
    run.loadable = engine.locate_model(prepared.weights.base)
    run.status.key = run_key(prepared, run.loadable, plan, 1)
    earlier = next((m for m in previous.models if m.model == run.status.model), None) if previous else None
    if earlier and earlier.state is State.DONE and earlier.key == run.status.key and earlier.run_dir \
            and is_written(Path(earlier.run_dir)):  # fmt: skip
        run.status.cells, run.status.run_dir, run.status.state = earlier.cells, earlier.run_dir, State.DONE
        for cell in run.status.cells:
            cell.reused = True
        run.outcome = RunOutcome(results=read_results(Path(earlier.run_dir)), run_dir=Path(earlier.run_dir))
        say(f"{run.status.model}: written by an earlier sweep to {earlier.run_dir}, not run again")
        return
    try:
        run.checkpoint = open_checkpoint(prepared, run.loadable, plan)
    except EvalsuiteError as e:
        _fail(run, ModelFailure(run.status.model, e.marked, e), say)
        return
    for note in run.checkpoint.notes:
        say(f"{run.status.model}: {note}")
    run.builder = ResultsBuilder(prepared, run.loadable, run.checkpoint, started)
    run.cell = Cell(request=prepared.request, task="", device=plan.device, dtype=plan.dtype,
                    versions=Versions.installed())  # fmt: skip
    if run.checkpoint.state.written:  # killed after its folder was renamed into place
        run_dir = run.checkpoint.model_dir / run.checkpoint.run_id
        run.checkpoint.finish()
        run.outcome = RunOutcome(read_results(run_dir), run_dir)
        _mark_done(run, str(run_dir))
        return
    for task in sorted(run.checkpoint.finished_at_open):
        finished, facts = read_finished(run.checkpoint, task)
        if facts is None:  # saved by an evalsuite from before sweeps, which kept no facts
            say(f"{run.status.model}: {task} was finished by an older evalsuite, which did not record the model; "
                "it runs again")  # fmt: skip
            continue
        earlier_cell = next((c for c in earlier.cells if c.task == task), None) if earlier else None
        cell_status = run.status.cell(task)
        if earlier_cell is not None and earlier_cell.state is State.DONE:
            run.status.cells[run.status.cells.index(cell_status)] = cell_status = earlier_cell
        cell_status.state, cell_status.reused, cell_status.error = State.DONE, True, None
        run.finished[task], run.facts = finished, facts
        say(f"{run.status.model}: {task} finished before, not rerun")


def _to_run(run: _ModelRun) -> list[str]:
    return [c.task for c in run.status.cells if c.state is not State.DONE] if run.checkpoint is not None else []


def _note_starts(starts: list[Started], runs: list[_ModelRun]) -> bool:
    for started in starts:
        run = runs[started.key.run]
        cell = run.status.cell(started.key.task)
        if cell.state is State.DONE or run.status.state is State.FAILED:
            continue
        cell.state, cell.node, cell.gpus, cell.started_at = State.RUNNING, started.node, started.gpus, started.at
        cell.attempts += 1
        run.status.state = State.RUNNING
    return bool(starts)


def _done(run: _ModelRun, result: CellResult, say: Progress) -> None:
    """A cell's record in: saved in the model's checkpoint at once (a killed driver keeps it)."""
    assert run.checkpoint is not None
    if run.status.state is State.FAILED:
        return
    save_finished(run.checkpoint, result.task, result.finished, result.model)
    run.finished[result.task] = result.finished
    run.facts = result.model
    cell = run.status.cell(result.task)
    cell.state, cell.node, cell.gpus, cell.error = State.DONE, result.node, result.gpus, None
    cell.started_at, cell.seconds = result.started_at, result.seconds
    cell.finished_at = result.started_at + timedelta(seconds=result.seconds)  # both by the worker's clock
    cell.attempts = max(cell.attempts, 1)
    done = sum(c.state is State.DONE for c in run.status.cells)
    say(f"{run.status.model}: {result.task} done on {result.node} in {result.seconds:.0f}s "
        f"[{done}/{len(run.status.cells)}]")  # fmt: skip


def _finish_if_done(run: _ModelRun, say: Progress) -> None:
    """All of a model's tasks in: its results, built and written as `evalsuite run` writes them."""
    if run.builder is None or run.checkpoint is None or run.outcome is not None or run.status.state is State.FAILED:
        return
    if any(c.state is not State.DONE for c in run.status.cells):
        return
    assert run.prepared is not None and run.facts is not None
    for data in run.prepared.plan.tasks:  # suite order, as a local run adds them
        run.builder.add(data, run.finished[data.spec.key])
    run.outcome = write_results(run.builder, run.facts)
    run.checkpoint.finish()
    _mark_done(run, str(run.outcome.run_dir))
    say(f"{run.status.model}: written to {run.outcome.run_dir}")


def _mark_done(run: _ModelRun, run_dir: str) -> None:
    run.status.state, run.status.run_dir = State.DONE, run_dir
    for cell in run.status.cells:
        cell.state = State.DONE


def _give_up(cells: Executor, index: int, run: _ModelRun, failure: ModelFailure, say: Progress) -> None:
    """The model fails, and its cells not done are cancelled (what finished stays in its checkpoint)."""
    _fail(run, failure, say)
    for task in _to_run(run):
        cells.cancel(CellKey(index, task))


def _fail(run: _ModelRun, failure: ModelFailure, say: Progress | None) -> None:
    """The model fails alone: what its cells finished stays in its checkpoint for the next sweep. sweep.json says
    why in the library's terms (`model_args`), the CLI's lines in its own (`--model-args`)."""
    run.failure = failure
    run.status.state, run.status.error = State.FAILED, in_terms(failure.line)
    for cell in run.status.cells:
        if cell.state in (State.PENDING, State.RUNNING):
            cell.state = State.FAILED
    if run.checkpoint is not None:
        run.checkpoint.discard_if_empty()
        run.checkpoint.release()
    if say is not None:
        say(f"{run.status.model}: failed: {failure.line}")


def _release(runs: list[_ModelRun]) -> None:
    for run in runs:
        if run.checkpoint is not None and run.outcome is None:
            run.checkpoint.discard_if_empty()
            run.checkpoint.release()


def _save(status: SweepStatus, path: Path, write: bool, view: StatusView | None) -> None:
    status.updated_at = datetime.now(UTC)
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)  # every model may have failed before making it
        write_text_atomic(path, status.model_dump_json(indent=2, by_alias=True) + "\n")
    if view is not None:
        view(status)

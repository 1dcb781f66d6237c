"""One cell of a run spread over a cluster: one suite task of one model, run where the cluster put it.

`run_cell` is what a Ray worker executes (run/cluster.py submits it). It runs the task exactly as
`evalsuite run` does (`prepare_run`, the backend's `load`, `engine.run_task`), writes nothing, and sends back
the task's record (`engine.FinishedTask`, what a checkpoint stores) with what results.json records of the model
(`ModelFacts`) and where it ran. The driver (run/sweep.py) owns the run folders.

A worker process keeps the last model it loaded, so the next cell of the same model and settings (Ray reuses
worker processes) does not load it again.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from evalsuite import engine
from evalsuite.errors import ClusterError
from evalsuite.records import FrozenRecord
from evalsuite.results import Versions
from evalsuite.run.pipeline import ModelFacts, PreparedRun, RunRequest, load_plan, prepare_run
from evalsuite.settings import Dtype
from evalsuite.suite import default_tasks_dir


class Cell(FrozenRecord):
    """What a worker is asked: one task of a model's run, on the device and in the dtype the driver chose, and
    the driver's versions (a worker whose differ refuses the cell)."""

    request: RunRequest
    task: str
    device: str
    dtype: Dtype
    versions: Versions


class CellResult(FrozenRecord):
    """A finished cell: the task's record and the model's facts, as a local run would have them, and where and
    when it ran."""

    task: str
    finished: engine.FinishedTask
    model: ModelFacts
    node: str  # where it ran: host name/Ray node id (its first 12 digits)
    gpus: str | None  # CUDA_VISIBLE_DEVICES as the cell saw it (Ray sets it from the GPUs it gave the cell)
    started_at: datetime  # by the worker's clock, as is the end (started_at + seconds)
    seconds: float


def run_cell(cell: Cell, node: str | None = None) -> CellResult:
    """Run one cell in this process (a Ray worker: `node` names it); an EvalsuiteError is the cell's one line,
    raised."""
    started_at, started = datetime.now(UTC), time.perf_counter()
    node = node or socket.gethostname()
    check_same_versions(cell.versions, Versions.installed(), node)
    # the output folder is the driver's (a worker writes nothing): checked here against a folder of its own
    here = {"tasks": [cell.task], "device": cell.device, "dtype": cell.dtype, "output_dir": Path(tempfile.gettempdir())}
    request = cell.request.model_copy(update=here)
    prepared = prepare_run(request)
    model = _loaded(prepared)
    settings = engine.EvalSettings(
        limit=request.limit, seeds=request.seeds, log_samples=request.log_samples, preset=prepared.preset
    )
    tasks_dir = default_tasks_dir()
    finished = engine.run_task(model, prepared.plan.tasks[0], settings, engine.build_task_manager(tasks_dir), tasks_dir)
    assert finished is not None, "a cell runs in one process, which gets the task's results"
    return CellResult(
        task=cell.task,
        finished=finished,
        model=ModelFacts.of(model),
        node=node,
        gpus=os.environ.get("CUDA_VISIBLE_DEVICES"),
        started_at=started_at,
        seconds=round(time.perf_counter() - started, 3),
    )


def check_same_versions(driver: Versions, worker: Versions, node: str) -> None:
    """The numbers depend on these versions: a worker that differs from the driver is refused, naming the
    first package that differs."""
    mine, theirs = worker.model_dump(), driver.model_dump()
    for package, version in theirs.items():
        if mine[package] != version:
            raise ClusterError(
                f"worker {node} has {package} {mine[package]}, the driver {version}: install the driver's versions "
                "on every node (the numbers depend on them)"
            )


_last: tuple[tuple[object, ...], engine.LoadedModel] | None = None  # this worker's last loaded model


def _loaded(prepared: PreparedRun) -> engine.LoadedModel:
    """The cell's model, loaded once per worker process for consecutive cells of the same model loaded the same
    way: the key is everything the load is given (precision, adapter or delta among it), so a worker never hands
    one run's model to another (a 4bit cell after a float32 one of the same model loads it again)."""
    global _last
    settings = load_plan(prepared)  # the request carries the cell's device and dtype: the driver's plan
    key = (prepared.weights.base, settings)
    if _last is not None and _last[0] == key:
        return _last[1]
    _last = None  # let the previous model go before the next loads
    loadable = engine.prepare_model(prepared.weights.base)
    model = engine.load_model(loadable, settings)
    _last = (key, model)
    return model

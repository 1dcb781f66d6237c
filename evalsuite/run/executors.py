"""Where a sweep's cells run: the `Executor` protocol, and the in-process executor.

The sweep (run/sweep.py) talks to an executor only through typed values: it submits a `Cell` under a `CellKey`
(which model of the sweep, which task), hears which cells started (`Started`), waits for outcomes (a
`CellResult`, or a `CellFailure` saying why it will not finish) and cancels a model's other cells when one
fails. Handles, node ids and retries are the executor's own business.

Two implement it:
- `RayExecutor` (run/cluster.py, the only module that imports ray): cells as Ray tasks on a cluster, a cell lost
  with its worker or node run again elsewhere;
- `InProcessExecutor` (here): cells one after another in this process, in submission order. The same resume,
  failure, retry and cancel paths of the sweep run through it without a cluster (the fast tests give it a cell
  runner of their own; `WorkerLost` from that runner stands for a worker that went away).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from evalsuite.errors import EvalsuiteError
from evalsuite.run.cells import Cell, CellResult, run_cell


@dataclass(frozen=True, order=True)
class CellKey:
    """One cell of a sweep: the model's place in the sweep's runs, and the suite task."""

    run: int
    task: str

    def __str__(self) -> str:
        return f"{self.run}/{self.task}"


@dataclass(frozen=True)
class Started:
    """A worker began a cell (each attempt says so)."""

    key: CellKey
    node: str
    gpus: str | None
    at: datetime


@dataclass(frozen=True)
class CellFailure:
    """A cell that will not finish: `line` says why (marked as errors.param marks it). `lost`: its worker or
    node went away more often than the retries allow (else the cell itself raised `error`)."""

    line: str
    lost: bool
    error: EvalsuiteError | None = None

    @classmethod
    def raised(cls, error: BaseException) -> CellFailure:
        """The cell's own exception as its one line (never retried)."""
        if isinstance(error, EvalsuiteError):
            return cls(error.marked, lost=False, error=error)
        first = (str(error).strip().splitlines() or [""])[0]
        return cls(f"{type(error).__name__}: {first}", lost=False)

    @classmethod
    def lost_every_time(cls, why: str) -> CellFailure:
        return cls(f"lost with its worker or node every time it ran ({why})", lost=True)


Outcome = CellResult | CellFailure


@dataclass(frozen=True)
class Node:
    """What one live node of the cluster has, all told (a cell asks for its CPUs and GPUs on one node)."""

    cpus: float
    gpus: float


class Executor(Protocol):
    """What a sweep needs of the place its cells run."""

    def describe(self) -> str:
        """The resources, as a line says them: `3 node(s), 4 CPUs, 4 GPUs`."""
        ...

    def has_gpus(self) -> bool: ...

    def nodes(self) -> list[Node]:
        """Each live node's resources, as they are now (a node gone is not in it)."""
        ...

    def submit(self, cell: Cell, key: CellKey, cpus: float, gpus: float, retries: int) -> None:
        """Queue one cell; `retries`: times it runs again when its worker or node is lost."""
        ...

    def wait(self, timeout: float) -> list[tuple[CellKey, Outcome]]:
        """The cells that finished within `timeout` seconds, each with its result or why it failed."""
        ...

    def started(self) -> list[Started]:
        """The cells that started since the last call."""
        ...

    def cancel(self, key: CellKey) -> None:
        """Give up a queued or running cell; it comes back from `wait` as a failure, or not at all."""
        ...

    def pending(self) -> int:
        """Cells submitted whose outcome `wait` has not given yet."""
        ...


class WorkerLost(Exception):
    """Raised by an in-process cell runner to stand for a worker (or node) that went away mid-cell."""


CellRunner = Callable[[Cell, str], CellResult]


@dataclass
class _Queued:
    cell: Cell
    retries: int
    attempts: int = 0


@dataclass
class InProcessExecutor:
    """Cells in this process, one at a time, in the order submitted. A `wait` first announces the next cell
    (it shows as running), the next `wait` runs it, as a cluster's worker would; a `WorkerLost` from the runner
    runs the cell again, up to its retries. `cpus`, `gpus`: what this process offers as the cluster's one node (its
    CPUs, and no GPU unless told: nothing pins one for a cell here)."""

    runner: CellRunner = run_cell
    node: str = field(default_factory=socket.gethostname)
    cpus: float = field(default_factory=lambda: float(os.cpu_count() or 1))
    gpus: float = 0.0
    _queue: dict[CellKey, _Queued] = field(default_factory=dict)
    _starts: list[Started] = field(default_factory=list)
    _announced: CellKey | None = None

    def __enter__(self) -> InProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.clear()

    def describe(self) -> str:
        return "this process"

    def has_gpus(self) -> bool:
        return self.gpus > 0

    def nodes(self) -> list[Node]:
        return [Node(self.cpus, self.gpus)]

    def submit(self, cell: Cell, key: CellKey, cpus: float, gpus: float, retries: int) -> None:
        self._queue[key] = _Queued(cell, retries)

    def wait(self, timeout: float) -> list[tuple[CellKey, Outcome]]:
        if not self._queue:
            return []
        key = self._announced
        if key is None or key not in self._queue:  # a cell starts: the driver sees it running first
            key = self._announced = next(iter(self._queue))
            self._queue[key].attempts += 1
            self._starts.append(Started(key, self.node, None, datetime.now(UTC)))
            return []
        queued = self._queue[key]
        try:
            result = self.runner(queued.cell, self.node)
        except WorkerLost as e:
            if queued.attempts > queued.retries:
                del self._queue[key]
                return [(key, CellFailure.lost_every_time(f"{type(e).__name__}: {e}"))]
            self._announced = None  # started again at the next wait
            return []
        except Exception as e:  # the cell's own error, never retried (KeyboardInterrupt passes through)
            del self._queue[key]
            self._announced = None
            return [(key, CellFailure.raised(e))]
        del self._queue[key]
        self._announced = None
        return [(key, result)]

    def started(self) -> list[Started]:
        starts, self._starts = self._starts, []
        return starts

    def cancel(self, key: CellKey) -> None:
        if self._queue.pop(key, None) is not None and key == self._announced:
            self._announced = None

    def pending(self) -> int:
        return len(self._queue)

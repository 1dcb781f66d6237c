"""The Ray cluster a sweep or a run is spread over: the only module that imports ray (an import-linter contract).

`connect` joins a cluster by its address (`ray://HOST:PORT`, `HOST:PORT`, `auto`) or starts a private one on
this machine for the length of the command (`local`, bound to 127.0.0.1). `Cluster.submit` sends one cell
(run/cells.py) as a Ray task that asks for its CPUs and GPUs (Ray pins them: CUDA_VISIBLE_DEVICES) and is run
again elsewhere when its worker process or node is lost (`max_retries`); an exception the cell raises (a bad
model, a gated repo) is never retried. Workers say when a cell starts through a small actor (`_Board`), so the
driver can show what runs where.

Ray stays optional (`pip install 'evalsuite[cluster]'`): nothing imports this module until a command is given
`--cluster`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from evalsuite.errors import ClusterError, EvalsuiteError, param
from evalsuite.run.cells import Cell, CellResult, run_cell

INSTALL = "pip install 'evalsuite[cluster]'"
LOCAL = "local"
# The object store of a private cluster: cells send back records of megabytes, not tensors.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Started:
    """A worker began a cell (each attempt says so)."""

    cell: str
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


class Cluster:
    """A connected cluster: submit cells, wait for them, hear which started."""

    def __init__(self, ray: Any, address: str) -> None:
        self._ray = ray
        self.address = address
        # on the driver's own node, so losing a worker node never loses what started where
        here = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=True
        )
        self._board = ray.remote(num_cpus=0)(_Board).options(scheduling_strategy=here).remote()
        self._cell = ray.remote(_run_remote_cell)

    def resources(self) -> dict[str, float]:
        return dict(self._ray.cluster_resources())

    def describe(self) -> str:
        """`3 nodes, 4 CPUs, 4 GPUs`."""
        nodes = sum(1 for node in self._ray.nodes() if node.get("Alive"))
        total = self.resources()
        gpus = f", {total['GPU']:g} GPUs" if total.get("GPU") else ""
        return f"{nodes} node(s), {total.get('CPU', 0):g} CPUs{gpus}"

    def has_gpus(self) -> bool:
        return self.resources().get("GPU", 0) > 0

    def submit(self, cell: Cell, cell_id: str, cpus: float, gpus: float, retries: int) -> Any:
        """Queue one cell; the returned handle is what `wait` gives back."""
        return self._cell.options(num_cpus=cpus, num_gpus=gpus, max_retries=retries, retry_exceptions=False).remote(
            cell, cell_id, self._board
        )

    def wait(self, handles: Sequence[Any], timeout: float) -> list[tuple[Any, CellResult | CellFailure]]:
        """The handles that finished within `timeout` seconds, each with its result or why it failed."""
        if not handles:
            return []
        ready, _ = self._ray.wait(list(handles), num_returns=len(handles), timeout=timeout)
        return [(handle, self._outcome(handle)) for handle in ready]

    def _outcome(self, handle: Any) -> CellResult | CellFailure:
        exceptions = self._ray.exceptions
        try:
            result: CellResult = self._ray.get(handle)
            return result
        except exceptions.RayTaskError as e:  # the cell raised: its own error, never retried
            cause = getattr(e, "cause", None)
            if isinstance(cause, EvalsuiteError):
                return CellFailure(cause.marked, lost=False, error=cause)
            cause = cause if isinstance(cause, BaseException) else e
            first = (str(cause).strip().splitlines() or [""])[0]
            return CellFailure(f"{type(cause).__name__}: {first}", lost=False)
        except exceptions.TaskCancelledError:
            return CellFailure("cancelled", lost=False)
        except exceptions.RayError as e:  # the worker or its node went away, every time it was tried
            first = (str(e).strip().splitlines() or [""])[0]
            return CellFailure(f"lost with its worker or node every time it ran ({type(e).__name__}: {first})", True)

    def cancel(self, handle: Any) -> None:
        self._ray.cancel(handle, force=False)

    def started(self) -> list[Started]:
        """The cells that started since the last call."""
        try:
            notices: list[tuple[str, str, str | None, str]] = self._ray.get(self._board.drain.remote(), timeout=10)
        except self._ray.exceptions.RayError:  # the board is gone: the cells still finish, unannounced
            return []
        return [Started(cell, node, gpus, datetime.fromisoformat(at)) for cell, node, gpus, at in notices]


class _Board:
    """A Ray actor in the driver's job: workers post the cells they start, the driver drains them."""

    def __init__(self) -> None:
        self._notices: list[tuple[str, str, str | None, str]] = []

    def post(self, cell: str, node: str, gpus: str | None, at: str) -> None:
        self._notices.append((cell, node, gpus, at))

    def drain(self) -> list[tuple[str, str, str | None, str]]:
        notices, self._notices = self._notices, []
        return notices


def _run_remote_cell(cell: Cell, cell_id: str, board: Any) -> CellResult:
    """What a Ray worker runs: say the cell started (where, on which GPUs), then run it."""
    import ray

    node = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:12]}"
    board.post.remote(cell_id, node, os.environ.get("CUDA_VISIBLE_DEVICES"), datetime.now(UTC).isoformat())
    return run_cell(cell, node)


def check(address: str) -> None:
    """What can be known of the cluster before anything else: Ray is installed, and something answers at the
    address. Ray missing, or an address where nothing answers, is one ClusterError."""
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise ClusterError(f"{param('cluster')} needs Ray, which is not installed: {INSTALL}") from e
    _check_answers(address)


@contextmanager
def connect(address: str, verbose: bool = False) -> Iterator[Cluster]:
    """Join the cluster at `address`, or start a private one on this machine (`local`), for the block; a cluster
    Ray cannot join is one ClusterError."""
    check(address)
    import ray

    options: dict[str, Any] = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR}
    if address == LOCAL:
        options |= {"address": "local", "include_dashboard": False, "_node_ip_address": "127.0.0.1",
                    "object_store_memory": LOCAL_OBJECT_STORE_BYTES}  # fmt: skip
    else:
        options["address"] = address
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise ClusterError(f"{param('cluster')} {address}: cannot join the Ray cluster ({first})") from e
    try:
        yield Cluster(ray, address)
    finally:
        ray.shutdown()


def _check_answers(address: str) -> None:
    """An address that names a host and port must answer there within seconds (Ray itself retries for a
    minute before it gives up)."""
    if address in (LOCAL, "auto"):
        return
    host_port = address.removeprefix("ray://")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(
            f"{param('cluster')} {address!r}: give a Ray address (HOST:PORT, ray://HOST:PORT, auto) or {LOCAL}"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ClusterError(
            f"{param('cluster')} {address}: nothing answers at {host}:{port} ({e.strerror or type(e).__name__}); "
            "start the cluster (ray start --head) or check the address"
        ) from e

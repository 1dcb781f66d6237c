"""The Ray cluster a sweep or a run is spread over: the only module that imports ray (an import-linter contract).

`connect` joins a cluster by its address (`ray://HOST:PORT`, `HOST:PORT`, `auto`) or starts a private one on
this machine for the length of the command (`local`: see `_private_cluster`), and gives a `RayExecutor`: the sweep's
executor (run/executors.py) over Ray. `submit` sends one cell (run/cells.py) as a Ray task that asks for its CPUs
and GPUs (Ray pins them: CUDA_VISIBLE_DEVICES) and is run again elsewhere when its worker process or node is lost
(`max_retries`); an exception the cell raises (a bad model, a gated repo) is never retried. Workers say when a
cell starts through a small actor (`_Board`), so the driver can show what runs where.

Ray's usage statistics are off unless the caller's environment turns them on (`RAY_USAGE_STATS_ENABLED`), for
library callers as for the CLI: set while Ray starts its processes, and put back after. A private cluster also
stays on the loopback and writes nothing in ~/.ray (`_private_cluster`); every variable and Ray constant changed
for it is put back after, as is every variable ray.init sets in this process (PYTHONBREAKPOINT, RAY_AUTH_MODE).

Ray stays optional (`pip install 'evalsuite[cluster]'`): nothing imports this module until a command is given
`--cluster`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from evalsuite.errors import ClusterError, param
from evalsuite.run.cells import Cell, CellResult, run_cell
from evalsuite.run.executors import CellFailure, CellKey, Node, Outcome, Started

INSTALL = "pip install 'evalsuite[cluster]'"
LOCAL = "local"
# The object store of a private cluster: cells send back records of megabytes, not tensors.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
CONNECT_TIMEOUT_S = 5.0


class RayExecutor:
    """A connected cluster as the sweep's executor (run/executors.py): cells as Ray tasks, each handle kept here
    under its cell's key."""

    def __init__(self, ray: Any, address: str) -> None:
        self._ray = ray
        self.address = address
        # on the driver's own node, so losing a worker node never loses what started where
        here = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=True
        )
        self._board = ray.remote(num_cpus=0)(_Board).options(scheduling_strategy=here).remote()
        self._cell = ray.remote(_run_remote_cell)
        self._handles: dict[CellKey, Any] = {}  # Ray's ObjectRefs, never seen outside this module

    def resources(self) -> dict[str, float]:
        return dict(self._ray.cluster_resources())

    def describe(self) -> str:
        """`3 node(s), 4 CPUs, 4 GPUs`."""
        nodes = sum(1 for node in self._ray.nodes() if node.get("Alive"))
        total = self.resources()
        gpus = f", {total['GPU']:g} GPUs" if total.get("GPU") else ""
        return f"{nodes} node(s), {total.get('CPU', 0):g} CPUs{gpus}"

    def has_gpus(self) -> bool:
        return self.resources().get("GPU", 0) > 0

    def nodes(self) -> list[Node]:
        live = (node.get("Resources") or {} for node in self._ray.nodes() if node.get("Alive"))
        return [Node(float(held.get("CPU", 0)), float(held.get("GPU", 0))) for held in live]

    def submit(self, cell: Cell, key: CellKey, cpus: float, gpus: float, retries: int) -> None:
        self._handles[key] = self._cell.options(
            num_cpus=cpus, num_gpus=gpus, max_retries=retries, retry_exceptions=False
        ).remote(cell, key.run, key.task, self._board)

    def wait(self, timeout: float) -> list[tuple[CellKey, Outcome]]:
        if not self._handles:
            return []
        keys = {handle: key for key, handle in self._handles.items()}
        ready, _ = self._ray.wait(list(keys), num_returns=len(keys), timeout=timeout)
        finished = []
        for handle in ready:
            key = keys[handle]
            del self._handles[key]
            finished.append((key, self._outcome(handle)))
        return finished

    def _outcome(self, handle: Any) -> Outcome:
        exceptions = self._ray.exceptions
        try:
            result: CellResult = self._ray.get(handle)
            return result
        except exceptions.RayTaskError as e:  # the cell raised: its own error, never retried
            cause = getattr(e, "cause", None)
            return CellFailure.raised(cause if isinstance(cause, BaseException) else e)
        except exceptions.TaskCancelledError:
            return CellFailure("cancelled", lost=False)
        except exceptions.RayError as e:  # the worker or its node went away, every time it was tried
            first = (str(e).strip().splitlines() or [""])[0]
            return CellFailure.lost_every_time(f"{type(e).__name__}: {first}")

    def cancel(self, key: CellKey) -> None:
        if (handle := self._handles.get(key)) is not None:
            self._ray.cancel(handle, force=False)

    def pending(self) -> int:
        return len(self._handles)

    def started(self) -> list[Started]:
        try:
            notices: list[tuple[int, str, str, str | None, str]] = self._ray.get(self._board.drain.remote(), timeout=10)
        except self._ray.exceptions.RayError:  # the board is gone: the cells still finish, unannounced
            return []
        return [Started(CellKey(run, task), node, gpus, datetime.fromisoformat(at))
                for run, task, node, gpus, at in notices]  # fmt: skip


class _Board:
    """A Ray actor in the driver's job: workers post the cells they start, the driver drains them."""

    def __init__(self) -> None:
        self._notices: list[tuple[int, str, str, str | None, str]] = []

    def post(self, run: int, task: str, node: str, gpus: str | None, at: str) -> None:
        self._notices.append((run, task, node, gpus, at))

    def drain(self) -> list[tuple[int, str, str, str | None, str]]:
        notices, self._notices = self._notices, []
        return notices


def _run_remote_cell(cell: Cell, run: int, task: str, board: Any) -> CellResult:
    """What a Ray worker runs: say the cell started (where, on which GPUs), then run it."""
    import ray

    node = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:12]}"
    board.post.remote(run, task, node, os.environ.get("CUDA_VISIBLE_DEVICES"), datetime.now(UTC).isoformat())
    return run_cell(cell, node)


def check(address: str) -> None:
    """What can be known of the cluster before anything else: Ray is installed, and something answers at the
    address. Ray missing, or an address where nothing answers, is one ClusterError."""
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise ClusterError(f"{param('cluster')} needs Ray, which is not installed: {INSTALL}") from e
    _check_answers(address)


USAGE_STATS = "RAY_USAGE_STATS_ENABLED"
# Ray's switch for a cluster of one machine on the loopback (what it does on macOS and Windows): off ("0"), a node's
# IP is 127.0.0.1, never looked up by a UDP "connection" to 8.8.8.8:53 (which logs `network_util.cc ... 8.8.8.8:53`
# on stderr where the network is closed). Ray reads it into `ray_constants.ENABLE_RAY_CLUSTER` when imported.
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Ray's token authentication: the mode, and where a process finds the token (in this order: the variable, the
# file it names, then ~/.ray/auth_token, which `ray.init` writes for a new cluster when it finds none).
AUTH_MODE, AUTH_TOKEN, AUTH_TOKEN_PATH = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"


@contextmanager
def connect(address: str, verbose: bool = False) -> Iterator[RayExecutor]:
    """Join the cluster at `address`, or start a private one on this machine (`local`), for the block; a cluster
    Ray cannot join is one ClusterError."""
    check(address)
    with _usage_stats_off_unless_asked():
        import ray

        yield from _joined(ray, address, verbose)


@contextmanager
def _usage_stats_off_unless_asked() -> Iterator[None]:
    """Nothing leaves the cluster: Ray reads the variable when it is imported and when it starts its processes
    (which inherit it); the caller's environment is as it was afterwards."""
    if USAGE_STATS in os.environ:
        yield
        return
    os.environ[USAGE_STATS] = "0"
    try:
        yield
    finally:
        os.environ.pop(USAGE_STATS, None)


def _joined(ray: Any, address: str, verbose: bool) -> Iterator[RayExecutor]:
    options: dict[str, Any] = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR}
    temp_dir, owner = None, None
    if address == LOCAL:
        # Ray's session folder (logs, sockets) in a folder of the command's own, taken away with the cluster; short,
        # as Ray's socket paths must be
        temp_dir, owner = _private_temp_dir()
        options |= {"address": "local", "include_dashboard": False, "_node_ip_address": "127.0.0.1",
                    "object_store_memory": LOCAL_OBJECT_STORE_BYTES, "_temp_dir": temp_dir}  # fmt: skip
    else:
        options["address"] = address
    with _private_cluster(ray) if address == LOCAL else nullcontext():
        before = dict(os.environ)
        try:
            with _sigterm_kept():
                ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            ray.shutdown()
            _remove(temp_dir, owner)
            _put_back(_changed_since(before))
            first = (str(e).strip().splitlines() or [""])[0]
            # Ray's RuntimeErrors from init are its version check (the user's to fix) or a misuse of init (ours: a
            # bug)
            if isinstance(e, RuntimeError) and not first.startswith("Version mismatch"):
                raise
            raise ClusterError(f"{param('cluster')} {address}: cannot join the Ray cluster ({first})") from e
        # what ray.init set in this process's environment (PYTHONBREAKPOINT: Ray's debugger for breakpoint();
        # RAY_AUTH_MODE), put back once the cluster is left
        set_by_init = _changed_since(before)
        try:
            yield RayExecutor(ray, address)
        finally:
            ray.shutdown()
            _remove(temp_dir, owner)
            _put_back(set_by_init)


def _changed_since(before: dict[str, str]) -> dict[str, str | None]:
    """The environment variables that differ from `before`, with their values there (None: unset)."""
    now = os.environ
    return {name: before.get(name) for name in now.keys() | before.keys() if now.get(name) != before.get(name)}


def _put_back(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextmanager
def _private_cluster(ray: Any) -> Iterator[None]:
    """What `--cluster local` needs beyond ray.init's keywords, for the block (ray.init to ray.shutdown):
    - on the loopback: Ray's `LOOPBACK_ONLY` switch off, so the node's IP is 127.0.0.1, where its servers listen
      (with it on, Linux's default, Ray turns `_node_ip_address="127.0.0.1"` into the address its 8.8.8.8 probe
      finds: the machine's LAN address, and a warning on stderr where the network is closed). The variable for the
      processes Ray starts (they inherit it), the constant it was read into for this one (Ray is imported before:
      `check`);
    - token authentication on (Ray's default for a new cluster) with a token held in the cluster's environment
      alone: without one, ray.init writes a new token to ~/.ray/auth_token, which every `ray start` on this machine
      then asks for. Unless the caller chose (any `RAY_AUTH_*` of Ray's set): then Ray does as they said.
    Afterwards (the cluster shut down) the variables, the constant and what Ray read from them in this process are
    as they were: ray.init sets `RAY_AUTH_MODE=token` here and reads it into its config, and keeps the token it
    found."""
    constants = ray._private.ray_constants
    saved = {name: os.environ.get(name) for name in (LOOPBACK_ONLY, AUTH_MODE, AUTH_TOKEN, AUTH_TOKEN_PATH)}
    enabled = constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ONLY] = "0"
    constants.ENABLE_RAY_CLUSTER = False
    if all(saved[name] is None for name in (AUTH_MODE, AUTH_TOKEN, AUTH_TOKEN_PATH)):
        os.environ[AUTH_TOKEN] = secrets.token_hex(32)  # the cluster's own
    try:
        yield
    finally:
        ray.shutdown()  # done already unless ray.init itself was stopped (Ctrl-C): nothing of it may read what follows
        constants.ENABLE_RAY_CLUSTER = enabled
        _put_back(saved)
        # a later cluster of this process reads the caller's settings, not this one's: Ray's config (read from the
        # environment again) and its token loader (which keeps the first token it found until told to forget it)
        ray._raylet.Config.initialize("")
        ray._raylet.AuthenticationTokenLoader.instance().reset_cache()


@contextmanager
def _sigterm_kept() -> Iterator[None]:
    """`ray.init` puts in a SIGTERM handler of its own (`sys.exit`, which leaves Ray's dump and no line of the
    caller's); the caller's handler (the CLI's: SIGTERM stops the sweep as Ctrl-C does) is put back."""
    if threading.current_thread() is not threading.main_thread():  # Ray sets none there either
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler not set from Python, which cannot be put back
            signal.signal(signal.SIGTERM, previous)


def _remove(temp_dir: str | None, owner: IO[str] | None) -> None:
    """A private cluster's folder taken away, then its owner lock let go."""
    if temp_dir is not None:
        shutil.rmtree(temp_dir, ignore_errors=True)
    if owner is not None:
        owner.close()


TEMP_PREFIX = "evalsuite-ray-"  # a private cluster's folder in the system's temp folder
OWNER_LOCK = "owner.lock"  # flock'ed by the command whose cluster it is, for the cluster's life


def _private_temp_dir() -> tuple[str, IO[str]]:
    """A folder for a private cluster's session, and its owner lock, held (the OS lets it go even on kill -9).
    First the folders of private clusters whose command was killed are taken away: their lock is free. A folder
    is made under another name and renamed once locked, so no command ever sees one of a live cluster unlocked."""
    for stale in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            with (stale / OWNER_LOCK).open() as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:  # held: a running command's; no lock: not ours to judge
            continue
    making = Path(tempfile.mkdtemp(prefix=f".{TEMP_PREFIX}"))
    owner = (making / OWNER_LOCK).open("a+")
    fcntl.flock(owner, fcntl.LOCK_EX)
    temp_dir = making.with_name(making.name.removeprefix("."))
    making.rename(temp_dir)
    return str(temp_dir), owner


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

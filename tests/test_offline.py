"""A run on local data with a local model needs no network, and makes no call to it; importing the library
changes nothing in the caller's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE_DATA

BLOCK_SOCKETS = Path(__file__).parent / "block_sockets.py"


def _evalsuite_without_network(args: list[str], tmp_path: Path) -> list[dict]:
    """The command in a fresh process with internet sockets blocked; the attempts it made."""
    log = tmp_path / "network-attempts.jsonl"
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf-home")}
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_UPDATE_DOWNLOAD_COUNTS"):
        environment.pop(name, None)  # no switch from outside: the run itself must stay off the network
    command = [sys.executable, str(BLOCK_SOCKETS), str(log), *args]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _where(attempts: list[dict]) -> str:
    return "\n".join(f"{a['kind']} {a['target']} from\n{''.join(a['stack'][-8:])}" for a in attempts[:2])


@pytest.mark.subprocess
def test_a_data_dir_run_of_a_local_model_makes_no_network_call(gguf_path: Path, tmp_path: Path):
    args = ["run", str(gguf_path), "--data-dir", str(SAMPLE_DATA), "--tasks", "arc,truthfulqa", "--limit", "1",
            "--output-dir", str(tmp_path / "results")]  # fmt: skip
    attempts = _evalsuite_without_network(args, tmp_path)
    assert attempts == [], _where(attempts)
    assert list((tmp_path / "results").glob("*/*/results.json"))


@pytest.mark.subprocess
def test_a_contamination_check_on_local_data_makes_no_network_call(gguf_path: Path, tmp_path: Path):
    args = ["contamination", str(gguf_path), "--reference", str(gguf_path), "--data-dir", str(SAMPLE_DATA),
            "--tasks", "arc", "--items", "1", "--neighbours", "2",
            "--output-dir", str(tmp_path / "results")]  # fmt: skip
    attempts = _evalsuite_without_network(args, tmp_path)
    assert attempts == [], _where(attempts)
    assert list((tmp_path / "results").glob("*/contamination-*/contamination.json"))


@pytest.mark.subprocess
def test_importing_the_library_changes_no_environment_variable():
    """Everything but evalsuite.cli (the program, which quiets other libraries' bars for its own process).
    The baseline is taken after importing the libraries evalsuite's torch-side modules import, since they set
    variables of their own (lm_eval/__init__.py: HF_XET_HIGH_PERFORMANCE; transformers' modeling code, through
    torch._inductor: TORCHINDUCTOR_CACHE_DIR)."""
    modules = sorted(p.stem for p in (Path(__file__).parent.parent / "evalsuite").glob("*.py") if p.stem != "__main__")
    code = (
        "import importlib, os, sys\n"
        "import lm_eval, lm_eval.models.huggingface, transformers\n"
        "from transformers import DynamicCache, PreTrainedModel\n"
        "before = dict(os.environ)\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('evalsuite' if name == '__init__' else 'evalsuite.' + name)\n"
        "changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))\n"
        "print(changed)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", f"importing evalsuite changed {result.stdout.strip()}"

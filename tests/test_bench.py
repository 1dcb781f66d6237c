"""The benchmark scripts keep working: bench/gpu.py runs end to end on a toy model of the same family, on CPU.

(The figures themselves come from running the scripts, not from tests: see bench/RESULTS.md.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SAMPLE_DATA

pytestmark = pytest.mark.subprocess  # each benchmark runs as its own script


def test_gpu_benchmark_runs_on_a_toy_model(gguf_path: Path, tmp_path: Path):
    from evalsuite.engine import prepare_model
    from evalsuite.model import parse_model_ref

    tokenizer = prepare_model(parse_model_ref(str(gguf_path))).pretrained
    figures = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), "--tiny", "--device", "cpu", "--dtype", "float32",
         "--batch-size", "8",
         "--tokenizer", tokenizer, "--data-dir", str(SAMPLE_DATA),
         "--tasks", "arc,truthfulqa,winogrande,gsm8k",
         "--limit", "2", "--gsm8k-batch", "2", "--max-gen-tokens", "4", "--json", str(figures)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(figures.read_text())
    assert [t["task"] for t in report["tasks"]] == ["arc", "truthfulqa", "winogrande"]
    for task in report["tasks"]:
        assert task["requests"] > 0 and 0 < task["tokens_ours"] < task["tokens_plain"]
        # float32: the backends agree to rounding (in bf16 a random toy model's near-ties can flip)
        assert task["same_choices"] == 1.0 and task["max_abs_diff"] < 1e-4, task
    assert report["gsm8k_seconds"] > 0 and report["projected_minutes"]["evalsuite"] > 0
    assert "projected full H6" in done.stdout


def test_generation_schedule_benchmark_runs_on_a_toy_model(model_folder: str):
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_generation.py"), "--tiny", "--device", "cpu",
         "--tokenizer", model_folder, "--data-dir", str(SAMPLE_DATA), "--schedule", "12", "--batches", "4"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    fixed, continuous = (line for line in done.stdout.splitlines() if "decode steps" in line)
    steps = [int(line.split(" decode steps")[0].rsplit(" ", 1)[-1]) for line in (fixed, continuous)]
    # the same answer lengths, scheduled two ways: continuous batching needs fewer steps
    assert 0 < steps[1] < steps[0], done.stdout


def test_generation_step_benchmark_times_and_profiles_each_cache(model_folder: str):
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_generation.py"), "--tiny", "--device", "cpu",
         "--tokenizer", model_folder, "--data-dir", str(SAMPLE_DATA), "--batches", "2", "--new-tokens", "4",
         "--caches", "dynamic,continuous", "--profile"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    timed = [line for line in done.stdout.splitlines() if "ms/step" in line]
    assert [line.split()[0] for line in timed] == ["cache=dynamic", "cache=continuous"], done.stdout
    assert done.stdout.count("--- profile") == 2 and "aten::" in done.stdout


def test_generation_paths_benchmark_sets_lm_evals_texts_beside_both_engines(model_folder: str):
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_generation.py"), "--tiny", "--device", "cpu", "--dtype", "float32",
         "--tokenizer", model_folder, "--data-dir", str(SAMPLE_DATA), "--paths", "3", "--max-gen-toks", "6",
         "--batch-size", "2"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [
        line.split(" | ") for line in done.stdout.splitlines() if line.startswith(("| lm-eval", "| loop", "| manager"))
    ]
    paths = {row[0].lstrip("| "): row[1] for row in rows}
    # float32 on a toy model: every engine gives HFLM's texts
    assert paths == {"lm-eval HFLM": "3 of 3", "loop": "3 of 3", "manager": "3 of 3"}, done.stdout


def test_request_building_benchmark_compares_both_renderings():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "request_building.py"), "--data-dir", str(SAMPLE_DATA),
         "--tasks", "arc,gsm8k"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| arc ") or line.startswith("| gsm8k ")]
    assert len(rows) == 2 and all(row.endswith("| yes |") for row in rows), done.stdout

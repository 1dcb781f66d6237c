"""The benchmark scripts keep working: bench/gpu.py runs end to end on a toy model of the same family, on CPU.

(The figures themselves come from running the scripts, not from tests: see bench/RESULTS.md.)

The scripts run in this process (`_run_script`: their `main` with the command line they are given), sparing
each a Python start and the imports of torch, transformers and lm-eval; bench/request_building.py, whose
subject is its own processes (a leg per process), runs as the command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SAMPLE_DATA

BENCH = REPO / "bench"


def _run_script(
    script: str, args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """`python bench/SCRIPT ARGS` in this process: its stdout. A non-zero exit fails the test with its stderr.
    What a script changes in the process is put back: sys.argv, sys.path (a script puts bench/ and the
    repository first), bench's modules it imported (gpu_generation.py imports gpu), torch's random state."""
    import runpy

    import torch

    path = BENCH / script
    monkeypatch.setattr(sys, "argv", [str(path), *args])
    monkeypatch.setattr(sys, "path", list(sys.path))
    modules = set(sys.modules)
    try:
        with torch.random.fork_rng(devices=[]):  # build_model seeds torch's generator
            runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exited:  # argparse's errors, or a script's own sys.exit
        if exited.code not in (None, 0):
            pytest.fail(f"bench/{script} exited with {exited.code}:\n{capsys.readouterr().err[-3000:]}")
    finally:
        for name in set(sys.modules) - modules:
            if Path(getattr(sys.modules[name], "__file__", None) or "").parent == BENCH:
                del sys.modules[name]
    return capsys.readouterr().out


@pytest.mark.lm_eval  # both backends (lm-eval's HFLM) on lm-eval's requests
def test_gpu_benchmark_runs_on_a_toy_model(
    gguf_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from evalsuite.engine import prepare_model
    from evalsuite.model import parse_model_ref

    tokenizer = prepare_model(parse_model_ref(str(gguf_path))).pretrained
    figures = tmp_path / "gpu.json"
    stdout = _run_script(
        "gpu.py",
        ["--tiny", "--device", "cpu", "--dtype", "float32", "--batch-size", "8",
         "--tokenizer", tokenizer, "--data-dir", str(SAMPLE_DATA),
         "--tasks", "arc,truthfulqa,winogrande,gsm8k",
         "--limit", "2", "--gsm8k-batch", "2", "--max-gen-tokens", "4", "--json", str(figures)],
        monkeypatch, capsys,
    )  # fmt: skip
    report = json.loads(figures.read_text())
    assert [t["task"] for t in report["tasks"]] == ["arc", "truthfulqa", "winogrande"]
    for task in report["tasks"]:
        assert task["requests"] > 0 and 0 < task["tokens_ours"] < task["tokens_plain"]
        # float32: the backends agree to rounding (in bf16 a random toy model's near-ties can flip)
        assert task["same_choices"] == 1.0 and task["max_abs_diff"] < 1e-4, task
    assert report["gsm8k_seconds"] > 0 and report["projected_minutes"]["evalsuite"] > 0
    assert "projected full H6" in stdout


def test_generation_schedule_benchmark_runs_on_a_toy_model(
    model_folder: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    stdout = _run_script(
        "gpu_generation.py",
        ["--tiny", "--device", "cpu",
         "--tokenizer", model_folder, "--data-dir", str(SAMPLE_DATA), "--schedule", "12", "--batches", "4"],
        monkeypatch, capsys,
    )  # fmt: skip
    fixed, continuous = (line for line in stdout.splitlines() if "decode steps" in line)
    steps = [int(line.split(" decode steps")[0].rsplit(" ", 1)[-1]) for line in (fixed, continuous)]
    # the same answer lengths, scheduled two ways: continuous batching needs fewer steps
    assert 0 < steps[1] < steps[0], stdout


def test_generation_step_benchmark_times_and_profiles_each_cache(
    model_folder: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    stdout = _run_script(
        "gpu_generation.py",
        ["--tiny", "--device", "cpu",
         "--tokenizer", model_folder, "--data-dir", str(SAMPLE_DATA), "--batches", "2", "--new-tokens", "4",
         "--caches", "dynamic,continuous", "--profile"],
        monkeypatch, capsys,
    )  # fmt: skip
    timed = [line for line in stdout.splitlines() if "ms/step" in line]
    assert [line.split()[0] for line in timed] == ["cache=dynamic", "cache=continuous"], stdout
    assert stdout.count("--- profile") == 2 and "aten::" in stdout


@pytest.mark.lm_eval  # lm-eval's HFLM beside both engines, on lm-eval's requests
def test_generation_paths_benchmark_sets_lm_evals_texts_beside_both_engines(
    model_folder: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    stdout = _run_script(
        "gpu_generation.py",
        ["--tiny", "--device", "cpu", "--dtype", "float32",
         "--tokenizer", model_folder, "--data-dir", str(SAMPLE_DATA), "--paths", "3", "--max-gen-toks", "6",
         "--batch-size", "2"],
        monkeypatch, capsys,
    )  # fmt: skip
    rows = [line.split(" | ") for line in stdout.splitlines() if line.startswith(("| lm-eval", "| loop", "| manager"))]
    paths = {row[0].lstrip("| "): row[1] for row in rows}
    # float32 on a toy model: every engine gives HFLM's texts
    assert paths == {"lm-eval HFLM": "3 of 3", "loop": "3 of 3", "manager": "3 of 3"}, stdout


@pytest.mark.subprocess  # the script's legs are processes of their own: it runs as the command
def test_request_building_benchmark_compares_both_renderings():
    done = subprocess.run(
        [sys.executable, str(BENCH / "request_building.py"), "--data-dir", str(SAMPLE_DATA),
         "--tasks", "arc,gsm8k"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| arc ") or line.startswith("| gsm8k ")]
    assert len(rows) == 2 and all(row.endswith("| yes |") for row in rows), done.stdout

"""Nightly regression on the real stack: a deliberately broken checkpoint of SmolLM2 is caught, noise is not.

SmolLM2-135M is near chance on most H6 tasks, so zeroing a layer or two moves its scores by less than
the noise of a cheap run (tried: TruthfulQA MC2 48.7 -> 36.9 on 20 documents, p = 0.20). A realistic
failure that a cheap nightly run must catch is a checkpoint trained on bad labels: here the model is
fine-tuned for a few steps on Winogrande sentences completed with the *wrong* option (the scored
documents' own, so the damage lands where it is measured). Only its top layers are trained (TRAINED_LAYERS):
the whole model, embeddings included, took 99 s on one thread for the same damage that the top 8 of 30 do
in 38 s (measured on 60 documents: accuracy 0.53 -> 0.17, p = 6e-5 whole; 0.53 -> 0.17, p = 2e-4 top 8).
Real runs over the first Winogrande documents (in this process: `evalsuite run`'s own code, without its
start-up), then `evalsuite compare` with McNemar's test on the logged samples (the installed command for the
regression's exit code, the CLI in-process after):

- baseline vs the broken checkpoint, on 60 documents: regressed, exit 1;
- under protocol lm-eval, whose exemplars follow lm-eval's few-shot seed (leaderboard-v1's follow the
  leaderboard's walk, whatever the seed), the model with two few-shot seeds (different exemplars, same
  documents), on 20 documents (the seeds' warnings and the prompts' fingerprints need no more): no regression,
  exit 0, with a warning that the seeds differ;
- the baseline against a protocol lm-eval run: refused (exit 2), the model was asked other things (their limits
  differ too; the refusal names every difference, the protocol among them).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import train_top_layers
from typer.testing import CliRunner

from evalsuite.cli import app

DOCUMENTS = 60  # the regression's runs (baseline and broken)
RESEEDED_DOCUMENTS = 20  # the two seeds' runs under protocol lm-eval
EPOCHS = 3
TRAINED_LAYERS = 8  # the top decoder layers; the rest, embeddings (tied to the output layer) included, frozen


def _run(model: str | Path, data_dir: Path, out: Path, documents: int = DOCUMENTS, **settings: Any) -> Path:
    from evalsuite.run import RunRequest, run_suite

    request = RunRequest(model=str(model), data_dir=data_dir, tasks=["winogrande"], limit=documents,
                         log_samples=True, output_dir=out, **settings)  # fmt: skip
    outcome = run_suite(request)
    assert outcome is not None
    return outcome.run_dir


def _compare(baseline: Path, candidate: Path, *extra: str) -> subprocess.CompletedProcess:
    """`evalsuite compare` as the installed command runs it."""
    return subprocess.run(
        [sys.executable, "-m", "evalsuite", "compare", str(baseline), str(candidate), *extra],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _compare_here(baseline: Path, candidate: Path, *extra: str) -> Any:
    """The same command through the CLI in this process (its output and exit code)."""
    return CliRunner().invoke(app, ["compare", str(baseline), str(candidate), *extra])


def _train_on_wrong_options(source: str, rows: list[dict], target: Path) -> float:
    """Fine-tune the top TRAINED_LAYERS layers on each sentence completed with its wrong option; returns the last
    epoch's mean loss."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    wrong = [r["sentence"].replace("_", r["option2"] if r["answer"] == "1" else r["option1"]) for r in rows]
    optimizer = torch.optim.AdamW(train_top_layers(model, TRAINED_LAYERS), lr=1e-3)
    model.train()
    loss_sum = 0.0
    for _epoch in range(EPOCHS):
        loss_sum, batches = 0.0, 0
        for start in range(0, len(wrong), 8):
            batch = tokenizer(wrong[start : start + 8], return_tensors="pt", padding=True)
            labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            loss = model(**batch, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            loss_sum, batches = loss_sum + float(loss.detach()), batches + 1
        loss_sum /= batches
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return loss_sum


@pytest.fixture(scope="module")
def runs(gguf_path: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from evalsuite.engine import prepare_model
    from evalsuite.model import parse_model_ref

    scratch = tmp_path_factory.mktemp("regression")
    folder = prepare_model(parse_model_ref(str(gguf_path))).pretrained
    rows = [json.loads(line) for line in (shared_data / "winogrande" / "validation.jsonl").open()][:DOCUMENTS]
    broken = scratch / "SmolLM2-135M-Instruct-wrong-labels"
    loss = _train_on_wrong_options(folder, rows, broken)
    print(
        f"\nbroken checkpoint: top {TRAINED_LAYERS} layers, {EPOCHS} epochs on {DOCUMENTS} wrong-option sentences, "
        f"final loss {loss:.3f}"
    )
    few = RESEEDED_DOCUMENTS
    return {
        "baseline": _run(gguf_path, shared_data, scratch / "baseline"),
        "broken": _run(broken, shared_data, scratch / "broken"),
        "lm-eval": _run(gguf_path, shared_data, scratch / "lm-eval", few, protocol="lm-eval"),
        "reseeded": _run(gguf_path, shared_data, scratch / "reseeded", few, protocol="lm-eval", seeds="0,1234,1234,42"),
    }


@pytest.mark.subprocess
def test_a_checkpoint_trained_on_wrong_labels_is_a_regression(runs: dict[str, Path]):
    compared = _compare(runs["baseline"], runs["broken"], "--format", "json")
    assert compared.returncode == 1, compared.stdout + compared.stderr
    (task,) = json.loads(compared.stdout)["tasks"]
    assert (task["key"], task["test"], task["verdict"]) == ("winogrande", "mcnemar", "regressed")
    assert task["p_value"] < 0.001
    print(f"\nwinogrande: baseline {task['baseline']:.4f}, broken {task['candidate']:.4f}, p = {task['p_value']:.2g}")
    for fmt in ("table", "markdown"):
        shown = _compare_here(runs["baseline"], runs["broken"], "--format", fmt)
        assert shown.exit_code == 1 and "regressed" in shown.stdout.lower()
        print(f"\ncompare baseline broken --format {fmt}:\n{shown.stdout}")
    print(f"compare --format json:\n{compared.stdout}")


def test_other_few_shot_exemplars_are_not_a_regression(runs: dict[str, Path]):
    compared = _compare_here(runs["lm-eval"], runs["reseeded"], "--format", "json")
    assert compared.exit_code == 0, compared.output
    report = json.loads(compared.stdout)
    (task,) = report["tasks"]
    assert (task["test"], task["verdict"]) == ("mcnemar", "unchanged")
    assert "seeds differ (different few-shot exemplars)" in report["warnings"]
    assert any(w.startswith("winogrande: the prompts differ on the same documents") for w in report["warnings"])
    shown = _compare_here(runs["lm-eval"], runs["reseeded"])
    print(f"\ncompare lm-eval reseeded:\n{shown.stdout}")


def test_runs_of_other_protocols_are_not_compared(runs: dict[str, Path]):
    compared = _compare_here(runs["baseline"], runs["lm-eval"])
    assert compared.exit_code == 2 and compared.stdout == ""
    assert "protocols differ (leaderboard-v1 vs lm-eval)" in compared.stderr

"""End to end on the real stack: the real SmolLM2-135M-Instruct, real lm-eval, real rows (sample slice)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REAL_RUN_LIMIT, SAMPLE_DATA

from evalsuite.data import sha256_and_rows
from evalsuite.results import read_results
from evalsuite.run import PromptsRequest, build_prompts
from evalsuite.suite import Protocol, prompt_fingerprint

SHOTS = {"arc": 25, "hellaswag": 10, "mmlu": 5, "truthfulqa": 0, "winogrande": 5, "gsm8k": 5}
METRICS = {
    "arc": "acc_norm,none",
    "hellaswag": "acc_norm,none",
    "mmlu": "acc,none",
    "truthfulqa": "acc,none",
    "winogrande": "acc,none",
    "gsm8k": "exact_match,leaderboard-v1",  # the leaderboard's answer check (protocol leaderboard-v1)
}


def test_results_file_validates_and_follows_the_protocol(real_run):
    outcome, _ = real_run
    results = read_results(outcome.run_dir)  # validates against the pydantic schema
    assert results == outcome.results
    assert [t.key for t in results.tasks] == list(SHOTS)
    for task in results.tasks:
        raw = json.loads((outcome.run_dir / "lm_eval" / f"{task.key}.json").read_text())
        for leaf in task.lm_eval_tasks:
            assert raw["n-shot"][leaf] == SHOTS[task.key]  # what lm-eval actually ran
            assert METRICS[task.key] in raw["results"][leaf]
        assert task.metric.lm_eval_key == METRICS[task.key]
        assert 0.0 <= task.value <= 1.0
        assert task.seconds > 0
    # The model: the real one, dequantized from its GGUF.
    assert results.model.source == "gguf" and results.model.parameters == 134_515_008
    assert results.model.dtype == "float32" and len(results.model.sha or "") == 64
    assert results.settings.add_bos_token is False and results.settings.chat_template is False
    assert results.settings.protocol is Protocol.LEADERBOARD_V1  # the default


def test_the_runs_prompts_are_what_evalsuite_prompts_prints(real_run):
    """The prompt fingerprint a run records is that of the requests `evalsuite prompts` builds, and the
    requests lm-eval logged are those requests, document by document."""
    outcome, _ = real_run
    for task in outcome.results.tasks:
        (prompts,) = build_prompts(PromptsRequest(tasks=[task.key], limit=REAL_RUN_LIMIT, data_dir=SAMPLE_DATA))
        assert task.prompt_sha256 == prompt_fingerprint(prompts.documents), task.key
        logged = {}
        for leaf in task.lm_eval_tasks:
            for line in (outcome.run_dir / "lm_eval" / f"samples_{leaf}.jsonl").read_text().splitlines():
                sample = json.loads(line)
                logged[(leaf, sample["doc_id"])] = sample["arguments"]
        printed = {(d.lm_eval_task, d.doc_id): json.loads(d.to_json())["requests"] for d in prompts.documents}
        assert logged == {key: [list(r) for r in requests] for key, requests in printed.items()}, task.key
    gsm8k = json.loads((outcome.run_dir / "lm_eval" / "samples_gsm8k.jsonl").read_text().splitlines()[0])
    assert gsm8k["arguments"][0][1]["until"] == [":", "Question:", "Question"]


def test_mmlu_is_the_macro_mean_of_57_subjects(real_run):
    outcome, _ = real_run
    mmlu = outcome.results.task("mmlu")
    raw = json.loads((outcome.run_dir / "lm_eval" / "mmlu.json").read_text())
    subjects = raw["group_subtasks"]["h6_mmlu"]
    assert len(subjects) == 57
    values = [raw["results"][s]["acc,none"] for s in subjects]
    assert mmlu.value == statistics.fmean(values)
    docs = [raw["n-samples"][s]["effective"] for s in subjects]
    assert mmlu.weighted_value == sum(v * n for v, n in zip(values, docs, strict=True)) / sum(docs)
    assert mmlu.documents == 57  # the sample holds one test row per subject
    assert {raw["n-samples"][s]["original"] for s in subjects} == {1}  # the subject filter kept one row each


def test_partial_run_has_no_average_and_says_why(real_run):
    outcome, messages = real_run
    results = outcome.results
    assert results.status == "partial" and results.h6_average is None
    assert f"--limit {REAL_RUN_LIMIT}" in results.partial_reasons
    assert "arc: 2 of 1172 documents" in results.partial_reasons
    assert results.leaderboard_comparable is False
    # Progress, one line per task before and after.
    assert [m for m in messages if m.startswith("[1/6] arc")][0] == "[1/6] arc: 25-shot, acc_norm"


def test_hellaswag_fallback_is_recorded(real_run):
    outcome, messages = real_run
    hellaswag = outcome.results.task("hellaswag")
    assert hellaswag.fewshot.fallback and hellaswag.fewshot.split == "validation"
    assert hellaswag.leaderboard_comparable is False
    assert any("hellaswag: train split missing" in m for m in messages)
    raw = json.loads((outcome.run_dir / "lm_eval" / "hellaswag.json").read_text())
    assert raw["configs"]["hellaswag"]["fewshot_split"] == "validation"
    assert raw["configs"]["hellaswag"]["test_split"] == "validation"
    # the scored document is never among its own exemplars: its query appears once, at the end
    lines = (outcome.run_dir / "lm_eval" / "samples_hellaswag.jsonl").read_text().splitlines()
    assert len(lines) == 2  # --limit 2
    for line in lines:
        sample = json.loads(line)
        query = sample["doc"]["query"]
        for context, _ending in sample["arguments"]:
            assert context.endswith(query) and context.count(query) == 1


def test_data_files_are_hashed(real_run):
    outcome, _ = real_run
    arc = outcome.results.task("arc")
    recorded = {f.split: f.sha256 for f in arc.data_files}
    assert recorded == {
        "test": sha256_and_rows(SAMPLE_DATA / "arc_challenge" / "test.jsonl")[0],
        "train": sha256_and_rows(SAMPLE_DATA / "arc_challenge" / "train.jsonl")[0],
    }
    assert outcome.results.settings.data_source == "local"


@pytest.mark.subprocess
def test_cli_run_over_the_full_snapshot(gguf_path, shared_data, tmp_path):
    """The command itself, on the full real rows (two quick tasks): progress on stderr, table on stdout."""
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "evalsuite", "run", str(gguf_path), "--data-dir", str(shared_data),
         "--tasks", "winogrande,truthfulqa", "--limit", "3", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "[1/2] truthfulqa: 0-shot, acc" in proc.stderr.splitlines()
    assert "[2/2] winogrande: 5-shot, acc" in proc.stderr.splitlines()
    assert "| TruthfulQA (0-shot)" in proc.stdout and "| Winogrande (5-shot)" in proc.stdout
    assert "partial run, no H6 average: tasks not run: arc, hellaswag, mmlu, gsm8k; --limit 3" in proc.stdout
    written = Path(proc.stdout.strip().splitlines()[-1].removeprefix("results: "))
    results = read_results(written)
    assert written.parent.parent == out / "local__SmolLM2-135M-Instruct.Q4_1"
    # Full few-shot pool, no fallback: the tasks themselves are run as the leaderboard ran them.
    assert all(t.leaderboard_comparable for t in results.tasks)
    assert results.task("winogrande").data_files[1].rows == 40398
    assert results.task("winogrande").documents == 3

"""Parity: plain lm-eval, with its own task definitions pointed at the same rows, gives the same numbers.

This is protocol lm-eval (`--protocol lm-eval`), which asks exactly what lm-eval's task definitions ask.
Protocol leaderboard-v1 changes only which requests are built (tests/test_leaderboard_v1.py), not how they
are scored; MMLU's requests are the same under both protocols, so its parity is checked on the default run,
subject by subject on every twentieth of its 57 subjects (3: abstract algebra, high-school computer science,
medical genetics): plain lm-eval's MMLU is this file's costliest part (every tenth subject, 6, took 51 s on one
thread against 13 s, half of it high-school US history's long prompts), every subject's requests take the same
scoring path, and the 57 subjects' requests themselves are checked against the leaderboard's in
tests/test_leaderboard_v1.py, their plain mean in tests/test_run_real.py. ARC runs on its first document, the
other four on the real run's two (LIMITS), each limit an evalsuite run of its own.

No evalsuite code is in this loop: the protocol is written out here from PROTOCOL.md (shots, few-shot
split, metric), the model is loaded by lm-eval's own `hf` backend from the same dequantized folder, and
MMLU's per-subject filter is this file's own. Tasks run one `simple_evaluate` call each, as evalsuite
schedules them, so batches hold the same requests.

With `--backend lm-eval-hf` values must be identical, not close. With the default shared-prefix backend
every choice and generation must be identical and every log-likelihood within 1e-4 (float32 rounding of
a differently shaped forward pass), so accuracy-type values are identical and TruthfulQA's MC2, a
continuous function of the log-likelihoods, agrees to 1e-6.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import REAL_RUN_BATCH_SIZE, REAL_RUN_LIMIT, SAMPLE_DATA

from evalsuite.run import PromptsRequest, RunOutcome, RunRequest, build_prompts, run_suite
from evalsuite.suite import Protocol, prompt_fingerprint

# key -> (lm-eval task, shots, few-shot split, metric, dataset dir, eval split)
PROTOCOL = {
    "arc": ("arc_challenge", 25, "train", "acc_norm,none", "arc_challenge", "test"),
    "hellaswag": ("hellaswag", 10, "train", "acc_norm,none", "hellaswag", "validation"),
    "truthfulqa": ("truthfulqa_mc2", 0, None, "acc,none", "truthful_qa", "validation"),
    "winogrande": ("winogrande", 5, "train", "acc,none", "winogrande", "validation"),
    "gsm8k": ("gsm8k", 5, "train", "exact_match,strict-match", "gsm8k", "test"),
}
# Documents per task: the real run's, but ARC's first only. Its 25-shot requests (~970 tokens each, 4 a document)
# are the costliest of the five in plain lm-eval's and the lm-eval-hf runs (full-vocabulary log-probabilities at
# every position); one document's four requests take the same path, and its 25 exemplars still have to be lm-eval's.
LIMITS = {key: 1 if key == "arc" else REAL_RUN_LIMIT for key in PROTOCOL}


def _member(task: str, shots: int, fewshot_split: str | None, folder: str, eval_split: str) -> dict:
    files = {eval_split: str(SAMPLE_DATA / folder / f"{eval_split}.jsonl")}
    member = {"task": task, "num_fewshot": shots, "dataset_path": "json", "dataset_kwargs": {"data_files": files}}
    pool = SAMPLE_DATA / folder / f"{fewshot_split}.jsonl"
    if fewshot_split and pool.is_file():
        files[fewshot_split] = str(pool)
        member["fewshot_split"] = fewshot_split
    elif fewshot_split:  # no train split in the snapshot: exemplars from the eval split, scored doc excluded
        member |= {
            "fewshot_split": eval_split,
            "test_split": eval_split,
            "training_split": None,
            "validation_split": None,
        }
    return member


def _subject_filter(subject: str):
    return lambda ds: ds.filter(lambda row: row["subject"] == subject)


def _mmlu_parity_files() -> list[Path]:
    """lm-eval's definitions of every twentieth MMLU subject (see the module docstring)."""
    import lm_eval

    folder = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"
    return sorted(folder.glob("mmlu_*.yaml"))[::20]


def _mmlu_parity_subjects() -> list[str]:
    return [path.stem for path in _mmlu_parity_files()]


def _mmlu_group() -> dict:
    members = []
    for path in _mmlu_parity_files():
        member = _member(path.stem, 5, "dev", "mmlu", "test")
        member["process_docs"] = _subject_filter(path.stem.removeprefix("mmlu_"))
        members.append(member)
    return {"group": "parity_mmlu", "task": members}


Responses = dict[str, dict[int, object]]  # lm-eval task -> doc_id -> filtered responses


def _responses(out: dict) -> Responses:
    from lm_eval.utils import handle_non_serializable

    # through JSON, as evalsuite's samples files went: tuples become lists, floats stay exact
    return {
        task: {x["doc_id"]: json.loads(json.dumps(x["filtered_resps"], default=handle_non_serializable)) for x in xs}
        for task, xs in out["samples"].items()
    }


def _plain_lm_eval(model_folder: str) -> tuple[dict[str, float], Responses]:
    import lm_eval
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    # lm-eval's own definitions of these tasks, indexed alone (its full index takes 9 s)
    builtin = Path(lm_eval.__file__).parent / "tasks"
    folders = ["arc", "hellaswag", "truthfulqa", "winogrande", "gsm8k", "mmlu/default"]
    tm = TaskManager(include_defaults=False, include_path=[builtin / folder for folder in folders])
    model_args = {"pretrained": model_folder, "dtype": "float32", "add_bos_token": False}
    common = {
        "batch_size": REAL_RUN_BATCH_SIZE,
        "device": "cpu",
        "task_manager": tm,
        "log_samples": True,
    }
    values: dict[str, float] = {}
    responses: Responses = {}
    for key, (task, shots, fewshot_split, metric, folder, eval_split) in PROTOCOL.items():
        group = {"group": f"parity_{key}", "task": [_member(task, shots, fewshot_split, folder, eval_split)]}
        out = simple_evaluate(model="hf", model_args=model_args, tasks=[group], limit=LIMITS[key], **common)
        assert out["n-shot"][task] == shots
        values[key] = float(out["results"][task][metric])
        responses |= _responses(out)
    out = simple_evaluate(model="hf", model_args=model_args, tasks=[_mmlu_group()], limit=REAL_RUN_LIMIT, **common)
    subjects = sorted(k for k in out["results"] if k.startswith("mmlu_"))
    assert subjects == _mmlu_parity_subjects() and len(subjects) == 3
    values |= {subject: float(out["results"][subject]["acc,none"]) for subject in subjects}
    responses |= _responses(out)
    return values, responses


def _evalsuite_responses(run_dir: Path) -> Responses:
    found: Responses = {}
    for path in (run_dir / "lm_eval").glob("samples_*.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        found[path.stem.removeprefix("samples_")] = {x["doc_id"]: x["filtered_resps"] for x in rows}
    return found


def _close(ours: object, plain: object, tolerance: float) -> bool:
    """Same structure and non-float leaves; floats within `tolerance`."""
    if isinstance(ours, float) and isinstance(plain, float):
        return math.isclose(ours, plain, rel_tol=0, abs_tol=tolerance)
    if isinstance(ours, list) and isinstance(plain, list):
        return len(ours) == len(plain) and all(_close(a, b, tolerance) for a, b in zip(ours, plain, strict=True))
    return ours == plain


def _worst_difference(ours: object, plain: object) -> float:
    if isinstance(ours, float) and isinstance(plain, float):
        return abs(ours - plain)
    if isinstance(ours, list) and isinstance(plain, list):
        return max((_worst_difference(a, b) for a, b in zip(ours, plain, strict=True)), default=0.0)
    return 0.0


@pytest.fixture(scope="module")
def plain_lm_eval(real_run) -> tuple[dict[str, float], Responses]:
    outcome, _ = real_run
    return _plain_lm_eval(outcome.results.settings.model_args["pretrained"])


def _evalsuite_runs(gguf_path: Path, output: Path, **settings: object) -> list[RunOutcome]:
    """evalsuite's runs of the five tasks at their LIMITS (one run per limit), protocol lm-eval."""
    outcomes = []
    for limit in sorted(set(LIMITS.values())):
        request = RunRequest(
            model=str(gguf_path),
            tasks=[key for key in PROTOCOL if LIMITS[key] == limit],
            limit=limit,
            batch_size=REAL_RUN_BATCH_SIZE,
            data_dir=SAMPLE_DATA,
            output_dir=output / f"limit-{limit}",
            log_samples=True,
            protocol=Protocol.LM_EVAL,
            **settings,
        )
        outcome = run_suite(request, progress=lambda message: None)
        assert outcome is not None  # one process: it wrote the run
        assert outcome.results.settings.protocol is Protocol.LM_EVAL
        outcomes.append(outcome)
    return outcomes


def _values_of(outcomes: list[RunOutcome]) -> dict[str, float]:
    return {t.key: t.value for outcome in outcomes for t in outcome.results.tasks}


def _responses_of(outcomes: list[RunOutcome]) -> Responses:
    found: Responses = {}
    for outcome in outcomes:
        found |= _evalsuite_responses(outcome.run_dir)
    return found


@pytest.fixture(scope="module")
def lm_eval_protocol_run(gguf_path, tmp_path_factory) -> list[RunOutcome]:
    """The real run's settings under protocol lm-eval, at LIMITS (MMLU: see the module docstring)."""
    return _evalsuite_runs(gguf_path, tmp_path_factory.mktemp("lm-eval-protocol"))


@pytest.mark.lm_eval
def test_mmlu_requests_are_the_same_under_both_protocols():
    fingerprints = {
        protocol: prompt_fingerprint(
            next(
                build_prompts(PromptsRequest(tasks=["mmlu"], limit=1, data_dir=SAMPLE_DATA, protocol=protocol))
            ).documents
        )
        for protocol in Protocol
    }
    assert len(set(fingerprints.values())) == 1


def test_default_backend_matches_plain_lm_eval(real_run, lm_eval_protocol_run, plain_lm_eval):
    outcomes = lm_eval_protocol_run
    mmlu_run, _ = real_run  # the default run's MMLU: its requests are the same under protocol lm-eval
    assert {outcome.results.settings.backend for outcome in outcomes} == {"shared-prefix"}
    plain, plain_responses = plain_lm_eval
    subjects = _mmlu_parity_subjects()
    mmlu_values = {s.lm_eval_task: s.value for s in mmlu_run.results.task("mmlu").subtasks}
    ours = _values_of(outcomes) | {s: mmlu_values[s] for s in subjects}
    print("\nparity (evalsuite shared-prefix vs plain lm-eval):\n" + json.dumps({k: [ours[k], plain[k]] for k in ours}))
    assert {k: v for k, v in ours.items() if k != "truthfulqa"} == {k: v for k, v in plain.items() if k != "truthfulqa"}
    assert ours["truthfulqa"] == pytest.approx(plain["truthfulqa"], abs=1e-6)
    our_responses = _responses_of(outcomes) | {
        task: docs for task, docs in _evalsuite_responses(mmlu_run.run_dir).items() if task in subjects
    }
    assert our_responses.keys() == plain_responses.keys() and len(our_responses) == 5 + 3
    for task, docs in plain_responses.items():
        assert docs.keys() == our_responses[task].keys()
        for doc_id, expected in docs.items():
            assert _close(our_responses[task][doc_id], expected, 1e-4), (task, doc_id)
    worst = max(
        _worst_difference(our_responses[task][doc_id], expected)
        for task, docs in plain_responses.items()
        for doc_id, expected in docs.items()
    )
    print(f"largest log-likelihood difference over all requests: {worst:.2e}")


def test_lm_eval_hf_backend_equals_plain_lm_eval(gguf_path, tmp_path, plain_lm_eval):
    # MMLU (its subjects' minutes of CPU with this backend) is left to the test above: its requests take
    # the same HFLM path as the other five tasks' here.
    outcomes = _evalsuite_runs(gguf_path, tmp_path, backend="lm-eval-hf")
    assert {outcome.results.settings.backend for outcome in outcomes} == {"lm-eval-hf"}
    plain, plain_responses = plain_lm_eval
    ours = _values_of(outcomes)
    print("\nparity (evalsuite lm-eval-hf vs plain lm-eval):\n" + json.dumps({k: [ours[k], plain[k]] for k in ours}))
    assert ours == {key: plain[key] for key in PROTOCOL}
    # Beyond the numbers: every log-likelihood and every generation, request by request.
    our_responses = _responses_of(outcomes)
    assert len(our_responses) == 5
    assert our_responses == {task: plain_responses[task] for task in our_responses}

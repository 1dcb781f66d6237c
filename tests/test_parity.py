"""Parity: plain lm-eval, with its own task definitions pointed at the same rows, gives the same numbers.

No evalsuite code is in this loop: the protocol is written out here from PROTOCOL.md (shots, few-shot
split, metric), the model is loaded by lm-eval's own `hf` backend from the same dequantized folder, and
MMLU's per-subject filter is this file's own. Tasks run one `simple_evaluate` call each, as evalsuite
schedules them, so batches hold the same requests. Values must be identical, not close.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from conftest import REAL_RUN_BATCH_SIZE, REAL_RUN_LIMIT, SAMPLE_DATA

# key -> (lm-eval task, shots, few-shot split, metric, dataset dir, eval split)
PROTOCOL = {
    "arc": ("arc_challenge", 25, "train", "acc_norm,none", "arc_challenge", "test"),
    "hellaswag": ("hellaswag", 10, "train", "acc_norm,none", "hellaswag", "validation"),
    "truthfulqa": ("truthfulqa_mc2", 0, None, "acc,none", "truthful_qa", "validation"),
    "winogrande": ("winogrande", 5, "train", "acc,none", "winogrande", "validation"),
    "gsm8k": ("gsm8k", 5, "train", "exact_match,strict-match", "gsm8k", "test"),
}


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


def _mmlu_group() -> dict:
    import lm_eval

    folder = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"
    members = []
    for path in sorted(folder.glob("mmlu_*.yaml")):
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
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    tm = TaskManager()  # lm-eval's full default index
    model_args = {"pretrained": model_folder, "dtype": "float32", "add_bos_token": False}
    common = {
        "batch_size": REAL_RUN_BATCH_SIZE,
        "device": "cpu",
        "limit": REAL_RUN_LIMIT,
        "task_manager": tm,
        "log_samples": True,
    }
    values: dict[str, float] = {}
    responses: Responses = {}
    for key, (task, shots, fewshot_split, metric, folder, eval_split) in PROTOCOL.items():
        group = {"group": f"parity_{key}", "task": [_member(task, shots, fewshot_split, folder, eval_split)]}
        out = simple_evaluate(model="hf", model_args=model_args, tasks=[group], **common)
        assert out["n-shot"][task] == shots
        values[key] = out["results"][task][metric]
        responses |= _responses(out)
    out = simple_evaluate(model="hf", model_args=model_args, tasks=[_mmlu_group()], **common)
    subjects = [k for k in out["results"] if k.startswith("mmlu_")]
    assert len(subjects) == 57
    values["mmlu"] = statistics.fmean(out["results"][s]["acc,none"] for s in subjects)
    responses |= _responses(out)
    return values, responses


def _evalsuite_responses(run_dir: Path) -> Responses:
    found: Responses = {}
    for path in (run_dir / "lm_eval").glob("samples_*.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        found[path.stem.removeprefix("samples_")] = {x["doc_id"]: x["filtered_resps"] for x in rows}
    return found


def test_evalsuite_equals_plain_lm_eval(real_run):
    outcome, _ = real_run
    model_folder = outcome.results.settings.model_args["pretrained"]
    plain, plain_responses = _plain_lm_eval(model_folder)
    ours = {t.key: t.value for t in outcome.results.tasks}
    print("\nparity (evalsuite vs plain lm-eval):\n" + json.dumps({k: [ours[k], float(plain[k])] for k in ours}))
    assert ours == {k: float(v) for k, v in plain.items()}
    # Beyond the six numbers: every log-likelihood and every generation, request by request.
    our_responses = _evalsuite_responses(outcome.run_dir)
    assert len(our_responses) == 5 + 57
    assert our_responses == plain_responses

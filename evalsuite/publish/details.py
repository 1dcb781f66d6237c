"""A run's logged samples in the leaderboard's details layout (`evalsuite details export`), and published as a Hub
dataset in one commit (`evalsuite details push`), so that what reads the leaderboard's details (its card's
configs, the `latest` split, lighteval's columns) reads evalsuite's too.

What is written (archive/details.py has the format):
- `results_<ts>.json`: the leaderboard's results file (`config_general`, `results` keyed `harness|<task>|<shots>`
  with the leaderboard's metric names, `versions`), and `results_<ts>.parquet`, the same as one row;
- `<ts>/details_harness|<task>|<shots>_<ts>.parquet`: one row per document, the 2024 generation's columns and
  types; the log-likelihoods and texts are lm-eval's, as the run logged them;
- `README.md`: the card, its YAML `configs` naming each task's file per run and `latest`, as the writer did.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalsuite.archive import details as layout
from evalsuite.archive.tasks import LEADERBOARD_TASKS
from evalsuite.errors import OptionError, OutputDirError, ResultsSchemaError
from evalsuite.files import write_folder
from evalsuite.results import Run, TaskResult
from evalsuite.results.lm_eval_files import LoggedDocument, logged_documents


def export_details(run: Run, folder: Path) -> list[str]:
    """Write the run's samples as the leaderboard's details repo into `folder` (new, or empty), all at once;
    returns the files written, relative to it. OptionError when the run kept no samples."""
    if folder.exists():
        raise OptionError(f"{folder}: already exists; give a new folder (nothing is written over)")
    existing = next((p for p in folder.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputDirError(f"{folder}: {existing} is not a folder; give a new folder under one")
    results = run.results
    timestamp = results.created_at.strftime("%Y-%m-%dT%H-%M-%S.%f")
    files: dict[str, bytes] = {}
    scores: dict[str, dict[str, float]] = {}
    for task in results.tasks:
        for leaf, documents in _documents(run, task).items():
            name = layout.task_name(task.key, _subject(task, leaf))
            rows = [_row(task, document) for document in documents]
            files[f"{timestamp}/{layout.details_file_name(name, timestamp)}"] = _parquet(rows)
            scores[name] = _scores(rows)
    document = _results_document(run, scores)
    files[f"results_{timestamp}.json"] = json.dumps(document, indent=2).encode()
    files[f"results_{timestamp}.parquet"] = _parquet([document])  # the JSON as one row, as the writer made it
    files["README.md"] = _card(results.model.id, sorted(scores), timestamp).encode()
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        write_folder(folder, files)
    except OSError as e:
        raise OutputDirError(f"{folder}: cannot write it ({e.strerror or e})") from e
    return sorted(files)


def _documents(run: Run, task: TaskResult) -> dict[str, list[LoggedDocument]]:
    found = {}
    for leaf in task.lm_eval_tasks:
        documents = logged_documents(run.folder, leaf, task.metric.filter)
        if documents is None:
            raise ResultsSchemaError(f"{run.folder}: the run kept no samples of {leaf}: run it again with "
                                     "--log-samples to export its details")  # fmt: skip
        found[leaf] = sorted(documents, key=lambda d: d.doc_id)
    return found


def _subject(task: TaskResult, leaf: str) -> str | None:
    """MMLU's subject of an lm-eval task: `mmlu_anatomy` -> `anatomy` (the harness's `hendrycksTest-anatomy`)."""
    return leaf.removeprefix("mmlu_") if task.key == "mmlu" else None


def _metric_sources(task: TaskResult) -> dict[str, str]:
    """The leaderboard's metrics of the task's details (archive/tasks.py) -> the run's per-document metric each is:
    the one the leaderboard showed is the task's own (lm-eval's truthfulqa_mc2 calls MC2 `acc`, GSM8K's `acc` is
    its `exact_match`), the others have lm-eval's name (ARC's and HellaSwag's `acc`)."""
    leaderboard = LEADERBOARD_TASKS[task.key]
    return {name: task.metric.name if name == leaderboard.metric else name for name in leaderboard.details_metrics}


def _row(task: TaskResult, document: LoggedDocument) -> dict[str, Any]:
    metrics = {ours_to: document.metrics[name] for ours_to, name in _metric_sources(task).items()
               if name in document.metrics}  # fmt: skip
    prompt = document.contexts[0]
    example = prompt.rsplit("\n\n", 1)[-1]  # the document's own text, after the few-shot exemplars
    if document.generated is not None:
        return layout.detail_row(prompt=prompt, example=example, choices=[], metrics=metrics,
                                 gold=[str(document.target)], generated=document.generated,
                                 shots=task.num_fewshot)  # fmt: skip
    return layout.detail_row(prompt=prompt, example=example, choices=document.continuations, metrics=metrics,
                             gold_index=_gold(task, document), loglikelihoods=document.loglikelihoods,
                             shots=task.num_fewshot)  # fmt: skip


def _gold(task: TaskResult, document: LoggedDocument) -> list[int]:
    if task.key == "truthfulqa":  # lm-eval's target is 0; the right answers are MC2's labels
        labels = document.doc.get("mc2_targets", {}).get("labels", [])
        return [i for i, label in enumerate(labels) if label == 1]
    return [int(document.target)] if isinstance(document.target, int) else []


def _scores(rows: list[dict[str, Any]]) -> dict[str, float]:
    names = rows[0]["metrics"] if rows else {}
    out: dict[str, float] = {}
    for name in names:
        values = [row["metrics"][name] for row in rows]
        mean = sum(values) / len(values)
        out[name] = mean
        spread = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
        out[f"{name}_stderr"] = math.sqrt(spread / len(values))
    return out


def _results_document(run: Run, scores: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """The leaderboard's results file of the run (archive/results_files.py reads it)."""
    results = run.results
    model = results.model
    return {
        "config_general": {
            "model_name": model.id,
            "model_sha": model.sha or "",
            "model_dtype": f"torch.{model.dtype.value}" if model.precision.dtype else str(model.precision.value),
            "model_size": "",
            "max_samples": None,
            "job_id": "",
            "evalsuite_run_id": results.run_id,
            "lm_eval_version": results.versions.lm_eval,
        },
        "results": {name: dict(values) for name, values in sorted(scores.items())},
        # the leaderboard's task versions: MMLU's 1 (its version 0, an early prompt, was left out), the others 0
        "versions": {name: 1 if "hendrycksTest" in name else 0 for name in sorted(scores)},
    }


def _parquet(rows: list[dict[str, Any]]) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows)
    table = table.select(sorted(table.column_names))  # the writer sorted its columns
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _card(model: str, tasks: list[str], timestamp: str) -> str:
    """The details card: YAML `configs` as the leaderboard's writer made them (one per task, a split per run
    and `latest`; `results` for the results file), through huggingface_hub's card metadata."""
    from huggingface_hub import DatasetCard, DatasetCardData

    split = layout.split_name(timestamp)
    configs = [
        {
            "config_name": layout.config_name(task),
            "data_files": [
                {"split": split, "path": [f"**/{layout.details_file_name(task, timestamp)}"]},
                {"split": layout.LATEST, "path": [f"**/{layout.details_file_name(task, timestamp)}"]},
            ],
        }
        for task in tasks
    ]
    configs.append({"config_name": "results", "data_files": [
        {"split": split, "path": [f"results_{timestamp}.parquet"]},
        {"split": layout.LATEST, "path": [f"results_{timestamp}.parquet"]},
    ]})  # fmt: skip
    data = DatasetCardData(pretty_name=f"Evaluation run of {model}", configs=configs)
    body = (
        f"# Evaluation run of {model}\n\n"
        f"Per-document details of an evalsuite run of {model} on the Open LLM Leaderboard (v1) tasks, in the "
        "layout of the leaderboard's details datasets: one configuration per task, a split per run and "
        "`latest`.\n\n"
        "These numbers were measured by evalsuite, not by the leaderboard.\n"
    )
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))

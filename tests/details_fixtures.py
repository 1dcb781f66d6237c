"""Files in the layout of the leaderboard's details datasets, for tests: no real details file was found in the
stored corpora (docs/archive.md), so they are written the way the leaderboard's writer wrote them.

- 2024 generation: `Detail` below has the fields, order and defaults of lighteval's `DetailsLogger.Detail`
  (src/lighteval/logging/info_loggers.py, lighteval e469d7e, unchanged to 1fb7968), and `write_2024` serializes
  as its `EvaluationTracker.save` did: `datasets.Dataset.from_list` of `asdict(detail)`, falling back to
  `str(value)` for every field when Arrow refuses a row, columns sorted by name, `to_parquet`. Multiple-choice
  predictions are (log-likelihood, is-greedy) pairs, as its `LoglikelihoodReturn.result` held them.
- 2023 generation: flat metric columns, `gold` an int, `example` the document's id, `num_effective_few_shots`
  -1 and a `hashes` struct (the issue's description of details_Corianas__111m, 2023-07-19).
- the card's YAML `configs` as `EvaluationTracker.recreate_metadata_card` made them.

The rows' contents: prompts are the leaderboard's own (`../shared/data/v1-reference`, whose contexts were
checked against the `full_prompt` of the leaderboard's published details); log-likelihoods, texts and
metrics are those of a real evalsuite run of SmolLM2 (SmolLM2 was never on the leaderboard, so no values of
its own exist).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conftest import SHARED_DATA

from evalsuite.archive import details as layout
from evalsuite.results.lm_eval_files import LoggedDocument

REFERENCE = SHARED_DATA.parent / "v1-reference"
REFERENCE_FILES = {"arc": "arc", "truthfulqa": "truthfulqa", "winogrande": "winogrande", "gsm8k": "gsm8k"}


@dataclass
class Detail:
    example: str = ""
    instruction: str = ""
    full_prompt: str = ""
    num_effective_few_shots: int = 0
    num_asked_few_shots: int = 0
    predictions: list = field(default_factory=list)
    input_tokens: list = field(default_factory=list)
    cont_tokens: list = field(default_factory=list)
    truncated: list = field(default_factory=list)
    padded: list = field(default_factory=list)
    gold: list = field(default_factory=list)
    pred_logits: list = field(default_factory=list)
    choices: list = field(default_factory=list)
    gold_index: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


def write_2024(path: Path, details: list[Detail], force_str: bool = False) -> None:
    """As EvaluationTracker.save wrote a task's details (`force_str`: as its fallback did)."""
    from datasets import Dataset

    try:
        if force_str:
            raise TypeError("the writer's fallback, asked for")
        dataset = Dataset.from_list([asdict(d) for d in details])
    except Exception:
        dataset = Dataset.from_list([{k: str(v) for k, v in asdict(d).items()} for d in details])
    dataset = dataset.select_columns(sorted(dataset.column_names))
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.to_parquet(path.as_posix())


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def reference_requests(key: str) -> dict[int, list]:
    """The leaderboard's requests of each document of a task (v1-reference), by its index in Hub order."""
    with gzip.open(REFERENCE / f"{REFERENCE_FILES[key]}.jsonl.gz", "rt", encoding="utf-8") as f:
        return {row["doc"]: row["requests"] for row in map(json.loads, f)}


def detail_of(key: str, requests: list, ours: LoggedDocument, shots: int) -> Detail:
    """The leaderboard's row of a document: its prompt and choices from its requests, the values the run measured."""
    prompt = requests[0][1][0]
    example = prompt.rsplit("\n\n", 1)[-1]
    if key == "gsm8k":
        return Detail(
            example=example,
            full_prompt=prompt,
            num_effective_few_shots=shots,
            num_asked_few_shots=shots,
            predictions=[ours.generated],
            gold=[str(ours.target)],
            metrics={"acc": ours.metrics["exact_match"]},
        )
    choices = [r[1][1] for r in requests]
    lls = {c: (ll, greedy) for c, (ll, greedy) in zip(ours.continuations, ours.loglikelihoods, strict=True)}
    if key == "truthfulqa":  # MC1's targets, then MC2's: the MC1 ones are MC2 texts, scored in the same context
        mc1 = len(choices) - len(ours.continuations)
        predictions = [list(lls[c]) for c in choices]
        labels = ours.doc["mc1_targets"]["labels"] + ours.doc["mc2_targets"]["labels"]
        best_mc1 = max(range(mc1), key=lambda i: predictions[i][0])
        metrics = {"mc1": 1.0 if best_mc1 == 0 else 0.0, "mc2": ours.metrics["acc"]}
        gold_index = [i for i, label in enumerate(labels) if label == 1]
    else:
        predictions = [list(ours.loglikelihoods[i]) for i in range(len(choices))]
        metrics = {m: ours.metrics[m] for m in ("acc", "acc_norm") if m in ours.metrics}
        gold_index = [int(ours.target)] if isinstance(ours.target, int) else [int(ours.doc["answer"]) - 1]
    return Detail(
        example=example,
        full_prompt=prompt,
        num_effective_few_shots=shots,
        num_asked_few_shots=shots,
        predictions=predictions,
        choices=choices,
        gold_index=gold_index,
        metrics=metrics,
    )


def row_2023(detail: Detail, ours: LoggedDocument) -> dict[str, Any]:
    """The same document as a 2023-generation row: flat metrics, `gold` an int, `example` the document's id."""
    row: dict[str, Any] = {
        "choices": detail.choices,
        "example": str(ours.doc.get("id", detail.example)),
        "full_prompt": detail.full_prompt,
        "gold": detail.gold_index[0] if detail.gold_index else 0,
        "hashes": {"example": "", "full_prompt": "", "input_tokens": "", "cont_tokens": ""},
        "num_effective_few_shots": -1,
        "predictions": [p[0] for p in detail.predictions],
    }
    return row | detail.metrics


def card(configs: dict[str, dict[str, list[str]]]) -> str:
    """A details card: config -> split -> paths, as recreate_metadata_card wrote them."""
    import yaml

    entries = [
        {"config_name": name, "data_files": [{"split": split, "path": paths} for split, paths in splits.items()]}
        for name, splits in configs.items()
    ]
    return f"---\n{yaml.safe_dump({'configs': entries}, sort_keys=False)}---\n\n# Evaluation run\n"


def results_file(path: Path, model: str, timestamp: str, scores: dict[str, dict[str, float]]) -> None:
    """The leaderboard's results file of a run (config_general, results, versions)."""
    document = {
        "config_general": {"model_name": model, "model_sha": "", "model_dtype": "torch.float32", "max_samples": None},
        "results": scores,
        "versions": {name: 0 for name in scores},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))


def means(details: list[Detail]) -> dict[str, float]:
    names = details[0].metrics
    return {name: sum(d.metrics[name] for d in details) / len(details) for name in names} | {
        f"{name}_stderr": 0.1 for name in names
    }


TIMESTAMP = "2024-01-06T09-45-44.755529"


def leaderboard_copy(
    folder: Path, model: str, by_task: dict[str, list[Detail]], shots: dict[str, int], timestamp: str = TIMESTAMP
) -> tuple[Path, Path]:
    """A details repo (its card, one run) and a results copy laid out as the Hub's (`<org>/<name>/results_*.json`),
    from the rows of each suite task; returns (details folder, results folder)."""
    details_dir, results_dir = folder / "details", folder / "results"
    configs, scores = {}, {}
    for key, rows in by_task.items():
        task = layout.task_name(key)
        name = layout.details_file_name(task, timestamp)
        write_2024(details_dir / timestamp / name, rows)
        configs[layout.config_name(task)] = {layout.split_name(timestamp): [f"**/{name}"], "latest": [f"**/{name}"]}
        scores[task] = means(rows)
    (details_dir / "README.md").write_text(card(configs))
    results_file(details_dir / f"results_{timestamp}.json", model, timestamp, scores)
    results_file(results_dir / model / f"results_{timestamp}.json", model, timestamp, scores)
    return details_dir, results_dir

"""The rows of a task's splits: one read that hashes a snapshot file and checks every row, and what a row
must hold for its task to score it (the columns, and values such as an answer among the choices)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evalsuite.errors import DataDirError
from evalsuite.suite import ColumnType, TaskSpec

_JSON_TYPES: dict[ColumnType, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "array": list,
    "object": dict,
}


def sha256_and_rows(path: Path, spec: TaskSpec | None = None) -> tuple[str, int]:
    """The file's sha256 and its row count. Every row must be a JSON object and, given the task, have its
    columns and sane values (checked here, in the one read, so a corrupt row stops a run before the model
    loads, naming its file and line)."""
    digest = hashlib.sha256()
    rows = 0
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            digest.update(line)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:  # JSONDecodeError and UnicodeDecodeError alike
                raise DataDirError(f"{path}:{number}: not a JSON row ({e}); fix or remove the line") from e
            problem = row_problem(row, spec) if spec is not None else None
            if problem is None and not isinstance(row, dict):
                problem = "a row must be a JSON object"
            if problem:
                raise DataDirError(f"{path}:{number}: {problem}; fix or remove the row")
            rows += 1
    return digest.hexdigest(), rows


def row_problem(row: object, spec: TaskSpec) -> str | None:
    """What is wrong with one row of a task's split: not an object, a missing or ill-typed column, or a value
    the task cannot score (an answer that is not among the choices, an unknown subject)."""
    if problem := _schema_problem(row, spec.data.columns):
        return problem
    if not isinstance(row, dict):  # _schema_problem says so first; this tells the type checker
        return "a row must be a JSON object"
    check = _VALUE_CHECKS.get(spec.key)
    return check(row, spec) if check else None


def _arc_values(row: dict[str, Any], spec: TaskSpec) -> str | None:
    choices = row["choices"]
    labels, texts = choices.get("label"), choices.get("text")
    if not isinstance(labels, list) or not isinstance(texts, list) or len(labels) != len(texts) or not labels:
        return "choices must hold `label` and `text` lists of one length"
    if row["answerKey"] not in labels:
        return f"answerKey {row['answerKey']!r} is not among the choice labels {labels}"
    return None


def _hellaswag_values(row: dict[str, Any], spec: TaskSpec) -> str | None:
    if not (row["label"].isdigit() and int(row["label"]) < len(row["endings"])):
        return f"label {row['label']!r} does not index one of the {len(row['endings'])} endings"
    return None


def _mmlu_values(row: dict[str, Any], spec: TaskSpec) -> str | None:
    column = spec.data.subset_column
    if column and spec.data.subsets and row[column] not in spec.data.subsets:
        return f"{column} {row[column]!r} is not one of the {len(spec.data.subsets)} MMLU subjects"
    if not 0 <= row["answer"] < len(row["choices"]):
        return f"answer {row['answer']} does not index one of the {len(row['choices'])} choices"
    return None


def _truthfulqa_values(row: dict[str, Any], spec: TaskSpec) -> str | None:
    targets = row["mc2_targets"]
    choices, labels = targets.get("choices"), targets.get("labels")
    if not isinstance(choices, list) or not isinstance(labels, list) or len(choices) != len(labels):
        return "mc2_targets must hold `choices` and `labels` lists of one length"
    if not set(labels) <= {0, 1} or 1 not in labels:
        return "mc2_targets labels must be 0/1 with at least one true answer"
    return None


def _winogrande_values(row: dict[str, Any], spec: TaskSpec) -> str | None:
    return None if row["answer"] in ("1", "2") else f"answer {row['answer']!r} is neither '1' nor '2'"


def _gsm8k_values(row: dict[str, Any], spec: TaskSpec) -> str | None:
    return None if "####" in row["answer"] else "answer has no `#### <number>` final line"


# value checks per suite task key (the suite's six datasets)
_VALUE_CHECKS: dict[str, Callable[[dict[str, Any], TaskSpec], str | None]] = {
    "arc": _arc_values,
    "hellaswag": _hellaswag_values,
    "mmlu": _mmlu_values,
    "truthfulqa": _truthfulqa_values,
    "winogrande": _winogrande_values,
    "gsm8k": _gsm8k_values,
}


def _schema_problem(row: object, columns: dict[str, ColumnType]) -> str | None:
    if not isinstance(row, dict):
        return "a row must be a JSON object"
    for name, kind in columns.items():
        if name not in row:
            return f"column {name!r} missing"
        value = row[name]
        expected = _JSON_TYPES[kind]
        if not isinstance(value, expected) or (kind == "integer" and isinstance(value, bool)):
            return f"column {name!r} should be {kind}, found {type(value).__name__}"
    return None

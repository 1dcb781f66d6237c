"""The archived leaderboard's results files: `<org>/<model>/results_<timestamp>.json` in the Hub dataset
`open-llm-leaderboard-old/results`, full precision per task and per MMLU subject, with standard errors.

A file holds `config_general` (the model, the commit evaluated, its dtype, `max_samples` for test runs) and
`results`, keyed `harness|<task>|<shots>`. A model may have several files; the leaderboard merged them oldest to
newest, each later file's tasks replacing the earlier ones' (its Space's src/leaderboard/read_evals.py), took
each column as the mean of the matching keys (MMLU: the plain mean of its 57 subjects) and skipped an MMLU of
the wrong version and a NaN TruthfulQA (as 0). This module does the same, per task, keeping stderrs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsuite.archive.contents import precision_rank
from evalsuite.archive.tasks import LEADERBOARD_TASKS, MMLU_SUBJECTS
from evalsuite.errors import ArchiveError

# suite task key -> (the results key, or the prefix of its subjects' keys; the metric the leaderboard showed):
# archive/tasks.py's table as the results files name it
TASK_KEYS: dict[str, tuple[str, str]] = {
    t.key: (t.prefix if t.key == "mmlu" else t.name(), t.metric) for t in LEADERBOARD_TASKS.values()
}
_MMLU = LEADERBOARD_TASKS["mmlu"]
# the leaderboard left out MMLU results of this version (an early, broken prompt)
_STALE_MMLU = (_MMLU.name("abstract_algebra"), 0)


@dataclass(frozen=True)
class PublishedScore:
    value: float  # a fraction, full precision
    stderr: float | None


@dataclass(frozen=True)
class PublishedResult:
    """What the leaderboard measured for one evaluation of a model, task by task (fractions, full precision)."""

    model: str
    sha: str | None  # the model commit it evaluated
    dtype: str | None  # `torch.float16`, as the file says
    files: tuple[str, ...]  # the results files merged, oldest first
    tasks: dict[str, PublishedScore]  # suite key -> score (MMLU: the plain mean of its subjects)
    mmlu_subjects: dict[str, PublishedScore] = field(default_factory=dict)  # subject -> score
    max_samples: int | None = None  # set for the leaderboard's test runs: not a full evaluation

    @property
    def precision(self) -> str | None:
        """`float16`, as the contents table names precisions."""
        return self.dtype.removeprefix("torch.") if self.dtype else None


def read_results_files(paths: Sequence[Path], model: str, precision: str | None = None) -> PublishedResult:
    """A model's results files merged as the leaderboard merged them, for one precision (its files of other
    dtypes are other evaluations): `precision` (as the contents table names it, e.g. `float16`), else the one
    that stands for the model (full precision first: contents.PRECISION_ORDER)."""
    if not paths:
        raise ArchiveError(f"{model}: the archive holds no results file for it")
    documents = []
    for path in sorted(paths, key=lambda p: _timestamp_of(p.name)):
        try:
            documents.append((path.name, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ArchiveError(f"{path}: not a results file of the leaderboard ({type(e).__name__})") from e
    by_precision: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, document in documents:
        by_precision.setdefault(_precision_of(name, document), []).append((name, document))
    wanted = precision or min(by_precision, key=precision_rank)
    if wanted not in by_precision:
        raise ArchiveError(
            f"{model}: no results file of its {wanted} evaluation (they hold {', '.join(sorted(by_precision))})"
        )
    return merge_results(by_precision[wanted], model)


def _precision_of(name: str, document: Any) -> str:
    config = document.get("config_general", document.get("config")) if isinstance(document, dict) else None
    dtype = config.get("model_dtype") if isinstance(config, dict) else None
    if not isinstance(dtype, str):
        raise ArchiveError(f"{name}: not a results file of the leaderboard (no config_general.model_dtype)")
    return dtype.removeprefix("torch.")


def merge_results(documents: Sequence[tuple[str, dict[str, Any]]], model: str) -> PublishedResult:
    """(file name, parsed JSON) pairs, oldest first, merged task by task (a later file's task replaces)."""
    tasks: dict[str, PublishedScore] = {}
    subjects: dict[str, PublishedScore] = {}
    sha = dtype = None
    max_samples = None
    for name, document in documents:
        results, config = document.get("results"), document.get("config_general", document.get("config"))
        if not isinstance(results, dict) or not isinstance(config, dict):
            raise ArchiveError(f"{name}: not a results file of the leaderboard (no `results` and `config_general`)")
        sha, dtype = config.get("model_sha") or sha, config.get("model_dtype") or dtype
        max_samples = config.get("max_samples") if config.get("max_samples") is not None else max_samples
        stale_mmlu = (document.get("versions") or {}).get(_STALE_MMLU[0]) == _STALE_MMLU[1]
        for key, (results_key, metric) in TASK_KEYS.items():
            if key == "mmlu":
                if stale_mmlu:
                    continue
                found = {k.removeprefix(results_key).removesuffix(f"|{_MMLU.shots}"): v for k, v in results.items()
                         if k.startswith(results_key)}  # fmt: skip
                if found:
                    subjects = {subject: _score(name, _MMLU.name(subject), row, metric)
                                for subject, row in sorted(found.items())}  # fmt: skip
                    tasks[key] = _macro_mean(name, subjects)
            elif results_key in results:
                tasks[key] = _score(name, results_key, results[results_key], metric, nan_as_zero=key == "truthfulqa")
    return PublishedResult(
        model=model,
        sha=sha,
        dtype=dtype,
        files=tuple(name for name, _ in documents),
        tasks=tasks,
        mmlu_subjects=subjects,
        max_samples=int(max_samples) if max_samples is not None else None,
    )


def _score(file: str, key: str, row: Any, metric: str, nan_as_zero: bool = False) -> PublishedScore:
    value = row.get(metric) if isinstance(row, dict) else None
    if not isinstance(value, int | float):
        raise ArchiveError(f"{file}: {key} has no {metric}")
    if math.isnan(value) and nan_as_zero:
        value = 0.0  # the leaderboard showed a NaN TruthfulQA as 0
    if not 0 <= value <= 1:
        raise ArchiveError(f"{file}: {key} {metric} is {value}, not a fraction")
    stderr = row.get(f"{metric}_stderr")
    stderr = float(stderr) if isinstance(stderr, int | float) and math.isfinite(stderr) and stderr >= 0 else None
    return PublishedScore(float(value), stderr)


def _macro_mean(file: str, subjects: dict[str, PublishedScore]) -> PublishedScore:
    if len(subjects) != MMLU_SUBJECTS:
        raise ArchiveError(f"{file}: MMLU has {len(subjects)} subjects, not {MMLU_SUBJECTS}")
    k = len(subjects)
    value = sum(s.value for s in subjects.values()) / k
    stderrs = [s.stderr for s in subjects.values() if s.stderr is not None]
    stderr = math.sqrt(sum(se * se for se in stderrs)) / k if len(stderrs) == k else None
    return PublishedScore(value, stderr)


def _timestamp_of(name: str) -> str:
    """`results_2023-12-24T17-26-27.123456.json` -> its timestamp, which sorts as text."""
    return name.removeprefix("results_").removesuffix(".json")

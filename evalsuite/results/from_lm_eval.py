"""A task's result from lm-eval's output: the suite's metric per lm-eval task, aggregated (MMLU: the plain mean of
the 57 subjects, as the leaderboard averaged them), and why a run is partial.

lm-eval's result keys ("acc_norm,none", "acc_norm_stderr,none") are read through evalsuite.results.lm_eval_files
and parsed here, nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from evalsuite.errors import RunError
from evalsuite.results import lm_eval_files
from evalsuite.results.schema import DataFileInfo, FewshotInfo, SubtaskScore, TaskResult
from evalsuite.suite import TaskSpec


def _float(value: Any) -> float | None:
    """lm-eval reports numpy floats, and "N/A" for a stderr it could not compute."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _leaf_scores(spec: TaskSpec, output: Mapping[str, Any]) -> list[SubtaskScore]:
    leaves = lm_eval_files.subtask_names(output, spec.lm_eval_group)
    if not leaves:
        raise RunError(f"lm-eval output has no subtasks for group {spec.lm_eval_group!r}")
    scores = []
    for leaf in leaves:
        shots = lm_eval_files.shots(output, leaf)
        if shots != spec.num_fewshot:
            raise RunError(f"{leaf} ran {shots}-shot but the suite says {spec.num_fewshot}-shot")
        row = lm_eval_files.metrics(output, leaf)
        if spec.metric.lm_eval_key not in row:
            found = ", ".join(k for k in row if "," in k and "_stderr" not in k)
            raise RunError(f"{leaf}: lm-eval reported no {spec.metric} (found: {found or 'nothing'})")
        value = _float(row[spec.metric.lm_eval_key])
        if value is None:
            raise RunError(f"{leaf}: lm-eval reported {spec.metric} = {row[spec.metric.lm_eval_key]} (not a number)")
        scores.append(
            SubtaskScore(
                lm_eval_task=leaf,
                value=value,
                stderr=_float(row.get(spec.metric.lm_eval_stderr_key)),
                documents=lm_eval_files.documents_scored(output, leaf),
            )
        )
    return scores


def aggregate(spec: TaskSpec, scores: list[SubtaskScore]) -> tuple[float, float | None, float | None]:
    """(value, stderr, weighted value) of a task from its leaves.

    macro_mean is the leaderboard's MMLU number: the plain mean of the subjects. Its stderr treats the
    subjects as independent: sqrt(sum se_i^2) / k. The weighted value is lm-eval's doc-weighted mean.
    """
    if spec.aggregation == "single":
        if len(scores) != 1:
            raise RunError(f"{spec.key}: expected one lm-eval task, got {len(scores)}")
        return scores[0].value, scores[0].stderr, None
    k = len(scores)
    value = sum(s.value for s in scores) / k
    stderrs = [s.stderr for s in scores if s.stderr is not None]
    stderr = math.sqrt(sum(se * se for se in stderrs)) / k if len(stderrs) == k else None
    total = sum(s.documents for s in scores)
    weighted = sum(s.value * s.documents for s in scores) / total
    return value, stderr, weighted


def task_result(
    spec: TaskSpec,
    output: Mapping[str, Any],
    *,
    fewshot: FewshotInfo,
    data_files: list[DataFileInfo],
    leaderboard_differences: list[str],
    seconds: float,
    document_ids: dict[str, list[int]] | None = None,
    prompt_sha256: str | None = None,
) -> TaskResult:
    scores = _leaf_scores(spec, output)
    value, stderr, weighted = aggregate(spec, scores)
    documents = sum(s.documents for s in scores)
    return TaskResult(
        key=spec.key,
        display_name=spec.display_name,
        lm_eval_group=spec.lm_eval_group,
        lm_eval_tasks=[s.lm_eval_task for s in scores],
        num_fewshot=spec.num_fewshot,
        metric=spec.metric,
        aggregation=spec.aggregation,
        value=value,
        stderr=stderr,
        weighted_value=weighted,
        documents=documents,
        full_documents=spec.full_eval_rows,
        fewshot=fewshot,
        data_files=data_files,
        leaderboard_comparable=not leaderboard_differences,
        not_comparable_reasons=leaderboard_differences,
        prompt_sha256=prompt_sha256,
        seconds=round(seconds, 3),
        subtasks=scores if spec.aggregation != "single" else [],
        subset_sha256=_subset_digest(document_ids),
    )


def _subset_digest(document_ids: dict[str, list[int]] | None) -> str | None:
    if document_ids is None:
        return None
    return hashlib.sha256(json.dumps(document_ids, sort_keys=True).encode()).hexdigest()


def completeness(
    suite_keys: tuple[str, ...], tasks: list[TaskResult], limit: int | None, preset: str | None = None
) -> list[str]:
    """Why a run is partial (empty when complete): the H6 average needs all six tasks on full data. The reasons
    are stored in results files and shown as written (`--limit 4`), as they always have been."""
    reasons = [f"--preset {preset} (a fixed subset of documents)"] if preset else []
    ran = {t.key for t in tasks}
    if missing := [k for k in suite_keys if k not in ran]:
        reasons.append(f"tasks not run: {', '.join(missing)}")
    if limit is not None:
        reasons.append(f"--limit {limit}")
    reasons += [f"{t.key}: {t.documents} of {t.full_documents} documents" for t in tasks if not t.is_full]
    return reasons

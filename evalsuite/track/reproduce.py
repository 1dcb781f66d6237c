"""A run against the Open LLM Leaderboard's own result for the same model: is my number the leaderboard's?

Per task, the leaderboard's value (its results files, full precision, MMLU the plain mean of its 57 subjects)
beside the run's, the difference, and whether it lies within the noise of the two measurements:

- the run scored the task's complete split (the leaderboard always did): both sides asked the same requests
  about the same documents, so their sampling noise is one and the same draw and cancels. What is left is
  numerics (dtype, batch padding, kernels) flipping near-tied documents; a task *reproduces* when the
  difference is at most one standard error (the larger of the two sides'): about sqrt(n)/2 net flips of n
  documents at 50% accuracy.
- the run scored a subset (`--limit`, a preset, sample data; only with `allow_partial`): the documents differ,
  so sampling noise does not cancel; the difference is judged against 1.96 x sqrt(se_run² + se_published²).

Tasks that did not ask the leaderboard's requests (protocol lm-eval, a few-shot fallback) are left out and said;
a run with none left, or one whose tasks the leaderboard did not publish, is refused. Another model, commit or
dtype than the leaderboard evaluated is warned about, not refused: a local copy of the model is a fair question.
"""

from __future__ import annotations

import math
from typing import Literal

from evalsuite.archive import LeaderboardModel, PublishedResult
from evalsuite.errors import NotComparableError, param
from evalsuite.records import FrozenRecord
from evalsuite.results import Run, SuiteResults, TaskResult
from evalsuite.settings import Precision, WeightType
from evalsuite.suite import SuiteSpec
from evalsuite.track.compare import RunName

Basis = Literal["same documents", "subset"]
Z_95 = 1.96  # two-sided 95% for the subset basis


class SubjectGap(FrozenRecord):
    """One MMLU subject: the leaderboard's value and the run's (fractions)."""

    subject: str
    published: float
    measured: float
    delta_points: float


class TaskReproduction(FrozenRecord):
    key: str
    display_name: str
    metric: str
    published: float  # fraction
    published_stderr: float | None
    measured: float
    measured_stderr: float | None
    delta_points: float  # measured - published, points
    tolerance_points: float | None  # None: neither side has a standard error
    basis: Basis
    documents: int  # the run's
    within_noise: bool | None
    subjects: list[SubjectGap] = []  # MMLU: per subject, where both sides hold them


class Reproduction(FrozenRecord):
    """A run beside the leaderboard's own result for its model, task by task: within noise or not, and why."""

    published_model: str
    published_precision: str | None
    published_sha: str | None
    published_files: list[str]
    run: RunName
    tasks: list[TaskReproduction]
    left_out: list[str]  # "<task>: why", for tasks not compared
    warnings: list[str]
    published_average: float | None  # the mean of the six published tasks, as the leaderboard took it
    measured_average: float | None

    @property
    def reproduced(self) -> list[str]:
        return [t.key for t in self.tasks if t.within_noise]

    @property
    def outside_noise(self) -> list[str]:
        return [t.key for t in self.tasks if t.within_noise is False]

    @property
    def summary(self) -> str:
        """`reproduces the leaderboard within noise on 5 of 6 tasks (not: GSM8K)`."""
        outside = [t.display_name for t in self.tasks if t.within_noise is False]
        unknown = [t.display_name for t in self.tasks if t.within_noise is None]
        line = f"reproduces the leaderboard within noise on {len(self.reproduced)} of {len(self.tasks)} tasks"
        notes = ([f"not: {', '.join(outside)}"] if outside else []) + (
            [f"no standard error: {', '.join(unknown)}"] if unknown else []
        )
        return line + (f" ({'; '.join(notes)})" if notes else "")


def leaderboard_model_for(wanted: LeaderboardModel, run: SuiteResults) -> LeaderboardModel:
    """The archive's evaluation to set beside the run: the precision asked for (`ORG/NAME:PRECISION`), else the
    run's own where the leaderboard had it (float16, bfloat16, 8bit, 4bit, GPTQ), else the one that stands for
    the model (a float32 run: the leaderboard never ran float32, and a warning says so)."""
    if wanted.precision is not None or run.model.precision is Precision.FLOAT32:
        return wanted
    return LeaderboardModel(wanted.model, run.model.precision.value)


def reproduce(published: PublishedResult, located: Run, suite: SuiteSpec, allow_partial: bool = False) -> Reproduction:
    """The run beside the leaderboard's result, task by task (see the module's docstring for the rule)."""
    run = located.results
    if not run.is_complete and not allow_partial:
        raise NotComparableError(
            f"run {run.run_id} is partial ({'; '.join(run.partial_reasons)}): the leaderboard scored complete "
            f"splits; pass {param('allow_partial')} to compare it anyway, against sampling noise"
        )
    warnings = _warnings(published, run)
    tasks, left_out = [], []
    for spec in suite.tasks:
        task, theirs = run.task(spec.key), published.tasks.get(spec.key)
        if task is None:
            if theirs is not None:
                left_out.append(f"{spec.display_name}: not in the run")
            continue
        if theirs is None:
            left_out.append(f"{spec.display_name}: the leaderboard's results files hold no {spec.key}")
        elif not task.leaderboard_comparable:
            why = "; ".join(task.not_comparable_reasons) or "not the leaderboard's requests"
            left_out.append(f"{spec.display_name}: the run did not ask the leaderboard's requests ({why})")
        else:
            same = task.documents == task.full_documents and published.max_samples is None
            tasks.append(_task(task, theirs.value, theirs.stderr, "same documents" if same else "subset", published))
    if not tasks:
        raise NotComparableError(
            f"nothing to compare: {'; '.join(left_out) or 'the run and the published result share no task'}"
        )
    return Reproduction(
        published_model=published.model,
        published_precision=published.precision,
        published_sha=published.sha,
        published_files=list(published.files),
        run=RunName(model=run.model.id, run_id=run.run_id, folder=str(located.folder)),
        tasks=tasks,
        left_out=left_out,
        warnings=warnings,
        published_average=_average(published, suite),
        measured_average=run.h6_average,
    )


def _average(published: PublishedResult, suite: SuiteSpec) -> float | None:
    values = [published.tasks[s.key].value for s in suite.tasks if s.key in published.tasks]
    return sum(values) / len(values) if len(values) == len(suite.tasks) else None


def _task(
    task: TaskResult, value: float, stderr: float | None, basis: Basis, published: PublishedResult
) -> TaskReproduction:
    delta = 100 * (task.value - value)
    tolerance = _tolerance(stderr, task.stderr, basis)
    subjects = []
    if task.key == "mmlu" and published.mmlu_subjects:
        for sub in task.subtasks:
            subject = sub.lm_eval_task.removeprefix("mmlu_")
            if (theirs := published.mmlu_subjects.get(subject)) is not None:
                gap = round(100 * (sub.value - theirs.value), 4)
                subjects.append(
                    SubjectGap(subject=subject, published=theirs.value, measured=sub.value, delta_points=gap)
                )
    return TaskReproduction(
        key=task.key,
        display_name=task.display_name,
        metric=str(task.metric),
        published=value,
        published_stderr=stderr,
        measured=task.value,
        measured_stderr=task.stderr,
        delta_points=round(delta, 4),
        tolerance_points=None if tolerance is None else round(tolerance, 4),
        basis=basis,
        documents=task.documents,
        within_noise=None if tolerance is None else abs(delta) <= tolerance + 1e-9,
        subjects=sorted(subjects, key=lambda s: -abs(s.delta_points)),
    )


def _tolerance(published: float | None, measured: float | None, basis: Basis) -> float | None:
    """In points: one standard error on the same documents; the 95% band of two samples on a subset."""
    known = [se for se in (published, measured) if se is not None]
    if not known:
        return None
    if basis == "same documents":
        return 100 * max(known)
    return 100 * Z_95 * math.sqrt(sum(se * se for se in known))


def _warnings(published: PublishedResult, run: SuiteResults) -> list[str]:
    warnings = []
    if run.model.id.lower() != published.model.lower():
        warnings.append(f"the run is of {run.model.id}, the published result of {published.model}")
    run_sha = run.model.sha
    if published.sha and run_sha and len(run_sha) == 40 and run_sha != published.sha:
        warnings.append(
            f"the leaderboard evaluated commit {published.sha[:12]}, the run {run_sha[:12]}: the weights may differ"
        )
    if published.precision and published.precision.lower() != run.model.precision.value.lower():
        warnings.append(f"the leaderboard ran {published.precision}, the run {run.model.precision}: other precisions")
    if run.model.weight_type is not WeightType.ORIGINAL:
        warnings.append(f"the run is {run.model.weight_type} weights over {run.model.base_model}")
    if published.max_samples is not None:
        warnings.append(f"the published result is a test run (max_samples {published.max_samples})")
    if not run.is_complete:
        warnings.append(f"partial run ({'; '.join(run.partial_reasons)}): judged against sampling noise")
    return warnings

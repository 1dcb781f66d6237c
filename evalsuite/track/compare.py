"""Comparing two runs: did anything get worse beyond noise?

Per task, the test depends on what the runs kept:
- both runs logged their samples (`--log-samples`) on the same documents: a paired test, the exact McNemar
  test for 0/1 metrics (discordant documents only) and a paired t-test for continuous ones (TruthfulQA MC2);
- otherwise: Welch's unequal-variances t-test on the two means, from each run's value, standard error and
  document count (lm-eval's stderr is the sample standard deviation over sqrt(n), for a share as for MC2's
  mean), degrees of freedom by Welch-Satterthwaite. It ignores that the documents are the same ones, so it is
  conservative where a paired test would be sharper; for thousands of documents it is the z-test on the
  difference of the means.

A task *regressed* when the candidate is lower with p < alpha and the drop exceeds `max_drop` points;
it *improved* when higher with p < alpha; else it is *unchanged*. Runs are only compared when they ran the
same protocol on the same rows: otherwise `NotComparableError` says what differs.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import SerializerFunctionWrapHandler, model_serializer

from evalsuite.errors import NotComparableError, OptionError, param
from evalsuite.records import FrozenRecord
from evalsuite.results import Run, SuiteResults, TaskResult
from evalsuite.results.lm_eval_files import sample_scores
from evalsuite.suite import Protocol


class Verdict(StrEnum):
    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    REGRESSED = "regressed"


TestName = Literal["mcnemar", "paired-t", "welch-t", "none"]


class TaskComparison(FrozenRecord):
    key: str
    display_name: str
    metric: str
    baseline: float
    candidate: float
    delta_points: float
    test: TestName
    documents: int
    p_value: float | None
    verdict: Verdict

    @property
    def regressed(self) -> bool:
        return self.verdict is Verdict.REGRESSED


class RunName(FrozenRecord):
    """Which run a side of the comparison is: its model, run id and folder."""

    model: str
    run_id: str
    folder: str

    def __str__(self) -> str:
        return f"{self.model} run {self.run_id} ({self.folder})"


class Comparison(FrozenRecord):
    """Two runs compared task by task (`compare --format json` prints it): each task's test, p-value and verdict."""

    baseline_run: RunName
    candidate_run: RunName
    alpha: float
    max_drop: float
    tasks: list[TaskComparison]
    baseline_average: float | None
    candidate_average: float | None
    warnings: list[str]

    @property
    def baseline(self) -> str:
        return self.baseline_run.folder

    @property
    def candidate(self) -> str:
        return self.candidate_run.folder

    @model_serializer(mode="wrap")
    def _folders_first(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """`compare --format json` shows both runs' folders first, as it always has."""
        return {"baseline": self.baseline, "candidate": self.candidate, **handler(self)}

    @property
    def regressed(self) -> list[str]:
        return [t.key for t in self.tasks if t.regressed]


# ------------------------------------------------------------------------------------- comparability


def comparability_problems(a: SuiteResults, b: SuiteResults) -> list[str]:
    """Why the two runs cannot be compared (empty when they can)."""
    problems = []
    if a.schema_version != b.schema_version:
        problems.append(f"schema versions differ ({a.schema_version} vs {b.schema_version})")
    if (a.suite, a.suite_version) != (b.suite, b.suite_version):
        problems.append(f"suites differ ({a.suite} v{a.suite_version} vs {b.suite} v{b.suite_version})")
    if a.settings.protocol != b.settings.protocol:
        problems.append(
            f"protocols differ ({a.settings.protocol.value} vs {b.settings.protocol.value}): the model was asked "
            "different things"
        )
    if a.status != b.status:
        problems.append(f"one run is {a.status}, the other {b.status}")
    if a.settings.limit != b.settings.limit:
        problems.append(f"limits differ ({a.settings.limit} vs {b.settings.limit})")
    if a.settings.preset != b.settings.preset:
        problems.append(f"presets differ ({a.settings.preset} vs {b.settings.preset})")
    if (a.settings.add_bos_token, a.settings.chat_template) != (b.settings.add_bos_token, b.settings.chat_template):
        problems.append("prompt settings differ (add_bos_token / chat template)")
    a_keys, b_keys = [t.key for t in a.tasks], [t.key for t in b.tasks]
    if a_keys != b_keys:
        problems.append(f"tasks differ ({', '.join(a_keys)} vs {', '.join(b_keys)})")
    for ta in a.tasks:
        tb = b.task(ta.key)
        if tb is not None:
            problems += [f"{ta.key}: {p}" for p in _task_problems(ta, tb)]
    return problems


def _task_problems(a: TaskResult, b: TaskResult) -> list[str]:
    problems = []
    if (a.num_fewshot, a.metric) != (b.num_fewshot, b.metric):
        problems.append(f"protocol differs ({a.num_fewshot}-shot {a.metric} vs {b.num_fewshot}-shot {b.metric})")
    if (a.fewshot.split, a.fewshot.fallback) != (b.fewshot.split, b.fewshot.fallback):
        problems.append(f"few-shot source differs ({a.fewshot.split} vs {b.fewshot.split})")
    hashes_a = {f.split: f.sha256 for f in a.data_files}
    hashes_b = {f.split: f.sha256 for f in b.data_files}
    if hashes_a != hashes_b:
        differing = sorted(s for s in hashes_a.keys() | hashes_b.keys() if hashes_a.get(s) != hashes_b.get(s))
        problems.append(f"data differs (sha256 of {', '.join(differing)})")
    if a.documents != b.documents:
        problems.append(f"documents scored differ ({a.documents} vs {b.documents})")
    elif a.subset_sha256 != b.subset_sha256:
        problems.append("document subsets differ")
    return problems


# ---------------------------------------------------------------------------------------- per-sample


def _per_document_scores(run_dir: Path, task: TaskResult) -> dict[tuple[str, int, str], float] | None:
    """(lm-eval task, doc_id, doc_hash) -> the metric's per-document score, or None if samples were not logged."""
    scores: dict[tuple[str, int, str], float] = {}
    for leaf in task.lm_eval_tasks:
        found = sample_scores(run_dir, leaf, task.metric.name, task.metric.filter)
        if found is None:
            return None
        scores.update({(leaf, doc_id, doc_hash): score for (doc_id, doc_hash), score in found.items()})
    return scores


def _paired_test(a: dict[tuple[str, int, str], float], b: dict[tuple[str, int, str], float]) -> tuple[TestName, float]:
    from scipy import stats

    keys = sorted(a)
    xs, ys = [a[k] for k in keys], [b[k] for k in keys]
    if all(v in (0.0, 1.0) for v in xs + ys):
        worse = sum(1 for x, y in zip(xs, ys, strict=True) if x > y)
        better = sum(1 for x, y in zip(xs, ys, strict=True) if y > x)
        if worse + better == 0:
            return "mcnemar", 1.0
        return "mcnemar", float(stats.binomtest(worse, worse + better, 0.5).pvalue)
    if all(x == y for x, y in zip(xs, ys, strict=True)):
        return "paired-t", 1.0
    return "paired-t", float(stats.ttest_rel(xs, ys).pvalue)


def welch_test(a: TaskResult, b: TaskResult) -> tuple[TestName, float | None]:
    """Welch's t-test of two means from their standard errors and document counts (two-sided p)."""
    from scipy import stats

    if a.stderr is None or b.stderr is None:
        return "none", None
    var_a, var_b = a.stderr**2, b.stderr**2
    spread = var_a + var_b
    if spread == 0:
        return "welch-t", 1.0 if a.value == b.value else 0.0
    t = (b.value - a.value) / spread**0.5
    terms = [v * v / (n - 1) for v, n in ((var_a, a.documents), (var_b, b.documents)) if n > 1]
    if len(terms) < 2 or sum(terms) == 0:  # a side of one document, or no spread: the normal limit
        return "welch-t", float(2 * stats.norm.sf(abs(t)))
    degrees = spread * spread / sum(terms)
    return "welch-t", float(2 * stats.t.sf(abs(t), degrees))


def check_thresholds(alpha: float, max_drop: float) -> None:
    """The verdicts' settings: `alpha` a significance level (0 < alpha < 1), `max_drop` points (>= 0); one
    OptionError each."""
    if not 0 < alpha < 1:
        raise OptionError(f"{param('alpha')} {alpha}: give a level between 0 and 1")
    if max_drop < 0:
        raise OptionError(f"{param('max_drop')} {max_drop}: give a number of points >= 0")


def compare_runs(baseline: Run, candidate: Run, alpha: float = 0.05, max_drop: float = 0.0) -> Comparison:
    """Compare two runs task by task (the module's docstring has the tests); OptionError for an `alpha` or a
    `max_drop` that is no setting (`check_thresholds`), NotComparableError when the runs did not run the same
    protocol on the same rows."""
    check_thresholds(alpha, max_drop)
    old, new = baseline.results, candidate.results
    if problems := comparability_problems(old, new):
        raise NotComparableError("runs are not comparable: " + "; ".join(problems))
    warnings = []
    precisions = (old.model.precision, new.model.precision)
    if precisions[0] != precisions[1] and any(p.quantized for p in precisions):
        warnings.append(
            f"precisions differ ({precisions[0]} vs {precisions[1]}): other weights, not only other numerics"
        )
    elif old.model.dtype != new.model.dtype:
        warnings.append(f"dtypes differ ({old.model.dtype} vs {new.model.dtype})")
    old_weights = (old.model.weight_type, old.model.base_model)
    if old_weights != (new.model.weight_type, new.model.base_model):
        warnings.append(f"weights differ ({old.model.loaded_as} vs {new.model.loaded_as})")
    if old.settings.batch_size != new.settings.batch_size:
        warnings.append("batch sizes differ (padding can move scores slightly)")
    seeds_a, seeds_b = old.settings.seeds, new.settings.seeds
    # under leaderboard-v1 exemplars follow the leaderboard's walk (seed 42): the few-shot seed is unused
    if seeds_a.fewshot != seeds_b.fewshot and old.settings.protocol is not Protocol.LEADERBOARD_V1:
        warnings.append("seeds differ (different few-shot exemplars)")
    if (seeds_a.random, seeds_a.numpy, seeds_a.torch) != (seeds_b.random, seeds_b.numpy, seeds_b.torch):
        warnings.append("python/numpy/torch seeds differ")
    for a in old.tasks:
        b = new.task(a.key)
        if b is not None and a.prompt_sha256 and b.prompt_sha256 and a.prompt_sha256 != b.prompt_sha256:
            warnings.append(
                f"{a.key}: the prompts differ on the same documents (prompt fingerprints "
                f"{a.prompt_sha256[:12]} vs {b.prompt_sha256[:12]}): another lm-eval version or seed asked other things"
            )
    tasks = []
    for a in old.tasks:
        b = new.task(a.key)
        assert b is not None  # checked by comparability_problems
        scores_a = _per_document_scores(baseline.folder, a)
        scores_b = _per_document_scores(candidate.folder, b)
        p_value: float | None
        if scores_a is not None and scores_b is not None and scores_a.keys() == scores_b.keys() and scores_a:
            test, p_value = _paired_test(scores_a, scores_b)
        else:
            if scores_a is not None and scores_b is not None and scores_a.keys() != scores_b.keys():
                raise NotComparableError(
                    f"runs are not comparable: {a.key}: the logged samples are different documents"
                )
            test, p_value = welch_test(a, b)
        delta = 100 * (b.value - a.value)
        significant = p_value is not None and p_value < alpha
        if significant and delta < 0 and -delta > max_drop:
            verdict = Verdict.REGRESSED
        elif significant and delta > 0:
            verdict = Verdict.IMPROVED
        else:
            verdict = Verdict.UNCHANGED
        tasks.append(
            TaskComparison(
                key=a.key,
                display_name=a.display_name,
                metric=str(a.metric),
                baseline=a.value,
                candidate=b.value,
                delta_points=round(delta, 4),
                test=test,
                documents=a.documents,
                p_value=p_value,
                verdict=verdict,
            )
        )
    return Comparison(
        baseline_run=RunName(model=old.model.id, run_id=old.run_id, folder=str(baseline.folder)),
        candidate_run=RunName(model=new.model.id, run_id=new.run_id, folder=str(candidate.folder)),
        alpha=alpha,
        max_drop=max_drop,
        tasks=tasks,
        baseline_average=old.h6_average,
        candidate_average=new.h6_average,
        warnings=warnings,
    )

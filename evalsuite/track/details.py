"""A run beside the leaderboard's own details, document by document: where exactly a run departs from what the
leaderboard measured (`compare leaderboard:ORG/NAME RUN --details`).

Pairing is by content, never by position (the details' rows are not in the split's order): a leaderboard row
pairs with the run's document whose request context is its `full_prompt` (the prompt is then identical);
failing that, with the document whose own text (the context's last paragraph, after the few-shot exemplars) is
the row's `example` (2024 generation) or whose id it is (2023 generation), and the prompt differs. Per task:
documents paired and unpaired (with the reason), prompts identical, documents whose score flips (right there
and wrong here, and the reverse) with McNemar's exact p on the pairs, the largest log-likelihood differences
(multiple choice) and the answers that differ (GSM8K). The details' own score is recomputed from their rows and
checked against the results file the leaderboard published.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from evalsuite.archive import PublishedDetails, PublishedDocument, PublishedResult, TaskDetails
from evalsuite.archive.tasks import LEADERBOARD_TASKS
from evalsuite.errors import NotComparableError
from evalsuite.records import FrozenRecord
from evalsuite.results import Run, TaskResult
from evalsuite.results.lm_eval_files import LM_EVAL_DIR, LoggedDocument, logged_documents, samples_file

Flip = Literal["right there, wrong here", "wrong there, right here"]
PairedBy = Literal["prompt", "question"]
SCORE_TOLERANCE = 1e-6  # a mean recomputed from the rows vs the results file's (float sums in another order)
_SNIPPET = 60  # characters shown either side of where two prompts first differ


class PromptDifference(FrozenRecord):
    at: int  # the first character where the prompts differ
    theirs: str  # the leaderboard's prompt around it
    ours: str  # the run's


class PairedDocument(FrozenRecord):
    lm_eval_task: str
    doc_id: int
    leaderboard_task: str
    paired_by: PairedBy
    prompt_identical: bool
    prompt_difference: PromptDifference | None
    score_theirs: float
    score_ours: float
    flip: Flip | None
    loglikelihoods_theirs: list[float] | None
    loglikelihoods_ours: list[float] | None
    max_loglikelihood_difference: float | None  # over the choices both sides scored
    answer_theirs: str | None  # GSM8K: the generated texts
    answer_ours: str | None


class UnpairedDocument(FrozenRecord):
    side: Literal["leaderboard", "run"]
    task: str  # the details' task, or the lm-eval task
    document: str  # the row's `example`, or the run's doc_id
    reason: str


class TaskPairing(FrozenRecord):
    key: str
    display_name: str
    metric: str  # the leaderboard's (acc_norm, acc, mc2)
    details_files: list[str]
    paired: int
    unpaired_theirs: int
    unpaired_ours: int
    prompts_identical: int
    right_there_wrong_here: int
    wrong_there_right_here: int
    mcnemar_p: float | None  # for 0/1 scores
    max_loglikelihood_difference: float | None
    answers_differ: int | None  # GSM8K
    details_score: float | None  # recomputed from the details' rows
    published_score: float | None  # the results file's
    notes: list[str]
    documents: list[PairedDocument]
    unpaired: list[UnpairedDocument]

    @property
    def details_match_results(self) -> bool | None:
        if self.details_score is None or self.published_score is None:
            return None
        return abs(self.details_score - self.published_score) <= SCORE_TOLERANCE


class DetailsComparison(FrozenRecord):
    model: str
    details: str  # the Hub dataset or the local copy
    run: str  # the run folder
    tasks: list[TaskPairing]
    notes: list[str]


def pair_details(details: PublishedDetails, published: PublishedResult, run: Run) -> DetailsComparison:
    """The run's logged samples paired with the leaderboard's details, task by task (the module's docstring);
    NotComparableError when the run kept no samples."""
    tasks = []
    for task in run.results.tasks:
        files = details.tasks.get(task.key)
        if not files:
            continue
        ours = _logged(run, task)
        tasks.append(_pair_task(task, files, ours, published))
    if not tasks:
        raise NotComparableError(
            f"the details ({details.repo}) hold none of the run's tasks ({', '.join(t.key for t in run.results.tasks)})"
        )
    return DetailsComparison(model=published.model, details=details.repo, run=str(run.folder), tasks=tasks,
                             notes=list(details.notes))  # fmt: skip


def check_samples_logged(run: Run) -> None:
    """NotComparableError, before anything is fetched, when the run kept no samples of a task."""
    for task in run.results.tasks:
        for leaf in task.lm_eval_tasks:
            if not (run.folder / LM_EVAL_DIR / samples_file(leaf)).is_file():
                raise NotComparableError(_no_samples(run, leaf))


def _logged(run: Run, task: TaskResult) -> list[LoggedDocument]:
    documents = []
    for leaf in task.lm_eval_tasks:
        found = logged_documents(run.folder, leaf, task.metric.filter)
        if found is None:
            raise NotComparableError(_no_samples(run, leaf))
        documents.extend(found)
    return documents


def _no_samples(run: Run, leaf: str) -> str:
    return (f"{run.folder}: the run kept no samples of {leaf}: run it again with --log-samples to pair it with the "
            "leaderboard's details")  # fmt: skip


class _RunIndex:
    """The run's documents by what a leaderboard row can be found by: a context, a question, an id."""

    def __init__(self, documents: Sequence[LoggedDocument]) -> None:
        self.documents = documents
        self.used: set[int] = set()
        self.by_context: dict[str, list[int]] = {}
        self.by_question: dict[str, list[int]] = {}
        self.by_id: dict[str, list[int]] = {}
        for number, document in enumerate(documents):
            for context in dict.fromkeys(document.contexts):
                self.by_context.setdefault(context, []).append(number)
                self.by_question.setdefault(_question(context), []).append(number)
            if isinstance(document.doc.get("id"), str):
                self.by_id.setdefault(document.doc["id"], []).append(number)

    def take(self, row: PublishedDocument) -> tuple[LoggedDocument, PairedBy] | None:
        for found, by in ((self.by_context.get(row.prompt), "prompt"),
                          (self.by_question.get(_question(row.example)), "question"),
                          (self.by_id.get(row.example), "question")):  # fmt: skip
            free = [n for n in found or [] if n not in self.used]
            if free:
                self.used.add(free[0])
                return self.documents[free[0]], by  # type: ignore[return-value]
        return None


def _question(text: str) -> str:
    """A prompt's last paragraph: the document's own text after the few-shot exemplars."""
    return text.rsplit("\n\n", 1)[-1]


def _pair_task(
    task: TaskResult, files: list[TaskDetails], ours: list[LoggedDocument], published: PublishedResult
) -> TaskPairing:
    metric = LEADERBOARD_TASKS[task.key].metric
    index = _RunIndex(ours)
    paired: list[PairedDocument] = []
    unpaired: list[UnpairedDocument] = []
    partial = task.documents < task.full_documents
    for file in files:
        for row in file.documents:
            found = index.take(row)
            if found is None:
                reason = (f"not scored by the run ({task.documents} of {task.full_documents} documents)" if partial
                          else "no document of the run has its prompt or question")  # fmt: skip
                unpaired.append(UnpairedDocument(side="leaderboard", task=file.task, document=row.example,
                                                 reason=reason))  # fmt: skip
                continue
            document, by = found
            paired.append(_pair(task, metric, file.task, row, document, by))
    for number, document in enumerate(ours):
        if number not in index.used:
            unpaired.append(UnpairedDocument(side="run", task=document.task, document=str(document.doc_id),
                                             reason="not in the leaderboard's details"))  # fmt: skip
    return _summary(task, metric, files, paired, unpaired, published)


def _pair(
    task: TaskResult, metric: str, leaderboard_task: str, row: PublishedDocument, ours: LoggedDocument, by: PairedBy
) -> PairedDocument:
    if metric not in row.metrics:
        raise NotComparableError(f"{leaderboard_task}: a row of the details has no {metric} (it has "
                                 f"{', '.join(sorted(row.metrics)) or 'no metrics'})")  # fmt: skip
    theirs, our_score = row.metrics[metric], ours.metrics[task.metric.name]
    identical = row.prompt in ours.contexts
    binary = theirs in (0.0, 1.0) and our_score in (0.0, 1.0)
    flip: Flip | None = None
    if binary and theirs != our_score:
        flip = "right there, wrong here" if theirs > our_score else "wrong there, right here"
    lls_theirs, lls_ours, largest = _loglikelihoods(task.key, row, ours)
    return PairedDocument(
        lm_eval_task=ours.task,
        doc_id=ours.doc_id,
        leaderboard_task=leaderboard_task,
        paired_by=by,
        prompt_identical=identical,
        prompt_difference=None if identical else _difference(row.prompt, ours.contexts[0]),
        score_theirs=theirs,
        score_ours=our_score,
        flip=flip,
        loglikelihoods_theirs=lls_theirs,
        loglikelihoods_ours=lls_ours,
        max_loglikelihood_difference=largest,
        answer_theirs=row.generated,
        answer_ours=ours.generated,
    )


def _loglikelihoods(
    key: str, row: PublishedDocument, ours: LoggedDocument
) -> tuple[list[float] | None, list[float] | None, float | None]:
    """Both sides' per-choice log-likelihoods, aligned, and the largest difference. TruthfulQA: the leaderboard
    scored MC1's targets, then MC2's; the run (lm-eval's truthfulqa_mc2) MC2's, the last ones."""
    if row.loglikelihoods is None or not ours.loglikelihoods:
        return None, None, None
    lls_ours = [ll for ll, _ in ours.loglikelihoods]
    lls_theirs = list(row.loglikelihoods)
    if key == "truthfulqa" and len(lls_theirs) > len(lls_ours):
        lls_theirs = lls_theirs[-len(lls_ours) :]
    if len(lls_theirs) != len(lls_ours):
        return lls_theirs, lls_ours, None
    return lls_theirs, lls_ours, max(abs(a - b) for a, b in zip(lls_theirs, lls_ours, strict=True))


def _difference(theirs: str, ours: str) -> PromptDifference:
    at = next((i for i, (a, b) in enumerate(zip(theirs, ours, strict=False)) if a != b), min(len(theirs), len(ours)))
    start = max(0, at - _SNIPPET)
    return PromptDifference(at=at, theirs=theirs[start : at + _SNIPPET], ours=ours[start : at + _SNIPPET])


def _summary(
    task: TaskResult,
    metric: str,
    files: list[TaskDetails],
    paired: list[PairedDocument],
    unpaired: list[UnpairedDocument],
    published: PublishedResult,
) -> TaskPairing:
    from scipy import stats

    worse = sum(1 for d in paired if d.flip == "right there, wrong here")
    better = sum(1 for d in paired if d.flip == "wrong there, right here")
    binary = bool(paired) and all(d.score_theirs in (0.0, 1.0) and d.score_ours in (0.0, 1.0) for d in paired)
    p_value = None
    if binary:
        p_value = 1.0 if worse + better == 0 else float(stats.binomtest(worse, worse + better, 0.5).pvalue)
    differences = [d.max_loglikelihood_difference for d in paired if d.max_loglikelihood_difference is not None]
    generative = any(d.answer_theirs is not None for d in paired)
    details_score, notes = _details_score(task.key, metric, files)
    score = published.tasks.get(task.key)
    if details_score is not None and score is not None and abs(details_score - score.value) > SCORE_TOLERANCE:
        rows = sum(len(f.documents) for f in files)
        notes.append(f"the details' {rows} rows give {metric} {details_score:.6f}, the results file "
                     f"{score.value:.6f}: not the evaluation the leaderboard published (a test run?)")  # fmt: skip
    return TaskPairing(
        key=task.key,
        display_name=task.display_name,
        metric=metric,
        details_files=[f.file for f in files],
        paired=len(paired),
        unpaired_theirs=sum(1 for u in unpaired if u.side == "leaderboard"),
        unpaired_ours=sum(1 for u in unpaired if u.side == "run"),
        prompts_identical=sum(1 for d in paired if d.prompt_identical),
        right_there_wrong_here=worse,
        wrong_there_right_here=better,
        mcnemar_p=p_value,
        max_loglikelihood_difference=max(differences) if differences else None,
        answers_differ=sum(1 for d in paired if d.answer_theirs != d.answer_ours) if generative else None,
        details_score=details_score,
        published_score=score.value if score is not None else None,
        notes=notes,
        documents=paired,
        unpaired=unpaired,
    )


def _details_score(key: str, metric: str, files: list[TaskDetails]) -> tuple[float | None, list[str]]:
    """The task's score recomputed from the details' rows (MMLU: the plain mean of its subjects' means)."""
    scores = [f.score(metric) for f in files]
    if any(s is None for s in scores):
        return None, [f"some rows of the details have no {metric}: their score is not recomputed"]
    if key == "mmlu" and len(files) != 57:
        return None, [f"the details hold {len(files)} of MMLU's 57 subjects: their mean is not recomputed"]
    values = [s for s in scores if s is not None]
    return (sum(values) / len(values) if values else None), []

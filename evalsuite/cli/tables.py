"""The tables `evalsuite` prints on stdout: plain Markdown-style, aligned for terminals, pasteable into a README."""

from __future__ import annotations

from typing import TYPE_CHECKING

from evalsuite.results import pct

if TYPE_CHECKING:
    from evalsuite.data import Finding
    from evalsuite.results import ContaminationResults, SuiteResults
    from evalsuite.suite import SuiteSpec
    from evalsuite.track.compare import Comparison
    from evalsuite.track.details import DetailsComparison
    from evalsuite.track.history import HistoryPoint
    from evalsuite.track.reproduce import Reproduction


def _table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """A plain Markdown-style table, aligned for terminals and pasteable into a README."""
    right = right or set()
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def format_scores(results: SuiteResults) -> str:
    rows = []
    for t in results.tasks:
        rows.append(
            [
                t.display_name,
                t.metric.display,
                str(t.num_fewshot),
                pct(t.value),
                pct(t.stderr),
                f"{t.documents}/{t.full_documents}",
                "yes" if t.leaderboard_comparable else "no",
            ]
        )
    average = pct(results.h6_average)
    rows.append(["Average (H6)", "", "", average, "", "", "yes" if results.leaderboard_comparable else "no"])
    table = _table(["Task", "Metric", "Shots", "Value", "Stderr", "Docs", "Comparable"], rows, right={2, 3, 4, 5})
    lines = [
        table,
        f"Protocol {results.settings.protocol.value}. Comparable: the task's requests are the Open LLM "
        "Leaderboard's, document by document (protocol leaderboard-v1, its complete splits, no few-shot fallback).",
    ]
    if not results.is_complete:
        lines.append(f"partial run, no H6 average: {'; '.join(results.partial_reasons)}")
    tasks_by_reason: dict[str, list[str]] = {}  # a protocol's reason holds for every task: say it once
    for t in results.tasks:
        for reason in t.not_comparable_reasons:
            tasks_by_reason.setdefault(reason, []).append(t.key)
    lines += [f"{', '.join(keys)} not comparable: {reason}" for reason, keys in tasks_by_reason.items()]
    return "\n".join(lines)


def format_suite(suite: SuiteSpec) -> str:
    rows = [
        [
            t.key,
            t.display_name,
            t.lm_eval_group,
            str(t.num_fewshot),
            f"{t.fewshot_split or '-'} ({t.fewshot_sampler})" if t.num_fewshot else "-",
            str(t.metric),  # the lm-eval key, as lm-eval users read it
            t.aggregation,
            " / ".join(x for x in (t.data.hub_dataset, t.data.hub_config, t.data.eval_split) if x),
        ]
        for t in suite.tasks
    ]
    headers = ["Key", "Display name", "lm-eval task", "Shots", "Few-shot from", "Metric", "Aggregation", "Hub dataset"]
    protocol = f", protocol {suite.protocol.value}" if suite.protocol else ""
    return f"{suite.title} (suite {suite.name} v{suite.version}{protocol})\n" + _table(headers, rows, right={3})


def format_findings(findings: list[Finding]) -> str:
    return _table(["Status", "File", "Detail"], [[f.level.value, f.file, f.message] for f in findings])


def format_comparison(comparison: Comparison, markdown: bool = False) -> str:
    rows = [
        [
            t.display_name,
            pct(t.baseline),
            pct(t.candidate),
            f"{t.delta_points:+.2f}",
            t.test,
            "-" if t.p_value is None else f"{t.p_value:.3g}",
            str(t.documents),
            t.verdict.value.upper() if t.regressed else t.verdict.value,
        ]
        for t in comparison.tasks
    ]
    if comparison.baseline_average is not None and comparison.candidate_average is not None:
        delta = 100 * (comparison.candidate_average - comparison.baseline_average)
        rows.append(["Average (H6)", pct(comparison.baseline_average), pct(comparison.candidate_average),
                     f"{delta:+.2f}", "", "", "", ""])  # fmt: skip
    headers = ["Task", "Baseline", "Candidate", "Δ points", "Test", "p", "Docs", "Verdict"]
    table = _table(headers, rows, right={1, 2, 3, 5, 6})
    regressed = comparison.regressed
    summary = (
        f"REGRESSION in {', '.join(regressed)}" if regressed else "no regression"
    ) + f" (alpha {comparison.alpha}, max drop {comparison.max_drop} points)"
    sides = [f"baseline:  {comparison.baseline_run}", f"candidate: {comparison.candidate_run}"]
    if markdown:
        lines = [f"### evalsuite compare: {summary}", "", *(f"- {s}" for s in sides), "", table]
    else:
        lines = [*sides, table, summary]
    lines += [f"warning: {w}" for w in comparison.warnings]
    return "\n".join(lines)


def format_reproduction(result: Reproduction, markdown: bool = False) -> str:
    """`compare leaderboard:MODEL RUN`: per task both values, the difference and the noise band, then the verdict."""

    def noise(tolerance: float | None) -> str:
        return "-" if tolerance is None else f"±{tolerance:.2f}"

    rows = [
        [
            t.display_name,
            pct(t.published),
            pct(t.measured),
            f"{t.delta_points:+.2f}",
            noise(t.tolerance_points),
            str(t.documents),
            "-" if t.within_noise is None else "yes" if t.within_noise else "NO",
        ]
        for t in result.tasks
    ]
    if result.published_average is not None and result.measured_average is not None:
        delta = 100 * (result.measured_average - result.published_average)
        rows.append(["Average (H6)", pct(result.published_average), pct(result.measured_average), f"{delta:+.2f}",
                     "", "", ""])  # fmt: skip
    table = _table(["Task", "Leaderboard", "Run", "Δ points", "Noise", "Docs", "Within"], rows, right={1, 2, 3, 4, 5})
    precision = f", {result.published_precision}" if result.published_precision else ""
    sha = f" @ {result.published_sha[:12]}" if result.published_sha else ""
    sides = [
        f"leaderboard: {result.published_model}{sha}{precision} (its published results: "
        f"{', '.join(result.published_files)})",
        f"run:         {result.run}",
    ]
    notes = [f"left out: {why}" for why in result.left_out]
    for t in result.tasks:
        if t.subjects:
            widest = t.subjects[0]
            gap = (
                f"the widest gap {widest.subject} {widest.delta_points:+.2f} points"
                if round(widest.delta_points, 2)
                else "each within 0.005 points of the leaderboard's"
            )
            notes.append(f"{t.display_name}: {len(t.subjects)} subjects compared, {gap}")
    basis = {t.basis for t in result.tasks}
    notes.append(
        "noise: one standard error (same documents, same requests: sampling noise cancels)"
        if basis == {"same documents"}
        else "noise: one standard error on complete splits; 1.96 x the two sides' combined standard error on subsets"
    )
    warnings = [f"warning: {w}" for w in result.warnings]
    if markdown:
        lines = [f"### evalsuite compare: {result.summary}", "", *(f"- {s}" for s in sides), "", table, "",
                 *(f"- {n}" for n in notes + warnings)]  # fmt: skip
    else:
        lines = [*sides, table, *notes, *warnings, result.summary]
    return "\n".join(lines)


def format_contamination(results: ContaminationResults) -> str:
    """The card's contamination table: the model, then one `result < 0.1, %: 0.06` cell per task."""
    headers = ["Model", *(t.column for t in results.tasks)]
    rows = [[results.target.id, *(t.reported for t in results.tasks)]]
    note = f"{results.settings.items} items per task, {results.settings.neighbours} neighbours each from "
    note += f"{results.reference.id}; {results.meaning}"
    return _table(headers, rows) + "\n" + note


def format_history(points: list[HistoryPoint]) -> str:
    columns = list(points[0].scores)

    def cell(score: tuple[float, float | None] | None) -> str:
        if score is None:
            return "-"
        value, stderr = score
        return pct(value) + (f" ± {pct(stderr)}" if stderr is not None else "")

    rows = [
        [p.label, p.run_id, p.status, "yes" if p.comparable else "no", p.precision,
         pct(p.average), *(cell(p.scores[c]) for c in columns)]
        for p in points
    ]  # fmt: skip
    header = ["Run (UTC)", "Run id", "Status", "Comparable", "Precision", "Average", *columns]
    return _table(header, rows, right=set(range(5, 6 + len(columns))))


_SHOWN = 5  # documents listed per task under the details table (--format json holds them all)


def format_details(result: DetailsComparison) -> str:
    """`compare leaderboard:MODEL RUN --details`: per task the pairing counts, then the documents that differ most."""

    def optional(value: float | int | None, spec: str = "") -> str:
        return "-" if value is None else format(value, spec)

    rows = [
        [
            t.display_name,
            str(t.paired),
            f"{t.unpaired_theirs}/{t.unpaired_ours}",
            f"{t.prompts_identical}/{t.paired}",
            f"{t.right_there_wrong_here}/{t.wrong_there_right_here}",
            optional(t.mcnemar_p, ".3g"),
            optional(t.max_loglikelihood_difference, ".2e"),
            optional(t.answers_differ),
            "-" if t.details_match_results is None else "yes" if t.details_match_results else "NO",
        ]
        for t in result.tasks
    ]
    headers = ["Task", "Paired", "Unpaired (theirs/ours)", "Prompts identical", "Flips (-/+)", "McNemar p",
               "Max |Δ loglik|", "Answers differ", "Details = results file"]  # fmt: skip
    lines = [
        f"leaderboard's details: {result.details}",
        f"run:                   {result.run}",
        "",
        _table(headers, rows, right=set(range(1, 8))),
        "",
        "Flips: documents right on the leaderboard and wrong in the run (-), and the reverse (+).",
    ]
    for note in result.notes:
        lines.append(f"note: {note}")
    for t in result.tasks:
        lines.extend(f"{t.display_name}: {note}" for note in t.notes)
        differing = [d for d in t.documents if not d.prompt_identical][:_SHOWN]
        for d in differing:
            assert d.prompt_difference is not None
            lines.append(f"{t.display_name}: {d.lm_eval_task} doc {d.doc_id}: the prompt differs at character "
                         f"{d.prompt_difference.at}: leaderboard {d.prompt_difference.theirs!r}, run "
                         f"{d.prompt_difference.ours!r}")  # fmt: skip
        flips = [d for d in t.documents if d.flip][:_SHOWN]
        for d in flips:
            lines.append(f"{t.display_name}: {d.lm_eval_task} doc {d.doc_id}: {d.flip} "
                         f"({d.score_theirs:g} vs {d.score_ours:g})")  # fmt: skip
        moved = sorted((d for d in t.documents if d.max_loglikelihood_difference),
                       key=lambda d: -(d.max_loglikelihood_difference or 0))[:_SHOWN]  # fmt: skip
        for d in moved:
            lines.append(f"{t.display_name}: {d.lm_eval_task} doc {d.doc_id}: log-likelihoods moved by up to "
                         f"{d.max_loglikelihood_difference:.3g}")  # fmt: skip
        answers = [d for d in t.documents if d.answer_theirs is not None and d.answer_theirs != d.answer_ours][:_SHOWN]
        for d in answers:
            lines.append(f"{t.display_name}: {d.lm_eval_task} doc {d.doc_id}: answers differ: leaderboard "
                         f"{_clip(d.answer_theirs)!r}, run {_clip(d.answer_ours)!r}")  # fmt: skip
    return "\n".join(lines)


def _clip(text: str | None, width: int = 120) -> str:
    text = text or ""
    return text if len(text) <= width else text[: width - 1] + "…"

"""Leaderboards across runs: the latest run per (model, revision, dtype), sorted by H6 average, with each model's
latest contamination check, and peers: the archived Open LLM Leaderboard's published rows for other models, each
marked as the leaderboard's. As Markdown, CSV (pandas, imported for it alone), a self-contained HTML page, or the
compact `| Model | H6 | Model Size |` table model cards carry. Renderers get plain rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from evalsuite.archive import PublishedEvaluation
from evalsuite.model import location_digest
from evalsuite.publish.render import render
from evalsuite.results import ContaminationResults, SuiteResults, model_size, percent
from evalsuite.suite import SuiteSpec

if TYPE_CHECKING:
    import pandas as pd


class BoardFormat(StrEnum):
    MARKDOWN = "markdown"
    CSV = "csv"
    HTML = "html"
    COMPACT = "compact"  # H6 and Model Size only, measured rows in bold: the table model cards set beside peers
    JSON = "json"  # every row, every field, scores as fractions: for programs


# Where a row's numbers come from: shown in a Source column whenever a table holds peers.
MEASURED = "measured"
PUBLISHED = "Open LLM Leaderboard"
SOURCE_COLUMN = "Source"
_ARCHIVE = "the archived v1 leaderboard, open-llm-leaderboard-old/contents"
PUBLISHED_NOTE = f"Rows from the Open LLM Leaderboard are its published numbers ({_ARCHIVE}), not measured here."
COMPACT_NOTE = (
    f"In bold: measured with evalsuite. The other rows are the Open LLM Leaderboard's published numbers "
    f"({_ARCHIVE}), not measured here."
)
PEERS_ONLY_NOTE = f"The Open LLM Leaderboard's published numbers ({_ARCHIVE}), not measured here."


@dataclass(frozen=True)
class Row:
    model: str
    revision: str
    dtype: str
    average: float | None
    scores: dict[str, float | None] = field(default_factory=dict)  # column -> fraction
    size: str = "-"
    partial: bool = False
    not_comparable: bool = False  # complete, but some task did not ask the leaderboard's requests
    run_id: str = ""
    contamination: str | None = None  # the model's latest contamination check, compact: "ARC 0.06 · GSM8K 0.70"
    published: bool = False  # the leaderboard's published row for a peer, not a run of evalsuite
    # said after the name: a peer's precision when the archive holds it in several; a run's when it is quantized,
    # and its weight type when not Original (`4bit, Adapter`)
    shown_precision: str | None = None
    weight_type: str | None = None  # a run's: Original, Adapter, Delta (the archive's rows hold none)
    base_model: str | None = None  # an Adapter's or a Delta's base
    # where another measured row's model has the same id at another location (two local folders of one name): the
    # first 8 hex of the sha256 of this one's location, as a second model's results folder ends with
    location_tag: str | None = None

    @property
    def name(self) -> str:
        """The model's id, with its location's tag where the id alone is ambiguous: `lora [1f0e3dad]`."""
        return self.model + (f" [{self.location_tag}]" if self.location_tag else "")

    @property
    def label(self) -> str:
        named = self.name + (f" ({self.shown_precision})" if self.shown_precision else "")
        if self.published:
            return named
        return named + (" (partial)" if self.partial else " (not comparable)" if self.not_comparable else "")

    @property
    def source(self) -> str:
        return PUBLISHED if self.published else MEASURED


def contamination_cell(check: ContaminationResults) -> str:
    """One leaderboard cell: each task's reported share, `ARC 0.06 · MMLU 0.15` (the threshold said when it
    is not the original's 0.1)."""
    cell = " · ".join(f"{t.column} {t.share:.2f}" for t in check.tasks)
    threshold = check.settings.threshold
    return cell if threshold == 0.1 else f"{cell} (r < {threshold:g})"


def _latest_check(run: SuiteResults, checks: list[ContaminationResults]) -> ContaminationResults | None:
    """The newest check of the run's model (the same id at the same location) at the same revision."""
    model = run.model
    same = [c for c in checks
            if (c.target.id, c.target.location, c.target.revision) == (model.id, model.location, model.revision)]
    return max(same, key=lambda c: c.created_at, default=None)


def latest_runs(runs: list[SuiteResults], include_partial: bool = True) -> list[SuiteResults]:
    """Per (model, revision, dtype): the latest complete run, else (if allowed) the latest partial one. A model is
    its id at its location: two local folders of one name are two models."""
    chosen: dict[tuple[str, str, str, str], SuiteResults] = {}  # (model, location, revision, precision and weights)
    for run in sorted(runs, key=lambda r: r.created_at):
        if not run.is_complete and not include_partial:
            continue
        key = (run.model.id, run.model.location, run.model.revision or run.model.sha or "", run.model.loaded_as)
        current = chosen.get(key)
        if current is None or run.is_complete or not current.is_complete:
            chosen[key] = run
    return list(chosen.values())


def leaderboard_rows(
    runs: list[SuiteResults], suite: SuiteSpec, checks: list[ContaminationResults] | None = None
) -> list[Row]:
    rows = []
    models = Counter((run.model.id, run.model.location) for run in runs)
    locations: dict[str, set[str]] = {}
    for model_id, location in models:
        locations.setdefault(model_id, set()).add(location)
    for run in runs:
        check = _latest_check(run, checks or [])
        several = models[(run.model.id, run.model.location)] > 1  # at several precisions: each row says its own
        ambiguous = len(locations[run.model.id]) > 1  # one id, models at several locations: each row says which
        rows.append(
            Row(
                model=run.model.id,
                revision=run.model.revision or (run.model.sha or "")[:12],
                dtype=str(run.model.precision),
                average=run.h6_average,
                scores={s.column: (t.value if (t := run.task(s.key)) else None) for s in suite.tasks},
                size=model_size(run.model.parameters),
                partial=not run.is_complete,
                not_comparable=run.is_complete and not run.leaderboard_comparable,
                run_id=run.run_id,
                contamination=contamination_cell(check) if check else None,
                shown_precision=run.model.weights_label(with_precision=several) or None,
                weight_type=run.model.weight_type.value,
                base_model=run.model.base_model,
                location_tag=location_digest(run.model.location) if ambiguous else None,
            )
        )
    return ranked(rows)


def peer_rows(evaluations: list[PublishedEvaluation], suite: SuiteSpec) -> list[Row]:
    """The leaderboard's published rows for peers (scores as it showed them, in %, kept as fractions here)."""
    rows = []
    for evaluation in evaluations:
        rows.append(
            Row(
                model=evaluation.model,
                revision=(evaluation.sha or "")[:12],
                dtype=evaluation.precision,
                average=evaluation.average / 100,
                scores={s.column: _fraction(evaluation.scores.get(s.column)) for s in suite.tasks},
                size=model_size(evaluation.parameters),
                published=True,
                shown_precision=evaluation.precision if evaluation.others else None,
            )
        )
    return rows


def ranked_rows(
    runs: list[SuiteResults],
    suite: SuiteSpec,
    checks: list[ContaminationResults] | None = None,
    peers: Sequence[PublishedEvaluation] = (),
) -> list[Row]:
    """A leaderboard's rows, ranked (`ranked`): the runs' (each with its model's latest contamination check) and
    the peers' published ones. What `evalsuite leaderboard`, a sweep's table and a card's peers table show."""
    return ranked(leaderboard_rows(runs, suite, checks) + peer_rows(list(peers), suite))


def ranked(rows: list[Row]) -> list[Row]:
    """Complete rows by average (desc), then partial ones by the mean of what they have."""
    return sorted(
        rows, key=lambda r: (r.partial, -(r.average if r.average is not None else _mean(r.scores)), r.published)
    )


def _fraction(published_percent: float | None) -> float | None:
    return None if published_percent is None else published_percent / 100


def _mean(scores: dict[str, float | None]) -> float:
    values = [v for v in scores.values() if v is not None]
    return sum(values) / len(values) if values else 0.0


CONTAMINATION_COLUMN = "Contamination"


def _with_contamination(rows: list[Row]) -> bool:
    """The contamination column shows only when some model has a check."""
    return any(row.contamination for row in rows)


def _with_sources(rows: list[Row]) -> bool:
    """The Source column (and the note under the table) shows only when some row is a published one."""
    return any(row.published for row in rows)


def to_frame(rows: list[Row], suite: SuiteSpec, with_size: bool) -> pd.DataFrame:
    import pandas as pd  # only the csv format needs it

    records = []
    for row in rows:
        record: dict[str, object] = {"Model": row.label, "Average": _pct(row.average)}
        record |= {c: _pct(row.scores[c]) for c in (s.column for s in suite.tasks)}
        if with_size:
            record["Model Size"] = row.size
        if _with_contamination(rows):
            record[CONTAMINATION_COLUMN] = row.contamination or ""
        if _with_sources(rows):
            record[SOURCE_COLUMN] = row.source
        records.append(record)
    return pd.DataFrame.from_records(records)


def _pct(value: float | None) -> float | None:
    return None if value is None else percent(value)


def render_leaderboard(rows: list[Row], suite: SuiteSpec, fmt: BoardFormat, with_size: bool = False) -> str:
    columns = [s.column for s in suite.tasks]
    contamination_column = CONTAMINATION_COLUMN if _with_contamination(rows) else None
    source_column = SOURCE_COLUMN if _with_sources(rows) else None
    published_note = PUBLISHED_NOTE if _with_sources(rows) else None
    if fmt is BoardFormat.COMPACT:
        return render_compact(rows)
    if fmt is BoardFormat.JSON:
        return render_json(rows)
    if fmt is BoardFormat.MARKDOWN:
        return render(
            "leaderboard.md.j2", rows=rows, columns=columns, with_size=with_size,
            contamination_column=contamination_column, source_column=source_column, published_note=published_note,
        )  # fmt: skip
    if fmt is BoardFormat.CSV:
        return to_frame(rows, suite, with_size).to_csv(index=False, float_format="%.2f")
    return render(
        "leaderboard.html.j2",
        rows=[
            {"model": r.name, "label": r.label, "shown": r.shown_precision, "published": r.published,
             "partial": r.partial,
             "not_comparable": r.not_comparable, "revision": r.revision, "dtype": r.dtype, "size": r.size,
             "average": _pct(r.average), "scores": [_pct(r.scores[c]) for c in columns],
             "contamination": r.contamination or "", "source": r.source}
            for r in rows
        ],
        columns=columns,
        contamination_column=contamination_column,
        source_column=source_column,
        published_note=published_note,
        with_size=with_size,
        title=suite.title,
    )  # fmt: skip


def render_json(rows: list[Row]) -> str:
    """The ranked rows as a JSON list: scores and averages as fractions (as results.json holds them), each row's
    source (`measured`, or the leaderboard's published numbers), and the note the tables print under them."""
    import json

    listed = [
        {
            "rank": rank,
            "model": row.model,
            "source": row.source,
            "revision": row.revision,
            "dtype": row.dtype,  # the precision, as the leaderboard's own column named it (kept for readers)
            "precision": row.dtype,
            "weight_type": row.weight_type,
            "base_model": row.base_model,
            "location_tag": row.location_tag,
            "average": row.average,
            "scores": row.scores,
            "size": row.size,
            "partial": row.partial,
            "not_comparable": row.not_comparable,
            "run_id": row.run_id or None,
            "contamination": row.contamination,
        }
        for rank, row in enumerate(rows, start=1)
    ]
    note = PUBLISHED_NOTE if _with_sources(rows) else None
    return json.dumps({"rows": listed, "note": note}, indent=2, ensure_ascii=False) + "\n"


def render_compact(rows: list[Row]) -> str:
    """`| Model | H6 | Model Size |`, the measured rows in bold, as model cards set their number beside peers'."""
    return render(
        "leaderboard_compact.md.j2",
        rows=[{"model": r.label, "average": r.average, "size": r.size, "bold": not r.published} for r in rows],
        published_note=_compact_note(rows),
    )


def _compact_note(rows: list[Row]) -> str | None:
    if not _with_sources(rows):
        return None
    return COMPACT_NOTE if any(not r.published for r in rows) else PEERS_ONLY_NOTE

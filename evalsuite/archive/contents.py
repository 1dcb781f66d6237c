"""The archived Open LLM Leaderboard's contents table: one row per evaluation it published (the Hub dataset
`open-llm-leaderboard-old/contents`, one parquet file; or a local copy, that parquet or a CSV with its columns),
and which row stands for a model when it has several (precisions, re-runs).

Scores are the leaderboard's own, in %, rounded to 2 decimals as it showed them; nothing here recomputes them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evalsuite.errors import ArchiveError, OptionError, param

# The columns of the contents table evalsuite reads (the Hub's names); the six scores are the suite's columns.
MODEL_COLUMN = "fullname"  # the model id (`Model` is an HTML link to it)
PRECISION_COLUMN = "Precision"
SHA_COLUMN = "Model sha"
DATE_COLUMN = "date"
AVERAGE_COLUMN = "Average ⬆️"
PARAMS_COLUMN = "#Params (B)"
SCORE_COLUMNS = ("ARC", "HellaSwag", "MMLU", "TruthfulQA", "Winogrande", "GSM8K")
REQUIRED_COLUMNS = (MODEL_COLUMN, PRECISION_COLUMN, AVERAGE_COLUMN, DATE_COLUMN, *SCORE_COLUMNS)

# Which of a model's evaluations stands for it: full precision first (bfloat16, then float16), then the
# quantized ones; among evaluations of one precision, the latest.
PRECISION_ORDER = ("bfloat16", "float16", "8bit", "4bit", "GPTQ")


@dataclass(frozen=True)
class LeaderboardModel:
    """A model as the leaderboard's archive is asked for it: `ORG/NAME`, or `ORG/NAME:PRECISION` for one of its
    evaluations (the archive's precisions: bfloat16, float16, 8bit, 4bit, GPTQ)."""

    model: str
    precision: str | None = None

    @classmethod
    def parse(cls, text: str, name: str | None = None, prefix: str = "") -> LeaderboardModel:
        """The one parser of `ORG/NAME[:PRECISION]`. An error names the parameter `name` that was given `text`
        (with `prefix` before it where the text came with one: `leaderboard:`)."""
        model, colon, precision = text.partition(":")
        org, slash, repo = model.partition("/")
        if not (org and slash and repo) or "/" in repo or (colon and not precision) or ":" in precision:
            shown = (f"{param(name)} " if name else "") + prefix + text
            example = "" if prefix else "a Hub model id, "
            raise OptionError(f"{shown}: give {example}{prefix}ORG/NAME or {prefix}ORG/NAME:PRECISION")
        return cls(model, precision or None)

    @classmethod
    def of(cls, wanted: LeaderboardModel | str) -> LeaderboardModel:
        return wanted if isinstance(wanted, LeaderboardModel) else cls.parse(wanted)

    def __str__(self) -> str:
        return self.model + (f":{self.precision}" if self.precision else "")


@dataclass(frozen=True)
class PublishedEvaluation:
    """One row of the leaderboard's contents table: what it published for one evaluation of a model."""

    model: str
    precision: str
    average: float  # %, as published
    scores: dict[str, float]  # suite column (ARC, ..., GSM8K) -> %, as published
    date: datetime | None = None  # when the evaluation was submitted
    sha: str | None = None  # the model commit it evaluated
    params_billions: float | None = None
    others: tuple[str, ...] = field(default=(), compare=False)  # the model's other precisions in the table

    @property
    def parameters(self) -> int | None:
        return round(self.params_billions * 1e9) if self.params_billions else None

    @property
    def label(self) -> str:
        """The model, with the precision said where the table holds it in several."""
        return f"{self.model} ({self.precision})" if self.others else self.model


@dataclass(frozen=True)
class ContentsTable:
    """The contents table as read: every evaluation, and where it came from (for error lines)."""

    rows: tuple[PublishedEvaluation, ...]
    source: str

    def select(self, wanted: LeaderboardModel | str) -> PublishedEvaluation:
        """The evaluation that stands for `wanted`: `ORG/NAME` (the rule above) or `ORG/NAME:PRECISION`."""
        asked = LeaderboardModel.of(wanted)
        model, precision = asked.model, asked.precision
        mine = [r for r in self.rows if r.model == model] or [r for r in self.rows if r.model.lower() == model.lower()]
        if not mine:
            near = _near(model, {r.model for r in self.rows})
            hint = f"; close names: {', '.join(near)}" if near else ""
            raise ArchiveError(
                f"{model} is not in the Open LLM Leaderboard's archive ({len(self.rows)} evaluations in "
                f"{self.source}){hint}"
            )
        held = sorted({r.precision for r in mine}, key=precision_rank)
        if precision:
            mine = [r for r in mine if r.precision.lower() == precision.lower()]
            if not mine:
                raise ArchiveError(
                    f"the archive holds {model} in {', '.join(held)}, not in {precision}; give {model}:{held[0]}"
                )
        best = min(mine, key=lambda r: (precision_rank(r.precision), -_timestamp(r.date)))
        others = tuple(p for p in held if p != best.precision)
        return PublishedEvaluation(
            best.model, best.precision, best.average, best.scores, best.date, best.sha, best.params_billions, others
        )


def precision_rank(precision: str) -> int:
    """Where a precision stands in PRECISION_ORDER (others after)."""
    lowered = [p.lower() for p in PRECISION_ORDER]
    return lowered.index(precision.lower()) if precision.lower() in lowered else len(lowered)


def _timestamp(date: datetime | None) -> float:
    return date.timestamp() if date is not None else float("-inf")


def _near(model: str, names: Iterable[str]) -> list[str]:
    """Up to three names sharing the model's repo name (another org) or its org and a name prefix."""
    org, _, name = model.lower().rpartition("/")
    found = sorted(n for n in names if n.lower().rpartition("/")[2] == name or (
        org and n.lower().startswith(f"{org}/{name[:4]}")))  # fmt: skip
    return found[:3]


def read_contents(path: Path) -> ContentsTable:
    """A local copy of the contents table: the Hub's parquet file, or a CSV with the same columns."""
    if not path.is_file():
        raise ArchiveError(f"{param('published_contents')} {path}: no such file")
    import pandas as pd

    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={SHA_COLUMN: str})
    except Exception as e:  # pandas and pyarrow raise many kinds for a file that is not a table
        raise ArchiveError(
            f"{param('published_contents')} {path}: not a parquet or CSV table ({type(e).__name__})"
        ) from e
    return contents_from_records(frame.to_dict("records"), str(path))


def contents_from_records(records: Sequence[dict[str, Any]], source: str) -> ContentsTable:
    """The table's rows from its records (column -> value), checked: the columns evalsuite reads are there and
    every score is a number between 0 and 100."""
    if records and (missing := [c for c in REQUIRED_COLUMNS if c not in records[0]]):
        raise ArchiveError(
            f"{source}: not the leaderboard's contents table (no column {', '.join(repr(m) for m in missing)})"
        )
    rows = []
    for number, record in enumerate(records, start=1):
        scores = {column: _score(record, column, source, number) for column in SCORE_COLUMNS}
        rows.append(
            PublishedEvaluation(
                model=str(record[MODEL_COLUMN]),
                precision=str(record[PRECISION_COLUMN]),
                average=_score(record, AVERAGE_COLUMN, source, number),
                scores=scores,
                date=_date(record.get(DATE_COLUMN)),
                sha=_text(record.get(SHA_COLUMN)),
                params_billions=_number(record.get(PARAMS_COLUMN)),
            )
        )
    return ContentsTable(tuple(rows), source)


def _score(record: dict[str, Any], column: str, source: str, number: int) -> float:
    value = _number(record.get(column))
    if value is None or not 0 <= value <= 100:
        raise ArchiveError(f"{source}, row {number}: {column} is {record.get(column)!r}, not a score in %")
    return value


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) or value == "" else str(value)


def _date(value: Any) -> datetime | None:
    text = _text(value)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

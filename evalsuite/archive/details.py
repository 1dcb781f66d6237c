"""The leaderboard's per-document details: the Hub datasets `open-llm-leaderboard-old/details_<org>__<name>`, one
per model, where it kept every document it scored (the prompt it sent, the choices, each choice's
log-likelihood or the generated text, the document's metrics). docs/archive.md has the format and its sources.

Layout (written by lighteval's `EvaluationTracker.save`/`details_to_hub`, lighteval e469d7e to 1fb7968):
- `results_<ts>.json` (and `.parquet`) at the root, one per run;
- `<ts>/details_<suite>|<task>|<shots>_<ts>.parquet` per task of a run (`details_harness|arc:challenge|25_...`);
  timestamps have colons up to late August 2023 and dashes after, sometimes mixed;
- the card's YAML `configs`: one config per task, named `re.sub(r"\\W", "_", task)`, one split per run (the
  timestamp, sanitized) and `latest`, each with `data_files` globs `**/details_<task>_<ts>.parquet`.

Rows: the 2024 generation is lighteval's `DetailsLogger.Detail` (columns sorted by name; when Arrow could not
take a row, every field was written as Python's `str(value)`); the 2023 generation has flat metric columns and
`gold` as an int. Any other shape is refused with one line naming its columns: nothing is paired on a guess.

This module knows the format and nothing of runs: it reads files into `PublishedDocument`s and writes rows of
the 2024 generation (`detail_row`) for exports.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from evalsuite.archive.tasks import LEADERBOARD_TASKS
from evalsuite.errors import ArchiveError

DETAILS_ORG = "open-llm-leaderboard-old"
LATEST = "latest"

_TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d[-:_]\d\d[-:_]\d\d(?:\.\d+)?"
_DETAILS_FILE = re.compile(rf"details_(?P<task>[^|/]+\|[^|/]+\|\d+)_(?P<ts>{_TIMESTAMP})\.parquet$")
_RESULTS_FILE = re.compile(rf"results_(?P<ts>{_TIMESTAMP})\.json$")


class Generation(StrEnum):
    Y2023 = "2023"  # flat metric columns, `gold` an int
    Y2024 = "2024"  # lighteval's Detail: a `metrics` struct, `gold_index` or `gold` lists


# Columns of each generation: those a file must have, and those it may have beside them.
_REQUIRED_2024 = {"choices", "example", "full_prompt", "metrics", "predictions"}
_OPTIONAL_2024 = {
    "cont_tokens", "gold", "gold_index", "input_tokens", "instruction", "num_asked_few_shots",
    "num_effective_few_shots", "padded", "pred_logits", "truncated",
}  # fmt: skip
_METRIC_COLUMNS = {"acc", "acc_norm", "mc1", "mc2", "em", "exact_match", "qem", "pem", "pqem"}
_REQUIRED_2023 = {"choices", "gold"}
_OPTIONAL_2023 = {
    "cont_tokens", "example", "full_prompt", "hashes", "input_tokens", "instruction", "num_asked_few_shots",
    "num_effective_few_shots", "padded", "pred_logits", "predictions", "query", "truncated",
} | _METRIC_COLUMNS  # fmt: skip


def details_repo(model: str) -> str:
    """The Hub dataset holding `model`'s details: `open-llm-leaderboard-old/details_<org>__<name>`."""
    return f"{DETAILS_ORG}/details_{model.replace('/', '__')}"


def task_name(key: str, subject: str | None = None) -> str:
    """The details file's task of a suite task: `harness|arc:challenge|25`, `harness|hendrycksTest-anatomy|5`."""
    return LEADERBOARD_TASKS[key].name(subject)


def suite_key_of(task: str) -> tuple[str, str | None] | None:
    """`harness|hendrycksTest-anatomy|5` -> ("mmlu", "anatomy"); None for a task outside H6."""
    for entry in LEADERBOARD_TASKS.values():
        if (subject := entry.subject_of(task)) is not None:
            return entry.key, subject
        if task == entry.name():
            return entry.key, None
    return None


def config_name(task: str) -> str:
    """The card's config of a task's details: `harness_arc_challenge_25` (the writer's `re.sub(r"\\W", "_", ...)`)."""
    return re.sub(r"\W", "_", task)


def canonical_timestamp(text: str) -> str:
    """A run's timestamp as written in file names after August 2023 (`2023-12-28T10-11-12.123456`), from a
    file name's (colons or dashes) or a split's (`2023_12_28T10_11_12.123456`)."""
    date, _, time = text.partition("T")
    return f"{date.replace('_', '-')}T{re.sub(r'[:_]', '-', time)}"


def split_name(timestamp: str) -> str:
    """The card's split of a run: the timestamp with every character but word characters and '.' as '_'."""
    return re.sub(r"[^\w\.]", "_", timestamp)


def details_file_name(task: str, timestamp: str) -> str:
    return f"details_{task}_{timestamp}.parquet"


def parse_details_file_name(name: str) -> tuple[str, str] | None:
    """(task, canonical timestamp) of a details file name, None for any other file."""
    found = _DETAILS_FILE.search(name)
    return (found["task"], canonical_timestamp(found["ts"])) if found else None


def results_timestamp(name: str) -> str | None:
    found = _RESULTS_FILE.search(name)
    return canonical_timestamp(found["ts"]) if found else None


# ------------------------------------------------------------------------------------------ documents


@dataclass(frozen=True)
class PublishedDocument:
    """One document as the leaderboard scored it."""

    prompt: str  # what it sent (`full_prompt`; the 2023 generation's `query` when it has no full_prompt)
    example: str  # the document alone, without few-shot (2024), or its id (2023)
    choices: tuple[str, ...]
    gold: tuple[int, ...]  # indices of the right choices (multiple choice)
    loglikelihoods: tuple[float, ...] | None  # one per choice (multiple choice)
    generated: str | None  # the generated text (GSM8K)
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class TaskDetails:
    """One details file: the documents of one task of one run."""

    task: str  # `harness|arc:challenge|25`
    timestamp: str  # canonical
    file: str  # its path in the repo (or the local copy)
    generation: Generation
    documents: tuple[PublishedDocument, ...]

    def score(self, metric: str) -> float | None:
        """The mean of `metric` over the file's documents (None when it has none)."""
        values = [d.metrics[metric] for d in self.documents if metric in d.metrics]
        return sum(values) / len(values) if values and len(values) == len(self.documents) else None


@dataclass(frozen=True)
class DetailsIndex:
    """What a details repo (or a local copy of one) holds: task -> timestamp -> the file's path, and the run each
    task's `latest` split points at."""

    files: dict[str, dict[str, str]] = field(default_factory=dict)
    latest: dict[str, str] = field(default_factory=dict)

    def runs_of(self, task: str) -> list[str]:
        """The task's runs, newest first."""
        return sorted(self.files.get(task, {}), reverse=True)


def index_from_paths(paths: Iterable[str]) -> DetailsIndex:
    """The index of a repo's file list (no card): each task's latest is its newest run."""
    files: dict[str, dict[str, str]] = {}
    for path in paths:
        parsed = parse_details_file_name(path.rsplit("/", 1)[-1])
        if parsed is not None:
            files.setdefault(parsed[0], {})[parsed[1]] = path
    return DetailsIndex(files, {task: max(runs) for task, runs in files.items()})


def card_configs(card_text: str) -> list[dict[str, Any]]:
    """The YAML `configs` of a dataset card's text, through huggingface_hub's card parser ([] when none)."""
    import yaml
    from huggingface_hub import DatasetCard

    try:
        configs = DatasetCard(card_text).data.to_dict().get("configs")
    except (yaml.YAMLError, ValueError) as e:  # front matter that is not YAML, or YAML that is not a mapping
        raise ArchiveError(f"the details card's metadata cannot be read ({type(e).__name__}: {e})") from e
    return [c for c in configs if isinstance(c, dict)] if isinstance(configs, list) else []


def index_from_configs(configs: Sequence[Mapping[str, Any]]) -> DetailsIndex:
    """The index of a card's YAML `configs` (`config_name`, `data_files: [{split, path}]`): the files as the
    globs name them (`**/details_<task>_<ts>.parquet`), and each task's `latest` as the card says."""
    files: dict[str, dict[str, str]] = {}
    latest: dict[str, str] = {}
    for config in configs:
        data_files = config.get("data_files")
        if not isinstance(data_files, list):
            continue
        for entry in data_files:
            paths = entry.get("path") if isinstance(entry, Mapping) else None
            paths = [paths] if isinstance(paths, str) else paths
            if not isinstance(paths, list):
                continue
            for path in paths:
                parsed = parse_details_file_name(str(path).rsplit("/", 1)[-1])
                if parsed is None:
                    continue
                task, timestamp = parsed
                files.setdefault(task, {})[timestamp] = str(path)
                if entry.get("split") == LATEST:
                    latest[task] = timestamp
    return DetailsIndex(files, latest)


def read_details_file(path: Path, task: str, timestamp: str) -> TaskDetails:
    """A details parquet file's rows as documents; ArchiveError (one line naming the columns) for a shape of
    neither generation."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
        columns = set(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as e:  # not parquet (ArrowInvalid), damaged (OSError: thrift, snappy)
        raise ArchiveError(f"{path}: not a parquet file ({type(e).__name__})") from e
    generation = _generation(path, columns)
    read = _document_2024 if generation is Generation.Y2024 else _document_2023
    documents = []
    for number, row in enumerate(rows):
        try:
            documents.append(read(row))
        except (ValueError, TypeError, KeyError, SyntaxError) as e:
            raise ArchiveError(f"{path}: row {number}: {type(e).__name__}: {e}") from e
    return TaskDetails(task, timestamp, str(path), generation, tuple(documents))


def _generation(path: Path, columns: set[str]) -> Generation:
    if _REQUIRED_2024 <= columns and columns <= _REQUIRED_2024 | _OPTIONAL_2024 and columns & {"gold", "gold_index"}:
        return Generation.Y2024
    if (_REQUIRED_2023 <= columns and columns <= _REQUIRED_2023 | _OPTIONAL_2023 and columns & _METRIC_COLUMNS
            and columns & {"full_prompt", "query"}):  # fmt: skip
        return Generation.Y2023
    known = _REQUIRED_2024 | _OPTIONAL_2024 | _REQUIRED_2023 | _OPTIONAL_2023
    unknown = sorted(columns - known)
    why = f"unknown columns {', '.join(unknown)}" if unknown else "columns missing for either generation"
    raise ArchiveError(
        f"{path}: not a details file of the leaderboard evalsuite can read ({why}; its columns: "
        f"{', '.join(sorted(columns))}); docs/archive.md lists the two known shapes"
    )


def _value(raw: Any) -> Any:
    """A field as written: a value, or Python's `str(value)` when Arrow could not take the row."""
    if isinstance(raw, str) and raw[:1] in "[({" and raw[-1:] in "])}":
        return ast.literal_eval(raw)
    return raw


def _text(raw: Any) -> str:
    return "" if raw is None else str(raw)


def _number(raw: Any) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"{raw!r} is not a finite number")
    return value


def _predictions(raw: Any) -> tuple[tuple[float, ...] | None, str | None]:
    """(per-choice log-likelihoods, generated text): a list of floats, of (log-likelihood, is-greedy) pairs (bools
    Arrow stored as 0.0/1.0), or of one generated text (or a (text, logits) pair)."""
    values = list(_value(raw) or [])
    if not values:
        return None, None
    first = values[0]
    if isinstance(first, str):
        return None, first
    if isinstance(first, list | tuple) and first and isinstance(first[0], str):
        return None, first[0]
    if isinstance(first, list | tuple):
        return tuple(_number(v[0]) for v in values), None
    return tuple(_number(v) for v in values), None


def _metrics(raw: Mapping[str, Any]) -> dict[str, float]:
    return {name: _number(value) for name, value in raw.items() if value is not None}


def _indices(raw: Any) -> tuple[int, ...]:
    value = _value(raw)
    if value is None:
        return ()
    return tuple(int(v) for v in value) if isinstance(value, list | tuple) else (int(value),)


def _document_2024(row: Mapping[str, Any]) -> PublishedDocument:
    loglikelihoods, generated = _predictions(row["predictions"])
    metrics = _value(row["metrics"])
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics is {type(metrics).__name__}, not a struct")
    return PublishedDocument(
        prompt=_text(row["full_prompt"]),
        example=_text(row["example"]),
        choices=tuple(str(c) for c in (_value(row["choices"]) or [])),
        gold=_indices(row.get("gold_index")),
        loglikelihoods=loglikelihoods,
        generated=generated,
        metrics=_metrics(metrics),
    )


def _document_2023(row: Mapping[str, Any]) -> PublishedDocument:
    loglikelihoods, generated = _predictions(row.get("predictions"))
    prompt = row.get("full_prompt") if row.get("full_prompt") is not None else row.get("query")
    return PublishedDocument(
        prompt=_text(prompt),
        example=_text(row.get("example") or row.get("query")),
        choices=tuple(str(c) for c in (_value(row["choices"]) or [])),
        gold=_indices(row["gold"]),
        loglikelihoods=loglikelihoods,
        generated=generated,
        metrics=_metrics({k: row[k] for k in _METRIC_COLUMNS if k in row}),
    )


# ------------------------------------------------------------------------------------------- writing


# The columns of the 2024 generation, in the file's order (the writer sorted them by name).
DETAIL_COLUMNS = tuple(sorted(_REQUIRED_2024 | _OPTIONAL_2024))


def detail_row(
    *,
    prompt: str,
    example: str,
    choices: Sequence[str],
    metrics: Mapping[str, float],
    gold_index: Sequence[int] = (),
    gold: Sequence[str] = (),
    loglikelihoods: Sequence[tuple[float, bool]] = (),
    generated: str | None = None,
    shots: int = 0,
) -> dict[str, Any]:
    """One row of a 2024-generation details file (lighteval's Detail as the leaderboard wrote it): predictions
    are each choice's (log-likelihood, is-greedy), the pair lighteval's LoglikelihoodReturn held and Arrow
    stored as two doubles, or the generated text; token ids, truncation and padding are not kept by lm-eval and
    are written empty."""
    predictions: list[Any] = (
        [generated] if generated is not None else [[float(ll), float(greedy)] for ll, greedy in loglikelihoods]
    )
    return {
        "choices": list(choices),
        "cont_tokens": [],
        "example": example,
        "full_prompt": prompt,
        "gold": list(gold),
        "gold_index": [int(i) for i in gold_index],
        "input_tokens": [],
        "instruction": "",
        "metrics": {name: float(value) for name, value in metrics.items()},
        "num_asked_few_shots": shots,
        "num_effective_few_shots": shots,
        "padded": [],
        "pred_logits": [],
        "predictions": predictions,
        "truncated": [],
    }


# ------------------------------------------------------------------------------------------ choosing


@dataclass(frozen=True)
class ChosenFile:
    task: str
    timestamp: str
    path: str  # as the index names it (a glob under the card's configs, a relative path in a local copy)


def choose_files(index: DetailsIndex, published_runs: Sequence[str]) -> tuple[list[ChosenFile], list[str]]:
    """Per H6 task of the index, the details of the run the leaderboard published: the newest of its runs whose
    results file the leaderboard merged (`published_runs`, canonical timestamps); else the card's `latest`.
    Returns the files and a line for each task read from a run the published results do not name, or whose
    `latest` points elsewhere (the leaderboard's debug runs: a few rows that `latest` may point at)."""
    chosen = []
    wanted = set(published_runs)
    # what to say, by (suite key, latest, run read): MMLU's 57 subjects share one line
    said: dict[tuple[str, str, str], list[str]] = {}
    for task in sorted(index.files):
        key = suite_key_of(task)
        if key is None:
            continue
        runs = index.runs_of(task)
        published = [run for run in runs if run in wanted]
        latest = index.latest.get(task, runs[0])
        run = published[0] if published else latest
        if run != latest or not published:
            said.setdefault((key[0], latest, run), []).append(task)
        chosen.append(ChosenFile(task, run, index.files[task][run]))
    notes = []
    for (_, latest, run), tasks in said.items():
        what = tasks[0] if len(tasks) == 1 else f"{len(tasks)} MMLU subjects ({tasks[0]}, ...)"
        if run in wanted:
            notes.append(f"{what}: latest points at {latest}, a run whose results the leaderboard did not publish "
                         f"(a test run?); read {run}, the published one")  # fmt: skip
        else:
            notes.append(f"{what}: no run of the leaderboard's results files ({', '.join(published_runs) or 'none'}); "
                         f"read latest ({run})")  # fmt: skip
    return chosen, notes

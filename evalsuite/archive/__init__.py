"""The archived Open LLM Leaderboard (v1) as a source: what it published for the ~7,000 models it evaluated.

- the contents table (`open-llm-leaderboard-old/contents`): one row per evaluation, scores in % as shown, and
  which row stands for a model (full precision first, then the latest): `contents`;
- a model's results files (`open-llm-leaderboard-old/results`): full precision per task and per MMLU subject,
  with standard errors, merged as the leaderboard merged them: `results_files`;
- a model's details (`open-llm-leaderboard-old/details_<org>__<name>`): every document it scored, with the
  prompt sent, each choice's log-likelihood or the generated text: `details`;
- the six tasks as its harness named them in both (`harness|<task>|<shots>`), with the metrics it kept: `tasks`;
- read from the Hub through huggingface_hub (cached; HF_HUB_OFFLINE=1 reads the cache), or from local copies:
  `hub`.

This subpackage alone knows the archive's formats. Its numbers are the leaderboard's, never measured here:
whatever shows them says so. Imports huggingface_hub and pandas inside functions; nothing of the run side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evalsuite.archive.contents import (
    PRECISION_ORDER,
    ContentsTable,
    LeaderboardModel,
    PublishedEvaluation,
    contents_from_records,
    read_contents,
)
from evalsuite.archive.details import PublishedDocument, TaskDetails
from evalsuite.archive.results_files import TASK_KEYS, PublishedResult, PublishedScore, read_results_files
from evalsuite.archive.tasks import LEADERBOARD_TASKS, LeaderboardTask
from evalsuite.errors import ArchiveError, param

__all__ = [
    "LEADERBOARD_TASKS",
    "PRECISION_ORDER",
    "TASK_KEYS",
    "ArchiveError",
    "ContentsTable",
    "LeaderboardModel",
    "LeaderboardTask",
    "PublishedDetails",
    "PublishedDocument",
    "PublishedEvaluation",
    "PublishedResult",
    "PublishedScore",
    "TaskDetails",
    "contents_from_records",
    "load_contents",
    "published_details",
    "published_result",
    "read_contents",
    "read_results_files",
]


def load_contents(published_contents: Path | None = None) -> ContentsTable:
    """The contents table: the local copy `published_contents`, else the Hub's (cached)."""
    if published_contents is not None:
        return read_contents(published_contents)
    from evalsuite.archive import hub

    return read_contents(hub.contents_file())


def published_result(wanted: LeaderboardModel | str, results_dir: Path | None = None) -> PublishedResult:
    """What the leaderboard measured for `wanted` (`ORG/NAME` or `ORG/NAME:PRECISION`), from its results files:
    under `results_dir` (a copy laid out as the Hub's: `<org>/<name>/results_*.json`), else the Hub's (cached)."""
    asked = LeaderboardModel.of(wanted)
    model, precision = asked.model, asked.precision
    if results_dir is not None:
        if not results_dir.is_dir():
            raise ArchiveError(f"{param('published_results')} {results_dir}: no such directory")
        paths = sorted((results_dir / model).glob("results_*.json"))
        if not paths:
            raise ArchiveError(f"{model}: no results_*.json under {results_dir / model}")
    else:
        from evalsuite.archive import hub

        paths = hub.results_files(model)
        if not paths:
            raise ArchiveError(f"{model}: the leaderboard's archive holds no results file for it ({hub.RESULTS_REPO})")
    return read_results_files(paths, model, precision)


@dataclass(frozen=True)
class PublishedDetails:
    """A model's details as the leaderboard published them: per suite key, the details files read (MMLU: one per
    subject), and a line for each choice of file worth knowing (docs/archive.md)."""

    repo: str  # the Hub dataset, or the local copy's folder
    tasks: dict[str, list[TaskDetails]]
    notes: list[str]


def published_details(
    model: str, published: PublishedResult, details_dir: Path | None = None, keys: Sequence[str] | None = None
) -> PublishedDetails:
    """The details of the evaluation `published` is (the runs whose results files it merged), for the suite
    `keys` (default: all six): from `details_dir` (a copy laid out as the Hub's details repo), else from the
    Hub (the card's configs, then only the files chosen; cached)."""
    from evalsuite.archive import details

    published_runs = [t for t in (details.results_timestamp(f) for f in published.files) if t is not None]
    if details_dir is not None:
        if not details_dir.is_dir():
            raise ArchiveError(f"{param('published_details')} {details_dir}: no such directory")
        card = details_dir / "README.md"
        configs = details.card_configs(card.read_text(encoding="utf-8")) if card.is_file() else []
        paths = (p.relative_to(details_dir).as_posix() for p in details_dir.rglob("*.parquet"))
        index = details.index_from_configs(configs) if configs else details.index_from_paths(paths)
        folder, repo = details_dir, str(details_dir)
    else:
        from evalsuite.archive import hub

        repo = details.details_repo(model)
        index = details.index_from_configs(details.card_configs(hub.details_card(repo).read_text(encoding="utf-8")))
        folder = None
    chosen, notes = details.choose_files(index, published_runs)
    chosen = [c for c in chosen if keys is None or (details.suite_key_of(c.task) or ("",))[0] in keys]
    if not chosen:
        raise ArchiveError(f"{repo}: holds no details of the H6 tasks{'' if keys is None else ' asked for'}")
    if folder is None:
        from evalsuite.archive import hub

        folder = hub.details_files(repo, [c.path for c in chosen])
    tasks: dict[str, list[TaskDetails]] = {}
    for c in chosen:
        name = c.path.rsplit("/", 1)[-1]
        found = sorted(p for p in folder.rglob(name) if p.is_file())  # a glob's file, in its run's folder
        if not found:
            raise ArchiveError(f"{repo}: {c.path} is named by its card but not there")
        key = details.suite_key_of(c.task)
        assert key is not None
        tasks.setdefault(key[0], []).append(details.read_details_file(found[0], c.task, c.timestamp))
    return PublishedDetails(repo, tasks, notes)

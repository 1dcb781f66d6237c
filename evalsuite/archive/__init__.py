"""The archived Open LLM Leaderboard (v1) as a source: what it published for the ~7,000 models it evaluated.

- the contents table (`open-llm-leaderboard-old/contents`): one row per evaluation, scores in % as shown, and
  which row stands for a model (full precision first, then the latest): `contents`;
- a model's results files (`open-llm-leaderboard-old/results`): full precision per task and per MMLU subject,
  with standard errors, merged as the leaderboard merged them: `results_files`;
- read from the Hub through huggingface_hub (cached; HF_HUB_OFFLINE=1 reads the cache), or from local copies:
  `hub`.

This subpackage alone knows the archive's formats. Its numbers are the leaderboard's, never measured here:
whatever shows them says so. Imports huggingface_hub and pandas inside functions; nothing of the run side.
"""

from __future__ import annotations

from pathlib import Path

from evalsuite.archive.contents import (
    PRECISION_ORDER,
    ContentsTable,
    LeaderboardModel,
    PublishedEvaluation,
    contents_from_records,
    read_contents,
)
from evalsuite.archive.results_files import TASK_KEYS, PublishedResult, PublishedScore, read_results_files
from evalsuite.errors import ArchiveError, param

__all__ = [
    "PRECISION_ORDER",
    "TASK_KEYS",
    "ArchiveError",
    "ContentsTable",
    "LeaderboardModel",
    "PublishedEvaluation",
    "PublishedResult",
    "PublishedScore",
    "contents_from_records",
    "load_contents",
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

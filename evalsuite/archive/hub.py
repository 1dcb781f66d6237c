"""The archive on the Hub, through huggingface_hub: downloaded once into its cache, then read from there (with
HF_HUB_OFFLINE=1 too). An unreachable Hub with nothing cached is one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from evalsuite.errors import ArchiveError, HubError, param

CONTENTS_REPO = "open-llm-leaderboard-old/contents"
RESULTS_REPO = "open-llm-leaderboard-old/results"


def contents_file() -> Path:
    """The contents table's parquet file, from the Hub's cache (downloaded on first use)."""
    folder = _snapshot(CONTENTS_REPO, ["data/*.parquet"], "published_contents", "the contents table")
    files = sorted(folder.glob("data/*.parquet"))
    if len(files) != 1:
        raise ArchiveError(f"{CONTENTS_REPO}: expected one parquet file under data/, found {len(files)}")
    return files[0]


def results_files(model: str) -> list[Path]:
    """The model's results files (`<org>/<model>/results_*.json`), from the Hub's cache."""
    folder = _snapshot(RESULTS_REPO, [f"{model}/results_*.json"], "published_results", "its results files")
    return sorted((folder / model).glob("results_*.json"))


def details_card(repo_id: str) -> Path:
    """The README.md of a model's details dataset (its YAML `configs` index the files), from the Hub's cache."""
    from huggingface_hub import hf_hub_download

    return _from_hub(repo_id, lambda: hf_hub_download(repo_id, "README.md", repo_type="dataset"),
                     "published_details", "its details")  # fmt: skip


def details_files(repo_id: str, paths: list[str]) -> Path:
    """The snapshot folder holding `paths` (the card's globs) of a model's details dataset, from the Hub's cache."""
    return _snapshot(repo_id, paths, "published_details", "its details")


def _snapshot(repo_id: str, patterns: list[str], local_copy: str, what: str) -> Path:
    """The repo's files matching `patterns`; `local_copy` names the parameter that takes a copy of `what`."""
    from huggingface_hub import snapshot_download

    return _from_hub(repo_id, lambda: snapshot_download(repo_id, repo_type="dataset", allow_patterns=patterns),
                     local_copy, what)  # fmt: skip


def _from_hub(repo_id: str, download: Callable[[], str], local_copy: str, what: str) -> Path:
    """`download()`'s path; the library's errors as one line, `local_copy` naming the parameter that takes a
    copy of `what`."""
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(download())
    except RepositoryNotFoundError as e:
        raise HubError(f"{repo_id}: not found on the Hub") from e
    except LocalEntryNotFoundError as e:  # offline (HF_HUB_OFFLINE=1, or the Hub unreachable) with no cache
        raise HubError(
            f"the leaderboard's archive ({repo_id}) is not in the Hugging Face cache and the Hub cannot be "
            f"reached; run once where it can, or pass {param(local_copy)} with a copy of {what}"
        ) from e
    except Exception as e:  # the Hub down or rate-limiting: the library's error, on one line
        why = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        raise HubError(
            f"the leaderboard's archive ({repo_id}) could not be read from the Hub ({why}); pass "
            f"{param(local_copy)} with a copy of {what}"
        ) from e

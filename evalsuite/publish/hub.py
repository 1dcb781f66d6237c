"""Uploads to the Hub: a model card's README (and its `.eval_results` file), updated on the Hub's own current text
and committed on top of the revision that text came from (huggingface_hub's commit API, `parent_commit`).

A co-author's edit in the web editor, or a merged pull request, is on the Hub and not in the local README: so
the README that is pushed is the Hub's, with evalsuite's parts brought up to date in it exactly as in the local
one (evalsuite.publish.card_update), never the local file. The commit names the revision it was made on; if
the Hub moved on meanwhile it refuses the commit (412), and the update is made again once on the new text, then
refused in one line. Token from HF_TOKEN or the huggingface_hub login, never printed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from evalsuite.errors import HubError
from evalsuite.model import access_refused, unreachable_reason
from evalsuite.publish.card_update import CardInputs, CardUpdate, CardUpdateRequest, plan_card_update

T = TypeVar("T")

COMMIT_MESSAGE = "Update evaluation results (evalsuite card update)"
STALE_PARENT = 412  # the Hub's answer to a commit whose parent is no longer the branch's head


@dataclass(frozen=True)
class Pushed:
    """What a push did: the commit or pull request URL (None: the Hub's card was already up to date), the
    revision it was made on, and the update as made on the Hub's text."""

    url: str | None
    parent_commit: str
    update: CardUpdate
    attempts: int


def push_card_update(request: CardUpdateRequest, inputs: CardInputs, repo_id: str, create_pr: bool) -> Pushed:
    """Update the card on the Hub: read its README (and `.eval_results` file) at the head revision, apply
    evalsuite's parts to that text as `inputs` apply them locally, and commit on that revision. A Hub that
    moved on meanwhile is read again once."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    for attempt in (1, 2):
        head = _call(lambda: api.model_info(repo_id).sha, repo_id, "read")
        assert head is not None
        local = plan_card_update(request, inputs)
        on_hub = replace(
            inputs,
            readme_text=_hub_text(repo_id, local.files[0].in_repo, head),
            eval_results_text=_hub_text(repo_id, local.files[1].in_repo, head) if len(local.files) > 1 else "",
        )
        update = plan_card_update(request, on_hub)
        if not update.stale:
            return Pushed(None, head, update, attempt)
        operations = [CommitOperationAdd(path_in_repo=f.in_repo, path_or_fileobj=f.new.encode("utf-8"))
                      for f in update.stale]  # fmt: skip
        try:
            commit = api.create_commit(
                repo_id=repo_id, repo_type="model", operations=operations, commit_message=COMMIT_MESSAGE,
                create_pr=create_pr, parent_commit=head,
            )  # fmt: skip
        except HfHubHTTPError as e:
            if _status(e) == STALE_PARENT and attempt == 1:
                continue  # someone committed meanwhile: their text is the Hub's now; update that
            if _status(e) == STALE_PARENT:
                raise HubError(
                    f"{repo_id}: the card on the Hub changed twice while evalsuite updated it; run the same "
                    "command again"
                ) from e
            raise _failure(e, repo_id, "write") from e
        except Exception as e:  # network, validation: one line, never the token
            raise _failure(e, repo_id, "write") from e
        return Pushed(str(commit.pr_url or commit.commit_url), head, update, attempt)
    raise AssertionError("unreachable")


DETAILS_COMMIT_MESSAGE = "Add evaluation details (evalsuite details push)"


def push_details(folder: Path, repo_id: str) -> str:
    """An exported details folder (`evalsuite details export`) as the Hub dataset `repo_id` (created if it is not
    there), in one commit; returns the commit's URL. A repo that already holds details gets this run's files
    beside its own, and the card is this export's (its configs name this run)."""
    from huggingface_hub import CommitOperationAdd, HfApi

    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not (folder / "README.md").is_file() or not any(p.suffix == ".parquet" for p in files):
        raise HubError(f"{folder}: not a details folder (no README.md and parquet files): make it with "
                       "`evalsuite details export RUN DIR`")  # fmt: skip
    api = HfApi()
    _call(lambda: api.create_repo(repo_id, repo_type="dataset", exist_ok=True), repo_id, "create")
    operations = [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
                  for p in files]  # fmt: skip
    commit = _call(lambda: api.create_commit(repo_id=repo_id, repo_type="dataset", operations=operations,
                                             commit_message=DETAILS_COMMIT_MESSAGE), repo_id, "write")  # fmt: skip
    return str(commit.commit_url)


def _hub_text(repo_id: str, path_in_repo: str, revision: str) -> str:
    """A file of the repo at `revision`, as UTF-8 text ("" where the repo has no such file)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        local = _call(
            lambda: hf_hub_download(repo_id, path_in_repo, revision=revision, repo_type="model"), repo_id, "read",
            absent=RemoteEntryNotFoundError,
        )  # fmt: skip
    except _Absent:
        return ""
    with open(local, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HubError(f"{repo_id}: its {path_in_repo} on the Hub is not UTF-8 (byte {e.start})") from e


class _Absent(Exception):
    """The file is not in the repo."""


def _call(call: Callable[[], T], repo_id: str, verb: str, absent: type[BaseException] | None = None) -> T:
    try:
        return call()
    except Exception as e:
        if absent is not None and isinstance(e, absent):
            raise _Absent() from e
        raise _failure(e, repo_id, verb) from e


def _failure(error: BaseException, repo_id: str, verb: str) -> HubError:
    """One line for a failed Hub call: access refused (401/403: the token), not found, unreachable, or else."""
    from huggingface_hub.errors import RepositoryNotFoundError

    if (refused := access_refused(error, repo_id)) is not None:
        return refused
    if isinstance(error, RepositoryNotFoundError):
        return HubError(f"{repo_id}: not found on the Hub (a typo, or private: check the token)")
    if (why := unreachable_reason(error)) is not None:
        return HubError(f"the Hugging Face Hub is unreachable ({why}); nothing was pushed, run again when it is")
    first = str(error).splitlines()[0] if str(error) else ""
    return HubError(f"could not {verb} {repo_id} on the Hub: {type(error).__name__}: {first}")


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)

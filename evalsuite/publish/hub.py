"""Uploads to the Hub: a model card's README (and its `.eval_results` file), byte for byte as they are on disk,
in one commit (huggingface_hub's commit API)."""

from __future__ import annotations

from pathlib import Path

from evalsuite.errors import HubError


def push_files(files: dict[str, Path], repo_id: str, create_pr: bool) -> str:
    """Upload each local file to its path in the Hub model repo, byte for byte as it is on disk, in one commit
    (or one pull request); returns the commit or PR URL.

    (ModelCard.push_to_hub would serialise its parsed metadata again: comments dropped, lists reflowed.)
    Token from HF_TOKEN or the huggingface_hub login, never printed.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    operations = [
        CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=local.resolve().read_bytes())
        for path_in_repo, local in files.items()
    ]
    try:
        commit = HfApi().create_commit(
            repo_id=repo_id,
            repo_type="model",
            operations=operations,
            commit_message="Update evaluation results (evalsuite card update)",
            create_pr=create_pr,
        )
    except Exception as e:  # network, auth, validation: one line, never the token
        raise HubError(
            f"push to {repo_id} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    return str(commit.pr_url or commit.commit_url)

"""Uploads to the Hub: a model card's README, byte for byte as it is on disk (huggingface_hub's upload API)."""

from __future__ import annotations

from pathlib import Path

from evalsuite.errors import CardError


def push_readme(path: Path, repo_id: str, create_pr: bool) -> str:
    """Upload the README file, byte for byte as it is on disk, to the Hub model repo; returns the commit or PR URL.

    (ModelCard.push_to_hub would serialise its parsed metadata again: comments dropped, lists reflowed.)
    Token from HF_TOKEN or the huggingface_hub login, never printed.
    """
    from huggingface_hub import HfApi

    data = path.resolve().read_bytes()
    try:
        commit = HfApi().upload_file(
            path_or_fileobj=data,
            path_in_repo="README.md",
            repo_id=repo_id,
            repo_type="model",
            commit_message="Update evaluation results (evalsuite card update)",
            create_pr=create_pr,
        )
    except Exception as e:  # network, auth, validation: one line, never the token
        raise CardError(
            f"push to {repo_id} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    return str(commit.pr_url or commit.commit_url)

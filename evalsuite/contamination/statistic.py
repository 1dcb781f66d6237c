"""The contamination test's statistic: r(x), the share of neighbours the target finds likelier than x, and the
share of items with r(x) below the threshold that cards report (`result < 0.1, %: 0.06`)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def neighbour_rank(target_loss: float, neighbour_losses: Sequence[float]) -> float:
    """r(x): the share of neighbours the target finds likelier than x (lower loss)."""
    if not neighbour_losses:
        raise ValueError("r(x) needs at least one neighbour")
    return sum(loss < target_loss for loss in neighbour_losses) / len(neighbour_losses)


def reported_share(ranks: Sequence[float], threshold: float) -> float:
    """The number cards report: the share of items whose r(x) is below the threshold."""
    if not ranks:
        raise ValueError("no items")
    return sum(r < threshold for r in ranks) / len(ranks)


def format_share(share: float, threshold: float) -> str:
    """As the original prints it and cards quote it: `result < 0.1, %: 0.06` (a fraction, despite the %)."""
    return f"result < {threshold:g}, %: {share:.2f}"


def prefix_of(text: str, ratio: float) -> tuple[str, int]:
    """The original's prefix (its first ceil(ratio x words) words) and how many new tokens a neighbour gets
    (the remaining word count, at least 1)."""
    words = text.split()
    kept = math.ceil(len(words) * ratio)
    prefix = " ".join(words[:kept]) if kept > 0 else "<|startoftext|> "
    return prefix, max(1, len(words) - kept)

"""How a stored number is shown: the one place a fraction becomes the percentage cards, tables and leaderboards
print, and a parameter count the leaderboard's `~ 11B`."""

from __future__ import annotations


def percent(value: float) -> float:
    """A fraction as the percentage cards and leaderboards publish: 2 decimals (0.63345 -> 63.35); `pct` prints it."""
    return round(100 * value, 2)


def pct(value: float | None) -> str:
    """A fraction as a percentage with 2 decimals, as leaderboards print it; "-" when missing."""
    return "-" if value is None else f"{100 * value:.2f}"


def model_size(parameters: int | None) -> str:
    """Parameter count in the leaderboard's `~ 11B` style (`~ 135M` below a billion)."""
    if not parameters:
        return "-"
    if parameters >= 1e9:
        return f"~ {parameters / 1e9:.0f}B" if parameters >= 1e10 else f"~ {parameters / 1e9:.1f}B"
    return f"~ {parameters / 1e6:.0f}M"

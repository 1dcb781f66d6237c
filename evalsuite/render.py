"""Text rendering with jinja2: one Environment, number formatting as named filters. Pure functions.

Templates live in the top-level templates/ folder (shipped inside the wheel); they get plain rows, never
DataFrames or results objects. YAML is never templated (card.py dumps it through huggingface_hub).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from evalsuite.paths import bundled_dir


def percent(value: float) -> float:
    """A fraction as the percentage cards and leaderboards publish: 2 decimals (0.63345 -> 63.35). The one
    place evalsuite turns a stored fraction into a shown number; `pct` prints it."""
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


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(bundled_dir("templates")),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
    )
    env.filters["pct"] = pct
    env.filters["model_size"] = model_size
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)

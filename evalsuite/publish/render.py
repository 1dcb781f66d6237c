"""Text rendering with jinja2: one Environment, number formatting as named filters. Pure functions.

Templates live in the top-level templates/ folder (shipped inside the wheel); they get plain rows, never
DataFrames or results objects, and format numbers with the filters `pct` and `model_size`
(evalsuite.results.numbers). YAML is never templated (model_index.py dumps it through huggingface_hub).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from evalsuite.paths import bundled_dir
from evalsuite.results import model_size, pct


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

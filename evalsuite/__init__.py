"""evalsuite: Open LLM Leaderboard (v1) H6 numbers from lm-evaluation-harness, typed and reproducible.

The public API is importable from here; each name loads its subpackage on first use (PEP 562), so importing
evalsuite (or its CLI) loads neither torch, lm-eval nor transformers: they load when a model does.
docs/ARCHITECTURE.md maps the subpackages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from evalsuite._version import __version__

if TYPE_CHECKING:
    from evalsuite.results import ContaminationResults, SuiteResults, read_contamination, read_results
    from evalsuite.run import (
        ContaminationOutcome,
        ContaminationRequest,
        PromptsRequest,
        RunOutcome,
        RunRequest,
        build_prompts,
        run_contamination,
        run_suite,
    )
    from evalsuite.settings import Backend, BatchSize, Dtype, Seeds
    from evalsuite.suite import Protocol, SuiteSpec, TaskSpec, load_suite

# public name -> the subpackage that owns it
_OWNERS = {
    "RunRequest": "evalsuite.run",
    "RunOutcome": "evalsuite.run",
    "run_suite": "evalsuite.run",
    "PromptsRequest": "evalsuite.run",
    "build_prompts": "evalsuite.run",
    "ContaminationRequest": "evalsuite.run",
    "ContaminationOutcome": "evalsuite.run",
    "run_contamination": "evalsuite.run",
    "SuiteResults": "evalsuite.results",
    "read_results": "evalsuite.results",
    "ContaminationResults": "evalsuite.results",
    "read_contamination": "evalsuite.results",
    "SuiteSpec": "evalsuite.suite",
    "TaskSpec": "evalsuite.suite",
    "Protocol": "evalsuite.suite",
    "load_suite": "evalsuite.suite",
    "Backend": "evalsuite.settings",
    "BatchSize": "evalsuite.settings",
    "Dtype": "evalsuite.settings",
    "Seeds": "evalsuite.settings",
}

__all__ = [
    "__version__",
    "Backend",
    "BatchSize",
    "ContaminationOutcome",
    "ContaminationRequest",
    "ContaminationResults",
    "Dtype",
    "PromptsRequest",
    "Protocol",
    "RunOutcome",
    "RunRequest",
    "Seeds",
    "SuiteResults",
    "SuiteSpec",
    "TaskSpec",
    "build_prompts",
    "load_suite",
    "read_contamination",
    "read_results",
    "run_contamination",
    "run_suite",
]


def __getattr__(name: str) -> Any:
    if name in _OWNERS:
        value = getattr(importlib.import_module(_OWNERS[name]), name)
        globals()[name] = value  # once: later lookups do not come here
        return value
    raise AttributeError(f"module 'evalsuite' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

"""evalsuite: Open LLM Leaderboard (v1) H6 numbers from lm-evaluation-harness, typed and reproducible.

The public API is importable from here; each name loads its subpackage on first use (PEP 562), so importing
evalsuite (or its CLI) loads neither torch, lm-eval nor transformers: they load when a model does.
docs/ARCHITECTURE.md maps the subpackages.

    run_suite(RunRequest(...))                        a run: results/<org>__<name>/<run-id>/
    run_contamination(ContaminationRequest(...))      the contamination check
    build_prompts(PromptsRequest(...))                the requests a run sends, without a model
    plan_card_update(request, read_card_inputs(...))  a model card's new text; write_card_update writes it
    compare_runs(read_run(a), read_run(b))            regressions beyond noise
    reproduce(published_result(...), read_run(r), ...) a run against the leaderboard's own result
    register_backend("name", "module:BACKEND")        a new way to run a model
    run_sweep(SweepRequest(runs=[...], cluster=...))  many runs on a Ray cluster (evalsuite[cluster])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from evalsuite._version import __version__

if TYPE_CHECKING:
    from evalsuite.engine.backends import BackendOptions, ModelBackend, backend_names, register_backend
    from evalsuite.publish.card_update import (
        CardUpdate,
        CardUpdateRequest,
        plan_card_update,
        read_card_inputs,
        write_card_update,
    )
    from evalsuite.results import ContaminationResults, Run, SuiteResults, read_contamination, read_results, read_run
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
    from evalsuite.run.sweep import SweepOutcome, SweepRequest, run_sweep
    from evalsuite.settings import BatchSize, Dtype, Seeds
    from evalsuite.suite import Protocol, SuiteSpec, TaskSpec, load_suite
    from evalsuite.track.compare import Comparison, compare_runs
    from evalsuite.track.reproduce import Reproduction, reproduce

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
    "SweepRequest": "evalsuite.run.sweep",
    "SweepOutcome": "evalsuite.run.sweep",
    "run_sweep": "evalsuite.run.sweep",
    "SuiteResults": "evalsuite.results",
    "read_results": "evalsuite.results",
    "Run": "evalsuite.results",
    "read_run": "evalsuite.results",
    "ContaminationResults": "evalsuite.results",
    "read_contamination": "evalsuite.results",
    "SuiteSpec": "evalsuite.suite",
    "TaskSpec": "evalsuite.suite",
    "Protocol": "evalsuite.suite",
    "load_suite": "evalsuite.suite",
    "backend_names": "evalsuite.engine.backends",
    "BatchSize": "evalsuite.settings",
    "Dtype": "evalsuite.settings",
    "Seeds": "evalsuite.settings",
    "CardUpdateRequest": "evalsuite.publish.card_update",
    "CardUpdate": "evalsuite.publish.card_update",
    "read_card_inputs": "evalsuite.publish.card_update",
    "plan_card_update": "evalsuite.publish.card_update",
    "write_card_update": "evalsuite.publish.card_update",
    "Comparison": "evalsuite.track.compare",
    "compare_runs": "evalsuite.track.compare",
    "Reproduction": "evalsuite.track.reproduce",
    "reproduce": "evalsuite.track.reproduce",
    "ModelBackend": "evalsuite.engine.backends",
    "BackendOptions": "evalsuite.engine.backends",
    "register_backend": "evalsuite.engine.backends",
}

__all__ = [
    "__version__",
    "BackendOptions",
    "BatchSize",
    "CardUpdate",
    "CardUpdateRequest",
    "Comparison",
    "ContaminationOutcome",
    "ContaminationRequest",
    "ContaminationResults",
    "Dtype",
    "ModelBackend",
    "PromptsRequest",
    "Protocol",
    "Reproduction",
    "Run",
    "RunOutcome",
    "RunRequest",
    "Seeds",
    "SuiteResults",
    "SuiteSpec",
    "SweepOutcome",
    "SweepRequest",
    "TaskSpec",
    "backend_names",
    "build_prompts",
    "compare_runs",
    "load_suite",
    "plan_card_update",
    "read_card_inputs",
    "read_contamination",
    "read_results",
    "read_run",
    "register_backend",
    "reproduce",
    "run_contamination",
    "run_suite",
    "run_sweep",
    "write_card_update",
]


def __getattr__(name: str) -> Any:
    if name in _OWNERS:
        value = getattr(importlib.import_module(_OWNERS[name]), name)
        globals()[name] = value  # once: later lookups do not come here
        return value
    raise AttributeError(f"module 'evalsuite' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

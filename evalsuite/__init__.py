"""evalsuite: Open LLM Leaderboard (v1) H6 numbers from lm-evaluation-harness, typed and reproducible."""

# Nothing heavy is imported here: torch, transformers and lm_eval load only when a run starts.
from evalsuite._version import __version__
from evalsuite.evaluate import RunOutcome, RunRequest, run_suite
from evalsuite.results import SuiteResults, read_results
from evalsuite.suite import SuiteSpec, TaskSpec, load_suite

__all__ = [
    "RunOutcome",
    "RunRequest",
    "SuiteResults",
    "SuiteSpec",
    "TaskSpec",
    "__version__",
    "load_suite",
    "read_results",
    "run_suite",
]

"""evalsuite: Open LLM Leaderboard (v1) H6 numbers from lm-evaluation-harness, typed and reproducible."""

__version__ = "0.2.0"

# Nothing heavy is imported here: torch, transformers and lm_eval load only when a run starts.
from evalsuite.evaluate import RunOutcome, RunRequest, run_suite  # noqa: E402
from evalsuite.results import SuiteResults, read_results  # noqa: E402
from evalsuite.suite import SuiteSpec, TaskSpec, load_suite  # noqa: E402

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

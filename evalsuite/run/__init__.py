"""The commands that run models, each in the same stages (checks -> load -> task loop -> build): a suite run
(`run_suite`), its requests without a model (`build_prompts`), and a contamination check (`run_contamination`);
with the run's checkpoints, so an interrupted one resumes.

Imports the engine and everything below it; never publishing, tracking or the CLI.
"""

from evalsuite.run.contamination import (
    ContaminationOutcome,
    ContaminationRequest,
    PreparedCheck,
    prepare_check,
    run_contamination,
)
from evalsuite.run.pipeline import PreparedRun, RunOutcome, RunRequest, prepare_run, run_suite
from evalsuite.run.prompts import PromptsRequest, TaskPrompts, build_prompts

__all__ = [
    "ContaminationOutcome",
    "ContaminationRequest",
    "PreparedCheck",
    "PreparedRun",
    "PromptsRequest",
    "RunOutcome",
    "RunRequest",
    "TaskPrompts",
    "build_prompts",
    "prepare_check",
    "prepare_run",
    "run_contamination",
    "run_suite",
]

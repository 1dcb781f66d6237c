"""The suite: which tasks H6 has and how each is run, scored and shown (tasks/suite.yaml), and the protocols
that say what the model is asked (the leaderboard's exemplar walk, the fingerprint of a task's requests).

Pure: imports nothing of evalsuite but errors and paths, and none of lm-eval, torch or the Hub.
"""

from evalsuite.suite.protocol import (
    LEADERBOARD_SEED,
    DocumentRequests,
    Protocol,
    leaderboard_exemplar_draws,
    parse_protocol,
    prompt_fingerprint,
)
from evalsuite.suite.spec import (
    CardFields,
    ColumnType,
    DataLayout,
    FewshotSampler,
    HubBenchmark,
    MetricKey,
    Preset,
    ProtocolSpec,
    ProtocolTask,
    SuiteSpec,
    TaskSpec,
    default_tasks_dir,
    load_suite,
)

__all__ = [
    "LEADERBOARD_SEED",
    "CardFields",
    "ColumnType",
    "DataLayout",
    "DocumentRequests",
    "FewshotSampler",
    "HubBenchmark",
    "MetricKey",
    "Preset",
    "Protocol",
    "ProtocolSpec",
    "ProtocolTask",
    "SuiteSpec",
    "TaskSpec",
    "default_tasks_dir",
    "leaderboard_exemplar_draws",
    "load_suite",
    "parse_protocol",
    "prompt_fingerprint",
]

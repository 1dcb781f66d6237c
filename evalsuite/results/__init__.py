"""Every file evalsuite writes or reads, with its IO and migrations: a run's `results.json` (`SuiteResults`), a
contamination check's `contamination.json` and `items.jsonl`, and lm-eval's own formats (what `simple_evaluate`
returns, sample files, request caches), plus how their numbers are shown (`pct`, `model_size`).

Imports the suite and the model reference; JSON only, never lm-eval, torch, transformers or datasets.
"""

from evalsuite.results.contamination import (
    CHECK_FOLDER_PREFIX,
    CONTAMINATION_FILE,
    CONTAMINATION_SCHEMA_VERSION,
    ITEMS_FILE,
    CheckedModel,
    ContaminationResults,
    ContaminationSettings,
    ContaminationTask,
    ItemRecord,
    find_contamination,
    is_contamination,
    read_contamination,
    write_check,
)
from evalsuite.results.from_lm_eval import aggregate, completeness, task_result
from evalsuite.results.io import (
    RESULTS_FILE,
    Run,
    check_output_dir,
    find_runs,
    is_written,
    read_results,
    read_run,
    run_dirs,
    write_run,
)
from evalsuite.results.migrations import MIGRATIONS, migrate
from evalsuite.results.numbers import model_size, pct, percent
from evalsuite.results.schema import (
    SCHEMA_VERSION,
    DataFileInfo,
    FewshotInfo,
    ModelInfo,
    RecordedBatchSize,
    RunSettings,
    SubtaskScore,
    SuiteResults,
    TaskResult,
    Timing,
    Versions,
    h6_average,
)

__all__ = [
    "CHECK_FOLDER_PREFIX",
    "CONTAMINATION_FILE",
    "CONTAMINATION_SCHEMA_VERSION",
    "ITEMS_FILE",
    "MIGRATIONS",
    "RESULTS_FILE",
    "SCHEMA_VERSION",
    "RecordedBatchSize",
    "Run",
    "CheckedModel",
    "ContaminationResults",
    "ContaminationSettings",
    "ContaminationTask",
    "DataFileInfo",
    "FewshotInfo",
    "ItemRecord",
    "ModelInfo",
    "RunSettings",
    "SubtaskScore",
    "SuiteResults",
    "TaskResult",
    "Timing",
    "Versions",
    "aggregate",
    "check_output_dir",
    "completeness",
    "find_contamination",
    "find_runs",
    "h6_average",
    "is_contamination",
    "is_written",
    "migrate",
    "model_size",
    "pct",
    "percent",
    "read_contamination",
    "read_results",
    "read_run",
    "run_dirs",
    "task_result",
    "write_check",
    "write_run",
]

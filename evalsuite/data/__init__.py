"""Where each task's rows come from: the Hub (as lm-eval loads them) or an offline snapshot folder laid out like
../shared/data/h6 (`<dataset dir>/<split>.jsonl`, one row per line in the Hub's schema): the plan of the files a
run reads (with their sha256), the documented few-shot fallback, row checks, and `data verify`.

Imports the suite and `datasets` (for Hub rows, inside functions); never lm-eval, torch or transformers.
"""

from evalsuite.data.hub import eval_rows, no_download_count_pings
from evalsuite.data.plan import (
    DataPlan,
    FewshotSource,
    SplitFile,
    TaskData,
    plan_data,
    plan_hub,
    plan_local,
    split_path,
)
from evalsuite.data.rows import row_problem, sha256_and_rows
from evalsuite.data.verify import Finding, Level, verify_snapshot

__all__ = [
    "DataPlan",
    "FewshotSource",
    "Finding",
    "Level",
    "SplitFile",
    "TaskData",
    "eval_rows",
    "no_download_count_pings",
    "plan_data",
    "plan_hub",
    "plan_local",
    "row_problem",
    "sha256_and_rows",
    "split_path",
    "verify_snapshot",
]

"""Whether other libraries may speak, decided once from the command line before any of them is imported.

By default only evalsuite speaks on stderr (its messages, one progress bar per task, warnings and errors);
`-v`/`--verbose` or EVALSUITE_LOG_LEVEL=INFO/DEBUG also lets lm-eval, transformers, datasets and
huggingface_hub show their logs and bars. Their bars read these environment variables when they are first
imported, which is why this runs first (evalsuite/cli/__init__.py); a user's own settings win.
logs.setup_logging does the rest (loggers and warnings), which can change at run time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

QUIET_ENVIRONMENT = {
    "TQDM_DISABLE": "1",  # lm-eval's bars that take no `disable` argument (evalsuite's own bar passes one)
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # huggingface_hub's, and through it transformers' "Loading weights"
    "HF_HUB_VERBOSITY": "error",  # its logger, which it configures itself when first imported (after ours)
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "DATASETS_VERBOSITY": "error",
}


def asks_verbose(argv: Sequence[str]) -> bool:
    level = os.environ.get("EVALSUITE_LOG_LEVEL", "").upper()
    return level in ("INFO", "DEBUG") or any(a in ("-v", "--verbose") for a in argv)


def quiet_other_libraries(argv: Sequence[str]) -> None:
    if asks_verbose(argv):
        return
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)

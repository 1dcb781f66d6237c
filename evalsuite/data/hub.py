"""Rows from the Hub through `datasets`, and the one `datasets` internal evalsuite touches.

datasets: every load of a packaged builder (the `json` files of a snapshot, once per lm-eval task: 62 in a full
run) first sends a download-count HEAD request to s3.amazonaws.com (`load.increase_load_count`, 3 s timeout),
unless `config.HF_UPDATE_DOWNLOAD_COUNTS` is false. `no_download_count_pings` turns it off for the calls inside
it and back after: an offline run makes no network call, and no environment variable is changed
(tests/test_dependency_contract.py checks the switch, tests/test_offline.py what goes over the network).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from evalsuite.data.plan import TaskData
from evalsuite.data.rows import row_problem
from evalsuite.errors import DataDirError, param


@contextlib.contextmanager
def no_download_count_pings() -> Iterator[None]:
    """No download-count request from `datasets.load_dataset` inside the block (see the module's docstring)."""
    from datasets import config

    saved = config.HF_UPDATE_DOWNLOAD_COUNTS
    config.HF_UPDATE_DOWNLOAD_COUNTS = False
    try:
        yield
    finally:
        config.HF_UPDATE_DOWNLOAD_COUNTS = saved


def eval_rows(data: TaskData) -> list[dict[str, Any]]:
    """Every row of the task's eval split in the Hub's order: from the snapshot file, or from the Hub through
    `datasets` (for a task of several subsets, the config holding them all, as MMLU's `all`). Hub rows are
    checked as snapshot rows are, so a changed dataset stops here, before a model loads."""
    spec = data.spec
    split = data.file(spec.data.eval_split)
    if split is not None:
        text = split.path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    from datasets import load_dataset

    config = spec.data.hub_all_config or spec.data.hub_config
    where = f"{spec.data.hub_dataset}" + (f" ({config})" if config else "") + f", split {spec.data.eval_split}"
    try:
        with no_download_count_pings():
            dataset = load_dataset(spec.data.hub_dataset, config, split=spec.data.eval_split)
    except Exception as e:  # the Hub down, a config or split renamed: the library's error, on one line
        why = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        raise DataDirError(
            f"{where}: could not load it from the Hub ({why}); pass {param('data_dir')} with an offline snapshot"
        ) from e
    rows = [dict(row) for row in dataset]
    for number, row in enumerate(rows):
        if problem := row_problem(row, spec):
            raise DataDirError(
                f"{where}, row {number}: {problem}; the Hub dataset changed, pass {param('data_dir')}"
            )
    return rows

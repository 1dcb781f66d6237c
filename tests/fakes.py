"""Hand-made lm-eval outputs, shaped like `simple_evaluate`'s return value, for unit tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from evalsuite.suite import TaskSpec


def lm_eval_output(
    spec: TaskSpec, leaves: dict[str, tuple[float, float | str, int]], shots: int | None = None
) -> dict[str, Any]:
    """`leaves`: lm-eval task -> (value, stderr or "N/A", documents). Values are numpy floats, as lm-eval's."""
    metric = spec.metric
    return {
        "results": {
            leaf: {metric.lm_eval_key: np.float64(v), metric.lm_eval_stderr_key: se, "alias": leaf}
            for leaf, (v, se, _) in leaves.items()
        },
        "group_subtasks": {spec.lm_eval_group: list(leaves)},
        "n-shot": {leaf: spec.num_fewshot if shots is None else shots for leaf in leaves},
        "n-samples": {leaf: {"original": n, "effective": n} for leaf, (_, _, n) in leaves.items()},
    }

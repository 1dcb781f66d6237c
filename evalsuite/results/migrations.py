"""Migrations of results files: MIGRATIONS[v - 1] turns a schema v file's raw JSON into a schema v + 1 one.
Append-only; each step is a pure function of the raw dict, applied before validation."""

from __future__ import annotations

from typing import Any

from evalsuite.results.schema import SCHEMA_VERSION
from evalsuite.suite import Protocol


def _v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """v2 records the protocol. Every v1 run asked lm-eval 0.4's requests (its own few-shot draws and GSM8K
    settings), which v1 still called leaderboard-comparable when the few-shot split was complete."""
    raw["settings"]["protocol"] = Protocol.LM_EVAL.value
    reason = "protocol lm-eval: lm-eval 0.4's exemplars and settings, not the leaderboard's (a schema 1 run)"
    for task in raw["tasks"]:
        task["leaderboard_comparable"] = False
        task["not_comparable_reasons"] = [reason]
    raw["leaderboard_comparable"] = False
    return raw


def _v2_to_v3(raw: dict[str, Any]) -> dict[str, Any]:
    """v3 records the backend's options apart from the model args: the shared-prefix backend's `pack_tokens` and
    `generation` were model args in v2, and move out of them. Only what the file says moves; a v2 run that gave
    neither ran the defaults of its day, which the file does not record."""
    settings = raw["settings"]
    model_args = settings.get("model_args") or {}
    options = {}
    if settings.get("backend") == "shared-prefix":
        options = {key: model_args.pop(key) for key in ("pack_tokens", "generation") if key in model_args}
        if str(options.get("pack_tokens", "")).isdigit():
            options["pack_tokens"] = int(options["pack_tokens"])
    settings["backend_options"] = options
    return raw


def _v3_to_v4(raw: dict[str, Any]) -> dict[str, Any]:
    """v4 records the leaderboard's precision and weight type. Before it, evalsuite loaded whole models
    unquantized: the precision is the dtype (float32, float16, bfloat16), the weight type Original."""
    model = raw["model"]
    model["precision"] = model.get("dtype") if model.get("dtype") in ("float32", "float16", "bfloat16") else "float32"
    model["weight_type"] = "Original"
    return raw


MIGRATIONS = [_v1_to_v2, _v2_to_v3, _v3_to_v4]


def migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """A results file's raw JSON, brought from its schema_version to the current one."""
    for step in MIGRATIONS[raw["schema_version"] - 1 :]:
        raw = step(raw)
    raw["schema_version"] = SCHEMA_VERSION
    return raw

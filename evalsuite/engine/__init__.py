"""The scoring engine: everything that runs a model, and the only subpackage that imports lm-eval, torch or
transformers (import-linter's contracts in pyproject.toml check it).

- runner: lm-eval's driver (task manager, task groups with the protocol's overrides, `simple_evaluate`)
- backend: evalsuite's lm-eval model classes (shared-prefix scoring, continuous-batching generation)
- packing, generation, processes, oom, fewshot: the backend's parts (prefix packing, greedy generation
  through transformers' continuous batching, data-parallel ranks, out-of-memory back-off, the
  leaderboard's few-shot sampler)
- neighbours: the contamination check's sampling and scoring
- gguf, devices, model_args: making a MODEL loadable, the torch device, extra model arguments
- compat: what evalsuite relies on inside lm-eval and transformers (docs/ARCHITECTURE.md, guarded by
  tests/test_dependency_contract.py)

Importing this package loads none of those libraries: the modules below import them inside their functions,
and the ones that import them at module level (backend, packing, generation, oom, fewshot, compat) are
imported only once a model loads or requests are built. Imports data, model, results, suite and settings;
never the run pipelines, publishing, tracking or the CLI.
"""

from evalsuite.engine.devices import check_device, default_device, describe_device, resolve
from evalsuite.engine.gguf import prepare_model
from evalsuite.engine.model_args import (
    FROM_PRETRAINED_MODEL_ARGS,
    RESERVED_MODEL_ARGS,
    check_model_args,
    parse_model_args,
)
from evalsuite.engine.neighbours import (
    NEIGHBOUR_TOKENS,
    CausalLM,
    ItemScore,
    load_causal_lm,
    score_items,
    scoring_rows,
)
from evalsuite.engine.processes import Processes, launched_processes, launched_rank
from evalsuite.engine.runner import (
    EvalSettings,
    FinishedTask,
    LoadedModel,
    ModelSettings,
    TaskGroup,
    build_requests,
    build_task_manager,
    load_model,
    load_task_group,
    run_task,
)

__all__ = [
    "FROM_PRETRAINED_MODEL_ARGS",
    "NEIGHBOUR_TOKENS",
    "RESERVED_MODEL_ARGS",
    "CausalLM",
    "EvalSettings",
    "FinishedTask",
    "ItemScore",
    "LoadedModel",
    "ModelSettings",
    "Processes",
    "TaskGroup",
    "build_requests",
    "build_task_manager",
    "check_device",
    "check_model_args",
    "default_device",
    "describe_device",
    "launched_processes",
    "launched_rank",
    "load_causal_lm",
    "load_model",
    "load_task_group",
    "parse_model_args",
    "prepare_model",
    "resolve",
    "run_task",
    "score_items",
    "scoring_rows",
]

"""The scoring engine: everything that runs a model, and the only subpackage that imports lm-eval, torch or
transformers (import-linter's contracts in pyproject.toml check it).

- runner: lm-eval's driver (task manager, task groups with the protocol's overrides, `simple_evaluate`)
- backends: the ways a model runs, a lazy registry of `ModelBackend`s (shared-prefix, lm-eval-hf; others
  registered by name), each declaring its options, model args, data-parallel and HFLM-exactness, and loading
- packing, generation, processes, oom, fewshot: the backends' parts (prefix packing, greedy generation with
  continuous batching, data-parallel ranks, out-of-memory back-off, the leaderboard's few-shot sampler)
- neighbours: the contamination check's sampling and scoring
- gguf, devices, model_args: making a MODEL loadable, the torch device, `k=v` arguments
- compat: what evalsuite relies on inside lm-eval and transformers (docs/ARCHITECTURE.md, guarded by
  tests/test_dependency_contract.py)

Importing this package loads none of those libraries: the modules below import them inside their functions,
and the ones that import them at module level (backends.shared_prefix, backends.lm_eval_hf, packing,
generation, oom, fewshot, compat) are imported only once a backend is asked for by name, a model loads or
requests are built. Imports data, model, results, suite and settings;
never the run pipelines, publishing, tracking or the CLI.
"""

from evalsuite.engine.backends import (
    DEFAULT_BACKEND,
    BackendOptions,
    LoadedModel,
    ModelBackend,
    ModelSettings,
    backend_names,
    get_backend,
    register_backend,
    unregister_backend,
)
from evalsuite.engine.devices import check_device, default_device, describe_device, resolve
from evalsuite.engine.gguf import locate_model, prepare_model
from evalsuite.engine.model_args import RESERVED_MODEL_ARGS, parse_key_values, parse_model_args
from evalsuite.engine.neighbours import (
    NEIGHBOUR_TOKENS,
    CausalLM,
    ItemScore,
    score_items,
    scoring_rows,
)
from evalsuite.engine.processes import Processes, launched_processes, launched_rank
from evalsuite.engine.runner import (
    EvalSettings,
    FinishedTask,
    TaskGroup,
    build_requests,
    build_task_manager,
    load_model,
    load_task_group,
    run_task,
)

__all__ = [
    "DEFAULT_BACKEND",
    "NEIGHBOUR_TOKENS",
    "RESERVED_MODEL_ARGS",
    "BackendOptions",
    "CausalLM",
    "EvalSettings",
    "FinishedTask",
    "ItemScore",
    "LoadedModel",
    "ModelBackend",
    "ModelSettings",
    "Processes",
    "TaskGroup",
    "backend_names",
    "build_requests",
    "build_task_manager",
    "check_device",
    "default_device",
    "describe_device",
    "get_backend",
    "launched_processes",
    "launched_rank",
    "load_model",
    "load_task_group",
    "parse_key_values",
    "parse_model_args",
    "register_backend",
    "unregister_backend",
    "locate_model",
    "prepare_model",
    "resolve",
    "run_task",
    "score_items",
    "scoring_rows",
]

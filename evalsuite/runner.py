"""The one module that drives lm_eval (backend.py only subclasses its HF model): loads the model once and
runs one suite task at a time.

Each suite task is an lm-eval group in tasks/ (h6_arc, ..., h6_mmlu) that references lm-eval's built-in
task definitions by name, so prompts and metrics stay lm-eval's. For an offline snapshot the group is
passed as an inline config with dataset overrides that point lm-eval at the local jsonl files.
Tasks run one per `simple_evaluate` call against the same loaded model, so each gets its own timing
and progress line.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from evalsuite.data import TaskData
from evalsuite.errors import RunError, SuiteConfigError
from evalsuite.model_ref import LoadableModel
from evalsuite.processes import Processes
from evalsuite.suite import Preset

if TYPE_CHECKING:
    from lm_eval.api.model import LM
    from lm_eval.result_schema import EvalResults
    from lm_eval.tasks import TaskManager

log = logging.getLogger(__name__)

# lm-eval's built-in task folders the suite draws on; indexing only these (plus tasks/) takes ~1 s
# instead of ~9 s for the whole catalogue.
_LM_EVAL_TASK_DIRS = ("arc", "hellaswag", "mmlu/default", "truthfulqa", "winogrande", "gsm8k")

# model_args keys evalsuite sets from its own options; --model-args may not set them.
RESERVED_MODEL_ARGS = {
    "pretrained": "MODEL",
    "revision": "MODEL@revision",
    "dtype": "--dtype",
    "device": "--device",
    "batch_size": "--batch-size",
    "add_bos_token": "--add-bos-token",
}


@dataclass(frozen=True)
class Seeds:
    """lm-eval's four seeds (python random, numpy, torch, few-shot sampler); lm-eval's defaults."""

    random: int = 0
    numpy: int = 1234
    torch: int = 1234
    fewshot: int = 1234


class Backend(StrEnum):
    """How log-likelihood requests reach the model. Both give the same choices and values (to float rounding)."""

    SHARED_PREFIX = "shared-prefix"  # evalsuite.backend: each shared prefix forwarded once
    LM_EVAL_HF = "lm-eval-hf"  # lm-eval's own HFLM, request by request


@dataclass(frozen=True)
class ModelSettings:
    dtype: str
    device: str
    batch_size: int | str  # an int, or "auto" (the largest size that fits; shared-prefix backs off on OOM)
    add_bos_token: bool
    backend: Backend = Backend.SHARED_PREFIX
    extra_model_args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalSettings:
    limit: int | None
    seeds: Seeds
    log_samples: bool
    preset: Preset | None = None  # a fixed document subset instead of `limit`


@dataclass
class LoadedModel:
    lm: LM
    model_args: dict[str, Any]
    device: str
    parameters: int | None
    dtype: str
    load_seconds: float
    backend: Backend = Backend.SHARED_PREFIX
    processes: Processes = field(default_factory=Processes)  # data-parallel ranks (shared-prefix backend only)


@dataclass
class RawTaskRun:
    """One suite task as lm-eval returned it (samples split off), with its wall time."""

    data: TaskData
    output: EvalResults
    samples: dict[str, list[dict[str, Any]]]
    seconds: float
    document_ids: dict[str, list[int]] | None = None  # lm-eval task -> scored eval-document indices (presets)

    @property
    def model_sha(self) -> str | None:
        """The Hub commit lm-eval resolved for the model ("" off the Hub)."""
        return self.output.get("config", {}).get("model_sha") or None

    @property
    def batch_sizes(self) -> list[int]:
        """Batch sizes lm-eval used (what `auto` detected)."""
        return [int(b) for b in self.output.get("config", {}).get("batch_sizes", [])]


def parse_model_args(text: str | None) -> dict[str, str]:
    """Parse --model-args `k=v,k2=v2` as lm-eval does, refusing keys evalsuite sets itself."""
    if not text:
        return {}
    parsed: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SuiteConfigError(f"--model-args: {item!r} is not key=value")
        key = key.strip()
        if key in RESERVED_MODEL_ARGS:
            raise SuiteConfigError(f"--model-args sets {key!r}; use {RESERVED_MODEL_ARGS[key]} instead")
        parsed[key] = value.strip()
    return parsed


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def describe_device(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def build_task_manager(tasks_dir: Path) -> TaskManager:
    import lm_eval
    from lm_eval.tasks import TaskManager

    builtin = Path(lm_eval.__file__).parent / "tasks"
    return TaskManager(include_defaults=False, include_path=[*(builtin / d for d in _LM_EVAL_TASK_DIRS), tasks_dir])


def load_model(model: LoadableModel, settings: ModelSettings) -> LoadedModel:
    from lm_eval.api.registry import get_model

    model_args: dict[str, Any] = {
        "pretrained": model.pretrained,
        "dtype": settings.dtype,
        "add_bos_token": settings.add_bos_token,
        **settings.extra_model_args,
    }
    if model.revision:
        model_args["revision"] = model.revision
    if settings.backend is Backend.SHARED_PREFIX:
        from evalsuite import backend  # registers the model class with lm-eval

        name = backend.MODEL_NAME
    else:
        name = "hf"
    started = time.perf_counter()
    try:
        lm = get_model(name).create_from_arg_obj(
            model_args, {"batch_size": settings.batch_size, "device": settings.device}
        )
    except OSError as e:
        raise RunError(f"cannot load model {model.pretrained!r}: {str(e).splitlines()[0]}") from e
    seconds = time.perf_counter() - started
    inner = getattr(lm, "model", None)
    parameters = int(inner.num_parameters()) if inner is not None and hasattr(inner, "num_parameters") else None
    dtype = str(getattr(inner, "dtype", settings.dtype)).removeprefix("torch.")
    return LoadedModel(
        lm=lm,
        model_args=model_args,
        device=settings.device,
        parameters=parameters,
        dtype=dtype,
        load_seconds=seconds,
        backend=settings.backend,
        processes=getattr(lm, "processes", Processes()),
    )


def run_task(
    model: LoadedModel,
    data: TaskData,
    settings: EvalSettings,
    task_manager: TaskManager,
    tasks_dir: Path,
    request_cache: str | None = None,
) -> RawTaskRun | None:
    """Run one suite task; `request_cache` is lm-eval's `use_cache` path (answers persist as they come).

    In a data-parallel run lm-eval returns results on rank 0 only: the other ranks get None.
    """
    from lm_eval import simple_evaluate

    spec: Any = data.spec.lm_eval_group
    if data.is_local:
        spec = _local_group_config(tasks_dir, data)
    document_ids = None
    if settings.preset is not None:
        # Build the tasks first: the subset depends on how many eval documents each lm-eval task has.
        loaded = task_manager.load([spec])
        document_ids = {
            name: settings.preset.document_ids(name, data.spec.key, len(task.eval_docs))
            for name, task in loaded["tasks"].items()
        }
        spec = next(iter(loaded["groups"].values()))
    started = time.perf_counter()
    output = simple_evaluate(
        model=model.lm,
        model_args=model.model_args,
        tasks=[spec],
        limit=settings.limit,
        samples=document_ids,
        log_samples=settings.log_samples,
        task_manager=task_manager,
        use_cache=request_cache,
        random_seed=settings.seeds.random,
        numpy_random_seed=settings.seeds.numpy,
        torch_random_seed=settings.seeds.torch,
        fewshot_random_seed=settings.seeds.fewshot,
    )
    seconds = time.perf_counter() - started
    if output is None:
        if not model.processes.is_main:
            return None
        raise RunError(f"lm-eval returned no results for {data.spec.key}")
    samples = output.pop("samples", None) or {}
    return RawTaskRun(data=data, output=output, samples=samples, seconds=seconds, document_ids=document_ids)


def checkpoint_json(raw: RawTaskRun) -> str:
    checkpoint = {
        "output": raw.output,
        "samples": raw.samples,
        "seconds": raw.seconds,
        "document_ids": raw.document_ids,
    }
    return to_json(checkpoint, indent=None)


def to_json(document: object, indent: int | None = 2) -> str:
    """Serialize lm-eval output as lm-eval writes it (numpy floats and callables made plain)."""
    from lm_eval.utils import handle_non_serializable

    return json.dumps(document, indent=indent, default=handle_non_serializable, ensure_ascii=False)


# ------------------------------------------------------------------------------- offline snapshot


def _local_group_config(tasks_dir: Path, data: TaskData) -> dict[str, Any]:
    """The task's group YAML as an inline config whose members read the snapshot's jsonl files.

    The overrides go into every member entry (a member's own keys beat group-level ones in lm-eval),
    and change only where rows come from: prompts and metrics stay lm-eval's own task definitions.
    """
    path = tasks_dir / f"{data.spec.lm_eval_group}.yaml"
    try:
        group = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SuiteConfigError(f"{path}: cannot read the task group ({e.strerror})") from e
    overrides: dict[str, Any] = {
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {f.split: str(f.path) for f in data.files}},
    }
    if data.spec.data.subset_column:
        overrides["process_docs"] = _keep_rows_of_subset(data.spec.data.subset_column)
    if data.fewshot.fallback:
        # Score the eval split as lm-eval's "test" split and draw exemplars from it: lm-eval excludes the
        # scored document from its exemplars only when the few-shot split equals the test split.
        overrides |= {
            "training_split": None,
            "validation_split": None,
            "test_split": data.spec.data.eval_split,
            "fewshot_split": data.spec.data.eval_split,
        }
    group["task"] = [{**member, **overrides} for member in group["task"]]
    return group


class _keep_rows_of_subset:  # noqa: N801 - used like a function in lm-eval's `process_docs`
    """Keep the rows whose `column` equals the lm-eval task's Hub config name (MMLU: the subject).

    The json loader is called with the task's `dataset_name` (e.g. "anatomy") as its config name, so the
    loaded split carries it as `config_name`.
    """

    def __init__(self, column: str) -> None:
        self.column = column

    def __call__(self, dataset: Any) -> Any:
        wanted = dataset.config_name
        return dataset.filter(lambda row: row[self.column] == wanted)

    def __repr__(self) -> str:
        return f"keep rows where {self.column} == the task's dataset_name"

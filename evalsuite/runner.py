"""The one module that drives lm_eval (backend.py only subclasses its HF model): loads the model once and
runs one suite task at a time.

Each suite task is an lm-eval group in tasks/ (h6_arc, ..., h6_mmlu) that references lm-eval's built-in
task definitions by name, so prompts and metrics stay lm-eval's. The group is built from an inline config:
its members get the protocol's overrides (tasks/suite.yaml `protocols:`, the leaderboard's few-shot
sampler) and, for an offline snapshot, dataset overrides that point lm-eval at the local jsonl files.
Tasks run one per `simple_evaluate` call against the same loaded model, so each gets its own timing
and progress line. The requests lm-eval built stay on its task objects; `TaskGroup.requests` reads them
back (the prompt fingerprint, `evalsuite prompts`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from evalsuite import lm_eval_files
from evalsuite.data import TaskData
from evalsuite.errors import RunError, SuiteConfigError
from evalsuite.model_ref import LoadableModel
from evalsuite.processes import Processes
from evalsuite.protocol import DocumentRequests, prompt_fingerprint
from evalsuite.results import Backend, Seeds
from evalsuite.suite import Preset

if TYPE_CHECKING:
    from lm_eval.api.group import Group
    from lm_eval.api.model import LM
    from lm_eval.api.task import Task
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
    prompt_sha256: str | None = None  # protocol.prompt_fingerprint of every request lm-eval built

    @property
    def model_sha(self) -> str | None:
        """The Hub commit lm-eval resolved for the model ("" off the Hub)."""
        return lm_eval_files.model_sha(self.output)

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


# transformers' from_pretrained keywords a user may pass through --model-args (lm-eval forwards what HFLM does
# not take to from_pretrained). Checked against transformers by tests/test_dependency_contract.py.
FROM_PRETRAINED_MODEL_ARGS = (
    "attn_implementation", "cache_dir", "device_map", "force_download", "local_files_only", "max_memory",
    "offload_buffers", "offload_folder", "subfolder", "token", "use_kernels", "use_safetensors", "variant",
)  # fmt: skip


def check_model_args(args: dict[str, str], backend: Backend, config_keys: frozenset[str] = frozenset()) -> None:
    """Refuse --model-args the model class would only reject after loading: unknown keys (not HFLM's, not
    from_pretrained's, not the local model's config.json attributes) and ill-typed values of evalsuite's own."""
    import inspect

    from lm_eval.models.huggingface import HFLM

    hflm = {n for n in inspect.signature(HFLM.__init__).parameters if n not in ("self", "kwargs")}
    ours = {"pack_tokens"} if backend is Backend.SHARED_PREFIX else set()
    known = hflm | ours | set(FROM_PRETRAINED_MODEL_ARGS) | config_keys
    for key, value in args.items():
        if key not in known:
            near = sorted(k for k in known if k.split("_")[0] == key.split("_")[0])[:3]
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise SuiteConfigError(
                f"--model-args {key}={value}: {key!r} is not an argument of lm-eval's HF model, of from_pretrained "
                f"or of the model's config{hint}"
            )
    if "pack_tokens" in args:
        try:
            pack = int(args["pack_tokens"])
        except ValueError:
            pack = 0
        if pack < 1:
            raise SuiteConfigError(f"--model-args pack_tokens={args['pack_tokens']}: give a positive number of tokens")


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

    from evalsuite._compat import cache_compiled_templates, quiet_git_probe

    cache_compiled_templates()  # requests are built 20-30x faster, the same text
    quiet_git_probe()  # no `fatal: not a git repository` per task

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
    from evalsuite import backend  # registers evalsuite's model classes with lm-eval

    # lm-eval-hf: HFLM itself, in a subclass that only reports to evalsuite's progress bar
    name = backend.MODEL_NAME if settings.backend is Backend.SHARED_PREFIX else backend.PLAIN_MODEL_NAME
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


@dataclass
class TaskGroup:
    """One suite task's lm-eval group, built, with its exemplar sampling bound to the documents it scores."""

    data: TaskData
    group: Group
    tasks: dict[str, Task]  # lm-eval task name -> task
    document_ids: dict[str, list[int]] | None  # the preset's eval-document indices per lm-eval task

    def requests(self) -> list[DocumentRequests]:
        """The requests lm-eval built (after `simple_evaluate` or `build_requests`), document by document.

        `doc_id` is the index in the eval split, Hub order: lm-eval numbers a preset's documents 0, 1, ...
        """
        documents = []
        for name, task in self.tasks.items():
            by_doc: dict[int, list[Any]] = {}
            for instance in task.instances:
                by_doc.setdefault(instance.doc_id, []).append(instance)
            ids = self.document_ids[name] if self.document_ids else None
            for doc_id, instances in sorted(by_doc.items()):
                documents.append(
                    DocumentRequests(
                        task=self.data.spec.key,
                        lm_eval_task=name,
                        doc_id=ids[doc_id] if ids else doc_id,
                        requests=tuple(tuple(i.args) for i in sorted(instances, key=lambda i: i.idx)),
                    )
                )
        return documents

    def check_exemplar_walks(self) -> None:
        """lm-eval asked the leaderboard's sampler once per document it built (see evalsuite/fewshot.py)."""
        from evalsuite.fewshot import LeaderboardWalkSampler

        for name, task in self.tasks.items():
            sampler = getattr(task, "sampler", None)
            if isinstance(sampler, LeaderboardWalkSampler):
                sampler.check_visited(len({i.doc_id for i in task.instances}), name)


def load_task_group(
    task_manager: TaskManager, tasks_dir: Path, data: TaskData, preset: Preset | None = None
) -> TaskGroup:
    """Build a suite task's lm-eval tasks (data loaded) and bind the leaderboard's sampler to their documents."""
    from evalsuite.fewshot import LeaderboardWalkSampler

    try:
        loaded = task_manager.load([_group_config(tasks_dir, data)])
    except KeyError as e:  # lm-eval indexes the dataset by split name: a split the Hub dataset lacks
        if data.is_local:
            raise
        split = e.args[0] if e.args else "?"
        where = data.spec.data.hub_dataset + (f" ({data.spec.data.hub_config})" if data.spec.data.hub_config else "")
        raise RunError(
            f"{data.spec.key}: the Hub dataset {where} has no {split!r} split, which lm-eval reads for this task; "
            "pass --data-dir with a snapshot (a missing few-shot split falls back to the eval split there)"
        ) from None
    except (ValueError, FileNotFoundError) as e:  # datasets: a config the card no longer names ("BuilderConfig
        # 'x' not found", or DataFilesNotFoundError when no config is left to fall back on)
        if data.is_local or (isinstance(e, ValueError) and "BuilderConfig" not in str(e)):
            raise
        why = str(e).splitlines()[0] if str(e) else ""
        raise RunError(
            f"{data.spec.key}: the Hub dataset {data.spec.data.hub_dataset} changed: {type(e).__name__}: {why}; "
            "pass --data-dir with a snapshot"
        ) from None
    tasks = dict(loaded["tasks"])
    # the preset's subset depends on how many eval documents each lm-eval task has
    document_ids = (
        {name: preset.document_ids(name, data.spec.key, len(task.eval_docs)) for name, task in tasks.items()}
        if preset is not None
        else None
    )
    for name, task in tasks.items():
        sampler = getattr(task, "sampler", None)
        if isinstance(sampler, LeaderboardWalkSampler):
            sampler.bind(len(task.eval_docs), document_ids[name] if document_ids else None)
    return TaskGroup(data=data, group=next(iter(loaded["groups"].values())), tasks=tasks, document_ids=document_ids)


def build_requests(group: TaskGroup, limit: int | None, seeds: Seeds) -> list[DocumentRequests]:
    """Build the group's requests exactly as `run_task` has lm-eval build them, without a model."""
    for name, task in group.tasks.items():
        task.set_fewshot_seed(seed=seeds.fewshot)
        task.build_all_requests(limit=limit, samples=group.document_ids[name] if group.document_ids else None)
    group.check_exemplar_walks()
    return group.requests()


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

    group = load_task_group(task_manager, tasks_dir, data, settings.preset)
    started = time.perf_counter()
    output = simple_evaluate(
        model=model.lm,
        model_args=model.model_args,
        tasks=[group.group],
        limit=settings.limit,
        samples=group.document_ids,
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
    group.check_exemplar_walks()
    samples = output.pop("samples", None) or {}
    return RawTaskRun(
        data=data,
        output=output,
        samples=samples,
        seconds=seconds,
        document_ids=group.document_ids,
        prompt_sha256=prompt_fingerprint(group.requests()),
    )


def checkpoint_json(raw: RawTaskRun) -> str:
    checkpoint = {
        "output": raw.output,
        "samples": raw.samples,
        "seconds": raw.seconds,
        "document_ids": raw.document_ids,
        "prompt_sha256": raw.prompt_sha256,
    }
    return to_json(checkpoint, indent=None)


def to_json(document: object, indent: int | None = 2) -> str:
    """Serialize lm-eval output as lm-eval writes it (numpy floats and callables made plain)."""
    from lm_eval.utils import handle_non_serializable

    return json.dumps(document, indent=indent, default=handle_non_serializable, ensure_ascii=False)


# ------------------------------------------------------------------------------- offline snapshot


def _group_config(tasks_dir: Path, data: TaskData) -> dict[str, Any]:
    """The task's group YAML as an inline config, each member with the protocol's and the data's overrides.

    The overrides go into every member entry (a member's own keys beat group-level ones in lm-eval). The
    protocol's set the few-shot sampler and, for GSM8K under leaderboard-v1, generation and scoring; the
    data's change only where rows come from. Prompt templates stay lm-eval's own task definitions.
    """
    path = tasks_dir / f"{data.spec.lm_eval_group}.yaml"
    try:
        group = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SuiteConfigError(f"{path}: cannot read the task group ({e.strerror})") from e
    overrides: dict[str, Any] = {**data.spec.lm_eval_overrides}
    if data.spec.fewshot_sampler == "leaderboard-walk":
        from evalsuite.fewshot import LeaderboardWalkSampler

        overrides["fewshot_config"] = {"sampler": LeaderboardWalkSampler}
    if data.is_local:
        overrides |= _local_data_overrides(data)
    group["task"] = [{**member, **overrides} for member in group["task"]]
    return group


def _local_data_overrides(data: TaskData) -> dict[str, Any]:
    """Member overrides that read the snapshot's jsonl files instead of the Hub dataset."""
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
    return overrides


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

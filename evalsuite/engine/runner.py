"""The one module that drives lm-eval (the backends in backends/ only subclass its models): loads the model once,
through its backend, and runs one suite task at a time.

Each suite task is an lm-eval group in tasks/ (h6_arc, ..., h6_mmlu) that references lm-eval's built-in
task definitions by name, so prompts and metrics stay lm-eval's. The group is built from an inline config:
its members get the protocol's overrides (tasks/suite.yaml `protocols:`, the leaderboard's few-shot
sampler) and, for an offline snapshot, dataset overrides that point lm-eval at the local jsonl files.
Tasks run one per `simple_evaluate` call against the same loaded model, so each gets its own timing
and progress line. The requests lm-eval built stay on its task objects; `TaskGroup.requests` reads them
back (the prompt fingerprint, `evalsuite prompts`).

lm-eval is imported inside the functions: importing this module (and evalsuite.engine) loads no model library.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ConfigDict

from evalsuite.data import TaskData
from evalsuite.engine.backends import LoadedModel, ModelSettings, get_backend
from evalsuite.errors import RunError, SuiteConfigError, param
from evalsuite.model import LoadableModel
from evalsuite.records import FrozenRecord
from evalsuite.results import lm_eval_files
from evalsuite.settings import Seeds
from evalsuite.suite import DocumentRequests, Preset, prompt_fingerprint

if TYPE_CHECKING:
    from lm_eval.api.group import Group
    from lm_eval.api.task import Task
    from lm_eval.tasks import TaskManager

log = logging.getLogger(__name__)

# lm-eval's built-in task folders the suite draws on; indexing only these (plus tasks/) takes ~1 s
# instead of ~9 s for the whole catalogue.
_LM_EVAL_TASK_DIRS = ("arc", "hellaswag", "mmlu/default", "truthfulqa", "winogrande", "gsm8k")


@dataclass(frozen=True)
class EvalSettings:
    limit: int | None
    seeds: Seeds
    log_samples: bool
    preset: Preset | None = None  # a fixed document subset instead of `limit`


class FinishedTask(FrozenRecord):
    """One suite task as lm-eval returned it, in plain JSON values, with its wall time: what `run_task` returns, a
    checkpoint stores (evalsuite.run.checkpoint) and a resumed run reads back."""

    # NaN and Infinity written as JSON's constants, as lm-eval's own files hold them (pydantic's default: null)
    model_config = ConfigDict(ser_json_inf_nan="constants")

    lm_eval_output: dict[str, Any]  # simple_evaluate's return value, samples split off
    samples: dict[str, list[dict[str, Any]]]  # lm-eval task -> its logged samples (empty without log_samples)
    seconds: float
    document_ids: dict[str, list[int]] | None = None  # lm-eval task -> scored eval-document indices (presets)
    prompt_sha256: str | None = None  # protocol.prompt_fingerprint of every request lm-eval built

    @property
    def model_sha(self) -> str | None:
        """The Hub commit lm-eval resolved for the model (None off the Hub)."""
        return lm_eval_files.model_sha(self.lm_eval_output)

    @property
    def batch_sizes(self) -> list[int]:
        """Batch sizes lm-eval used (what `auto` detected)."""
        return [int(b) for b in self.lm_eval_output.get("config", {}).get("batch_sizes", [])]


def build_task_manager(tasks_dir: Path) -> TaskManager:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from evalsuite.engine.compat import cache_compiled_templates, quiet_git_probe

    cache_compiled_templates()  # the same text, built many times faster (bench/request_building.py)
    quiet_git_probe()  # no `fatal: not a git repository` per task

    builtin = Path(lm_eval.__file__).parent / "tasks"
    return TaskManager(include_defaults=False, include_path=[*(builtin / d for d in _LM_EVAL_TASK_DIRS), tasks_dir])


def load_model(model: LoadableModel, settings: ModelSettings) -> LoadedModel:
    """The model, loaded by the backend the settings name (evalsuite.engine.backends)."""
    return get_backend(settings.backend).load(model, settings)


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
        """lm-eval asked the leaderboard's sampler once per document it built (see engine/fewshot.py)."""
        from evalsuite.engine.fewshot import LeaderboardWalkSampler

        for name, task in self.tasks.items():
            sampler = getattr(task, "sampler", None)
            if isinstance(sampler, LeaderboardWalkSampler):
                sampler.check_visited(len({i.doc_id for i in task.instances}), name)


def load_task_group(
    task_manager: TaskManager, tasks_dir: Path, data: TaskData, preset: Preset | None = None
) -> TaskGroup:
    """Build a suite task's lm-eval tasks (data loaded) and bind the leaderboard's sampler to their documents."""
    from evalsuite.engine.fewshot import LeaderboardWalkSampler

    try:
        loaded = task_manager.load([_group_config(tasks_dir, data)])
    except KeyError as e:  # lm-eval indexes the dataset by split name: a split the Hub dataset lacks
        if data.is_local:
            raise
        split = e.args[0] if e.args else "?"
        where = data.spec.data.hub_dataset + (f" ({data.spec.data.hub_config})" if data.spec.data.hub_config else "")
        raise RunError(
            f"{data.spec.key}: the Hub dataset {where} has no {split!r} split, which lm-eval reads for this task; "
            f"pass {param('data_dir')} with a snapshot (a missing few-shot split falls back to the eval split there)"
        ) from e
    except (ValueError, FileNotFoundError) as e:  # datasets: a config the card no longer names ("BuilderConfig
        # 'x' not found", or DataFilesNotFoundError when no config is left to fall back on)
        if data.is_local or (isinstance(e, ValueError) and "BuilderConfig" not in str(e)):
            raise
        why = str(e).splitlines()[0] if str(e) else ""
        raise RunError(
            f"{data.spec.key}: the Hub dataset {data.spec.data.hub_dataset} changed: {type(e).__name__}: {why}; "
            f"pass {param('data_dir')} with a snapshot"
        ) from e
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
) -> FinishedTask | None:
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
    return FinishedTask(
        lm_eval_output=_plain_json(output),
        samples=_plain_json(samples),
        seconds=seconds,
        document_ids=group.document_ids,
        prompt_sha256=prompt_fingerprint(group.requests()),
    )


def _plain_json(value: Any) -> Any:
    """lm-eval's output in plain JSON values, as lm-eval writes its own files (numpy numbers, sets and callables
    made plain by its `handle_non_serializable`): parsed here once, so what a run reports, what it writes and
    what a resumed run reads back are the same values."""
    from lm_eval.utils import handle_non_serializable

    return json.loads(json.dumps(value, default=handle_non_serializable, ensure_ascii=False))


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
        from evalsuite.engine.fewshot import LeaderboardWalkSampler

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

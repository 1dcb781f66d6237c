"""`run_contamination`: one contamination check from two MODEL strings to a results folder, in the stages a run
has (evalsuite/run/pipeline.py):

1. `prepare_check`: every input checked, every eval row read and checked, the items selected; nothing loaded or
   written;
2. the task loop (`_check_tasks`): load both models through the backend registry's scorer (unless an
   interrupted check finished every task), resume the tasks it finished, score and save each task in the run's
   own checkpoint (evalsuite.run.checkpoint: the lock, the fingerprint, the records);
3. the results (`CheckBuilder`), then the folder written all at once with contamination.json and items.jsonl.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import field_validator, model_validator

from evalsuite import engine, faults
from evalsuite.contamination import ITEM_TEXTS, Selection, format_share, reported_share, select_items
from evalsuite.data import DataPlan, eval_rows, plan_data
from evalsuite.engine.neighbours import CausalLM, ItemScore, score_items
from evalsuite.errors import OptionError, param
from evalsuite.model import LoadableModel, ModelRef, check_hub_access, parse_model_ref
from evalsuite.progress import interactive, task_bar
from evalsuite.progress import requests as requests_progress
from evalsuite.records import FrozenRecord
from evalsuite.results import (
    CHECK_FOLDER_PREFIX,
    CONTAMINATION_FILE,
    CheckedModel,
    ContaminationResults,
    ContaminationSettings,
    ContaminationTask,
    ItemRecord,
    Versions,
    check_output_dir,
    read_contamination,
    write_check,
)
from evalsuite.run.checkpoint import Checkpoint, fingerprint, model_folder, model_identity
from evalsuite.run.common import Progress, new_run_id, progress_or_log
from evalsuite.settings import BatchSize, BatchSizeField, Dtype, DtypeField, Seeds, SeedsField
from evalsuite.suite import SuiteSpec, load_suite

ITEMS_SUFFIX = "jsonl"  # a finished task's item lines, saved with its record in the checkpoint


class ContaminationRequest(FrozenRecord):
    """What `evalsuite contamination` asks. A pydantic model, as RunRequest: settings typed, text parsed once."""

    model: str
    reference: str
    data_dir: Path | None = None  # None: the Hub datasets (the original's source)
    tasks: Sequence[str] = ("arc", "mmlu", "truthfulqa", "gsm8k")
    items: int = 100
    neighbours: int = 100
    prefix_ratio: float = 0.4
    threshold: float = 0.1
    seeds: SeedsField = Seeds.all(0)  # random: the item shuffle; torch: the neighbour sampling
    batch_size: BatchSizeField = BatchSize(32)  # rows per scoring forward; auto: as many as fit
    shared_prefix: bool = True
    dtype: DtypeField = None
    device: str | None = None
    model_args: dict[str, str] = {}  # from_pretrained's arguments (trust_remote_code, ...), for both models
    output_dir: Path = Path("results")

    @model_validator(mode="before")
    @classmethod
    def _seed_is_seeds(cls, data: Any) -> Any:
        """`seed=N` (before evalsuite 0.4) is `seeds=N`: the same int for the shuffle and the sampling."""
        if isinstance(data, dict) and "seed" in data:
            warnings.warn("ContaminationRequest(seed=) is deprecated: use seeds=", DeprecationWarning, stacklevel=2)
            data = {**data, "seeds": data.get("seeds", data["seed"])}
            del data["seed"]
        return data

    @field_validator("model_args", mode="before")
    @classmethod
    def _model_args(cls, value: Any) -> Any:
        return engine.parse_model_args(value) if value is None or isinstance(value, str) else value


@dataclass(frozen=True)
class ContaminationOutcome:
    """A finished check: its results, and the folder they were written to (contamination.json, items.jsonl)."""

    results: ContaminationResults
    folder: Path


@dataclass(frozen=True)
class PreparedCheck:
    """Stage 1's product: the request checked, every row read and the items chosen; nothing loaded or written."""

    request: ContaminationRequest
    suite: SuiteSpec
    target: ModelRef
    reference: ModelRef
    plan: DataPlan
    selections: dict[str, Selection]  # task key -> the items it tests
    data_sha256: dict[str, str]  # task key -> sha256 of its eval rows (a resumed check must find the same)
    device: str
    dtype: Dtype
    scorer: engine.ModelBackend  # what loads both models (the registry's default backend)


def check_request(request: ContaminationRequest) -> None:
    unknown = [t for t in request.tasks if t not in ITEM_TEXTS]
    if unknown or not request.tasks:
        raise OptionError(f"{param('tasks')} {','.join(request.tasks)}: choose among {', '.join(ITEM_TEXTS)}")
    if request.items < 1:
        raise OptionError(f"{param('items')} {request.items}: give a positive number of items per task")
    if request.neighbours < 2:
        raise OptionError(f"{param('neighbours')} {request.neighbours}: r(x) is a share of neighbours; give at least 2")
    if not 0 < request.prefix_ratio < 1:
        raise OptionError(f"{param('prefix_ratio')} {request.prefix_ratio}: give a fraction between 0 and 1")
    if not 0 < request.threshold <= 1:
        raise OptionError(f"{param('threshold')} {request.threshold}: give a fraction in (0, 1]")
    if request.batch_size.reprobes is not None:
        raise OptionError(f"{param('batch_size')} {request.batch_size}: give a positive int or 'auto'")
    engine.check_device(request.device)


def prepare_check(request: ContaminationRequest, suite: SuiteSpec | None = None) -> PreparedCheck:
    """Stage 1: every cheap check, then every row read and checked (a snapshot's while planning, the Hub's here)
    and the items selected, all before a model loads."""
    suite = suite or load_suite()
    check_request(request)
    target, reference = parse_model_ref(request.model), parse_model_ref(request.reference, "reference")
    scorer = engine.get_backend(engine.DEFAULT_BACKEND)
    scorer.check_scorer_model_args(request.model_args, target.config_keys() | reference.config_keys())
    specs = suite.select(list(request.tasks))
    plan = plan_data(request.data_dir, specs)
    check_output_dir(request.output_dir)
    check_hub_access(target, None if request.data_dir else specs[0].data.hub_dataset)
    check_hub_access(reference, None)
    selections, data_sha256 = {}, {}
    for data in plan.tasks:
        rows = eval_rows(data)
        selections[data.spec.key] = select_items(data.spec.key, rows, request.items, request.seeds.random)
        data_sha256[data.spec.key] = data.files[0].sha256 if data.is_local else _rows_sha256(rows)
    device, dtype = engine.resolve(request.device, request.dtype)
    return PreparedCheck(request, suite, target, reference, plan, selections, data_sha256, device, dtype, scorer)


def run_contamination(
    request: ContaminationRequest, suite: SuiteSpec | None = None, progress: Progress | None = None
) -> ContaminationOutcome:
    """Check the model for contamination and write the check's folder (stages in the module docstring)."""
    say = progress_or_log(progress)
    prepared = prepare_check(request, suite)
    started = time.perf_counter()
    settings = _settings(prepared)
    target, reference = engine.prepare_model(prepared.target), engine.prepare_model(prepared.reference)
    identity = {
        "kind": "contamination",
        "settings": settings.model_dump(mode="json"),
        "models": [model_identity(target), model_identity(reference)],
        "data": prepared.data_sha256,
    }
    now = datetime.now(UTC)
    key = fingerprint(identity)
    model_dir = model_folder(request.output_dir, prepared.target, key)  # beside the target's runs
    checkpoint = Checkpoint.open(model_dir, key, new_run_id(now), now, ContaminationTask, prepared.target.location)
    with checkpoint.cleaning_up():  # a failure before a task was saved leaves nothing behind
        for note in checkpoint.notes:
            say(note)
        written = model_dir / f"{CHECK_FOLDER_PREFIX}{checkpoint.run_id}"
        if (written / CONTAMINATION_FILE).is_file():  # killed after its folder was renamed into place: done
            checkpoint.finish()
            say(f"check {checkpoint.run_id} was already written to {written}; its leftover in-progress folder is gone")
            return ContaminationOutcome(read_contamination(written), written)
        keys = [data.spec.key for data in prepared.plan.tasks]
        finished = {k: checkpoint.finished(k, ContaminationTask) for k in keys if k in checkpoint.finished_at_open}
        if finished:
            say(f"resuming an interrupted check: {', '.join(finished)} done earlier ({checkpoint.folder})")
        models = _load_models(prepared, target, reference, say) if len(finished) < len(keys) else None
        builder = CheckBuilder(prepared, settings, target, reference, checkpoint, started)
        _check_tasks(prepared, models, finished, checkpoint, builder, say)
        results = builder.build()
        items = "".join(checkpoint.finished_file(task.key, ITEMS_SUFFIX) for task in results.tasks)
        folder = write_check(results, items, request.output_dir, model_dir.name, checkpoint.folder)
        faults.reached("renamed")
    checkpoint.finish()
    return ContaminationOutcome(results, folder)


def _settings(prepared: PreparedCheck) -> ContaminationSettings:
    request = prepared.request
    return ContaminationSettings(
        items=request.items,
        neighbours=request.neighbours,
        prefix_ratio=request.prefix_ratio,
        threshold=request.threshold,
        seeds=request.seeds,
        batch_size=request.batch_size.recorded,
        shared_prefix=request.shared_prefix,
        dtype=prepared.dtype,
        device=prepared.device,
        data_dir=str(request.data_dir.resolve()) if request.data_dir else None,
        model_args=dict(request.model_args),
    )


def _load_models(
    prepared: PreparedCheck, target: LoadableModel, reference: LoadableModel, say: Progress
) -> tuple[CausalLM, CausalLM]:
    """Stage 2's start: the target and the reference (one model when they are the same)."""
    say(
        f"loading {prepared.target.model_id} (target) and {prepared.reference.model_id} (reference) "
        f"({prepared.dtype}, {prepared.device})"
    )
    args = prepared.request.model_args
    target_lm = prepared.scorer.load_scorer(target, prepared.dtype, prepared.device, args)
    same = reference.pretrained == target.pretrained
    reference_lm = target_lm if same else prepared.scorer.load_scorer(reference, prepared.dtype, prepared.device, args)
    if target_lm.tokenizer.get_vocab() != reference_lm.tokenizer.get_vocab():
        say(
            "warning: target and reference use different tokenizers; neighbours pass between them as text, "
            "and every loss is the target's, as in the original"
        )
    return target_lm, reference_lm


def _check_tasks(
    prepared: PreparedCheck,
    models: tuple[CausalLM, CausalLM] | None,
    finished: dict[str, ContaminationTask],
    checkpoint: Checkpoint,
    builder: CheckBuilder,
    say: Progress,
) -> None:
    """Stage 2: each task in suite order, those an interrupted check finished taken as they were, the others
    scored and saved as they end; every task goes to `builder`."""
    request = prepared.request
    rows = engine.scoring_rows(request.batch_size, prepared.device)  # one for the whole check: what fits stays known
    for index, data in enumerate(prepared.plan.tasks, start=1):
        step = f"[{index}/{len(prepared.plan.tasks)}] {data.spec.key}"
        if data.spec.key in finished:
            task = finished[data.spec.key]
            say(f"{step}: {task.reported} ({task.items} items, done earlier)")
            builder.add(task)
            continue
        assert models is not None  # loaded whenever a task is left
        selection = prepared.selections[data.spec.key]
        say(f"{step}: {len(selection.items)} items x {request.neighbours} neighbours")
        task_started = time.perf_counter()
        # one bar per task on a terminal, advancing per item (an item is one generation and its scoring)
        with task_bar(step, show=interactive(), counts="items"):
            counter = requests_progress(len(selection.items), step)

            def advance(_score: ItemScore, bar: Any = counter) -> None:
                bar.update()

            scores = score_items(
                selection.items, *models, request.neighbours, request.prefix_ratio, request.seeds.torch, rows,
                request.shared_prefix, on_item=advance,
            )  # fmt: skip
            counter.close()
        share = reported_share([s.rank for s in scores], request.threshold)
        seconds = time.perf_counter() - task_started
        task = ContaminationTask(
            key=data.spec.key,
            column=data.spec.column,
            display_name=data.spec.display_name,
            share=share,
            reported=format_share(share, request.threshold),
            items=len(scores),
            candidates=selection.candidates,
            skipped_rows=selection.skipped,
            seconds=seconds,
        )
        items = "".join(_item_record(s, request.threshold).line() + "\n" for s in scores)
        checkpoint.save(task.key, task, files={ITEMS_SUFFIX: items})
        builder.add(task)
        say(f"{step}: {task.reported} ({len(scores)} items, {seconds:.0f}s)")


class CheckBuilder:
    """Stage 3: each task as it is done (`add`), then the check's file (`build`)."""

    def __init__(
        self,
        prepared: PreparedCheck,
        settings: ContaminationSettings,
        target: LoadableModel,
        reference: LoadableModel,
        checkpoint: Checkpoint,
        started: float,
    ) -> None:
        self.prepared, self.settings, self.target, self.reference = prepared, settings, target, reference
        self.checkpoint, self.started = checkpoint, started
        self.tasks: list[ContaminationTask] = []

    def add(self, task: ContaminationTask) -> None:
        self.tasks.append(task)

    def build(self) -> ContaminationResults:
        return ContaminationResults(
            run_id=self.checkpoint.run_id,
            created_at=self.checkpoint.created_at,
            target=_checked(self.prepared.target, self.target),
            reference=_checked(self.prepared.reference, self.reference),
            settings=self.settings,
            tasks=self.tasks,
            versions=Versions.installed(),
            total_seconds=time.perf_counter() - self.started,
        )


def _item_record(score: ItemScore, threshold: float) -> ItemRecord:
    return ItemRecord(
        task=score.item.task,
        row=score.item.row,
        text=score.item.text,
        loss=score.loss,
        rank=score.rank,
        below_threshold=score.rank < threshold,
        neighbour_losses=score.neighbour_losses,
    )


def _rows_sha256(rows: Sequence[dict[str, Any]]) -> str:
    """Hub rows as a snapshot file would hold them, hashed: a resumed check finds the same data again."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True).encode() + b"\n")
    return digest.hexdigest()


def _checked(ref: ModelRef, loadable: LoadableModel) -> CheckedModel:
    return CheckedModel(
        id=ref.model_id,
        source=ref.source,
        location=ref.location,
        revision=ref.revision,
        file_sha256=loadable.file_sha256,
    )

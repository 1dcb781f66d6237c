"""`run_contamination`: one contamination check from two MODEL strings to a results folder, in the stages a run
has (evalsuite/run/pipeline.py):

1. `prepare_check`: every input checked, every eval row read and checked, the items selected; nothing loaded or
   written;
2. the task loop (`_check_tasks`): load both models (unless an interrupted check finished every task), resume
   the tasks it finished, score and save each task (`CheckInProgress`);
3. the results (`CheckBuilder`), then the folder renamed into place with contamination.json and items.jsonl.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evalsuite import engine
from evalsuite.contamination import ITEM_TEXTS, Selection, format_share, reported_share, select_items
from evalsuite.data import DataPlan, eval_rows, plan_data
from evalsuite.engine.neighbours import CausalLM, ItemScore, load_causal_lm, score_items
from evalsuite.errors import OutputDirError, SuiteConfigError, param
from evalsuite.files import write_text_atomic
from evalsuite.model import LoadableModel, ModelRef, check_hub_access, parse_model_ref
from evalsuite.progress import interactive, task_bar
from evalsuite.progress import requests as requests_progress
from evalsuite.results import (
    CONTAMINATION_FILE,
    ITEMS_FILE,
    CheckedModel,
    ContaminationResults,
    ContaminationSettings,
    ContaminationTask,
    ItemRecord,
    Versions,
    check_output_dir,
)
from evalsuite.run.common import Progress, new_run_id, progress_or_log
from evalsuite.settings import BatchSize, Dtype
from evalsuite.suite import SuiteSpec, load_suite


@dataclass(frozen=True)
class ContaminationRequest:
    model: str
    reference: str
    data_dir: Path | None = None  # None: the Hub datasets (the original's source)
    tasks: Sequence[str] = ("arc", "mmlu", "truthfulqa", "gsm8k")
    items: int = 100
    neighbours: int = 100
    prefix_ratio: float = 0.4
    threshold: float = 0.1
    seed: int = 0
    batch_size: BatchSize = BatchSize(32)  # rows per scoring forward; auto: as many as fit
    shared_prefix: bool = True
    dtype: Dtype | None = None
    device: str | None = None
    output_dir: Path = Path("results")

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, BatchSize):
            object.__setattr__(self, "batch_size", BatchSize.parse(self.batch_size, allow_reprobes=False))
        if self.dtype is not None and not isinstance(self.dtype, Dtype):
            object.__setattr__(self, "dtype", Dtype.parse(self.dtype))


@dataclass(frozen=True)
class ContaminationOutcome:
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


def check_request(request: ContaminationRequest) -> None:
    unknown = [t for t in request.tasks if t not in ITEM_TEXTS]
    if unknown or not request.tasks:
        raise SuiteConfigError(f"{param('tasks')} {','.join(request.tasks)}: choose among {', '.join(ITEM_TEXTS)}")
    if request.items < 1:
        raise SuiteConfigError(f"{param('items')} {request.items}: give a positive number of items per task")
    if request.neighbours < 2:
        raise SuiteConfigError(
            f"{param('neighbours')} {request.neighbours}: r(x) is a share of neighbours; give at least 2"
        )
    if not 0 < request.prefix_ratio < 1:
        raise SuiteConfigError(f"{param('prefix_ratio')} {request.prefix_ratio}: give a fraction between 0 and 1")
    if not 0 < request.threshold <= 1:
        raise SuiteConfigError(f"{param('threshold')} {request.threshold}: give a fraction in (0, 1]")
    if request.batch_size.reprobes is not None:
        raise SuiteConfigError(f"{param('batch_size')} {request.batch_size}: give a positive int or 'auto'")
    engine.check_device(request.device)


def prepare_check(request: ContaminationRequest, suite: SuiteSpec | None = None) -> PreparedCheck:
    """Stage 1: every cheap check, then every row read and checked (a snapshot's while planning, the Hub's here)
    and the items selected, all before a model loads."""
    suite = suite or load_suite()
    check_request(request)
    target, reference = parse_model_ref(request.model), parse_model_ref(request.reference)
    specs = suite.select(list(request.tasks))
    plan = plan_data(request.data_dir, specs)
    check_output_dir(request.output_dir)
    check_hub_access(target, None if request.data_dir else specs[0].data.hub_dataset)
    check_hub_access(reference, None)
    selections, data_sha256 = {}, {}
    for data in plan.tasks:
        rows = eval_rows(data)
        selections[data.spec.key] = select_items(data.spec.key, rows, request.items, request.seed)
        data_sha256[data.spec.key] = data.files[0].sha256 if data.is_local else _rows_sha256(rows)
    device, dtype = engine.resolve(request.device, request.dtype)
    return PreparedCheck(request, suite, target, reference, plan, selections, data_sha256, device, dtype)


def run_contamination(
    request: ContaminationRequest, suite: SuiteSpec | None = None, progress: Progress | None = None
) -> ContaminationOutcome:
    say = progress_or_log(progress)
    prepared = prepare_check(request, suite)
    started = time.perf_counter()
    settings = _settings(prepared)
    target, reference = engine.prepare_model(prepared.target), engine.prepare_model(prepared.reference)
    in_progress = CheckInProgress(
        request.output_dir / prepared.target.results_dir_name,
        _fingerprint(settings, target, reference, prepared.data_sha256),
    )
    finished = in_progress.finished()
    if finished:
        say(f"resuming an interrupted check: {', '.join(finished)} done earlier ({in_progress.folder})")
    models = _load_models(prepared, target, reference, say) if len(finished) < len(prepared.plan.tasks) else None
    builder = CheckBuilder(prepared, settings, target, reference, started)
    _check_tasks(prepared, models, finished, in_progress, builder, say)
    results = builder.build()
    return ContaminationOutcome(results, in_progress.complete(results))


def _settings(prepared: PreparedCheck) -> ContaminationSettings:
    request = prepared.request
    return ContaminationSettings(
        items=request.items,
        neighbours=request.neighbours,
        prefix_ratio=request.prefix_ratio,
        threshold=request.threshold,
        seed=request.seed,
        batch_size=request.batch_size.rows if request.batch_size.rows is not None else "auto",
        shared_prefix=request.shared_prefix,
        dtype=prepared.dtype,
        device=prepared.device,
        data_dir=str(request.data_dir.resolve()) if request.data_dir else None,
    )


def _load_models(
    prepared: PreparedCheck, target: LoadableModel, reference: LoadableModel, say: Progress
) -> tuple[CausalLM, CausalLM]:
    """Stage 2's start: the target and the reference (one model when they are the same)."""
    say(
        f"loading {prepared.target.model_id} (target) and {prepared.reference.model_id} (reference) "
        f"({prepared.dtype}, {prepared.device})"
    )
    target_lm = load_causal_lm(target, prepared.dtype, prepared.device)
    same = reference.pretrained == target.pretrained
    reference_lm = target_lm if same else load_causal_lm(reference, prepared.dtype, prepared.device)
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
    in_progress: CheckInProgress,
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
                selection.items, *models, request.neighbours, request.prefix_ratio, request.seed, rows,
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
        in_progress.save_task(task, [_item_record(s, request.threshold).line() for s in scores])
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
        started: float,
    ) -> None:
        self.prepared, self.settings, self.target, self.reference = prepared, settings, target, reference
        self.started = started
        self.tasks: list[ContaminationTask] = []

    def add(self, task: ContaminationTask) -> None:
        self.tasks.append(task)

    def build(self) -> ContaminationResults:
        now = datetime.now(UTC)
        return ContaminationResults(
            run_id=new_run_id(now),
            created_at=now,
            target=_checked(self.prepared.target, self.target),
            reference=_checked(self.prepared.reference, self.reference),
            settings=self.settings,
            tasks=self.tasks,
            versions=Versions.installed().model_dump(),
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


def _fingerprint(
    settings: ContaminationSettings, target: LoadableModel, reference: LoadableModel, data_sha256: dict[str, str]
) -> str:
    """What makes two checks the same check: a resumed one reuses finished tasks only when all of this matches."""
    identity = {
        "settings": settings.model_dump(mode="json"),
        "models": [_model_identity(target), _model_identity(reference)],
        "data": data_sha256,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _rows_sha256(rows: Sequence[dict[str, Any]]) -> str:
    """Hub rows as a snapshot file would hold them, hashed: a resumed check finds the same data again."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True).encode() + b"\n")
    return digest.hexdigest()


def _model_identity(model: LoadableModel) -> list[Any]:
    """A model as a resumed check must find it again: a .gguf by its sha256, a local folder by its files' sizes
    and times (cheap; retrained weights change them), a Hub model by id and revision."""
    folder = Path(model.pretrained)
    files = []
    if model.file_sha256 is None and folder.is_dir():
        files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    return [model.pretrained, model.revision, model.file_sha256, files]


def _checked(ref: ModelRef, loadable: LoadableModel) -> CheckedModel:
    return CheckedModel(
        id=ref.model_id,
        source=ref.source,
        location=ref.location,
        revision=ref.revision,
        file_sha256=loadable.file_sha256,
    )


class CheckInProgress:
    """A check being written: `<model folder>/.contamination-<fingerprint>.partial/`, holding each finished task
    (`tasks/<key>.json` and its item lines), so a killed check resumes by task. `complete` renames it into
    `contamination-<run_id>/` with contamination.json and items.jsonl, all at once."""

    def __init__(self, model_folder: Path, fingerprint: str):
        self.model_folder = model_folder
        self.folder = model_folder / f".contamination-{fingerprint}.partial"

    def finished(self) -> dict[str, ContaminationTask]:
        """Tasks an earlier, interrupted run of the same check finished (a task file is written last)."""
        tasks = {}
        for path in sorted((self.folder / "tasks").glob("*.json")) if self.folder.is_dir() else []:
            try:
                task = ContaminationTask.model_validate_json(path.read_bytes())
            except ValueError:
                continue  # unreadable: score the task again
            if (self.folder / "tasks" / f"{task.key}.jsonl").is_file():
                tasks[task.key] = task
        return tasks

    def save_task(self, task: ContaminationTask, item_lines: Sequence[str]) -> None:
        try:
            (self.folder / "tasks").mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.folder / "tasks" / f"{task.key}.jsonl", "".join(line + "\n" for line in item_lines))
            write_text_atomic(self.folder / "tasks" / f"{task.key}.json", task.model_dump_json(indent=2) + "\n")
        except OSError as e:
            raise OutputDirError(f"cannot write contamination results under {self.folder}: {e.strerror or e}") from e

    def complete(self, results: ContaminationResults) -> Path:
        final = self.model_folder / f"contamination-{results.run_id}"
        task_files = self.folder / "tasks"
        try:
            with (self.folder / ITEMS_FILE).open("w", encoding="utf-8") as f:
                for task in results.tasks:
                    f.write((task_files / f"{task.key}.jsonl").read_text(encoding="utf-8"))
            (self.folder / CONTAMINATION_FILE).write_text(results.model_dump_json(indent=2) + "\n", encoding="utf-8")
            shutil.rmtree(task_files)
            os.replace(self.folder, final)
        except OSError as e:
            raise OutputDirError(f"cannot write contamination results under {self.folder}: {e.strerror or e}") from e
        return final

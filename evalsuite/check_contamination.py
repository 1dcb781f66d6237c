"""`evalsuite contamination`: one contamination check from two MODEL strings to a results folder.

Every input is checked before a model loads; the folder is written all at once (staged, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from evalsuite._compat import no_download_count_pings
from evalsuite._version import __version__
from evalsuite.contamination import (
    CONTAMINATION_FILE,
    ITEM_TEXTS,
    ITEMS_FILE,
    CheckedModel,
    ContaminationResults,
    ContaminationSettings,
    ContaminationTask,
    ItemScore,
    ScoringRows,
    format_share,
    item_record,
    reported_share,
    score_items,
    select_items,
)
from evalsuite.data import eval_rows, plan_hub, plan_local
from evalsuite.errors import OutputDirError, SuiteConfigError
from evalsuite.evaluate import check_device, check_dtype
from evalsuite.files import write_text_atomic
from evalsuite.model_ref import (
    LoadableModel,
    ModelRef,
    check_hub_access,
    parse_model_ref,
    prepare_model,
)
from evalsuite.progress import interactive, task_bar
from evalsuite.progress import requests as requests_progress
from evalsuite.results import check_output_dir
from evalsuite.suite import SuiteSpec, load_suite

Progress = Callable[[str], None]


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
    batch_size: int | Literal["auto"] = 32
    shared_prefix: bool = True
    dtype: str | None = None
    device: str | None = None
    output_dir: Path = Path("results")


@dataclass(frozen=True)
class ContaminationOutcome:
    results: ContaminationResults
    folder: Path


def check_request(request: ContaminationRequest, suite: SuiteSpec) -> None:
    unknown = [t for t in request.tasks if t not in ITEM_TEXTS]
    if unknown or not request.tasks:
        raise SuiteConfigError(f"--tasks {','.join(request.tasks)}: choose among {', '.join(ITEM_TEXTS)}")
    if request.items < 1:
        raise SuiteConfigError(f"--items {request.items}: give a positive number of items per task")
    if request.neighbours < 2:
        raise SuiteConfigError(f"--neighbours {request.neighbours}: r(x) is a share of neighbours; give at least 2")
    if not 0 < request.prefix_ratio < 1:
        raise SuiteConfigError(f"--prefix-ratio {request.prefix_ratio}: give a fraction between 0 and 1")
    if not 0 < request.threshold <= 1:
        raise SuiteConfigError(f"--threshold {request.threshold}: give a fraction in (0, 1]")
    if request.batch_size != "auto" and not (isinstance(request.batch_size, int) and request.batch_size >= 1):
        raise SuiteConfigError(f"--batch-size {request.batch_size!r}: give a positive int or 'auto'")
    check_dtype(request.dtype)
    check_device(request.device)


def run_contamination(
    request: ContaminationRequest, suite: SuiteSpec | None = None, progress: Progress | None = None
) -> ContaminationOutcome:
    say = progress or (lambda message: None)
    suite = suite or load_suite()
    check_request(request, suite)
    target_ref, reference_ref = parse_model_ref(request.model), parse_model_ref(request.reference)
    specs = suite.select(list(request.tasks))
    plan = plan_local(request.data_dir, specs) if request.data_dir else plan_hub(specs)
    check_output_dir(request.output_dir)
    hub_dataset = None if request.data_dir else specs[0].data.hub_dataset
    check_hub_access(target_ref, hub_dataset)
    check_hub_access(reference_ref, None)
    # every row read and checked before a model loads (a snapshot's while planning, the Hub's here)
    selections, data_sha256 = {}, {}
    for data in plan.tasks:
        with no_download_count_pings():
            rows = eval_rows(data)
        selections[data.spec.key] = select_items(data.spec.key, rows, request.items, request.seed)
        data_sha256[data.spec.key] = data.files[0].sha256 if data.is_local else _rows_sha256(rows)

    started = time.perf_counter()
    import torch

    device = request.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = request.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    settings = ContaminationSettings(
        items=request.items,
        neighbours=request.neighbours,
        prefix_ratio=request.prefix_ratio,
        threshold=request.threshold,
        seed=request.seed,
        batch_size=request.batch_size,
        shared_prefix=request.shared_prefix,
        dtype=dtype,
        device=device,
        data_dir=str(request.data_dir.resolve()) if request.data_dir else None,
    )
    target_loadable, reference_loadable = prepare_model(target_ref), prepare_model(reference_ref)
    progress_folder = CheckInProgress(
        request.output_dir / target_ref.results_dir_name,
        _fingerprint(settings, target_loadable, reference_loadable, data_sha256),
    )
    finished = progress_folder.finished()
    if finished:
        say(f"resuming an interrupted check: {', '.join(finished)} done earlier ({progress_folder.folder})")
    target = reference = None
    if len(finished) < len(plan.tasks):
        say(f"loading {target_ref.model_id} (target) and {reference_ref.model_id} (reference) ({dtype}, {device})")
        target = _load(target_loadable, dtype, device)
        same = reference_loadable.pretrained == target_loadable.pretrained
        reference = target if same else _load(reference_loadable, dtype, device)
        if target[1].get_vocab() != reference[1].get_vocab():
            say(
                "warning: target and reference use different tokenizers; neighbours pass between them as text, "
                "and every loss is the target's, as in the original"
            )

    scoring_rows = ScoringRows.parse(request.batch_size, device)  # one for the whole check: what fits stays known
    tasks: list[ContaminationTask] = []
    for index, data in enumerate(plan.tasks, start=1):
        step = f"[{index}/{len(plan.tasks)}] {data.spec.key}"
        if data.spec.key in finished:
            task = finished[data.spec.key]
            say(f"{step}: {task.reported} ({task.items} items, done earlier)")
            tasks.append(task)
            continue
        selection = selections[data.spec.key]
        say(f"{step}: {len(selection.items)} items x {request.neighbours} neighbours")
        task_started = time.perf_counter()
        # one bar per task on a terminal, advancing per item (an item is one generation and its scoring)
        assert target is not None and reference is not None  # loaded above whenever a task is left
        with task_bar(step, show=interactive(), counts="items"):
            counter = requests_progress(len(selection.items), step)

            def advance(_score: ItemScore, bar: Any = counter) -> None:
                bar.update()

            task_scores = score_items(
                selection.items, target, reference, request.neighbours, request.prefix_ratio, request.seed,
                scoring_rows, request.shared_prefix, on_item=advance,
            )  # fmt: skip
            counter.close()
        share = reported_share([s.rank for s in task_scores], request.threshold)
        seconds = time.perf_counter() - task_started
        task = ContaminationTask(
            key=data.spec.key,
            column=data.spec.column,
            display_name=data.spec.display_name,
            share=share,
            reported=format_share(share, request.threshold),
            items=len(task_scores),
            candidates=selection.candidates,
            skipped_rows=selection.skipped,
            seconds=seconds,
        )
        progress_folder.save_task(task, [json.dumps(item_record(s, request.threshold)) for s in task_scores])
        tasks.append(task)
        say(f"{step}: {task.reported} ({len(task_scores)} items, {seconds:.0f}s)")

    now = datetime.now(UTC)
    results = ContaminationResults(
        run_id=f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}",
        created_at=now,
        target=_checked(target_ref, target_loadable),
        reference=_checked(reference_ref, reference_loadable),
        settings=settings,
        tasks=tasks,
        versions=_versions(),
        total_seconds=time.perf_counter() - started,
    )
    return ContaminationOutcome(results, progress_folder.complete(results))


def _fingerprint(
    settings: ContaminationSettings, target: LoadableModel, reference: LoadableModel, data_sha256: dict[str, str]
) -> str:
    """What makes two checks the same check: a resumed one reuses finished tasks only when all of this matches."""
    identity = {
        "settings": settings.model_dump(),
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


def _load(model: LoadableModel, dtype: str, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype) if dtype != "auto" else "auto"
    loaded: Any = AutoModelForCausalLM.from_pretrained(model.pretrained, revision=model.revision, dtype=torch_dtype)
    loaded.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(model.pretrained, revision=model.revision)
    tokenizer.padding_side = "right"  # as the original: right padding, pads masked out of the loss
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return loaded, tokenizer


def _checked(ref: ModelRef, loadable: LoadableModel) -> CheckedModel:
    return CheckedModel(
        id=ref.model_id,
        source=ref.source,
        location=ref.location,
        revision=ref.revision,
        file_sha256=loadable.file_sha256,
    )


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {"evalsuite": __version__, "transformers": transformers.__version__, "torch": torch.__version__,
            "python": platform.python_version()}  # fmt: skip


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


def is_contamination(path: Path) -> bool:
    """A contamination check's file or folder (not a run's results)."""
    return path.name == CONTAMINATION_FILE or (path.is_dir() and (path / CONTAMINATION_FILE).is_file())


def read_contamination(path: Path) -> ContaminationResults:
    from pydantic import ValidationError

    from evalsuite.errors import ResultsSchemaError

    if path.is_dir():
        path = path / CONTAMINATION_FILE
    try:
        return ContaminationResults.model_validate_json(path.read_bytes())
    except OSError as e:
        raise ResultsSchemaError(f"{path}: cannot read ({e.strerror})") from e
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(map(str, err["loc"]))
        raise ResultsSchemaError(f"{path}: invalid contamination file at {where}: {err['msg']}") from e

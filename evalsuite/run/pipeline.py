"""`run_suite`: one H6 run from a MODEL string to a results folder, in three stages.

1. `prepare_run`: every check that is cheap (task keys, limit, model path, data dir, output dir, the Hub),
   before the model loads, so bad input fails in a second and leaves nothing behind;
2. the task loop (`_run_tasks`): load the model, resume what an interrupted run finished, run and checkpoint
   each task;
3. the results (`ResultsBuilder`, then `write_run`): the typed results file and lm-eval's own files, at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError, field_validator

from evalsuite import engine, faults
from evalsuite._version import __version__
from evalsuite.data import DataPlan, TaskData, no_download_count_pings, plan_data
from evalsuite.errors import EvalsuiteError, OptionError, OutputDirError, RunError, param
from evalsuite.model import LoadableModel, ModelRef, ModelWeights, check_hub_access, check_precision, resolve_weights
from evalsuite.progress import task_bar
from evalsuite.records import FrozenRecord
from evalsuite.results import (
    DataFileInfo,
    FewshotInfo,
    ModelInfo,
    RunSettings,
    SuiteResults,
    TaskResult,
    Timing,
    Versions,
    check_output_dir,
    completeness,
    h6_average,
    is_written,
    lm_eval_files,
    pct,
    read_results,
    task_result,
    write_run,
)
from evalsuite.run.checkpoint import Checkpoint, CheckpointState, fingerprint, model_folder, model_identity
from evalsuite.run.common import Progress, new_run_id, progress_or_log, silent
from evalsuite.settings import (
    BatchSize,
    BatchSizeField,
    Dtype,
    DtypeField,
    Precision,
    PrecisionField,
    Seeds,
    SeedsField,
    WeightType,
    check_limit,
    loaded_as,
)
from evalsuite.suite import Preset, Protocol, SuiteSpec, default_tasks_dir, load_suite, parse_protocol


class RunRequest(FrozenRecord):
    """What `evalsuite run` asks. A pydantic model: settings are typed values, and the text a user writes is
    parsed into them once (`batch_size="auto"`, `dtype="bfloat16"`, `seeds=0`, `model_args="k=v,..."`); a bad
    value is one OptionError naming the field."""

    model: str | None  # None only with `adapter`: its config names the base model
    tasks: Sequence[str] | None = None  # suite task keys; None: all six
    limit: int | None = None
    batch_size: BatchSizeField = BatchSize(8)
    dtype: DtypeField = None  # None: float32 on CPU, bfloat16 on CUDA; under 8bit/4bit, the compute dtype
    precision: PrecisionField = None  # None: the dtype's (or the checkpoint's own quantization)
    adapter: str | None = None  # a PEFT adapter (folder or Hub id[@rev]) over MODEL
    delta: str | None = None  # the base model MODEL's weights are added to
    device: str | None = None  # None: cuda when available, else cpu
    data_dir: Path | None = None
    output_dir: Path = Path("results")
    seeds: SeedsField = Seeds()
    log_samples: bool = False
    model_args: dict[str, str] = {}  # the backend's model args (for HF backends: HFLM's, from_pretrained's)
    add_bos_token: bool = False
    preset: str | None = None
    backend: str = engine.DEFAULT_BACKEND  # a registered backend (evalsuite.engine.backends)
    backend_options: dict[str, Any] = {}  # the backend's typed options, as values or text
    protocol: Protocol = Protocol.LEADERBOARD_V1

    @field_validator("model_args", mode="before")
    @classmethod
    def _model_args(cls, value: Any) -> Any:
        return engine.parse_model_args(value) if value is None or isinstance(value, str) else value

    @field_validator("backend_options", mode="before")
    @classmethod
    def _backend_options(cls, value: Any) -> Any:
        if isinstance(value, engine.BackendOptions):
            return value.model_dump()
        return engine.parse_key_values(value, "backend_options") if value is None or isinstance(value, str) else value

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, value: Any) -> Any:
        return parse_protocol(value) if isinstance(value, str) and not isinstance(value, Protocol) else value


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: its results, and the folder they were written to (results.json, lm-eval's files)."""

    results: SuiteResults
    run_dir: Path


@dataclass(frozen=True)
class PreparedRun:
    """Stage 1's product: the request checked and resolved. Building it loads nothing and writes nothing
    (it reads the snapshot's rows, and asks the Hub whether the model and datasets are reachable)."""

    request: RunRequest
    suite: SuiteSpec  # the protocol's view of the suite
    ref: ModelRef  # the model results are filed under (an adapter or a delta is, as the leaderboard filed them)
    plan: DataPlan
    preset: Preset | None
    backend: engine.ModelBackend
    backend_options: engine.BackendOptions  # every option of the backend, typed, defaults filled in
    model_args: dict[str, str]  # as checked by the backend
    warnings: tuple[str, ...]  # for the user, before anything loads (few-shot fallbacks, old spellings)
    weights: ModelWeights  # what loads: the base model, and an adapter or a delta on top
    precision: Precision | None  # None: unquantized, in the run's dtype


def prepare_run(request: RunRequest, suite: SuiteSpec | None = None, here: bool = True) -> PreparedRun:
    """Stage 1: every cheap check, in the order a user fixes them; bad input raises one EvalsuiteError.

    `here`: the model runs in this process. False for a run spread over a cluster (run/sweep.py): the device
    is then checked where each task runs, not on the machine that drives the run."""
    suite = (suite or load_suite()).for_protocol(request.protocol)
    specs = suite.select(request.tasks)
    check_limit(request.limit)
    backend = engine.get_backend(request.backend)
    if here and engine.launched_processes() > 1 and not backend.data_parallel:
        raise OptionError(
            f"{param('backend')} {backend.name} cannot run data-parallel: lm-eval's split draws other few-shot "
            f"exemplars for each number of processes; use a backend that splits its forwards ({engine.DEFAULT_BACKEND})"
        )
    if request.batch_size.reprobes is not None and not backend.reprobes_batch_size:
        raise OptionError(
            f"{param('batch_size')} {request.batch_size}: auto:N probes lm-eval's batch size again N times, which "
            f"backend {backend.name} does not (it halves on out-of-memory); give auto"
        )
    preset = suite.preset(request.preset) if request.preset else None
    if preset is not None and request.limit is not None:
        raise OptionError(f"{param('preset')} {request.preset} fixes the documents itself; drop {param('limit')}")
    if here:
        engine.check_device(request.device)
    weights = resolve_weights(request.model, request.adapter, request.delta)
    ref = weights.evaluated
    precision = check_precision(request.precision, weights.base)
    check_precision_settings(precision, request.dtype, weights, request.device)
    model_args, options, notes = backend_settings(backend, request.model_args, request.backend_options)
    backend.check_model_args(model_args, weights.base.config_keys())
    plan = plan_data(request.data_dir, specs)
    check_output_dir(request.output_dir)
    # the base loads from the Hub as a model; a delta's part too; an adapter's config was read above (its
    # weights come with it), and an adapter has no config.json of a model for this check to look for
    check_hub_access(weights.base, hub_dataset=None if plan.root is not None else specs[0].data.hub_dataset)
    if weights.part is not None and weights.type is WeightType.DELTA:
        check_hub_access(weights.part, None)
    warnings = notes + tuple(f"warning: {t.spec.key}: {t.fewshot.note}" for t in plan.tasks if t.fewshot.fallback)
    return PreparedRun(request, suite, ref, plan, preset, backend, options, model_args, warnings, weights, precision)


def check_precision_settings(
    precision: Precision | None, dtype: Dtype | None, weights: ModelWeights, device: str | None
) -> None:
    """What a precision needs, before anything loads: a dtype that agrees, its library installed, a device it
    runs on, one process; one line for each that is missing."""
    import importlib.util

    if precision is None:
        return
    if not precision.quantized:
        if dtype is not None and dtype is not precision.dtype:
            raise OptionError(
                f"{param('precision')} {precision} loads the weights in {precision}; drop {param('dtype')} {dtype}"
            )
        return
    if dtype is Dtype.AUTO:
        raise OptionError(
            f"{param('dtype')} auto: under {param('precision')} {precision} the dtype is what the quantized layers "
            "compute in; give float32, bfloat16 or float16"
        )
    if weights.type is WeightType.DELTA:
        raise OptionError(f"{param('delta')} adds full-precision weights; not with {param('precision')} {precision}")
    library = "bitsandbytes" if precision.bitsandbytes else "gptqmodel"
    needed = ["bitsandbytes"] if precision.bitsandbytes else ["gptqmodel", "optimum"]  # optimum: transformers' GPTQ
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise OptionError(
            f"{param('precision')} {precision} needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: pip install 'evalsuite[quant]'"
        )
    if device is not None and not device.startswith(("cpu", "cuda")):
        raise OptionError(f"{param('precision')} {precision}: {library} runs on cpu and cuda, not {device}")
    if engine.launched_processes() > 1:
        raise OptionError(
            f"{param('precision')} {precision}: a quantized model is not split over processes; run it in one "
            "process (no accelerate launch or torchrun)"
        )


def backend_settings(
    backend: engine.ModelBackend, model_args: Mapping[str, str], backend_options: Mapping[str, Any]
) -> tuple[dict[str, str], engine.BackendOptions, tuple[str, ...]]:
    """(model args, the backend's typed options, deprecation notes): options given as model args, as before
    evalsuite 0.4 (`generation=`, `pack_tokens=`), are taken as options, with a note saying so."""
    args, moved = backend.moved_model_args(model_args)
    if clash := sorted(moved.keys() & backend_options.keys()):
        raise OptionError(
            f"{param('model_args')} and {param('backend_options')} both set {clash[0]}; give it in "
            f"{param('backend_options')} only"
        )
    if moved:
        backend.parse_options(moved, flag="model_args")  # a bad value names the flag it was given with
    options = backend.parse_options({**moved, **backend_options})
    notes = tuple(
        f"warning: {param('model_args')} {key}={value} is deprecated (removed in evalsuite 0.5): give "
        f"{param('backend_options')} {key}={value}"
        for key, value in moved.items()
    )
    return args, options, notes


def run_suite(
    request: RunRequest, suite: SuiteSpec | None = None, progress: Progress | None = None, bars: bool | None = None
) -> RunOutcome | None:
    """Run the suite and write the run folder. Under a data-parallel launch (accelerate launch, torchrun)
    every process calls this; rank 0 writes and returns the outcome, the others return None.

    `progress` gets evalsuite's one-line messages. `bars`: True, one evalsuite bar per task on stderr and no
    other library's; False, no bars at all (stderr is a log); None, the backends' and lm-eval's own bars."""
    say = progress_or_log(progress) if engine.launched_rank() == 0 else silent  # rank 0 speaks for all
    prepared = prepare_run(request, suite)
    for warning in prepared.warnings:
        say(warning)

    started = time.perf_counter()
    loadable = engine.prepare_model(prepared.weights.base)
    plan = load_plan(prepared)
    say(f"loading {prepared.ref.model_id} ({describe_load(prepared, plan)})")
    model = engine.load_model(loadable, plan)
    faults.reached("model-loaded")
    processes = model.processes
    if processes.count != engine.launched_processes() or processes.rank != engine.launched_rank():
        raise RunError(
            f"launched as rank {engine.launched_rank()} of {engine.launched_processes()} processes, but the model "
            f"runs as rank {processes.rank} of {processes.count}: data-parallel runs need one machine "
            "(accelerate launch, torchrun)"
        )
    if processes.count > 1:
        say(
            f"data-parallel over {processes.count} processes, each forwarding a share of every task's requests; "
            "an interrupted task restarts from its beginning (finished tasks are kept)"
        )
    checkpoint = open_checkpoint(prepared, loadable, plan, processes)
    with checkpoint.cleaning_up():  # a failure before anything was saved leaves nothing behind
        for note in checkpoint.notes:
            say(note)
        if checkpoint.state.written:  # killed after its folder was renamed into place: the run is done
            if not processes.is_main:
                checkpoint.release()
                return None
            checkpoint.finish()
            run_dir = checkpoint.model_dir / checkpoint.run_id
            say(f"run {checkpoint.run_id} was already written to {run_dir}; its leftover in-progress folder is removed")
            return RunOutcome(results=read_results(run_dir), run_dir=run_dir)
        if checkpoint.resumed:
            say(f"resuming run {checkpoint.run_id} from {checkpoint.folder}")
        builder = ResultsBuilder(prepared, loadable, checkpoint, started)
        _run_tasks(prepared, model, checkpoint, builder, say, bars)
        if not processes.is_main:
            checkpoint.release()
            return None
        outcome = write_results(builder, ModelFacts.of(model))
    checkpoint.finish()
    return outcome


def load_plan(prepared: PreparedRun, device: str | None = None) -> engine.ModelSettings:
    """How the run's model loads, the one place that decides it (a local run, a sweep's driver and its workers
    all ask here): on `device` (None: the request's, else CUDA where this machine has it), in the request's
    dtype, else the precision's (float16, bfloat16), else the device's default; with the precision, the
    adapter or delta, the backend and its options, the model args."""
    request = prepared.request
    precision_dtype = prepared.precision.dtype if prepared.precision is not None else None
    device, dtype = engine.resolve(device or request.device, request.dtype or precision_dtype)
    return engine.ModelSettings(
        dtype=dtype,
        device=device,
        batch_size=request.batch_size,
        add_bos_token=request.add_bos_token,
        backend=prepared.backend.name,
        backend_options=prepared.backend_options,
        model_args=prepared.model_args,
        precision=prepared.precision,
        weight_type=prepared.weights.type,
        part=prepared.weights.part,
    )


def describe_load(prepared: PreparedRun, plan: engine.ModelSettings) -> str:
    """The load as the loading line says it: `float32, cpu`; `4bit, computing in float32, cuda`;
    `float32, adapter over ORG/BASE, cpu`."""
    if (elsewhere := prepared.backend.where(plan)) is not None:  # a served model: only its tokenizer loads here
        return elsewhere
    how = loaded_as(plan.precision, plan.dtype, plan.weight_type, prepared.weights.base.model_id)
    return f"{how}, {plan.device}"


def _run_tasks(
    prepared: PreparedRun,
    model: engine.LoadedModel,
    checkpoint: Checkpoint,
    builder: ResultsBuilder,
    say: Progress,
    bars: bool | None,
) -> None:
    """Stage 2: each task in suite order, skipping those an interrupted run finished, checkpointing each
    as it ends; rank 0 hands every finished task to `builder`."""
    request, processes = prepared.request, model.processes
    settings = engine.EvalSettings(
        limit=request.limit, seeds=request.seeds, log_samples=request.log_samples, preset=prepared.preset
    )
    tasks_dir = default_tasks_dir()
    task_manager = engine.build_task_manager(tasks_dir)
    for index, data in enumerate(prepared.plan.tasks, start=1):
        step = f"[{index}/{len(prepared.plan.tasks)}] {data.spec.key}"
        finished: engine.FinishedTask | None = None
        if data.spec.key in checkpoint.finished_at_open:
            say(f"{step}: finished before the interruption, not rerun")
            if processes.is_main:
                finished, _ = read_finished(checkpoint, data.spec.key)
        else:
            if bars is not True:  # else the bar's label says which task runs
                say(f"{step}: {data.spec.num_fewshot}-shot, {data.spec.metric.display}")
            if checkpoint.resumed and (cached := checkpoint.cached_requests(data.spec.key)):
                say(f"{step}: {cached} requests answered before the interruption are reused")
            # lm-eval's request cache hands each rank the requests its own cache lacks; ranks must agree on
            # the requests they split, so data-parallel runs keep no request cache
            cache = checkpoint.request_cache(data.spec.key) if processes.count == 1 else None
            bar = task_bar(step, show=bars is True and processes.is_main) if bars is not None else nullcontext()
            with bar, no_download_count_pings():
                try:
                    finished = engine.run_task(model, data, settings, task_manager, tasks_dir, cache)
                except Exception as e:  # lm-eval's request cache on a full disk: one line, the run resumable
                    if (full := storage_full(e, checkpoint.folder)) is not None:
                        raise full from e
                    raise
            if finished is not None:
                save_finished(checkpoint, data.spec.key, finished, ModelFacts.of(model))
        if finished is None:
            continue  # another rank's share: rank 0 holds the task's results
        result = builder.add(data, finished)
        say(f"{step}: {pct(result.value)} ({result.documents} docs, {finished.seconds:.0f}s)")


def storage_full(error: BaseException, folder: Path) -> OutputDirError | None:
    """A write under `folder` that failed for want of space (the disk, a quota) as one line that says the run
    resumes; None for any other error. sqlite (lm-eval's request cache) says so by its error code."""
    import errno
    import sqlite3

    full = (errno.ENOSPC, errno.EDQUOT)
    if isinstance(error, OSError) and error.errno in full:
        why = error.strerror
    elif isinstance(error, sqlite3.Error) and getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        why = os.strerror(errno.ENOSPC)
    else:
        return None
    return OutputDirError(
        f"cannot write under {folder}: {why}; free space and run the same command again: what is saved is kept"
    )


def open_checkpoint(
    prepared: PreparedRun,
    loadable: LoadableModel,
    plan: engine.ModelSettings,
    processes: engine.Processes | None = None,
) -> Checkpoint:
    """The run's checkpoint, opened (or resumed: the same key) under its model's folder (`model_folder`, which
    the run is written to: `Checkpoint.model_dir`): what an earlier run of the same settings finished, and
    whether it was already written (`state.written`: killed after its folder was renamed into place). Rank 0
    opens it, the other ranks of a data-parallel run follow the state it shares; a sweep's driver opens its
    models' as one process."""
    processes = processes or engine.Processes()
    if not processes.is_main:
        state: CheckpointState = processes.share(None)  # rank 0's
        return Checkpoint.follow(state)
    key = run_key(prepared, loadable, plan, processes.count)
    now = datetime.now(UTC)
    try:
        model_dir = model_folder(prepared.request.output_dir, prepared.ref, key)
        checkpoint = Checkpoint.open(model_dir, key, new_run_id(now), now, engine.FinishedTask, prepared.ref.location)
        checkpoint.state = replace(checkpoint.state, written=is_written(model_dir / checkpoint.run_id))
    except BaseException as e:
        processes.share(e)  # every rank raises it
        raise
    processes.share(checkpoint.state)
    return checkpoint


def save_finished(checkpoint: Checkpoint, task: str, finished: engine.FinishedTask, facts: ModelFacts) -> None:
    """A task's record saved in the run's checkpoint, with the facts of the model that ran it (so a sweep, or a
    run, that resumes it can build the results without the model)."""
    checkpoint.save(task, finished, files={MODEL_FACTS: facts.model_dump_json()})
    faults.reached("task-saved")


def read_finished(checkpoint: Checkpoint, task: str) -> tuple[engine.FinishedTask, ModelFacts | None]:
    """A task finished before (`checkpoint.finished_at_open`): its record, and the model's facts (None for a
    record saved without them, by an evalsuite from before sweeps, which resume from them)."""
    finished = checkpoint.finished(task, engine.FinishedTask)
    try:
        facts = ModelFacts.model_validate_json(checkpoint.finished_file(task, MODEL_FACTS))
    except (EvalsuiteError, ValidationError):
        facts = None
    return finished, facts


def write_results(builder: ResultsBuilder, facts: ModelFacts) -> RunOutcome:
    """The run's results built from every task added to `builder`, and its folder written at once beside
    lm-eval's files (the checkpoint is the caller's to finish)."""
    results = builder.build(facts)
    model_dir = builder.checkpoint.model_dir  # decided when it opened (model_folder)
    run_dir = write_run(results, builder.lm_eval_files(), model_dir.parent, model_dir.name, builder.checkpoint.folder)
    faults.reached("renamed")
    return RunOutcome(results=results, run_dir=run_dir)


MODEL_FACTS = "model"  # the file saved with each task's record: the facts of the model that ran it


class ModelFacts(FrozenRecord):
    """What results.json records of the loaded model, wherever it loaded: in this process, or in a cluster's
    worker (which sends it back with each task it ran, run/cells.py)."""

    model_args: dict[str, Any]  # what lm-eval records as the model's arguments
    device: str  # described: `cuda:0 (NVIDIA H100 80GB HBM3)`, `cpu`
    parameters: int | None
    dtype: Dtype
    load_seconds: float
    backend: str
    processes: int = 1

    @classmethod
    def of(cls, model: engine.LoadedModel) -> ModelFacts:
        return cls(
            model_args=dict(model.model_args),
            device=engine.describe_device(model.device),
            parameters=model.parameters,
            dtype=model.dtype,
            load_seconds=model.load_seconds,
            backend=model.backend,
            processes=model.processes.count,
        )


class ResultsBuilder:
    """Stage 3: each finished task's result as it comes (`add`), then the results file (`build`) and lm-eval's
    own files beside it (`lm_eval_files`)."""

    def __init__(self, prepared: PreparedRun, loadable: LoadableModel, checkpoint: Checkpoint, started: float) -> None:
        self.prepared, self.loadable, self.checkpoint = prepared, loadable, checkpoint
        self.started = started
        self.finished: list[tuple[TaskData, engine.FinishedTask]] = []
        self.task_results: list[TaskResult] = []

    def add(self, data: TaskData, finished: engine.FinishedTask) -> TaskResult:
        result = task_result(
            data.spec,
            finished.lm_eval_output,
            fewshot=_fewshot_info(data),
            data_files=[
                DataFileInfo(split=f.split, path=str(f.path), sha256=f.sha256, rows=f.rows) for f in data.files
            ],
            leaderboard_differences=data.leaderboard_differences(self.prepared.request.protocol)
            + _backend_differences(self.prepared.backend),
            seconds=finished.seconds,
            document_ids=finished.document_ids,
            prompt_sha256=finished.prompt_sha256,
        )
        self.finished.append((data, finished))
        self.task_results.append(result)
        return result

    def build(self, model: ModelFacts) -> SuiteResults:
        request, suite, ref, plan = (self.prepared.request, self.prepared.suite, self.prepared.ref, self.prepared.plan)
        tasks = self.task_results
        reasons = completeness(suite.keys, tasks, request.limit, request.preset)
        model_sha = next((f.model_sha for _, f in self.finished if f.model_sha), None)
        weights = self.prepared.weights
        base_sha = self.loadable.file_sha256 or model_sha  # the commit lm-eval resolved is the base's
        return SuiteResults(
            run_id=self.checkpoint.run_id,
            created_at=self.checkpoint.created_at,
            suite=suite.name,
            suite_version=suite.version,
            model=ModelInfo(
                id=ref.model_id,
                source=ref.source,
                location=ref.location,
                revision=ref.revision,
                sha=base_sha if weights.part is None else None,
                dtype=model.dtype,
                parameters=model.parameters,
                precision=self.prepared.precision or Precision.of_dtype(model.dtype),
                weight_type=weights.type,
                base_model=weights.base.model_id if weights.part is not None else None,
                base_location=weights.base.location if weights.part is not None else None,
                base_revision=weights.base.revision if weights.part is not None else None,
                base_sha=base_sha if weights.part is not None else None,
            ),
            tasks=tasks,
            status="partial" if reasons else "complete",
            partial_reasons=reasons,
            h6_average=None if reasons else h6_average(tasks),
            leaderboard_comparable=not reasons and all(t.leaderboard_comparable for t in tasks),
            settings=RunSettings(
                protocol=request.protocol,
                limit=request.limit,
                batch_size=request.batch_size.recorded,
                batch_sizes_used=sorted({b for _, f in self.finished for b in f.batch_sizes}),
                add_bos_token=request.add_bos_token,
                chat_template=False,
                seeds=request.seeds,
                preset=request.preset,
                model_args=dict(model.model_args),
                data_source="local" if plan.root else "hub",
                data_dir=str(plan.root.resolve()) if plan.root else None,
                device=model.device,
                backend=model.backend,
                backend_options=self.prepared.backend_options.model_dump(mode="json"),
                processes=model.processes,
            ),
            versions=Versions.installed(),
            timing=Timing(
                model_load_seconds=round(model.load_seconds, 3),
                total_seconds=round(time.perf_counter() - self.started, 3),
            ),
        )

    def lm_eval_files(self) -> dict[str, str]:
        """lm-eval's own output per suite task, and its samples per lm-eval task (named as lm-eval names them)."""
        files = {}
        for data, finished in self.finished:
            files[lm_eval_files.output_file(data.spec.key)] = lm_eval_files.output_text(finished.lm_eval_output)
            for leaf, samples in finished.samples.items():
                files[lm_eval_files.samples_file(leaf)] = lm_eval_files.samples_text(samples)
        return files


def run_key(prepared: PreparedRun, model: LoadableModel, settings: engine.ModelSettings, processes: int) -> str:
    """The run's checkpoint key: the fingerprint of everything that moves its scores, so the same command over
    the same data resumes the same run (also when a cluster runs it: run/sweep.py)."""
    request, plan = prepared.request, prepared.plan
    return fingerprint({
        "evalsuite": __version__,
        "model": model_identity(model),
        "settings": [settings.dtype.value, settings.device, str(settings.batch_size), settings.add_bos_token,
                     sorted(settings.model_args.items()), settings.backend,
                     prepared.backend_options.model_dump(mode="json")],
        "protocol": request.protocol.value,
        "tasks": [t.spec.key for t in plan.tasks],
        "data": [[f.split, f.sha256] for t in plan.tasks for f in t.files],
        "limit": request.limit,
        "preset": request.preset,
        "seeds": [request.seeds.random, request.seeds.numpy, request.seeds.torch, request.seeds.fewshot],
        "log_samples": request.log_samples,
        # absent for a model loaded whole at its dtype, so runs interrupted before these existed still resume
        **({"precision": str(settings.precision)} if settings.precision is not None else {}),
        **({"weights": [settings.weight_type.value, model_identity(LoadableModel(settings.part, settings.part.location,
            settings.part.revision))]} if settings.part is not None else {}),
        # a data-parallel run keeps no request cache, so it does not resume a run of another process count
        # (absent for one process, so runs interrupted before this key existed still resume)
        **({"processes": processes} if processes > 1 else {}),
    })  # fmt: skip


def _backend_differences(backend: engine.ModelBackend) -> list[str]:
    """Why a task the backend ran is not the leaderboard's, whatever it asked: numbers that are not HFLM's."""
    if backend.hflm_exact:
        return []
    return [f"backend {backend.name}: {backend.not_exact_because}"]


def _fewshot_info(data: TaskData) -> FewshotInfo:
    return FewshotInfo(
        split=data.fewshot.split if data.spec.num_fewshot else None,
        sampler=data.fewshot.sampler if data.spec.num_fewshot else None,
        fallback=data.fewshot.fallback,
        note=data.fewshot.note,
    )

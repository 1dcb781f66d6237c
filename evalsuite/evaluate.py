"""`run_suite`: one H6 run from a MODEL string to a results folder.

Everything that can be checked cheaply (task keys, limit, model path, data dir, output dir) is checked
before the model is loaded, so bad input fails in a second and leaves nothing behind.
"""

from __future__ import annotations

import logging
import platform
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evalsuite import lm_eval_files, runner  # runner imports torch/lm_eval only inside its functions
from evalsuite._compat import no_download_count_pings
from evalsuite._version import __version__
from evalsuite.checkpoint import Checkpoint, CheckpointState, run_key
from evalsuite.data import DataPlan, TaskData, plan_hub, plan_local
from evalsuite.errors import RunError, SuiteConfigError
from evalsuite.model_ref import (
    LoadableModel,
    ModelRef,
    check_hub_access,
    parse_model_ref,
    prepare_model,
)
from evalsuite.processes import Processes, launched_processes, launched_rank
from evalsuite.progress import task_bar
from evalsuite.protocol import Protocol
from evalsuite.render import pct
from evalsuite.results import (
    DataFileInfo,
    FewshotInfo,
    ModelInfo,
    RunSettings,
    Seeds,
    SuiteResults,
    TaskResult,
    Timing,
    Versions,
    check_output_dir,
    completeness,
    h6_average,
    task_result,
    write_run,
)
from evalsuite.suite import Preset, SuiteSpec, default_tasks_dir, load_suite

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunRequest:
    """`evalsuite run` options, already parsed from strings."""

    model: str
    tasks: Sequence[str] | None = None
    limit: int | None = None
    batch_size: int | str = 8
    dtype: str | None = None  # None: float32 on CPU, bfloat16 on CUDA
    device: str | None = None  # None: cuda when available, else cpu
    data_dir: Path | None = None
    output_dir: Path = Path("results")
    seeds: Seeds = Seeds()
    log_samples: bool = False
    model_args: str | None = None
    add_bos_token: bool = False
    preset: str | None = None
    backend: runner.Backend = runner.Backend.SHARED_PREFIX
    protocol: Protocol = Protocol.LEADERBOARD_V1


@dataclass(frozen=True)
class RunOutcome:
    results: SuiteResults
    run_dir: Path


SEED_LIMIT = 2**32  # numpy's seeds are 0 <= seed < 2**32


def parse_seed(text: str) -> Seeds:
    """lm-eval's --seed: one int for all four seeds, or `random,numpy,torch,fewshot`."""
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise SuiteConfigError(f"--seed {text!r}: give an int or four comma-separated ints") from None
    if any(not 0 <= p < SEED_LIMIT for p in parts):
        raise SuiteConfigError(f"--seed {text!r}: seeds go from 0 to {SEED_LIMIT - 1}")
    if len(parts) == 1:
        return Seeds.all(parts[0])
    if len(parts) == 4:
        return Seeds(random=parts[0], numpy=parts[1], torch=parts[2], fewshot=parts[3])
    raise SuiteConfigError(f"--seed {text!r}: give an int or four comma-separated ints")


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise SuiteConfigError(f"--limit {limit}: give a positive number of documents per task")


DTYPES = ("float32", "bfloat16", "float16", "auto")


def check_dtype(dtype: str | None) -> None:
    if dtype is not None and dtype not in DTYPES:
        raise SuiteConfigError(f"--dtype {dtype!r}: choose {', '.join(DTYPES[:-1])} or {DTYPES[-1]}")


def check_device(device: str | None) -> None:
    """A device torch knows and this machine has (CUDA asked on a machine without it fails here, not in lm-eval)."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise SuiteConfigError(f"--device {device!r}: give cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is a CPU build" if torch.version.cuda is None else "no CUDA device is visible"
            raise SuiteConfigError(f"--device {device}: {why}; use --device cpu (or leave --device out)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise SuiteConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type not in ("cpu", "mps"):
        raise SuiteConfigError(f"--device {device!r}: give cpu, cuda or cuda:N")


def parse_batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    if text.startswith("auto:"):  # lm-eval: probe again N times over the run
        try:
            again = int(text.removeprefix("auto:"))
        except ValueError:
            again = 0
        if again < 1:
            raise SuiteConfigError(f"--batch-size {text!r}: give auto, auto:N (N a positive int) or a positive int")
        return text
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise SuiteConfigError(f"--batch-size {text!r}: give a positive int or 'auto'")
    return size


def new_run_id(now: datetime) -> str:
    """UTC start time, sortable, plus a random tag so two runs started in the same second differ."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class PreparedRun:
    """Stage 1's product: the request checked and resolved. Building it loads nothing and writes nothing
    (it reads the snapshot's rows, and asks the Hub whether the model and datasets are reachable)."""

    request: RunRequest
    suite: SuiteSpec  # the protocol's view of the suite
    ref: ModelRef
    plan: DataPlan
    preset: Preset | None
    extra_model_args: dict[str, Any]
    warnings: tuple[str, ...]  # for the user, before anything loads (few-shot fallbacks)


def prepare_run(request: RunRequest, suite: SuiteSpec | None = None) -> PreparedRun:
    """Stage 1: every cheap check, in the order a user fixes them; bad input raises one EvalsuiteError."""
    suite = (suite or load_suite()).for_protocol(request.protocol)
    specs = suite.select(request.tasks)
    check_limit(request.limit)
    if launched_processes() > 1 and request.backend is not runner.Backend.SHARED_PREFIX:
        raise SuiteConfigError(
            f"--backend {request.backend.value} cannot run data-parallel: lm-eval's split draws other few-shot "
            "exemplars for each number of processes; use the default backend (shared-prefix)"
        )
    preset = suite.preset(request.preset) if request.preset else None
    if preset is not None and request.limit is not None:
        raise SuiteConfigError(f"--preset {request.preset} fixes the documents itself; drop --limit")
    check_dtype(request.dtype)
    check_device(request.device)
    ref = parse_model_ref(request.model)
    extra_model_args = runner.parse_model_args(request.model_args)
    runner.check_model_args(extra_model_args, request.backend, ref.config_keys())
    plan = plan_local(request.data_dir, specs) if request.data_dir else plan_hub(specs)
    check_output_dir(request.output_dir)
    check_hub_access(ref, hub_dataset=None if plan.root is not None else specs[0].data.hub_dataset)
    warnings = tuple(f"warning: {t.spec.key}: {t.fewshot.note}" for t in plan.tasks if t.fewshot.fallback)
    return PreparedRun(request, suite, ref, plan, preset, extra_model_args, warnings)


def run_suite(
    request: RunRequest, suite: SuiteSpec | None = None, progress: Progress | None = None, bars: bool | None = None
) -> RunOutcome | None:
    """Run the suite and write the run folder. Under a data-parallel launch (accelerate launch, torchrun)
    every process calls this; rank 0 writes and returns the outcome, the others return None.

    `progress` gets evalsuite's one-line messages. `bars`: True, one evalsuite bar per task on stderr and no
    other library's; False, no bars at all (stderr is a log); None, the backends' and lm-eval's own bars.

    Three stages: `prepare_run` (checks), the task loop (`_run_tasks`: load, resume, checkpoints), and the
    results (`ResultsBuilder`, then `write_run`)."""
    say = progress or (lambda message: log.info("%s", message))
    if launched_rank() != 0:
        say = _silent  # one voice: rank 0 reports progress for all
    prepared = prepare_run(request, suite)
    for warning in prepared.warnings:
        say(warning)

    started = time.perf_counter()
    loadable = prepare_model(prepared.ref)
    model_settings = _model_settings(prepared)
    say(f"loading {prepared.ref.model_id} ({model_settings.dtype}, {model_settings.device})")
    model = runner.load_model(loadable, model_settings)
    processes = model.processes
    if processes.count != launched_processes() or processes.rank != launched_rank():
        raise RunError(
            f"launched as rank {launched_rank()} of {launched_processes()} processes, but the model runs as rank "
            f"{processes.rank} of {processes.count}: data-parallel runs need one machine (accelerate launch, torchrun)"
        )
    if processes.count > 1:
        say(
            f"data-parallel over {processes.count} processes, each forwarding a share of every task's requests; "
            "an interrupted task restarts from its beginning (finished tasks are kept)"
        )
    key = run_key(_fingerprint(request, loadable, model_settings, prepared.plan, processes))
    checkpoint = _open_checkpoint(processes, request.output_dir / prepared.ref.results_dir_name, key)
    try:
        if checkpoint.resumed:
            say(f"resuming run {checkpoint.run_id} from {checkpoint.folder}")
        builder = ResultsBuilder(prepared, loadable, model, checkpoint, started)
        _run_tasks(prepared, model, checkpoint, builder, say, bars)
        if not processes.is_main:
            checkpoint.release()
            return None
        results = builder.build()
        run_dir = write_run(results, builder.lm_eval_files(), request.output_dir, prepared.ref.results_dir_name)
    except BaseException:
        checkpoint.discard_if_empty()  # failed before anything was saved: nothing to resume, nothing left
        checkpoint.release()
        raise
    checkpoint.finish()
    return RunOutcome(results=results, run_dir=run_dir)


def _model_settings(prepared: PreparedRun) -> runner.ModelSettings:
    request = prepared.request
    device = request.device or runner.default_device()
    return runner.ModelSettings(
        dtype=request.dtype or ("bfloat16" if device.startswith("cuda") else "float32"),
        device=device,
        batch_size=request.batch_size,
        add_bos_token=request.add_bos_token,
        extra_model_args=prepared.extra_model_args,
        backend=request.backend,
    )


def _run_tasks(
    prepared: PreparedRun,
    model: runner.LoadedModel,
    checkpoint: Checkpoint,
    builder: ResultsBuilder,
    say: Progress,
    bars: bool | None,
) -> None:
    """Stage 2: each task in suite order, skipping those an interrupted run finished, checkpointing each
    as it ends; rank 0 hands every finished task to `builder`."""
    request, processes = prepared.request, model.processes
    settings = runner.EvalSettings(
        limit=request.limit, seeds=request.seeds, log_samples=request.log_samples, preset=prepared.preset
    )
    tasks_dir = default_tasks_dir()
    task_manager = runner.build_task_manager(tasks_dir)
    for index, data in enumerate(prepared.plan.tasks, start=1):
        step = f"[{index}/{len(prepared.plan.tasks)}] {data.spec.key}"
        raw: runner.RawTaskRun | None = None
        if data.spec.key in checkpoint.finished_at_open:
            say(f"{step}: finished before the interruption, not rerun")
            if processes.is_main:
                finished = checkpoint.finished(data.spec.key)
                if finished is None:
                    raise RunError(f"{checkpoint.folder}: task {data.spec.key} is listed as finished but unreadable")
                raw = runner.RawTaskRun(
                    data,
                    finished.output,
                    finished.samples,
                    finished.seconds,
                    finished.document_ids,
                    finished.prompt_sha256,
                )
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
                raw = runner.run_task(model, data, settings, task_manager, tasks_dir, cache)
            if raw is not None:
                checkpoint.save(data.spec.key, runner.checkpoint_json(raw))
        if raw is None:
            continue  # another rank's share: rank 0 holds the task's results
        result = builder.add(raw)
        say(f"{step}: {pct(result.value)} ({result.documents} docs, {raw.seconds:.0f}s)")


def _silent(message: str) -> None:
    pass


def _open_checkpoint(processes: Processes, model_dir: Path, key: str) -> Checkpoint:
    """Rank 0 opens (or resumes) the run's checkpoint; the other ranks follow the state it shares."""
    if not processes.is_main:
        state: CheckpointState = processes.share(None)  # rank 0's
        return Checkpoint.follow(state)
    now = datetime.now(UTC)
    try:
        checkpoint = Checkpoint.open(model_dir, key, new_run_id(now), now)
    except BaseException as e:
        processes.share(e)  # every rank raises it
        raise
    processes.share(checkpoint.state)
    return checkpoint


class ResultsBuilder:
    """Stage 3: each finished task's result as it comes (`add`), then the results file (`build`) and lm-eval's
    own files beside it (`lm_eval_files`)."""

    def __init__(
        self,
        prepared: PreparedRun,
        loadable: LoadableModel,
        model: runner.LoadedModel,
        checkpoint: Checkpoint,
        started: float,
    ) -> None:
        self.prepared, self.loadable, self.model, self.checkpoint = prepared, loadable, model, checkpoint
        self.started = started
        self.raw_runs: list[runner.RawTaskRun] = []
        self.task_results: list[TaskResult] = []

    def add(self, raw: runner.RawTaskRun) -> TaskResult:
        data, protocol = raw.data, self.prepared.request.protocol
        result = task_result(
            data.spec,
            dict(raw.output),
            fewshot=_fewshot_info(data),
            data_files=[
                DataFileInfo(split=f.split, path=str(f.path), sha256=f.sha256, rows=f.rows) for f in data.files
            ],
            leaderboard_differences=data.leaderboard_differences(protocol),
            seconds=raw.seconds,
            document_ids=raw.document_ids,
            prompt_sha256=raw.prompt_sha256,
        )
        self.raw_runs.append(raw)
        self.task_results.append(result)
        return result

    def build(self) -> SuiteResults:
        request, suite, ref, plan = (self.prepared.request, self.prepared.suite, self.prepared.ref, self.prepared.plan)
        model, tasks = self.model, self.task_results
        reasons = completeness(suite.keys, tasks, request.limit, request.preset)
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
                sha=self.loadable.file_sha256 or next((r.model_sha for r in self.raw_runs if r.model_sha), None),
                dtype=model.dtype,
                parameters=model.parameters,
            ),
            tasks=tasks,
            status="partial" if reasons else "complete",
            partial_reasons=reasons,
            h6_average=None if reasons else h6_average(tasks),
            leaderboard_comparable=not reasons and all(t.leaderboard_comparable for t in tasks),
            settings=RunSettings(
                protocol=request.protocol,
                limit=request.limit,
                batch_size=request.batch_size,
                batch_sizes_used=sorted({b for r in self.raw_runs for b in r.batch_sizes}),
                add_bos_token=request.add_bos_token,
                chat_template=False,
                seeds=request.seeds,
                preset=request.preset,
                model_args=dict(model.model_args),
                data_source="local" if plan.root else "hub",
                data_dir=str(plan.root.resolve()) if plan.root else None,
                device=runner.describe_device(model.device),
                backend=model.backend,
                processes=model.processes.count,
            ),
            versions=_versions(),
            timing=Timing(
                model_load_seconds=round(model.load_seconds, 3),
                total_seconds=round(time.perf_counter() - self.started, 3),
            ),
        )

    def lm_eval_files(self) -> dict[str, str]:
        return _lm_eval_files(self.raw_runs)


def _lm_eval_files(raw_runs: list[runner.RawTaskRun]) -> dict[str, str]:
    """lm-eval's own output per suite task, and its samples per lm-eval task (named as lm-eval names them)."""
    files = {}
    for raw in raw_runs:
        files[lm_eval_files.output_file(raw.data.spec.key)] = runner.to_json(raw.output)
        for leaf, samples in raw.samples.items():
            files[lm_eval_files.samples_file(leaf)] = lm_eval_files.samples_text(samples, runner.to_json)
    return files


def _versions() -> Versions:
    from importlib.metadata import version

    return Versions(
        evalsuite=__version__,
        lm_eval=version("lm_eval"),
        transformers=version("transformers"),
        torch=version("torch"),
        datasets=version("datasets"),
        python=platform.python_version(),
    )


def _fingerprint(
    request: RunRequest, model: LoadableModel, settings: runner.ModelSettings, plan: DataPlan, processes: Processes
) -> dict[str, object]:
    """Everything that moves scores: the same command over the same data resumes the same run."""
    return {
        "evalsuite": __version__,
        "model": [model.ref.source.value, model.ref.location, model.ref.revision, model.file_sha256],
        "settings": [settings.dtype, settings.device, str(settings.batch_size), settings.add_bos_token,
                     sorted(settings.extra_model_args.items()), settings.backend.value],
        "protocol": request.protocol.value,
        "tasks": [t.spec.key for t in plan.tasks],
        "data": [[f.split, f.sha256] for t in plan.tasks for f in t.files],
        "limit": request.limit,
        "preset": request.preset,
        "seeds": [request.seeds.random, request.seeds.numpy, request.seeds.torch, request.seeds.fewshot],
        "log_samples": request.log_samples,
        # a data-parallel run keeps no request cache, so it does not resume a run of another process count
        # (absent for one process, so runs interrupted before this key existed still resume)
        **({"processes": processes.count} if processes.count > 1 else {}),
    }  # fmt: skip


def _fewshot_info(data: TaskData) -> FewshotInfo:
    return FewshotInfo(
        split=data.fewshot.split if data.spec.num_fewshot else None,
        sampler=data.fewshot.sampler if data.spec.num_fewshot else None,
        fallback=data.fewshot.fallback,
        note=data.fewshot.note,
    )

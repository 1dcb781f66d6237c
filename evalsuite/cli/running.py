"""`evalsuite run`, `evalsuite tasks`, `evalsuite data verify`."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from evalsuite.cli._app import (
    DataFormat,
    FormatOpt,
    OldOutputOpt,
    VerboseOpt,
    app,
    data_app,
    one_line_errors,
    refuse_unless,
    renamed,
    say,
)
from evalsuite.cli.logs import setup_logging
from evalsuite.cli.options import (
    AdapterOpt,
    AddBosTokenOpt,
    BackendOpt,
    BackendOptionsOpt,
    BatchSizeOpt,
    ClusterOpt,
    DataDirOpt,
    DeltaOpt,
    DeviceOpt,
    DtypeOpt,
    GpusPerTaskOpt,
    LimitOpt,
    LogSamplesOpt,
    ModelArgsOpt,
    OptionalModelArg,
    OutputDirOpt,
    PrecisionOpt,
    PresetOpt,
    ProtocolOpt,
    SeedOpt,
    TasksOpt,
    run_request,
    task_keys,
)
from evalsuite.cli.verbosity import asks_verbose
from evalsuite.errors import OutputDirError
from evalsuite.settings import DEFAULT_BACKEND
from evalsuite.suite import load_suite, parse_protocol

if TYPE_CHECKING:
    from evalsuite.run import TaskPrompts

_progress = say  # evalsuite's progress lines, on stderr


@app.command()
@one_line_errors
def run(
    model: OptionalModelArg = None,
    tasks: TasksOpt = None,
    limit: LimitOpt = None,
    batch_size: BatchSizeOpt = "8",
    dtype: DtypeOpt = None,
    device: DeviceOpt = None,
    data_dir: DataDirOpt = None,
    output_dir: OutputDirOpt = Path("results"),
    seed: SeedOpt = "0,1234,1234,1234",
    log_samples: LogSamplesOpt = False,
    model_args: ModelArgsOpt = None,
    add_bos_token: AddBosTokenOpt = False,
    preset: PresetOpt = None,
    backend: BackendOpt = DEFAULT_BACKEND,
    backend_options: BackendOptionsOpt = None,
    protocol: ProtocolOpt = "leaderboard-v1",
    precision: PrecisionOpt = None,
    adapter: AdapterOpt = None,
    delta: DeltaOpt = None,
    cluster: ClusterOpt = None,
    gpus_per_task: GpusPerTaskOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run the H6 suite on MODEL and write a results folder; print the six scores and the average.

    Bad input fails before the model loads: one line, exit 1, nothing written. On a terminal, one bar per task;
    Ctrl-C saves what is done (exit 130) and the same command again resumes. Results go to
    OUTPUT_DIR/<org>__<name>/<run-id>/ (results.json, lm_eval/). --cluster runs the tasks at once on a Ray
    cluster, with the same values and the same folder (docs/cluster.md).
    """
    from evalsuite.cli.interrupts import ignore_further, interrupted_line, stop_on_signals
    from evalsuite.cli.tables import format_scores
    from evalsuite.engine import launched_rank
    from evalsuite.progress import interactive
    from evalsuite.run import run_suite

    if verbose:
        setup_logging(verbose=True)
    verbose = verbose or asks_verbose(sys.argv[1:])
    request = run_request(
        model, tasks, limit, batch_size, dtype, device, data_dir, output_dir, seed, log_samples, model_args,
        add_bos_token, preset, backend, backend_options, protocol, precision, adapter, delta,
    )  # fmt: skip
    if cluster is None:
        refuse_unless(False, gpus_per_task is not None, "--gpus-per-task", "needs --cluster")
    else:
        from evalsuite.cli.cluster import run_on_cluster

        run_on_cluster(request, cluster, gpus_per_task, verbose)
        return
    stopped: KeyboardInterrupt | None = None
    try:
        with stop_on_signals():  # Ctrl-C and SIGTERM alike
            # quiet: evalsuite's bar on a terminal, no bars in a log; -v: lm-eval's and the backends' own bars
            outcome = run_suite(request, progress=_progress, bars=None if verbose else interactive())
    except KeyboardInterrupt as e:
        stopped = e
    if stopped is not None:
        ignore_further()
        gc.collect()  # lm-eval's progress bars, freed with the traceback, print their last line now, not after ours
        if launched_rank() == 0:  # one voice in a data-parallel run
            typer.echo(interrupted_line(stopped), err=True)
        raise typer.Exit(130)
    if outcome is None:
        return  # a data-parallel rank other than 0: rank 0 prints the results
    typer.echo(format_scores(outcome.results))
    typer.echo(f"results: {outcome.run_dir / 'results.json'}")


@app.command()
@one_line_errors
def prompts(
    tasks: TasksOpt = None,
    limit: LimitOpt = None,
    data_dir: DataDirOpt = None,
    protocol: ProtocolOpt = "leaderboard-v1",
    output: Annotated[
        Path | None, typer.Option("--output", help="Write the JSON lines to this file (atomically) instead of stdout.")
    ] = None,
    out: OldOutputOpt = None,
) -> None:
    """Print the requests `evalsuite run` sends, as JSON lines; needs no model (no weights, no tokenizer).

    One JSON line per document: task, lm_eval_task, doc_id (Hub order; MMLU: within its subject), requests.
    Requests are (context, continuation) pairs; GSM8K's are (context, generation settings).
    lm-eval builds them from its templates with the protocol's exemplars, as `evalsuite run` does.
    """
    from evalsuite.files import replacing
    from evalsuite.run import PromptsRequest, build_prompts

    out = renamed(output, out, "--output", "--out")
    request = PromptsRequest(tasks=task_keys(tasks), limit=limit, data_dir=data_dir, protocol=parse_protocol(protocol))
    if out is not None and out.is_dir():
        raise OutputDirError(f"--output {out}: is a directory; give a file path")
    if out is not None and not out.parent.is_dir():
        raise OutputDirError(f"--output {out}: folder {out.parent} does not exist")
    built = build_prompts(request, progress=_progress)  # checks the request before anything is written
    if out is None:
        _write_prompts(built, sys.stdout)
        return
    try:
        with replacing(out) as tmp, tmp.open("w", encoding="utf-8") as f:
            _write_prompts(built, f)
    except OSError as e:
        raise OutputDirError(f"--output {out}: cannot write ({e.strerror or e})") from e
    typer.echo(f"prompts: {out}", err=True)


def _write_prompts(built: Iterator[TaskPrompts], stream: TextIO) -> None:
    for task in built:
        for document in task.documents:
            stream.write(document.to_json() + "\n")
        stream.flush()
        _progress(
            f"{task.data.spec.key}: {len(task.documents)} documents, {task.requests} requests ({task.seconds:.0f}s)"
        )


@app.command("tasks")
@one_line_errors
def list_tasks(
    format: FormatOpt = DataFormat.TABLE,
    protocol: ProtocolOpt = "leaderboard-v1",
    as_json: Annotated[bool, typer.Option("--json", hidden=True)] = False,  # before evalsuite 0.4
) -> None:
    """Print the suite as a protocol runs it: each task's lm-eval task, shots, exemplars, metric and dataset
    (--format json: the suite spec)."""
    from evalsuite.cli.tables import format_suite

    if renamed(None, "json" if as_json else None, "--format json", "--json"):
        format = DataFormat.JSON
    suite = load_suite().for_protocol(parse_protocol(protocol))
    if format is DataFormat.JSON:
        typer.echo(json.dumps(suite.model_dump(mode="json"), indent=2))
    else:
        typer.echo(format_suite(suite))


@data_app.command("verify")
@one_line_errors
def verify(
    directory: Annotated[Path, typer.Argument(help="Snapshot folder, e.g. ../shared/data/h6.", show_default=False)],
    strict: Annotated[bool, typer.Option(help="Also fail on warnings (partial splits, few-shot fallbacks).")] = False,
) -> None:
    """Check an offline snapshot: every split the suite needs, row counts, schema. Exit 1 on errors."""
    from evalsuite.cli.tables import format_findings
    from evalsuite.data import Level, verify_snapshot

    findings = verify_snapshot(directory, load_suite())
    typer.echo(format_findings(findings))
    errors = sum(f.level is Level.ERROR for f in findings)
    warnings = sum(f.level is Level.WARN for f in findings)
    typer.echo(f"{errors} error(s), {warnings} warning(s)", err=True)
    if errors or (strict and warnings):
        raise typer.Exit(1)

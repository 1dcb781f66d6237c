"""`evalsuite sweep`: many models' runs spread over a Ray cluster (evalsuite/run/sweep.py; the driving and the
live view, shared with `run --cluster`, are cli/cluster.py's)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evalsuite.cli._app import VerboseOpt, app, error_line, one_line_errors
from evalsuite.cli.cluster import drive
from evalsuite.cli.logs import setup_logging
from evalsuite.cli.options import (
    CLUSTER_HELP,
    AddBosTokenOpt,
    BackendOpt,
    BackendOptionsOpt,
    BatchSizeOpt,
    DataDirOpt,
    DtypeOpt,
    GpusPerTaskOpt,
    LimitOpt,
    LogSamplesOpt,
    ModelArgsOpt,
    OutputDirOpt,
    PrecisionOpt,
    PresetOpt,
    ProtocolOpt,
    SeedOpt,
    TasksOpt,
    run_request,
)
from evalsuite.cli.verbosity import asks_verbose
from evalsuite.errors import OptionError
from evalsuite.settings import DEFAULT_BACKEND

if TYPE_CHECKING:
    from evalsuite.run.sweep import SweepOutcome


@app.command()
@one_line_errors
def sweep(
    models: Annotated[
        list[str] | None,
        typer.Argument(help="Models as `evalsuite run` takes them (Hub id[@rev], folder, .gguf).", show_default=False),
    ] = None,
    models_file: Annotated[
        Path | None,
        typer.Option(
            help="More models: one MODEL[@REV] per line, or YAML (.yaml): a list of models or of mappings with "
            "`model` and its own dtype, batch_size, model_args, backend, backend_options, add_bos_token, "
            "precision, adapter, delta. One model may come several times, loaded differently."
        ),
    ] = None,
    cluster: Annotated[str, typer.Option(metavar="ADDRESS", help=CLUSTER_HELP)] = "local",
    gpus_per_task: GpusPerTaskOpt = None,
    cpus_per_task: Annotated[float, typer.Option(help="CPUs each task asks the cluster for.")] = 1.0,
    retries: Annotated[
        int, typer.Option(help="Times a task lost with its worker process or node runs again elsewhere.")
    ] = 3,
    tasks: TasksOpt = None,
    limit: LimitOpt = None,
    batch_size: BatchSizeOpt = "8",
    dtype: DtypeOpt = None,
    device: Annotated[
        str | None,
        typer.Option(
            help="Torch device of every task (cpu, cuda, cuda:N), checked where it runs. Default: cuda where tasks "
            "ask for GPUs (--gpus-per-task, or a cluster with GPUs), else cpu."
        ),
    ] = None,
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
    verbose: VerboseOpt = False,
) -> None:
    """Run many models on a Ray cluster, each task of each model a cell of its own, and rank them.

    Each model's folder is what `evalsuite run` writes, with the same values; OUTPUT_DIR/sweep.json holds every
    cell's state. The same command again runs only what is not finished. A model that fails (a bad model, a
    gated repo) fails alone, with one line; the exit code is then 1. Requires pip install 'evalsuite[cluster]'
    (docs/cluster.md).
    """
    from evalsuite.run.sweep import SweepModel, SweepRequest, read_models_file

    if verbose:
        setup_logging(verbose=True)
    verbose = verbose or asks_verbose(sys.argv[1:])
    entries = [SweepModel(model=m) for m in models or []]
    if models_file is not None:
        entries += read_models_file(models_file)
    if not entries:
        raise OptionError("give the models: MODEL arguments, or --models-file")
    base = run_request(  # the sweep's settings; each entry names its own model (never another entry's)
        None, tasks, limit, batch_size, dtype, device, data_dir, output_dir, seed, log_samples,
        model_args, add_bos_token, preset, backend, backend_options, protocol, precision,
    )  # fmt: skip
    request = SweepRequest(
        runs=[entry.request(base) for entry in entries],
        origins=[entry.origin for entry in entries],
        cluster=cluster,
        gpus_per_task=gpus_per_task,
        cpus_per_task=cpus_per_task,
        retries=retries,
    )
    outcome = drive(request, verbose)
    _print_leaderboard(outcome)
    if outcome.status_file is not None:
        typer.echo(f"status: {outcome.status_file}", err=True)
    for failure in outcome.failures:
        typer.echo(f"{error_line(failure.line)} ({failure.model})", err=True)
    if outcome.failures:
        raise typer.Exit(1)


def _print_leaderboard(outcome: SweepOutcome) -> None:
    """The sweep's runs ranked, as `evalsuite leaderboard` ranks them."""
    from evalsuite.publish import leaderboard as board
    from evalsuite.suite import load_suite

    if not outcome.runs:
        return
    suite = load_suite()
    rows = board.ranked_rows(board.latest_runs([r.results for r in outcome.runs]), suite)
    typer.echo(board.render_leaderboard(rows, suite, board.BoardFormat.MARKDOWN), nl=False)


__all__ = ["sweep"]

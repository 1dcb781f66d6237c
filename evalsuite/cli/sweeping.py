"""`evalsuite sweep`, and `evalsuite run --cluster`: runs spread over a Ray cluster (evalsuite/run/sweep.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from evalsuite.cli._app import VerboseOpt, app, flag, one_line_errors, say
from evalsuite.cli.logs import setup_logging
from evalsuite.cli.running import (
    AddBosTokenOpt,
    BackendOpt,
    BackendOptionsOpt,
    BatchSizeOpt,
    DataDirOpt,
    DeviceOpt,
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
from evalsuite.errors import OptionError, in_terms
from evalsuite.settings import Backend

if TYPE_CHECKING:
    from evalsuite.run import RunRequest
    from evalsuite.run.sweep import SweepOutcome, SweepStatus


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
    cluster: Annotated[
        str,
        typer.Option(
            metavar="ADDRESS",
            help="The Ray cluster: HOST:PORT, ray://HOST:PORT or auto; local starts a private one on this machine "
            "for the length of the command.",
        ),
    ] = "local",
    gpus_per_task: GpusPerTaskOpt = None,
    cpus_per_task: Annotated[float, typer.Option(help="CPUs each task asks the cluster for.")] = 1.0,
    retries: Annotated[
        int, typer.Option(help="Times a task lost with its worker process or node runs again elsewhere.")
    ] = 3,
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
    backend: BackendOpt = Backend.SHARED_PREFIX.value,
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
    base = run_request(
        entries[0].model, tasks, limit, batch_size, dtype, device, data_dir, output_dir, seed, log_samples,
        model_args, add_bos_token, preset, backend, backend_options, protocol, precision,
    )  # fmt: skip
    request = SweepRequest(
        runs=[entry.request(base) for entry in entries],
        cluster=cluster,
        gpus_per_task=gpus_per_task,
        cpus_per_task=cpus_per_task,
        retries=retries,
    )
    outcome = _run(request, verbose)
    _print_leaderboard(outcome)
    typer.echo(f"status: {output_dir / 'sweep.json'}", err=True)
    for failure in outcome.failures:
        typer.echo(f"{error_line_for(failure.line)} ({failure.model})", err=True)
    if outcome.failures:
        raise typer.Exit(1)


def run_on_cluster(request: RunRequest, cluster: str, gpus_per_task: float | None, verbose: bool) -> None:
    """`evalsuite run MODEL --cluster ADDRESS`: the run's tasks at once on the cluster, its folder as a local
    run's; a failure is the run's one line."""
    from evalsuite.cli.tables import format_scores
    from evalsuite.run.sweep import SweepRequest

    outcome = _run(SweepRequest(runs=[request], cluster=cluster, gpus_per_task=gpus_per_task, status_file=False),
                   verbose)  # fmt: skip
    if outcome.failures:
        failure = outcome.failures[0]
        if failure.error is not None:
            raise failure.error
        typer.echo(error_line_for(failure.line), err=True)
        raise typer.Exit(1)
    run = outcome.runs[0]
    typer.echo(format_scores(run.results))
    typer.echo(f"results: {run.run_dir / 'results.json'}")


def error_line_for(marked: str) -> str:
    return "error: " + " ".join(in_terms(marked, flag).split())


def _run(request: Any, verbose: bool) -> SweepOutcome:
    from evalsuite.cli.interrupts import ignore_further, interrupted_line, stop_on_signals
    from evalsuite.progress import interactive
    from evalsuite.run.sweep import run_sweep

    # Ray's usage statistics off unless asked for: nothing leaves the cluster (read when ray is imported)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    view = _LiveView() if interactive() and not verbose else None
    try:
        with stop_on_signals():
            return run_sweep(request, progress=None if view else say, view=view, verbose=verbose)
    except KeyboardInterrupt as e:
        ignore_further()
        typer.echo(interrupted_line(e), err=True)
        raise typer.Exit(130) from e
    finally:
        if view is not None:
            view.close()


class _LiveView:
    """One line per model on a terminal: tasks done of all, the tasks running, and an ETA."""

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}

    def __call__(self, status: SweepStatus) -> None:
        from tqdm import tqdm

        for position, model in enumerate(status.models):
            bar = self._bars.get(model.model)
            if bar is None:
                bar = self._bars[model.model] = tqdm(
                    total=len(model.cells) or 1, desc=model.model, position=position, file=sys.stderr,
                    bar_format="{desc} {bar:12} {n_fmt}/{total_fmt} tasks{postfix} [{elapsed}<{remaining}]",
                    dynamic_ncols=True, disable=False,
                )  # fmt: skip
            done = sum(c.state == "done" for c in model.cells)
            running = [c.task for c in model.cells if c.state == "running"]
            if done > bar.n:
                bar.update(done - bar.n)
            if model.state in ("done", "failed"):
                label = model.state.value
            else:
                label = f"running {', '.join(running)}" if running else "waiting"
            bar.set_postfix_str(label, refresh=True)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def _print_leaderboard(outcome: SweepOutcome) -> None:
    """The sweep's runs ranked, as `evalsuite leaderboard` ranks them."""
    from evalsuite.publish import leaderboard as board
    from evalsuite.suite import load_suite

    if not outcome.runs:
        return
    suite = load_suite()
    runs = board.latest_runs([r.results for r in outcome.runs])
    rows = board.ranked(board.leaderboard_rows(runs, suite))
    typer.echo(board.render_leaderboard(rows, suite, board.BoardFormat.MARKDOWN), nl=False)


__all__ = ["run_on_cluster", "sweep"]

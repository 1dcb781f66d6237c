"""A sweep driven from the command line, for `evalsuite sweep` and `evalsuite run --cluster` alike: evalsuite's
signal handling, the live view (one line per model) on a terminal, progress lines elsewhere."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer

from evalsuite.cli._app import error_line, say

if TYPE_CHECKING:
    from evalsuite.run import RunRequest
    from evalsuite.run.sweep import SweepOutcome, SweepRequest, SweepStatus


def run_on_cluster(request: RunRequest, cluster: str, gpus_per_task: float | None, verbose: bool) -> None:
    """`evalsuite run MODEL --cluster ADDRESS`: the run's tasks at once on the cluster, its folder as a local
    run's; a failure is the run's one line."""
    from evalsuite.cli.tables import format_scores
    from evalsuite.run.sweep import SweepRequest

    outcome = drive(SweepRequest(runs=[request], cluster=cluster, gpus_per_task=gpus_per_task, status_file=False),
                   verbose)  # fmt: skip
    if outcome.failures:
        failure = outcome.failures[0]
        if failure.error is not None:
            raise failure.error
        typer.echo(error_line(failure.line), err=True)
        raise typer.Exit(1)
    run = outcome.runs[0]
    typer.echo(format_scores(run.results))
    typer.echo(f"results: {run.run_dir / 'results.json'}")


def drive(request: SweepRequest, verbose: bool) -> SweepOutcome:
    """The sweep run to its end under evalsuite's signals, with the live view on a terminal (else progress
    lines); Ctrl-C is exit 130, what finished kept."""
    from evalsuite.cli.interrupts import ignore_further, interrupted_line, stop_on_signals
    from evalsuite.progress import interactive
    from evalsuite.run.sweep import run_sweep

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


__all__ = ["drive", "run_on_cluster"]

"""`evalsuite compare` and `evalsuite history`: regressions across runs. Errors exit 2 here (1 means regression)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from evalsuite.cli._app import app, errors_exit_with
from evalsuite.errors import OptionError


class CompareFormat(StrEnum):
    TABLE = "table"
    MARKDOWN = "markdown"
    JSON = "json"


def _run_dir(path: Path) -> Path:
    return path.parent if path.is_file() else path


LEADERBOARD_PREFIX = "leaderboard:"


@app.command("compare")
@errors_exit_with(2)
def compare(
    baseline: Annotated[
        str,
        typer.Argument(
            help="Baseline results.json or run folder, or leaderboard:ORG/NAME[:PRECISION] for the Open LLM "
            "Leaderboard's own result for that model.",
            show_default=False,
        ),
    ],
    candidate: Annotated[Path, typer.Argument(help="Candidate results.json or run folder.", show_default=False)],
    alpha: Annotated[float, typer.Option(help="Significance level of the per-task tests.")] = 0.05,
    max_drop: Annotated[float, typer.Option(help="Significant drops up to this many points still pass.")] = 0.0,
    format: Annotated[CompareFormat, typer.Option("--format")] = CompareFormat.TABLE,
    published_results: Annotated[
        Path | None,
        typer.Option(
            help="With leaderboard:MODEL, a local copy of the leaderboard's results files laid out as the Hub's "
            "(<org>/<name>/results_*.json). Default: open-llm-leaderboard-old/results (cached).",
            show_default=False,
        ),
    ] = None,
    allow_partial: Annotated[
        bool, typer.Option(help="With leaderboard:MODEL, compare a partial run too (against sampling noise).")
    ] = False,
) -> None:
    """Compare two runs task by task. Exit 0: no regression; 1: regression; 2: error or not comparable.
    With leaderboard:MODEL: exit 0 when every task is within noise of the leaderboard's result, 1 when one is
    not."""
    from evalsuite.cli.tables import format_comparison
    from evalsuite.results import locate_run, read_results
    from evalsuite.track.compare import compare_runs

    if str(candidate).startswith(LEADERBOARD_PREFIX):
        raise OptionError(f"{candidate}: the leaderboard's result goes first: compare {candidate} RUN")
    if baseline.startswith(LEADERBOARD_PREFIX):
        _against_leaderboard(baseline.removeprefix(LEADERBOARD_PREFIX), candidate, published_results,
                             allow_partial, format)  # fmt: skip
        return
    if published_results is not None or allow_partial:
        raise OptionError("--published-results and --allow-partial go with a leaderboard:MODEL baseline")
    if not 0 < alpha < 1:
        raise OptionError(f"--alpha {alpha}: give a level between 0 and 1")
    if max_drop < 0:
        raise OptionError(f"--max-drop {max_drop}: give a number of points >= 0")
    baseline_run, _ = locate_run(Path(baseline), newest_complete=False)  # a model's folder: say which runs it holds
    candidate, _ = locate_run(candidate, newest_complete=False)
    result = compare_runs(
        read_results(baseline_run), _run_dir(baseline_run), read_results(candidate), _run_dir(candidate), alpha,
        max_drop,
    )  # fmt: skip
    if format is CompareFormat.JSON:
        typer.echo(result.model_dump_json(indent=2))
    else:
        typer.echo(format_comparison(result, markdown=format is CompareFormat.MARKDOWN))
    if result.regressed:
        raise typer.Exit(1)


def _against_leaderboard(
    wanted: str, candidate: Path, published_results: Path | None, allow_partial: bool, format: CompareFormat
) -> None:
    """`compare leaderboard:MODEL RUN`: the run beside the leaderboard's own result (track/reproduce.py)."""
    from evalsuite.archive import published_result
    from evalsuite.cli.tables import format_reproduction
    from evalsuite.results import locate_run, read_results
    from evalsuite.suite import load_suite
    from evalsuite.track.reproduce import reproduce

    model, _, precision = wanted.partition(":")
    if model.count("/") != 1 or not all(model.split("/")) or (":" in wanted and not precision):
        raise OptionError(f"{LEADERBOARD_PREFIX}{wanted}: give leaderboard:ORG/NAME or leaderboard:ORG/NAME:PRECISION")
    run_path, _ = locate_run(candidate, newest_complete=False)
    run = read_results(run_path)  # read before the Hub is asked: a wrong path fails fast
    result = reproduce(published_result(wanted, published_results), run, _run_dir(run_path), load_suite(),
                       allow_partial)  # fmt: skip
    if format is CompareFormat.JSON:
        typer.echo(result.model_dump_json(indent=2))
    else:
        typer.echo(format_reproduction(result, markdown=format is CompareFormat.MARKDOWN))
    if result.outside_noise:
        raise typer.Exit(1)


@app.command("history")
@errors_exit_with(2)
def history(
    model: Annotated[str, typer.Option(help="Model id (org/name) or its results folder name (org__name).")],
    results_dirs: Annotated[
        list[Path] | None, typer.Argument(help="Results folders (default: results/).", show_default=False)
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Also write a PNG line chart with stderr error bars.")] = None,
) -> None:
    """A model's H6 and per-task scores over its runs, oldest first."""
    from evalsuite.cli.tables import format_history
    from evalsuite.results import find_runs
    from evalsuite.suite import load_suite
    from evalsuite.track.history import model_history, plot_history

    points = model_history(find_runs(results_dirs or [Path("results")]), model, load_suite())
    if plot is not None:
        plot_history(points, model, plot)
    typer.echo(format_history(points))
    if plot is not None:
        typer.echo(f"wrote {plot}", err=True)

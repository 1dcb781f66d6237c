"""`evalsuite compare` and `evalsuite history`: regressions across runs. Errors exit 2 here (1 means regression)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from evalsuite.cli._app import DataFormat, FormatOpt, app, errors_exit_with, refuse_unless, renamed, skipped
from evalsuite.errors import OptionError


class CompareFormat(StrEnum):
    TABLE = "table"
    MARKDOWN = "markdown"
    JSON = "json"


LEADERBOARD_PREFIX = "leaderboard:"
DEFAULT_ALPHA = 0.05


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
    alpha: Annotated[
        float | None,
        typer.Option(
            help=f"Significance level of the per-task tests (two runs; default {DEFAULT_ALPHA}).", show_default=False
        ),
    ] = None,
    max_drop: Annotated[
        float | None,
        typer.Option(
            help="Significant drops up to this many points still pass (two runs; default 0).", show_default=False
        ),
    ] = None,
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
    details: Annotated[
        bool,
        typer.Option(
            "--details",
            help="With leaderboard:MODEL, also pair the run's logged samples with the leaderboard's details, "
            "document by document (prompts, flips, log-likelihoods; docs/archive.md).",
        ),
    ] = False,
    published_details: Annotated[
        Path | None,
        typer.Option(
            help="With --details, a local copy of the model's details laid out as the Hub's dataset "
            "(results_*.json, <timestamp>/details_*.parquet). Default: open-llm-leaderboard-old/"
            "details_<org>__<name> (cached).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Compare two runs task by task. Exit 0: no regression; 1: regression; 2: error or not comparable.
    With leaderboard:MODEL: exit 0 when every task is within noise of the leaderboard's result, 1 when one is
    not."""
    from evalsuite.cli.tables import format_comparison
    from evalsuite.results import read_run
    from evalsuite.track.compare import check_thresholds, compare_runs

    if str(candidate).startswith(LEADERBOARD_PREFIX):
        raise OptionError(f"{candidate}: the leaderboard's result goes first: compare {candidate} RUN")
    if baseline.startswith(LEADERBOARD_PREFIX):
        # the leaderboard comparison has its own noise rule (docs/archive.md): the tests' options do not apply
        refuse_unless(False, alpha is not None or max_drop is not None, "--alpha and --max-drop",
                      "judge two runs of evalsuite; leaderboard:MODEL is judged against the noise of both "
                      "measurements (docs/archive.md)")  # fmt: skip
        refuse_unless(details, published_details is not None, "--published-details", "goes with --details")
        _against_leaderboard(baseline.removeprefix(LEADERBOARD_PREFIX), candidate, published_results,
                             allow_partial, format, details, published_details)  # fmt: skip
        return
    given = [name for name, value in (("--published-results", published_results is not None),
             ("--allow-partial", allow_partial), ("--details", details),
             ("--published-details", published_details is not None)) if value]  # fmt: skip
    if given:
        verb = "go" if len(given) > 1 else "goes"
        raise OptionError(f"{' and '.join(given)} {verb} with a leaderboard:MODEL baseline")
    alpha = DEFAULT_ALPHA if alpha is None else alpha
    max_drop = 0.0 if max_drop is None else max_drop
    check_thresholds(alpha, max_drop)  # before the runs are read (compare_runs checks them too)
    # a model's folder: say which runs it holds
    result = compare_runs(read_run(Path(baseline)), read_run(candidate), alpha, max_drop)
    if format is CompareFormat.JSON:
        typer.echo(result.model_dump_json(indent=2))
    else:
        typer.echo(format_comparison(result, markdown=format is CompareFormat.MARKDOWN))
    if result.regressed:
        raise typer.Exit(1)


def _against_leaderboard(
    wanted: str,
    candidate: Path,
    published_results: Path | None,
    allow_partial: bool,
    format: CompareFormat,
    details: bool = False,
    published_details: Path | None = None,
) -> None:
    """`compare leaderboard:MODEL RUN`: the run beside the leaderboard's own result (track/reproduce.py), and with
    --details, paired with its details document by document (track/details.py)."""
    from evalsuite.archive import LeaderboardModel, published_result
    from evalsuite.cli.tables import format_details, format_reproduction
    from evalsuite.results import read_run
    from evalsuite.suite import load_suite
    from evalsuite.track.reproduce import leaderboard_model_for, reproduce

    model = LeaderboardModel.parse(wanted, prefix=LEADERBOARD_PREFIX)
    run = read_run(candidate)  # read before the Hub is asked: a wrong path fails fast
    if details:
        from evalsuite.track.details import check_samples_logged

        check_samples_logged(run)
    model = leaderboard_model_for(model, run.results)
    published = published_result(model, published_results)
    result = reproduce(published, run, load_suite(), allow_partial)
    paired = None
    if details:
        from evalsuite.archive import published_details as read_details
        from evalsuite.track.details import pair_details

        keys = [t.key for t in run.results.tasks]
        paired = pair_details(read_details(model.model, published, published_details, keys), published, run)
    if format is CompareFormat.JSON:
        if paired is None:
            typer.echo(result.model_dump_json(indent=2))
        else:
            typer.echo(json.dumps({"reproduction": result.model_dump(mode="json"),
                                   "details": paired.model_dump(mode="json")}, indent=2))  # fmt: skip
    else:
        typer.echo(format_reproduction(result, markdown=format is CompareFormat.MARKDOWN))
        if paired is not None:
            typer.echo("")
            typer.echo(format_details(paired))
    if result.outside_noise:
        raise typer.Exit(1)


@app.command("history")
@errors_exit_with(2)
def history(
    model: Annotated[
        str | None,
        typer.Argument(help="Model id (org/name) or its results folder name (org__name, local__name).",
                       show_default=False),
    ] = None,
    results_dirs: Annotated[
        list[Path] | None, typer.Argument(help="Results folders (default: results/).", show_default=False)
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Also write a PNG line chart with stderr error bars.")] = None,
    format: FormatOpt = DataFormat.TABLE,
    model_option: Annotated[str | None, typer.Option("--model", hidden=True)] = None,  # before evalsuite 0.4
) -> None:
    """MODEL's H6 and per-task scores over its runs, oldest first (--format json: every point, as fractions)."""
    from evalsuite.cli.tables import format_history
    from evalsuite.results import find_run_folders
    from evalsuite.suite import load_suite
    from evalsuite.track.history import model_history, plot_history

    if model_option is not None:  # `history DIR --model M`: the first argument was a folder
        results_dirs = [Path(model)] + (results_dirs or []) if model is not None else results_dirs
        model = renamed(None, model_option, "MODEL", "--model")
    if model is None:
        raise OptionError("give MODEL, a model id (org/name) or its results folder name (org__name)")
    runs = find_run_folders(results_dirs or [Path("results")], on_unreadable=skipped)
    points = model_history(runs, model, load_suite())
    if plot is not None:
        plot_history(points, model, plot)
    if format is DataFormat.JSON:
        typer.echo(json.dumps({"model": model, "runs": [p.as_json() for p in points]}, indent=2))
    else:
        typer.echo(format_history(points))
    if plot is not None:
        typer.echo(f"wrote {plot}", err=True)

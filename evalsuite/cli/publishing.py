"""`evalsuite card render|update` and `evalsuite leaderboard`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evalsuite.cli._app import app, card_app, one_line_errors
from evalsuite.errors import CardError, LeaderboardError
from evalsuite.publish.leaderboard import BoardFormat

if TYPE_CHECKING:
    from evalsuite.publish.model_index import CardSource
    from evalsuite.results import SuiteResults

ResultsArg = Annotated[
    Path, typer.Argument(help="A results.json, a run folder, or a model's results folder.", show_default=False)
]
AllowPartialOpt = Annotated[bool, typer.Option(help="Publish a partial run (limit, subset, sample data) anyway.")]
AllowNotComparableOpt = Annotated[
    bool, typer.Option(help="Publish tasks that did not ask the leaderboard's requests anyway (marked).")
]
ModelNameOpt = Annotated[str | None, typer.Option(help="model-index entry name. Default: the results' model id.")]
SourceNameOpt = Annotated[
    str | None, typer.Option(help="`source.name` of each result (needs --source-url). Default: no source.")
]
SourceUrlOpt = Annotated[str | None, typer.Option(help="`source.url` of each result.")]


def _source(name: str | None, url: str | None) -> CardSource | None:
    from evalsuite.publish.model_index import CardSource

    if (name is None) != (url is None):
        raise CardError("--source-name and --source-url go together")
    return CardSource(name=name, url=url) if name and url else None


def _read_run(path: Path) -> SuiteResults:
    """A run for a card; a model's results folder means its newest complete run (said on stderr)."""
    from evalsuite.results import locate_run, read_results

    run, note = locate_run(path, newest_complete=True)
    if note:
        typer.echo(note, err=True)
    return read_results(run)


class CardFormat(StrEnum):
    MODEL_INDEX = "model-index"
    MARKDOWN = "markdown"


@card_app.command("render")
@one_line_errors
def card_render(
    results_path: ResultsArg,
    format: Annotated[CardFormat, typer.Option("--format", help="model-index YAML or the Markdown section.")],
    allow_partial: AllowPartialOpt = False,
    allow_not_comparable: AllowNotComparableOpt = False,
    model_name: ModelNameOpt = None,
    source_name: SourceNameOpt = None,
    source_url: SourceUrlOpt = None,
) -> None:
    """Print a run's model-index YAML or its Markdown results table (or a contamination check's table)."""
    from evalsuite.publish.card import check_publishable, render_contamination, render_markdown
    from evalsuite.results import is_contamination, read_contamination
    from evalsuite.suite import load_suite

    if is_contamination(results_path):
        if format is not CardFormat.MARKDOWN:
            raise CardError(f"{results_path}: a contamination check has no model-index form; use --format markdown")
        typer.echo(render_contamination(read_contamination(results_path)), nl=False)
        return
    results = _read_run(results_path)
    suite = load_suite()
    # the Markdown section marks tasks that are not comparable, and says why; model-index entries cannot
    check_publishable(results, suite, allow_partial, allow_not_comparable or format is CardFormat.MARKDOWN)
    if format is CardFormat.MODEL_INDEX:
        from evalsuite.publish.model_index import render_model_index

        typer.echo(render_model_index(results, suite, model_name, _source(source_name, source_url)), nl=False)
    else:
        typer.echo(render_markdown(results, suite), nl=False)


@card_app.command("update")
@one_line_errors
def card_update(
    readme: Annotated[Path, typer.Argument(help="The README.md to update (created if missing).", show_default=False)],
    results_path: Annotated[
        Path | None, typer.Option("--results", help="A results.json, a run folder, or a model's results folder.")
    ] = None,
    contamination_path: Annotated[
        Path | None,
        typer.Option("--contamination", help="A contamination check's folder or contamination.json (own section)."),
    ] = None,
    check: Annotated[bool, typer.Option(help="Change nothing; exit 1 if the README is out of date.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Change nothing; print the diff.")] = False,
    push: Annotated[str | None, typer.Option(help="Also upload the README to this Hub model repo.")] = None,
    create_pr: Annotated[bool, typer.Option(help="With --push: open a pull request instead of committing.")] = False,
    allow_partial: AllowPartialOpt = False,
    allow_not_comparable: AllowNotComparableOpt = False,
    model_name: ModelNameOpt = None,
    source_name: SourceNameOpt = None,
    source_url: SourceUrlOpt = None,
) -> None:
    """Write a run's model-index results and results section, and/or a contamination check's section, into
    README.md, leaving the rest as it was."""
    from evalsuite.publish.card import (
        check_publishable,
        diff,
        read_readme,
        update_contamination,
        update_readme,
        write_readme,
    )
    from evalsuite.results import is_contamination, read_contamination
    from evalsuite.suite import load_suite

    if results_path is None and contamination_path is None:
        raise CardError("give --results RUN, --contamination CHECK, or both")
    if create_pr and not push:
        raise CardError("--create-pr needs --push REPO_ID")
    results = contamination = None
    suite = load_suite()
    if results_path is not None:
        results = _read_run(results_path)
        check_publishable(results, suite, allow_partial, allow_not_comparable)
    if contamination_path is not None:
        if not is_contamination(contamination_path):
            raise CardError(f"--contamination {contamination_path}: not a contamination check's folder or file")
        contamination = read_contamination(contamination_path)
    if results is not None and contamination is not None and results.model.id != contamination.target.id:
        raise CardError(
            f"--results is a run of {results.model.id} but --contamination checked {contamination.target.id}; "
            "give files of the same model"
        )
    old = read_readme(readme)
    new = old
    if results is not None:
        new = update_readme(new, results, suite, model_name, _source(source_name, source_url))
    if contamination is not None:
        new = update_contamination(new, contamination)
    if check:
        if new != old:
            given = (f" --results {results_path}" if results_path else "") + (
                f" --contamination {contamination_path}" if contamination_path else ""
            )
            typer.echo(f"{readme} is out of date; run `evalsuite card update {readme}{given}`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{readme} is up to date", err=True)
        return
    if dry_run:
        typer.echo(diff(old, new, readme), nl=False)
        return
    if new != old:
        write_readme(readme, new)
        typer.echo(f"updated {readme}", err=True)
    else:
        typer.echo(f"{readme} already up to date", err=True)
    if push:
        from evalsuite.publish.hub import push_readme

        typer.echo(f"pushed: {push_readme(readme, push, create_pr)}", err=True)


@app.command("leaderboard")
@one_line_errors
def leaderboard(
    results_dirs: Annotated[
        list[Path] | None, typer.Argument(help="Results folders or files (default: results/).", show_default=False)
    ] = None,
    format: Annotated[BoardFormat, typer.Option("--format")] = BoardFormat.MARKDOWN,
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    complete_only: Annotated[bool, typer.Option(help="Leave partial runs out (else they are marked).")] = False,
    model_size: Annotated[bool, typer.Option(help="Add a Model Size column from the parameter count.")] = False,
) -> None:
    """Rank the latest run of each (model, revision, dtype) by H6 average; a Contamination column shows each
    model's latest `evalsuite contamination` check when the folders hold any."""
    from evalsuite.files import write_text_atomic
    from evalsuite.publish import leaderboard as board
    from evalsuite.results import find_contamination, find_runs
    from evalsuite.suite import load_suite

    suite = load_suite()
    dirs = results_dirs or [Path("results")]
    runs = board.latest_runs(find_runs(dirs), include_partial=not complete_only)
    if not runs:
        raise LeaderboardError("no complete runs to rank; drop --complete-only to show partial ones")
    rows = board.leaderboard_rows(runs, suite, find_contamination(dirs))
    text = board.render_leaderboard(rows, suite, format, with_size=model_size)
    if out is None:
        typer.echo(text, nl=False)
        return
    if not out.parent.is_dir():
        raise LeaderboardError(f"--out {out}: folder {out.parent} does not exist")
    write_text_atomic(out, text)
    typer.echo(f"wrote {out}", err=True)

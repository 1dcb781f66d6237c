"""`evalsuite card render|update` and `evalsuite leaderboard`: options in, the publish library's calls, output
out (what a card update writes is decided by evalsuite.publish.card_update)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evalsuite.cli._app import (
    OldOutputOpt,
    app,
    card_app,
    details_app,
    errors_exit_with,
    one_line_errors,
    refuse_unless,
    renamed,
    say,
    skipped,
)
from evalsuite.errors import CardError, LeaderboardError, OptionError
from evalsuite.publish.leaderboard import BoardFormat

if TYPE_CHECKING:
    from huggingface_hub import EvalResultEntry

    from evalsuite.archive import PublishedEvaluation
    from evalsuite.publish.benchmarks import Benchmarks
    from evalsuite.publish.model_index import CardSource
    from evalsuite.results import SuiteResults
    from evalsuite.suite import SuiteSpec

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
PeersOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="Models whose Open LLM Leaderboard published numbers to add beside the runs, comma-separated "
        "ORG/NAME or ORG/NAME:PRECISION (default: its full-precision, latest evaluation). Marked as published.",
        show_default=False,
    ),
]
PublishedContentsOpt = Annotated[
    Path | None,
    typer.Option(
        "--published-contents",
        help="A local copy of the leaderboard's contents table (its parquet, or a CSV with its columns). "
        "Default: open-llm-leaderboard-old/contents from the Hub (cached; works offline once cached).",
        show_default=False,
    ),
]
OldPublishedOpt = Annotated[Path | None, typer.Option("--published", hidden=True)]  # before evalsuite 0.4


def _peer_ids(peers: list[str] | None) -> list[str]:
    """`--peers A,B --peers C` as [A, B, C]."""
    return [item.strip() for given in peers or [] for item in given.split(",") if item.strip()]


def _peers(peers: list[str] | None, published_contents: Path | None) -> list[PublishedEvaluation]:
    """The leaderboard's row for each peer (nothing read when there are none)."""
    from evalsuite.archive import LeaderboardModel, load_contents

    wanted = [LeaderboardModel.parse(peer, "peers") for peer in _peer_ids(peers)]
    if not wanted:
        if published_contents is not None:
            raise OptionError("--published-contents is the table peers come from; give --peers too")
        return []
    contents = load_contents(published_contents)
    return [contents.select(peer) for peer in wanted]


def _source(name: str | None, url: str | None) -> CardSource | None:
    from evalsuite.publish.model_index import CardSource

    if (name is None) != (url is None):
        raise OptionError("--source-name and --source-url go together")
    return CardSource(name=name, url=url) if name and url else None


class CardFormat(StrEnum):
    MODEL_INDEX = "model-index"
    EVAL_RESULTS = "eval-results"
    MARKDOWN = "markdown"


@card_app.command("render")
@one_line_errors
def card_render(
    results_path: ResultsArg,
    format: Annotated[
        CardFormat,
        typer.Option(
            "--format",
            help="model-index YAML (README front matter), eval-results YAML (a `.eval_results/*.yaml` file; the "
            "benchmarks from tasks/suite.yaml, without asking the Hub) or the Markdown section.",
        ),
    ],
    allow_partial: AllowPartialOpt = False,
    allow_not_comparable: AllowNotComparableOpt = False,
    model_name: ModelNameOpt = None,
    source_name: SourceNameOpt = None,
    source_url: SourceUrlOpt = None,
) -> None:
    """Print a run's model-index YAML, its `.eval_results` YAML or its Markdown results table (or a
    contamination check's table)."""
    from evalsuite.publish.card import check_publishable, render_contamination, render_markdown
    from evalsuite.results import is_contamination, read_contamination, read_run
    from evalsuite.suite import load_suite

    source = _source(source_name, source_url)
    refuse_unless(format is CardFormat.MODEL_INDEX, model_name is not None, "--model-name",
                  "names the model-index entry; it goes with --format model-index")  # fmt: skip
    refuse_unless(format is not CardFormat.MARKDOWN, source is not None, "--source-name/--source-url",
                  "are the source of model-index and .eval_results entries; the Markdown section has none")  # fmt: skip
    if is_contamination(results_path):
        if format is not CardFormat.MARKDOWN:
            raise CardError(f"{results_path}: a contamination check has no {format.value} form; use --format markdown")
        refuse_unless(False, allow_partial or allow_not_comparable, "--allow-partial/--allow-not-comparable",
                      "publish runs; a contamination check has neither")  # fmt: skip
        typer.echo(render_contamination(read_contamination(results_path)), nl=False)
        return
    run = read_run(results_path, newest_complete=True)
    if run.chosen:
        typer.echo(run.chosen, err=True)
    results, suite = run.results, load_suite()
    # the Markdown section marks tasks that are not comparable, and says why; model-index entries cannot
    check_publishable(results, suite, allow_partial, allow_not_comparable or format is CardFormat.MARKDOWN)
    if format is CardFormat.MODEL_INDEX:
        from evalsuite.publish.model_index import render_model_index

        typer.echo(render_model_index(results, suite, model_name, source), nl=False)
    elif format is CardFormat.EVAL_RESULTS:
        from evalsuite.publish import benchmarks

        found = benchmarks.from_spec(suite)
        for note in found.notes:
            typer.echo(note, err=True)
        typer.echo(_eval_results_entries(results, suite, found, source, "use another --format")[1], nl=False)
    else:
        typer.echo(render_markdown(results, suite), nl=False)


def _eval_results_entries(
    results: SuiteResults, suite: SuiteSpec, found: Benchmarks, source: CardSource | None, remedy: str
) -> tuple[list[EvalResultEntry], str]:
    """The run's `.eval_results` entries and their YAML; none is an error (an empty file means nothing)."""
    from evalsuite.publish import eval_results

    items = eval_results.entries(results, suite, found, source)
    if not items:
        raise CardError(
            f"run {results.run_id}: none of its tasks has a benchmark registered on the Hub, so there is no "
            f".eval_results entry to write; {remedy}"
        )
    return items, eval_results.render(items)


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
    push: Annotated[
        str | None, typer.Option(help="Also upload the README (and the .eval_results file) to this Hub model repo.")
    ] = None,
    create_pr: Annotated[bool, typer.Option(help="With --push: open a pull request instead of committing.")] = False,
    allow_partial: AllowPartialOpt = False,
    allow_not_comparable: AllowNotComparableOpt = False,
    model_name: ModelNameOpt = None,
    source_name: SourceNameOpt = None,
    source_url: SourceUrlOpt = None,
    peers: PeersOpt = None,
    from_leaderboard: Annotated[
        str | None,
        typer.Option(
            help="Write the Open LLM Leaderboard's published numbers for this model (ORG/NAME[:PRECISION]) as "
            "its bot did: model-index results with the leaderboard as source, and its |Metric|Value| section.",
            show_default=False,
        ),
    ] = None,
    published_contents: PublishedContentsOpt = None,
    published: OldPublishedOpt = None,
    with_eval_results: Annotated[
        bool,
        typer.Option(
            "--eval-results",
            help="Also write the run's results in the Hub's newer format, .eval_results/h6-<protocol>.yaml beside "
            "the README (the benchmarks checked against each dataset's eval.yaml on the Hub first); --push "
            "sends both files in one commit.",
        ),
    ] = False,
) -> None:
    """Write a run's model-index results and results section (and with --eval-results its
    `.eval_results` file), a contamination check's section, a table beside
    the leaderboard's published peers (--peers), or the leaderboard's own published numbers
    (--from-leaderboard) into README.md, leaving the rest as it was."""
    from evalsuite.archive import LeaderboardModel
    from evalsuite.publish.card_update import (
        CardUpdateRequest,
        plan_card_update,
        read_card_inputs,
        write_card_update,
    )

    published_contents = renamed(published_contents, published, "--published-contents", "--published")
    refuse_unless(bool(push), create_pr, "--create-pr", "needs --push REPO_ID")
    refuse_unless(not dry_run, check, "--check", "and --dry-run both change nothing; give one")
    refuse_unless(
        not (check or dry_run), bool(push), "--push", "uploads the updated README; leave out --check/--dry-run"
    )
    request = CardUpdateRequest(
        readme=readme,
        results=results_path,
        contamination=contamination_path,
        peers=[LeaderboardModel.parse(peer, "peers") for peer in _peer_ids(peers)],
        from_leaderboard=LeaderboardModel.parse(from_leaderboard, "from_leaderboard") if from_leaderboard else None,
        published_contents=published_contents,
        eval_results=with_eval_results,
        allow_partial=allow_partial,
        allow_not_comparable=allow_not_comparable,
        model_name=model_name,
        source=_source(source_name, source_url),
    )
    inputs = read_card_inputs(request)
    update = plan_card_update(request, inputs)
    for note in update.notes:
        typer.echo(note, err=True)
    files = " and ".join(str(f.path) for f in update.files)
    if check:
        if stale := update.stale:
            say(f"{' and '.join(str(f.path) for f in stale)} {'is' if len(stale) == 1 else 'are'} out of date; run "
                f"`{request.command()}`")  # fmt: skip
            raise typer.Exit(1)
        typer.echo(f"{files} up to date", err=True)
        return
    if dry_run:
        typer.echo(update.diff(), nl=False)
        return
    if push:  # the Hub's card first: the local files change only once the push has succeeded
        from evalsuite.publish.hub import push_card_update

        pushed = push_card_update(request, inputs, push, create_pr)
        again = " (the Hub moved on while it was updated: made again on its new text)" if pushed.attempts > 1 else ""
        typer.echo(f"pushed: {pushed.url}{again}" if pushed.url else f"{push}: the Hub's card already up to date",
                   err=True)  # fmt: skip
    for line in write_card_update(update, request):
        typer.echo(line, err=True)


@app.command("leaderboard")
@one_line_errors
def leaderboard(
    results_dirs: Annotated[
        list[Path] | None, typer.Argument(help="Results folders or files (default: results/).", show_default=False)
    ] = None,
    format: Annotated[
        BoardFormat,
        typer.Option(
            "--format",
            help="markdown, csv, html (a sortable page), compact (the card's `| Model | H6 | Model Size |` table) or "
            "json (every row, for programs).",
        ),
    ] = BoardFormat.MARKDOWN,
    output: Annotated[Path | None, typer.Option("--output", help="Write to this file instead of stdout.")] = None,
    complete_only: Annotated[bool, typer.Option(help="Leave partial runs out (else they are marked).")] = False,
    model_size: Annotated[
        bool,
        typer.Option(
            help="Add a Model Size column from the parameter count (peers: the leaderboard's); compact and json "
            "always have it."
        ),
    ] = False,
    peers: PeersOpt = None,
    published_contents: PublishedContentsOpt = None,
    out: OldOutputOpt = None,
    published: OldPublishedOpt = None,
) -> None:
    """Rank the latest run of each (model, revision, dtype) by H6 average; a Contamination column shows each
    model's latest `evalsuite contamination` check when the folders hold any. --peers adds the Open LLM
    Leaderboard's published rows for other models, marked as its numbers; --format compact is the card's
    `| Model | H6 | Model Size |` table, the runs in bold."""
    from evalsuite.files import write_text_atomic
    from evalsuite.publish import leaderboard as board
    from evalsuite.results import find_contamination
    from evalsuite.suite import load_suite

    output = renamed(output, out, "--output", "--out")
    published_contents = renamed(published_contents, published, "--published-contents", "--published")
    refuse_unless(format not in (BoardFormat.COMPACT, BoardFormat.JSON), model_size, "--model-size",
                  f"adds a column --format {format.value} always has; leave it out")  # fmt: skip
    if output is not None and not output.parent.is_dir():
        raise OptionError(f"--output {output}: folder {output.parent} does not exist")
    suite = load_suite()
    peer_evaluations = _peers(peers, published_contents)
    dirs = _board_dirs(results_dirs, peers_only=bool(peer_evaluations))
    runs = board.latest_runs(_runs(dirs, peers_only=bool(peer_evaluations)), include_partial=not complete_only)
    if not runs and not peer_evaluations:
        raise LeaderboardError("no complete runs to rank; drop --complete-only to show partial ones")
    rows = board.ranked_rows(runs, suite, find_contamination(dirs), peer_evaluations)
    text = board.render_leaderboard(rows, suite, format, with_size=model_size)
    if output is None:
        typer.echo(text, nl=False)
        return
    write_text_atomic(output, text)
    typer.echo(f"wrote {output}", err=True)


def _board_dirs(results_dirs: list[Path] | None, peers_only: bool) -> list[Path]:
    """The folders to rank: those given (each must exist), else results/ (which may be missing when peers
    alone make the table)."""
    if results_dirs:
        return results_dirs
    default = Path("results")
    return [] if peers_only and not default.is_dir() else [default]


def _runs(dirs: list[Path], peers_only: bool) -> list[SuiteResults]:
    from evalsuite.errors import EvalsuiteError, NoResultsError
    from evalsuite.results import find_runs

    if not dirs:
        return []
    missing = [d for d in dirs if not d.exists()]
    if missing:
        raise NoResultsError(f"{missing[0]}: no such directory")
    try:
        return find_runs(dirs, on_unreadable=skipped)
    except NoResultsError as e:
        if peers_only:  # empty folders: the table is the peers alone
            if isinstance(e.__cause__, EvalsuiteError):  # the one results.json there, unreadable: say it is skipped
                skipped(e.__cause__)
            return []
        raise


@details_app.command("export")
@errors_exit_with(2)
def details_export(
    run: Annotated[
        Path, typer.Argument(help="A run folder or results.json (run with --log-samples).", show_default=False)
    ],
    folder: Annotated[Path, typer.Argument(help="A new folder to write the details into.", show_default=False)],
) -> None:
    """Write a run's logged samples as the leaderboard's details dataset: results_<ts>.json, <ts>/details_*.parquet
    and a card whose configs name each task's file (docs/archive.md)."""
    from evalsuite.publish.details import export_details
    from evalsuite.results import read_run

    written = export_details(read_run(run), folder)
    typer.echo(f"wrote {len(written)} files to {folder}")


@details_app.command("push")
@errors_exit_with(2)
def details_push(
    folder: Annotated[Path, typer.Argument(help="A folder `details export` wrote.", show_default=False)],
    repo_id: Annotated[str, typer.Argument(help="The Hub dataset to publish them as (ORG/NAME).", show_default=False)],
) -> None:
    """Publish an exported details folder as a Hub dataset, in one commit (HF_TOKEN or the huggingface_hub login)."""
    from evalsuite.publish.hub import push_details

    typer.echo(push_details(folder, repo_id))

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
PublishedOpt = Annotated[
    Path | None,
    typer.Option(
        help="A local copy of the leaderboard's contents table (its parquet, or a CSV with its columns). "
        "Default: open-llm-leaderboard-old/contents from the Hub (cached; works offline once cached).",
        show_default=False,
    ),
]


def _peer_ids(peers: list[str] | None) -> list[str]:
    """`--peers A,B --peers C` as [A, B, C], each checked to be ORG/NAME[:PRECISION]."""
    ids = [item.strip() for given in peers or [] for item in given.split(",") if item.strip()]
    for peer in ids:
        model, _, precision = peer.partition(":")
        org, slash, name = model.partition("/")
        if not (org and slash and name) or "/" in name or (":" in peer and not precision):
            raise LeaderboardError(f"--peers {peer}: give a Hub model id, ORG/NAME or ORG/NAME:PRECISION")
    return ids


def _peers(peers: list[str] | None, published: Path | None) -> list[PublishedEvaluation]:
    """The leaderboard's row for each peer (nothing read when there are none)."""
    ids = _peer_ids(peers)
    if not ids:
        if published is not None:
            raise LeaderboardError("--published is the table peers come from; give --peers too")
        return []
    from evalsuite.archive import load_contents

    contents = load_contents(published)
    return [contents.select(peer) for peer in ids]


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
    from evalsuite.results import is_contamination, read_contamination
    from evalsuite.suite import load_suite

    if is_contamination(results_path):
        if format is not CardFormat.MARKDOWN:
            raise CardError(f"{results_path}: a contamination check has no {format.value} form; use --format markdown")
        typer.echo(render_contamination(read_contamination(results_path)), nl=False)
        return
    results = _read_run(results_path)
    suite = load_suite()
    # the Markdown section marks tasks that are not comparable, and says why; model-index entries cannot
    check_publishable(results, suite, allow_partial, allow_not_comparable or format is CardFormat.MARKDOWN)
    if format is CardFormat.MODEL_INDEX:
        from evalsuite.publish.model_index import render_model_index

        typer.echo(render_model_index(results, suite, model_name, _source(source_name, source_url)), nl=False)
    elif format is CardFormat.EVAL_RESULTS:
        from evalsuite.publish import benchmarks

        found = benchmarks.from_spec(suite)
        for note in found.notes:
            typer.echo(note, err=True)
        source = _source(source_name, source_url)
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
    push: Annotated[str | None, typer.Option(help="Also upload the README to this Hub model repo.")] = None,
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
    published: PublishedOpt = None,
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
    from evalsuite.publish import leaderboard as board
    from evalsuite.publish.card import (
        check_publishable,
        diff,
        read_readme,
        update_contamination,
        update_from_leaderboard,
        update_peers,
        update_readme,
        write_readme,
    )
    from evalsuite.results import is_contamination, read_contamination
    from evalsuite.suite import load_suite

    if results_path is None and contamination_path is None and not peers and from_leaderboard is None:
        raise CardError("give --results RUN, --contamination CHECK, --peers MODELS or --from-leaderboard MODEL")
    if results_path is not None and from_leaderboard is not None:
        raise CardError("--results and --from-leaderboard both write the card's model-index results; give one")
    if from_leaderboard is not None and (source_name or source_url):
        raise CardError("--from-leaderboard's source is the leaderboard; leave out --source-name/--source-url")
    if create_pr and not push:
        raise CardError("--create-pr needs --push REPO_ID")
    if with_eval_results and results_path is None:
        raise CardError("--eval-results writes a run's results; give --results RUN")
    peer_ids = _peer_ids(peers)
    if from_leaderboard is not None:
        _peer_ids([from_leaderboard])  # the same ORG/NAME[:PRECISION] check
    if published is not None and not peer_ids and from_leaderboard is None:
        raise CardError("--published is the table peers come from; give --peers or --from-leaderboard too")
    results = contamination = None
    suite = load_suite()
    if results_path is not None:
        results = _read_run(results_path)
        check_publishable(results, suite, allow_partial, allow_not_comparable)
    if contamination_path is not None:
        if not is_contamination(contamination_path):
            raise CardError(f"--contamination {contamination_path}: not a contamination check's folder or file")
        contamination = read_contamination(contamination_path)
    published_row = peer_rows = None
    if peer_ids or from_leaderboard is not None:
        from evalsuite.archive import load_contents

        contents = load_contents(published)
        peer_rows = board.peer_rows([contents.select(peer) for peer in peer_ids], suite) if peer_ids else None
        published_row = contents.select(from_leaderboard) if from_leaderboard is not None else None
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
    if published_row is not None:
        new = update_from_leaderboard(new, published_row, suite, model_name)
    if peer_rows is not None:
        measured = board.leaderboard_rows([results], suite) if results is not None else []
        new = update_peers(new, board.render_compact(board.ranked(measured + peer_rows)))
    # the `.eval_results` file: (path in the repo, local path, old text, new text), all made before anything is written
    extra: tuple[str, Path, str, str] | None = None
    if with_eval_results and results is not None:
        from evalsuite.publish import benchmarks, eval_results

        found = benchmarks.from_hub(suite)
        for note in found.notes:
            typer.echo(note, err=True)
        source = _source(source_name, source_url)
        items, _ = _eval_results_entries(results, suite, found, source, "leave out --eval-results")
        in_repo = eval_results.file_name(results)
        local = readme.parent / in_repo
        old_file = eval_results.read_file(local)
        owned = {s.hub_benchmark.dataset_id for s in suite.tasks if s.hub_benchmark}
        extra = (in_repo, local, old_file, eval_results.updated_file(old_file, items, owned, found.not_benchmarks))
    if check:
        stale = [str(readme)] if new != old else []
        if extra and extra[2] != extra[3]:
            stale.append(str(extra[1]))
        if stale:
            given = "".join(
                f" {option} {value}"
                for option, value in (
                    ("--results", results_path), ("--contamination", contamination_path),
                    ("--peers", ",".join(peer_ids)), ("--from-leaderboard", from_leaderboard),
                    ("--published", published),
                )
                if value
            )  # fmt: skip
            given += " --eval-results" if extra else ""
            typer.echo(
                f"{' and '.join(stale)} {'is' if len(stale) == 1 else 'are'} out of date; run "
                f"`evalsuite card update {readme}{given}`",
                err=True,
            )
            raise typer.Exit(1)
        typer.echo(f"{readme}{' and ' + str(extra[1]) if extra else ''} up to date", err=True)
        return
    if dry_run:
        typer.echo(diff(old, new, readme), nl=False)
        if extra:
            typer.echo(diff(extra[2], extra[3], extra[1], label=extra[0]), nl=False)
        return
    if extra:
        from evalsuite.publish.eval_results import write_file

        in_repo, local, old_file, new_file = extra
        if new_file != old_file:
            write_file(local, new_file)
            typer.echo(f"wrote {local}", err=True)
        else:
            typer.echo(f"{local} already up to date", err=True)
    if new != old:
        write_readme(readme, new)
        typer.echo(f"updated {readme}", err=True)
    else:
        typer.echo(f"{readme} already up to date", err=True)
    if push:
        from evalsuite.publish.hub import push_files

        files = {"README.md": readme, **({extra[0]: extra[1]} if extra else {})}
        typer.echo(f"pushed: {push_files(files, push, create_pr)}", err=True)


@app.command("leaderboard")
@one_line_errors
def leaderboard(
    results_dirs: Annotated[
        list[Path] | None, typer.Argument(help="Results folders or files (default: results/).", show_default=False)
    ] = None,
    format: Annotated[BoardFormat, typer.Option("--format")] = BoardFormat.MARKDOWN,
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    complete_only: Annotated[bool, typer.Option(help="Leave partial runs out (else they are marked).")] = False,
    model_size: Annotated[
        bool, typer.Option(help="Add a Model Size column from the parameter count (peers: the leaderboard's).")
    ] = False,
    peers: PeersOpt = None,
    published: PublishedOpt = None,
) -> None:
    """Rank the latest run of each (model, revision, dtype) by H6 average; a Contamination column shows each
    model's latest `evalsuite contamination` check when the folders hold any. --peers adds the Open LLM
    Leaderboard's published rows for other models, marked as its numbers; --format compact is the card's
    `| Model | H6 | Model Size |` table, the runs in bold."""
    from evalsuite.files import write_text_atomic
    from evalsuite.publish import leaderboard as board
    from evalsuite.results import find_contamination
    from evalsuite.suite import load_suite

    if out is not None and not out.parent.is_dir():
        raise LeaderboardError(f"--out {out}: folder {out.parent} does not exist")
    suite = load_suite()
    peer_rows = board.peer_rows(_peers(peers, published), suite)
    dirs = _board_dirs(results_dirs, peers_only=bool(peer_rows))
    runs = board.latest_runs(_runs(dirs, peers_only=bool(peer_rows)), include_partial=not complete_only)
    if not runs and not peer_rows:
        raise LeaderboardError("no complete runs to rank; drop --complete-only to show partial ones")
    rows = board.ranked(board.leaderboard_rows(runs, suite, find_contamination(dirs)) + peer_rows)
    text = board.render_leaderboard(rows, suite, format, with_size=model_size)
    if out is None:
        typer.echo(text, nl=False)
        return
    write_text_atomic(out, text)
    typer.echo(f"wrote {out}", err=True)


def _board_dirs(results_dirs: list[Path] | None, peers_only: bool) -> list[Path]:
    """The folders to rank: those given (each must exist), else results/ (which may be missing when peers
    alone make the table)."""
    if results_dirs:
        return results_dirs
    default = Path("results")
    return [] if peers_only and not default.is_dir() else [default]


def _runs(dirs: list[Path], peers_only: bool) -> list[SuiteResults]:
    from evalsuite.errors import NoResultsError
    from evalsuite.results import find_runs

    if not dirs:
        return []
    missing = [d for d in dirs if not d.exists()]
    if missing:
        raise NoResultsError(f"{missing[0]}: no such directory")
    try:
        return find_runs(dirs)
    except NoResultsError:
        if peers_only:  # empty folders: the table is the peers alone
            return []
        raise

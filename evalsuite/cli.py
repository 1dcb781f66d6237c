"""The `evalsuite` command: typer options in, library calls, output out. No lm_eval here.

Data (tables, JSON) goes to stdout; progress and errors go to stderr. Known errors become one line and
exit code 1 (EVALSUITE_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from evalsuite import __version__
from evalsuite.card import (
    CardSource,
    check_publishable,
    push_readme,
    read_readme,
    render_markdown,
    render_model_index,
    update_readme,
    write_readme,
)
from evalsuite.card import diff as card_diff
from evalsuite.console import format_findings, format_scores, format_suite, setup_logging
from evalsuite.data import Level, verify_snapshot
from evalsuite.errors import CardError, EvalsuiteError, SuiteConfigError
from evalsuite.evaluate import RunRequest, parse_batch_size, parse_seed, run_suite
from evalsuite.leaderboard import find_results, latest_runs, leaderboard_rows, render_leaderboard
from evalsuite.results import read_results
from evalsuite.suite import load_suite

# Locals can hold HF tokens: never print them in tracebacks.
app = typer.Typer(
    pretty_exceptions_show_locals=False,
    no_args_is_help=True,
    help="Open LLM Leaderboard (v1) H6 evaluations on lm-evaluation-harness.",
)
data_app = typer.Typer(pretty_exceptions_show_locals=False, no_args_is_help=True, help="Offline data snapshots.")
app.add_typer(data_app, name="data")
card_app = typer.Typer(pretty_exceptions_show_locals=False, no_args_is_help=True, help="Model cards (README.md).")
app.add_typer(card_app, name="card")

P = ParamSpec("P")
R = TypeVar("R")


def _one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn EvalsuiteError into `error: <message>` on stderr and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except EvalsuiteError as e:
            if os.environ.get("EVALSUITE_DEBUG") == "1":
                raise
            message = " ".join(str(e).split())  # one line, whatever a library put in it
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _progress(message: str) -> None:
    typer.echo(message, err=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"evalsuite {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    setup_logging()


ModelArg = Annotated[
    str,
    typer.Argument(
        help="Hub id (org/name, optionally @revision), a local Hugging Face model folder, or a .gguf file "
        "(dequantized once into the cache).",
        show_default=False,
    ),
]


@app.command()
@_one_line_errors
def run(
    model: ModelArg,
    tasks: Annotated[
        str | None, typer.Option(help="Comma-separated task keys (see `evalsuite tasks`); default: all six.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Score only the first N documents of each task (of each subject for MMLU).")
    ] = None,
    batch_size: Annotated[str, typer.Option(help="Requests per forward pass: an int, or 'auto'.")] = "8",
    dtype: Annotated[
        str | None,
        typer.Option(help="Model dtype (float32, bfloat16, float16, auto). Default: float32 on CPU, bfloat16 on CUDA."),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Torch device (cpu, cuda, cuda:1). Default: cuda if available.")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Offline snapshot laid out as <dataset>/<split>.jsonl (see `evalsuite data verify`). "
            "Default: the Hub datasets, as lm-eval loads them."
        ),
    ] = None,
    output_dir: Annotated[Path, typer.Option(help="Where <org>__<name>/<run-id>/ is written.")] = Path("results"),
    seed: Annotated[
        str, typer.Option(help="lm-eval seeds: one int for all, or random,numpy,torch,fewshot.")
    ] = "0,1234,1234,1234",
    log_samples: Annotated[
        bool, typer.Option(help="Also write every scored sample (lm_eval/samples_<lm-eval task>.jsonl).")
    ] = False,
    model_args: Annotated[
        str | None, typer.Option(help="Extra lm-eval HF model args, k=v,k2=v2 (e.g. trust_remote_code=True).")
    ] = None,
    add_bos_token: Annotated[
        bool, typer.Option(help="Prepend BOS. Off by default: the leaderboard's harness never added it.")
    ] = False,
) -> None:
    """Run the H6 suite on MODEL and write a results folder; print the six scores and the average."""
    request = RunRequest(
        model=model,
        tasks=[t.strip() for t in tasks.split(",") if t.strip()] if tasks is not None else None,
        limit=limit,
        batch_size=parse_batch_size(batch_size),
        dtype=dtype,
        device=device,
        data_dir=data_dir,
        output_dir=output_dir,
        seeds=parse_seed(seed),
        log_samples=log_samples,
        model_args=model_args,
        add_bos_token=add_bos_token,
    )
    if tasks is not None and not request.tasks:
        raise SuiteConfigError("--tasks is empty; name task keys (see `evalsuite tasks`) or leave it out")
    outcome = run_suite(request, progress=_progress)
    typer.echo(format_scores(outcome.results))
    typer.echo(f"results: {outcome.run_dir / 'results.json'}")


@app.command("tasks")
@_one_line_errors
def list_tasks(
    as_json: Annotated[bool, typer.Option("--json", help="Print the suite spec as JSON.")] = False,
) -> None:
    """Print the suite: each task's lm-eval task, shots, metric and dataset."""
    suite = load_suite()
    if as_json:
        typer.echo(json.dumps(suite.model_dump(mode="json"), indent=2))
    else:
        typer.echo(format_suite(suite))


@data_app.command("verify")
@_one_line_errors
def verify(
    directory: Annotated[Path, typer.Argument(help="Snapshot folder, e.g. ../shared/data/h6.", show_default=False)],
    strict: Annotated[bool, typer.Option(help="Also fail on warnings (partial splits, few-shot fallbacks).")] = False,
) -> None:
    """Check an offline snapshot: every split the suite needs, row counts, schema. Exit 1 on errors."""
    findings = verify_snapshot(directory, load_suite())
    typer.echo(format_findings(findings))
    errors = sum(f.level is Level.ERROR for f in findings)
    warnings = sum(f.level is Level.WARN for f in findings)
    typer.echo(f"{errors} error(s), {warnings} warning(s)", err=True)
    if errors or (strict and warnings):
        raise typer.Exit(1)


ResultsArg = Annotated[Path, typer.Argument(help="A results.json or a run folder.", show_default=False)]
AllowPartialOpt = Annotated[bool, typer.Option(help="Publish a partial run (limit, subset, sample data) anyway.")]
ModelNameOpt = Annotated[str | None, typer.Option(help="model-index entry name. Default: the results' model id.")]
SourceNameOpt = Annotated[
    str | None, typer.Option(help="`source.name` of each result (needs --source-url). Default: no source.")
]
SourceUrlOpt = Annotated[str | None, typer.Option(help="`source.url` of each result.")]


def _source(name: str | None, url: str | None) -> CardSource | None:
    if (name is None) != (url is None):
        raise CardError("--source-name and --source-url go together")
    return CardSource(name=name, url=url) if name and url else None


class CardFormat(StrEnum):
    MODEL_INDEX = "model-index"
    MARKDOWN = "markdown"


@card_app.command("render")
@_one_line_errors
def card_render(
    results_path: ResultsArg,
    format: Annotated[CardFormat, typer.Option("--format", help="model-index YAML or the Markdown section.")],
    allow_partial: AllowPartialOpt = False,
    model_name: ModelNameOpt = None,
    source_name: SourceNameOpt = None,
    source_url: SourceUrlOpt = None,
) -> None:
    """Print a run's model-index YAML or its Markdown results table."""
    results = read_results(results_path)
    check_publishable(results, allow_partial)
    suite = load_suite()
    if format is CardFormat.MODEL_INDEX:
        typer.echo(render_model_index(results, suite, model_name, _source(source_name, source_url)), nl=False)
    else:
        typer.echo(render_markdown(results, suite), nl=False)


@card_app.command("update")
@_one_line_errors
def card_update(
    readme: Annotated[Path, typer.Argument(help="The README.md to update (created if missing).", show_default=False)],
    results_path: Annotated[Path, typer.Option("--results", help="A results.json or a run folder.")],
    check: Annotated[bool, typer.Option(help="Change nothing; exit 1 if the README is out of date.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Change nothing; print the diff.")] = False,
    push: Annotated[str | None, typer.Option(help="Also upload the README to this Hub model repo.")] = None,
    create_pr: Annotated[bool, typer.Option(help="With --push: open a pull request instead of committing.")] = False,
    allow_partial: AllowPartialOpt = False,
    model_name: ModelNameOpt = None,
    source_name: SourceNameOpt = None,
    source_url: SourceUrlOpt = None,
) -> None:
    """Write the run's model-index results and results section into README.md, leaving the rest as it was."""
    results = read_results(results_path)
    check_publishable(results, allow_partial)
    if create_pr and not push:
        raise CardError("--create-pr needs --push REPO_ID")
    old = read_readme(readme)
    new = update_readme(old, results, load_suite(), model_name, _source(source_name, source_url))
    if check:
        if new != old:
            typer.echo(
                f"{readme} is out of date; run `evalsuite card update {readme} --results {results_path}`", err=True
            )
            raise typer.Exit(1)
        typer.echo(f"{readme} is up to date", err=True)
        return
    if dry_run:
        typer.echo(card_diff(old, new, readme), nl=False)
        return
    if new != old:
        write_readme(readme, new)
        typer.echo(f"updated {readme}", err=True)
    else:
        typer.echo(f"{readme} already up to date", err=True)
    if push:
        typer.echo(f"pushed: {push_readme(new, push, create_pr)}", err=True)


class BoardFormat(StrEnum):
    MARKDOWN = "markdown"
    CSV = "csv"
    HTML = "html"


@app.command("leaderboard")
@_one_line_errors
def leaderboard(
    results_dirs: Annotated[
        list[Path] | None, typer.Argument(help="Results folders or files (default: results/).", show_default=False)
    ] = None,
    format: Annotated[BoardFormat, typer.Option("--format")] = BoardFormat.MARKDOWN,
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    complete_only: Annotated[bool, typer.Option(help="Leave partial runs out (else they are marked).")] = False,
    model_size: Annotated[bool, typer.Option(help="Add a Model Size column from the parameter count.")] = False,
) -> None:
    """Rank the latest run of each (model, revision, dtype) by H6 average."""
    suite = load_suite()
    runs = latest_runs(find_results(results_dirs or [Path("results")]), include_partial=not complete_only)
    if not runs:
        raise CardError("no complete runs to rank; drop --complete-only to show partial ones")
    text = render_leaderboard(leaderboard_rows(runs, suite), suite, format.value, with_size=model_size)
    if out is None:
        typer.echo(text, nl=False)
        return
    if not out.parent.is_dir():
        raise CardError(f"--out {out}: folder {out.parent} does not exist")
    write_readme(out, text)
    typer.echo(f"wrote {out}", err=True)


def main() -> None:
    app()

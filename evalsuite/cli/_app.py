"""The typer app, its sub-apps and the one place known errors become a one-line message and an exit code."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from evalsuite._version import __version__
from evalsuite.cli.logs import setup_logging
from evalsuite.errors import EvalsuiteError, OptionError, in_terms

# Locals can hold HF tokens: never print them in tracebacks. Help is click's plain text (rich_markup_mode=None):
# rich's panels cut long option values and descriptions with "…" on an 80-column terminal.
app = typer.Typer(
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Open LLM Leaderboard (v1) H6 evaluations on lm-evaluation-harness.",
)
data_app = typer.Typer(
    pretty_exceptions_show_locals=False, rich_markup_mode=None, no_args_is_help=True, help="Offline data snapshots."
)
app.add_typer(data_app, name="data")
card_app = typer.Typer(
    pretty_exceptions_show_locals=False, rich_markup_mode=None, no_args_is_help=True, help="Model cards (README.md)."
)
app.add_typer(card_app, name="card")
details_app = typer.Typer(
    pretty_exceptions_show_locals=False, rich_markup_mode=None, no_args_is_help=True,
    help="Per-document details in the leaderboard's layout.",
)  # fmt: skip
app.add_typer(details_app, name="details")

P = ParamSpec("P")
R = TypeVar("R")


# The library's parameters that errors name (evalsuite.errors.param), where the flag that sets one is not
# `--` + its name with dashes.
_FLAGS = {"model": "MODEL", "seeds": "--seed"}


def flag(name: str) -> str:
    """The command-line spelling of a library parameter: `data_dir` -> `--data-dir`, `model` -> `MODEL`."""
    return _FLAGS.get(name) or "--" + name.replace("_", "-")


def error_line(error: EvalsuiteError | str) -> str:
    """`error: <message>` on one line, naming the flags that fix it, whatever a library put in it (an error, or
    its line as another process sent it: `EvalsuiteError.marked`)."""
    message = error.message(flag) if isinstance(error, EvalsuiteError) else in_terms(error, flag)
    return "error: " + " ".join(message.split())


def skipped(error: EvalsuiteError) -> None:
    """A file a table of many runs goes on without: `warning: skipped: <why>` on stderr."""
    typer.echo("warning: skipped: " + " ".join(error.message(flag).split()), err=True)


def say(message: str) -> None:
    """One of evalsuite's progress lines on stderr, a parameter it names written as its flag."""
    typer.echo(in_terms(message, flag), err=True)


# Old spellings of options, kept hidden for one release (docs/commands.md lists the new ones).
REMOVED_IN = "evalsuite 0.5"

T = TypeVar("T")


def renamed(new: T | None, old: T | None, new_flag: str, old_flag: str) -> T | None:
    """The value of an option given under its name or under its old, hidden one (which says so on stderr);
    both at once is an error."""
    if old is None:
        return new
    if new is not None:
        raise OptionError(f"{old_flag} is the old name of {new_flag}; give {new_flag} only")
    typer.echo(f"warning: {old_flag} is deprecated (removed in {REMOVED_IN}): use {new_flag}", err=True)
    return old


def refuse_unless(applies: bool, given: bool, option: str, why: str) -> None:
    """An option that does not apply is refused, never ignored: `option` was `given` where it does not apply."""
    if given and not applies:
        raise OptionError(f"{option} {why}")


def errors_exit_with(code: int) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn EvalsuiteError into `error: <message>` on stderr and exit `code` (EVALSUITE_DEBUG=1: the traceback,
    the causes included)."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return command(*args, **kwargs)
            except EvalsuiteError as e:
                if os.environ.get("EVALSUITE_DEBUG") == "1":
                    raise
                typer.echo(error_line(e), err=True)
                raise typer.Exit(code) from None

        return wrapper

    return decorate


one_line_errors = errors_exit_with(1)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"evalsuite {__version__}")
        raise typer.Exit()


class DataFormat(StrEnum):
    """`--format` of commands that print data: a table for people, JSON for programs."""

    TABLE = "table"
    JSON = "json"


FormatOpt = Annotated[DataFormat, typer.Option("--format", help="table for people, json for programs.")]
OldOutputOpt = Annotated[Path | None, typer.Option("--out", hidden=True)]  # --output before evalsuite 0.4

VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Also show lm-eval's, transformers' and datasets' logs and bars.")
]


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    setup_logging(verbose)

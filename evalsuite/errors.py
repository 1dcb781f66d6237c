"""Errors that reach the user as one line saying what to fix.

Library modules raise these in the library's own terms: a message names the keyword argument that fixes it
(`data_dir`, `batch_size`) through `param`, so `str(error)` reads `data_dir ../snap: no such directory`
for a library caller. The CLI renders the same error with the flag instead (`--data-dir ../snap: ...`,
evalsuite/cli/_app.py), the single place that turns errors into a message and an exit code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

# Marks a parameter's name inside a message; never shown (the ASCII unit separator).
_PARAM = "\x1f"


def param(name: str) -> str:
    """The library parameter `name` (a RunRequest field, a function's keyword) inside an error message: shown as
    `name` by the library, as the flag that sets it by the CLI."""
    return f"{_PARAM}{name}{_PARAM}"


def in_terms(text: str, term: Callable[[str], str] = lambda name: name) -> str:
    """`text` with each `param` written as `term(name)`: an error's message, or a progress line that names a
    parameter (a deprecation warning), in the library's terms or the CLI's."""
    parts = text.split(_PARAM)
    parts[1::2] = [term(name) for name in parts[1::2]]
    return "".join(parts)


def params_in(text: str) -> list[str]:
    """The names of the parameters `text` marks (`param`), in order."""
    return text.split(_PARAM)[1::2]


class EvalsuiteError(Exception):
    """Base class: the message must tell the user what to fix."""

    def __str__(self) -> str:
        return self.message(lambda name: name)

    def message(self, term: Callable[[str], str]) -> str:
        """The message with each `param` written as `term(name)` (the CLI passes its flag names)."""
        return in_terms(str(self.args[0]) if self.args else "", term)

    @property
    def marked(self) -> str:
        """The message as raised, its parameters still marked (to re-raise it elsewhere: another process)."""
        return str(self.args[0]) if self.args else ""


# Four kinds of problem a user fixes in four places: the options they gave, the suite they chose, the model they
# named, the Hub they reach. The other classes are files (data, output, results) and what fails at work.


class OptionError(EvalsuiteError):
    """An option has a value the command cannot use, or options that do not go together: a request's field in the
    library (`dtype`, `batch_size`, `seeds`, `model_args`, `threshold`), a flag on the command line."""


class SuiteConfigError(EvalsuiteError):
    """The suite spec (tasks/suite.yaml, a task group) or the task selection (`tasks`, `preset`, `protocol`)."""


class ModelRefError(EvalsuiteError):
    """The model: the MODEL argument cannot be resolved, or the model cannot be loaded as asked."""


class HubError(EvalsuiteError):
    """The Hugging Face Hub: unreachable, rate-limiting, a repo it does not have or will not show, a push it
    refused."""


class DataDirError(EvalsuiteError):
    """An offline data snapshot lacks a split the run needs, or has the wrong shape."""


class OutputDirError(EvalsuiteError):
    """Results cannot be written where the user asked."""


class ResultsSchemaError(EvalsuiteError):
    """A results file is not one this version of evalsuite can read."""


class NoResultsError(EvalsuiteError):
    """A results folder holds no run (or is not there)."""


class RunError(EvalsuiteError):
    """lm-eval failed, or produced something that breaks the protocol."""


class ClusterError(EvalsuiteError):
    """The Ray cluster a sweep or a run is spread over: Ray not installed, an address that does not answer, a
    worker whose Python environment is not the driver's, work lost more often than the retries allow."""


class GenerationFailed(RunError):
    """Generation requests a decoding engine did not finish: `prompts` (their positions in the engine's input),
    why, and whether it ran out of memory (decided by the engine from the error's type, never from its text)."""

    def __init__(self, prompts: Sequence[int], reason: str, out_of_memory: bool = False) -> None:
        self.prompts, self.reason, self.out_of_memory = list(prompts), reason, out_of_memory
        shown = ", ".join(map(str, self.prompts[:5])) + (", ..." if len(self.prompts) > 5 else "")
        super().__init__(f"generation failed for prompt {shown}: {reason}")


class CardError(EvalsuiteError):
    """A model card cannot be rendered or updated as asked (partial run, broken front matter, ...)."""


class NotComparableError(EvalsuiteError):
    """Two runs differ in protocol or data; comparing their numbers would mislead."""


class HistoryError(EvalsuiteError):
    """No runs to show, or a plot that cannot be written."""


class ArchiveError(EvalsuiteError):
    """The leaderboard's archive does not hold what was asked, or a copy of it cannot be read."""


class LeaderboardError(EvalsuiteError):
    """Nothing to rank, or results that cannot be read."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run or a check; `saved` says whether anything was kept to resume from (a
    finished task, an answered request), so the message can say so truthfully."""

    def __init__(self, saved: bool) -> None:
        super().__init__()
        self.saved = saved


def invalid_file(path: Path | str, what: str, error: ValidationError) -> str:
    """One line for a file pydantic refused: `<path>: invalid <what> at <field>: <why>` (the first problem)."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    why = str(first["msg"]).removeprefix("Value error, ")
    return f"{path}: invalid {what}{f' at {where}' if where else ''}: {why}"

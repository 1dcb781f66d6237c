"""Errors that reach the user as one line saying what to fix.

Modules raise these; `cli.main()` is the single place that turns them into a message and an exit code.
"""


class EvalsuiteError(Exception):
    """Base class: the message must tell the user what to fix."""


class SuiteConfigError(EvalsuiteError):
    """The suite spec or the requested task selection is wrong."""


class ModelRefError(EvalsuiteError):
    """The MODEL argument cannot be resolved or loaded."""


class DataDirError(EvalsuiteError):
    """An offline data snapshot lacks a split the run needs, or has the wrong shape."""


class OutputDirError(EvalsuiteError):
    """Results cannot be written where the user asked."""


class ResultsSchemaError(EvalsuiteError):
    """A results file is not one this version of evalsuite can read."""


class RunError(EvalsuiteError):
    """lm-eval failed, or produced something that breaks the protocol."""


class CardError(EvalsuiteError):
    """A model card cannot be rendered or updated as asked (partial run, broken front matter, ...)."""


class OptionError(EvalsuiteError):
    """A command-line option has a value the command cannot use."""


class NotComparableError(EvalsuiteError):
    """Two runs differ in protocol or data; comparing their numbers would mislead."""


class HistoryError(EvalsuiteError):
    """No runs to show, or a plot that cannot be written."""


class LeaderboardError(EvalsuiteError):
    """Nothing to rank, or results that cannot be read."""

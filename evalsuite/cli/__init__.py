"""The `evalsuite` command: typer options in, library calls, output out. No lm_eval here.

Data (tables, JSON) goes to stdout; progress and errors go to stderr. Known errors become one line and exit
code 1 (2 for compare/history, where 1 means "regression"); EVALSUITE_DEBUG=1 shows the traceback.
"""

# isort: off
# Importing the modules registers their commands; this order is the order of `evalsuite --help`.
from evalsuite.cli import running, publishing, tracking  # noqa: F401

# isort: on
from evalsuite.cli._app import app


def main() -> None:
    app()


__all__ = ["app", "main"]

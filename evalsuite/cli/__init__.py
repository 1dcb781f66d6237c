"""The `evalsuite` command: typer options in, library calls, output out. No lm_eval here.

Data (tables, JSON) goes to stdout; progress and errors go to stderr. Known errors become one line and exit
code 1 (2 for compare/history, where 1 means "regression"); EVALSUITE_DEBUG=1 shows the traceback.
"""

# isort: off
import sys

from evalsuite.verbosity import quiet_other_libraries

quiet_other_libraries(sys.argv[1:])  # before tqdm, huggingface_hub & co. are imported: they read it once

# Importing the modules registers their commands; this order is the order of `evalsuite --help`.
from evalsuite.cli import running, checking, publishing, tracking  # noqa: F401, E402

# isort: on
from evalsuite.cli._app import app  # noqa: E402


def main() -> None:
    app()


__all__ = ["app", "main"]

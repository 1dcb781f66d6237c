"""The `evalsuite` command (typer): options in, library calls, output out; the only layer that knows flags.

Data (tables, JSON) goes to stdout; progress and errors go to stderr. Known errors become one line naming the
flag that fixes them, exit code 1 (2 for compare/history, where 1 means "regression", and details); EVALSUITE_DEBUG=1
shows the traceback. Commands import the library inside their bodies, so `evalsuite --help` loads no model
library, no pandas and no huggingface_hub (tests/test_startup.py).
"""

# isort: off
import sys

from evalsuite.cli.verbosity import quiet_other_libraries

quiet_other_libraries(sys.argv[1:])  # before tqdm, huggingface_hub & co. are imported: they read it once

# Importing the modules registers their commands; this order is the order of `evalsuite --help`.
from evalsuite.cli import running, sweeping, checking, publishing, tracking  # noqa: F401, E402

# isort: on
from evalsuite.cli._app import app  # noqa: E402


def main() -> None:
    app()


__all__ = ["app", "main"]

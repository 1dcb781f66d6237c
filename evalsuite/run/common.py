"""What every command that runs a model does the same way: name its run and tell its progress. Resuming, the
lock and taking away what a failed run made are the checkpoint's (run/checkpoint.py), shared the same way.

The rest is shared below this package: settings (batch size, dtype, seeds) in evalsuite.settings, device and
dtype defaults in evalsuite.engine.devices, backends in evalsuite.engine.backends, the versions a file records
in evalsuite.results.Versions, error lines for invalid files in evalsuite.errors.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime

from evalsuite.errors import in_terms

log = logging.getLogger(__name__)

Progress = Callable[[str], None]  # evalsuite's one-line messages, for the CLI's stderr


def new_run_id(now: datetime) -> str:
    """UTC start time, sortable, plus a random tag so two runs started in the same second differ."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


def progress_or_log(progress: Progress | None) -> Progress:
    """The caller's progress callback, or the log (INFO) for library callers that passed none. A line may name
    a parameter (errors.param): the callback renders it (the CLI as its flag); the log as the parameter."""
    return progress or (lambda message: log.info("%s", in_terms(message)))


def silent(message: str) -> None:
    """A progress callback that says nothing (the ranks of a data-parallel run other than 0)."""

"""Ctrl-C and SIGTERM stop a run with a KeyboardInterrupt that reliably reaches the command.

Python raises KeyboardInterrupt wherever the main thread happens to be when the signal lands. Two places
lose it: inside an import (lm-eval imports modules lazily mid-run; a class body or dataclass interrupted
there turns it into a RuntimeError, or leaves the interpreter to die of SIGINT after our handler ran), and
inside code that catches and drops it (finalizers, libraries' cleanup paths). So the handler here waits
until the main thread is outside any import, and keeps raising, every second, until the command has
caught the interrupt and left `stop_on_signals()`.

It never raises a second interrupt while the first is on its way out (an `except` or `finally` block is
handling it: `sys.exc_info()` holds it): a second Ctrl-C would cut short the clean-up that saves the run,
or land in a finalizer as `Exception ignored ... KeyboardInterrupt`. Once the command has caught it,
`ignore_further()` keeps any later signal from interrupting the last message.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_IMPORT_MACHINERY = "<frozen importlib._bootstrap"  # also matches _bootstrap_external
_RETRY_INSIDE_IMPORT_S = 0.05
_INSIST_EVERY_S = 1.0


def _inside_import(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith(_IMPORT_MACHINERY):
            return True
        frame = frame.f_back
    return False


class _Stop:
    def __init__(self) -> None:
        self.requested = False

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.deliver(frame)

    def on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            self.deliver(frame)

    def deliver(self, frame: FrameType | None) -> None:
        if isinstance(sys.exc_info()[1], KeyboardInterrupt):  # the first is being handled: let it finish
            signal.setitimer(signal.ITIMER_REAL, _INSIST_EVERY_S)
            return
        if _inside_import(frame):
            signal.setitimer(signal.ITIMER_REAL, _RETRY_INSIDE_IMPORT_S)
            return
        signal.setitimer(signal.ITIMER_REAL, _INSIST_EVERY_S)  # in case this one gets swallowed
        raise KeyboardInterrupt


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise KeyboardInterrupt (outside imports, until it escapes)."""
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous_alarm = signal.signal(signal.SIGALRM, stop.on_alarm)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_alarm)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def ignore_further() -> None:
    """After the command has caught the interrupt: further Ctrl-C and SIGTERM change nothing (it is exiting)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def interrupted_line(stopped: BaseException) -> str:
    """What the user is told, truthfully: whether anything was kept to resume from."""
    if getattr(stopped, "saved", False):
        return "interrupted: finished tasks and answered requests are saved; run the same command again to resume"
    return "interrupted before anything was saved; run the same command again to start over"

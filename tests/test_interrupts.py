"""Ctrl-C / SIGTERM handling: the interrupt waits out imports and is raised again if something swallows it."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from evalsuite.cli.interrupts import stop_on_signals


def test_a_signal_during_an_import_is_raised_once_the_import_is_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "interrupted_module.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "for _ in range(20):\n"
        "    time.sleep(0.01)  # the handler runs here, inside the import\n"
        "FINISHED = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reached_after_import = False
    try:
        with pytest.raises(KeyboardInterrupt), stop_on_signals():
            import interrupted_module  # type: ignore[import-not-found]  # noqa: F401  (written above)

            reached_after_import = True
            time.sleep(5)  # the interrupt lands here
    finally:
        module = sys.modules.pop("interrupted_module", None)
    assert module is not None and module.FINISHED
    assert reached_after_import


def test_a_swallowed_interrupt_is_raised_again(tmp_path: Path):
    swallowed = 0
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), stop_on_signals():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            swallowed += 1  # as a library's cleanup path might
        time.sleep(5)
    assert swallowed == 1
    assert time.monotonic() - started < 4


def test_handlers_are_restored_afterwards():
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)
    before = [signal.getsignal(s) for s in signals]
    with stop_on_signals():
        assert signal.getsignal(signal.SIGTERM) is not before[1]
    assert [signal.getsignal(s) for s in signals] == before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)

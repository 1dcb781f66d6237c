"""evalsuite's own progress display: one bar per task, on stderr, with requests answered, rate and ETA.

The run pipelines (evalsuite.run) open a `task_bar` around each task; the engine's model backends report the
requests they answer through `requests(...)`, which feeds the open bar. Outside a task bar (library use,
benchmarks) `requests(...)` is a plain tqdm bar. Other libraries' bars are silenced by the CLI before they
are imported (evalsuite/cli/verbosity.py), their loggers and warnings by evalsuite/cli/logs.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tqdm import tqdm

_BAR_FORMAT = "{desc} {bar:20} {n_fmt}/{total_fmt} %s [{elapsed}<{remaining}, {rate_fmt}]"


class RequestCounter(Protocol):
    def update(self, n: int = 1) -> object: ...

    def close(self) -> None: ...


class TaskBar:
    """The bar of one task; the backend may report several batches of requests (their totals add up)."""

    def __init__(self, label: str, counts: str = "requests") -> None:
        from tqdm import tqdm  # imported late: evalsuite.verbosity sets TQDM_* first, which tqdm reads once

        self._bar = tqdm(
            desc=label,
            total=0,
            unit="req" if counts == "requests" else counts.rstrip("s"),
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
            bar_format=_BAR_FORMAT % counts,
            disable=False,  # explicit: TQDM_DISABLE, which silences other libraries' bars, must not hide ours
        )

    def add_requests(self, total: int) -> RequestCounter:
        self._bar.total = (self._bar.total or 0) + total
        self._bar.refresh()
        return _Counter(self._bar)

    def close(self) -> None:
        self._bar.close()


class _Counter:
    def __init__(self, bar: tqdm) -> None:
        self._bar = bar

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def close(self) -> None:
        pass  # the task bar closes when its task ends


class _SilentBar:
    """A task bar that shows nothing: other libraries' bars stay off, and so does ours (stderr is a log)."""

    def add_requests(self, total: int) -> RequestCounter:
        return self

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


_current: TaskBar | _SilentBar | None = None


@contextmanager
def task_bar(label: str, show: bool, counts: str = "requests") -> Iterator[None]:
    """While the block runs, other libraries' bars are off and the requests the backends answer advance one
    bar labelled `label`, shown when `show` (an interactive stderr, the process that reports progress)."""
    global _current
    bar = TaskBar(label, counts) if show else _SilentBar()
    _current = bar
    try:
        yield
    finally:
        _current = None
        bar.close()


def requests(total: int, desc: str, disable: bool = False) -> RequestCounter:
    """Count `total` requests being answered: into the open task bar, else (no evalsuite run around it: library
    use, benchmarks, -v) a tqdm bar of its own, as lm-eval's models show."""
    if _current is not None:
        return _current.add_requests(total)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=disable)


def bar_open() -> bool:
    """Whether a task bar is showing (then other bars stay off)."""
    return _current is not None


def interactive() -> bool:
    return sys.stderr.isatty()

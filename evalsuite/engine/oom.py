"""Backing off from out-of-memory errors: the one way every batched loop does it. Its users:

- the shared-prefix backend's scoring packs and HFLM's generation chunks under `--batch-size auto`
  (backends/shared_prefix.py);
- GSM8K's requests decoding at once in evalsuite's loop (generation.ContinuousGreedy: the newest rows go back
  to the queue) and in transformers' manager (generation.ManagedGreedy: its cache budget follows the rows);
- the contamination check's scoring rows (neighbours.scoring_rows).

Only under `batch_size` auto (a fixed size is the user's, and its error is theirs to see), by halving the rows,
which then stay halved for the rest of the loop (`Rows`). Out of memory is recognised by the error's type:
torch's `OutOfMemoryError` (CUDA, and the other accelerators' allocators since torch 2.5), and Python's
`MemoryError` (transformers' continuous batching raises it when its cache cannot fit). Imported only where
torch already is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

log = logging.getLogger(__name__)

CAUGHT: tuple[type[BaseException], ...] = (torch.OutOfMemoryError, MemoryError)

T = TypeVar("T")


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, CAUGHT)


def may_back_off(error: BaseException, auto: bool, rows: int) -> bool:
    """Whether a loop that ran `rows` rows at once may retry with fewer after `error`."""
    return auto and rows > 1 and is_out_of_memory(error)


def halved(rows: int, what: str) -> int:
    """The rows to retry with after running out of memory at `rows` (half), the allocator's cache freed."""
    if rows <= 1:
        raise torch.OutOfMemoryError(f"out of memory {what} a single row at a time")
    log.warning("out of memory %s %d rows at once; retrying with %d", what, rows, rows // 2)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return rows // 2


class BackedOff:
    """What `Rows.attempt` returns after running out of memory and halving: take a smaller chunk, try again."""


@dataclass
class Rows:
    """Rows per forward pass over a loop of chunks: fixed, or under `auto` halved on out-of-memory and kept
    halved for the chunks after (the loop's later chunks are no larger: callers go longest first)."""

    rows: int
    auto: bool = False
    backoffs: int = 0

    def attempt(self, rows: int, compute: Callable[[], T], what: str) -> T | BackedOff:
        """compute() on a chunk of `rows` rows; BackedOff when it ran out of memory under `auto` (then `self.rows`
        is half of `rows`). Any other error, or out of memory at a fixed size or at one row, is raised as it is."""
        try:
            return compute()
        except CAUGHT as e:
            if not may_back_off(e, self.auto, rows):
                raise
        self.rows = halved(rows, what)
        self.backoffs += 1
        return BackedOff()

    def run(self, compute: Callable[[int], T], what: str) -> T:
        """compute(rows), retried with half the rows while it runs out of memory under `auto`."""
        while True:
            result = self.attempt(self.rows, lambda: compute(self.rows), what)
            if not isinstance(result, BackedOff):
                return result

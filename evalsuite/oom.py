"""Backing off from out-of-memory errors, the one way every batched loop does it (scoring packs, HFLM's
generation chunks, continuous batching's slots, the contamination check's scoring rows): only under
`--batch-size auto` (a fixed size is the user's and its error is theirs to see), by halving the rows, which
then stay halved for the rest of the loop. Imported only where torch already is.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

CAUGHT = (torch.OutOfMemoryError, RuntimeError)  # CUDA's OOM; other backends raise a RuntimeError saying so


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


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

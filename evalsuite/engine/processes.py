"""Data-parallel runs: one process per device, started by `accelerate launch` or `torchrun`.

Every process builds every request, exactly as a single process does, and the shared-prefix backend
splits the forwards (and GSM8K's generations) across processes and gathers the answers, so scores do not
depend on the number of processes. (lm-eval's own data parallelism splits documents instead, and each
rank then draws few-shot exemplars from its own random stream: its scores change with the number of
processes, lm-eval issue #1719.) Rank 0 owns the run folder: lock, checkpoint, results, progress lines.

If one process fails, the launcher (torchrun's agent, which `accelerate launch` uses too) stops the
others, so a rank never waits forever on a collective its peer will not reach.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from evalsuite.errors import EvalsuiteError

T = TypeVar("T")
R = TypeVar("R")


def launched_processes() -> int:
    """How many processes the launcher started (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """This process's rank as the launcher numbered it (0 when run directly)."""
    return int(os.environ.get("RANK", "0"))


@dataclass(frozen=True)
class Processes:
    """This process's place in the run: rank 0 of 1 unless launched data-parallel."""

    rank: int = 0
    count: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def of_accelerator(cls, accelerator: Any | None) -> Processes:
        """The processes of an `accelerate.Accelerator` (None: a single process)."""
        if accelerator is None or accelerator.num_processes == 1:
            return cls()
        return cls(rank=accelerator.process_index, count=accelerator.num_processes)

    def my_share(self, items: Sequence[T], cost: Callable[[T], int]) -> list[T]:
        """This rank's part of `items`: the costliest first, each to the rank with the least cost so far.
        Every rank computes the same assignment from the same items, so no message is needed."""
        if self.count == 1:
            return list(items)
        load = [0] * self.count
        mine = []
        for position in sorted(range(len(items)), key=lambda i: -cost(items[i])):
            rank = min(range(self.count), key=lambda r: load[r])
            load[rank] += cost(items[position])
            if rank == self.rank:
                mine.append(position)
        return [items[i] for i in sorted(mine)]

    def map(self, items: Sequence[T], cost: Callable[[T], int], compute: Callable[[list[T]], list[R]]) -> list[R]:
        """`compute` over `items`, each rank computing its share (`my_share`); every rank gets all results,
        in the order of `items`."""
        if self.count == 1:
            return compute(list(items))
        share = self.my_share(range(len(items)), cost=lambda i: cost(items[i]))
        results = compute([items[i] for i in share])
        by_index = dict(self.gather_everywhere(list(zip(share, results, strict=True))))
        return [by_index[i] for i in range(len(items))]

    def gather_everywhere(self, items: list[T]) -> list[T]:
        """Every rank's `items`, concatenated in rank order, on every rank."""
        if self.count == 1:
            return items
        import torch.distributed

        gathered: list[list[T] | None] = [None] * self.count
        torch.distributed.all_gather_object(gathered, items)
        return [item for part in gathered for item in (part or [])]

    def share(self, value: T | BaseException | None) -> T:
        """Rank 0's `value`, on every rank. Rank 0 passes the exception it hit instead, and then every rank
        raises (none goes on to wait for a peer that has stopped)."""
        received: object = value
        if self.count > 1:
            import torch.distributed

            sent = _Failure.of(value) if isinstance(value, BaseException) else value
            box = [sent if self.is_main else None]
            torch.distributed.broadcast_object_list(box, src=0)
            received = box[0]
        if isinstance(value, BaseException) and self.is_main:
            raise value
        if isinstance(received, _Failure):
            raise received.error()
        return received  # type: ignore[return-value]


@dataclass(frozen=True)
class _Failure:
    """An exception on rank 0, as the other ranks receive it (not every exception pickles)."""

    message: str

    @classmethod
    def of(cls, error: BaseException) -> _Failure:
        if isinstance(error, EvalsuiteError):
            return cls(error.marked)  # already one line that says what to fix (its parameters still marked)
        return cls(f"rank 0 failed: {type(error).__name__}: {error}")

    def error(self) -> EvalsuiteError:
        return EvalsuiteError(self.message)

"""`evalsuite prompts`: the exact requests a run sends, built by lm-eval as `evalsuite run` builds them, with no
model. For users who want to see what the model is asked, and why their numbers differ from someone else's.

The requests come from the same code path as a run (evalsuite.engine.load_task_group: the protocol's sampler
and overrides, the same data plan), so a run's prompt fingerprint equals the fingerprint of these requests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from evalsuite import engine
from evalsuite.data import TaskData, plan_data
from evalsuite.records import FrozenRecord
from evalsuite.run.common import Progress, progress_or_log
from evalsuite.settings import Seeds, check_limit
from evalsuite.suite import DocumentRequests, Protocol, SuiteSpec, default_tasks_dir, load_suite


class PromptsRequest(FrozenRecord):
    """What `evalsuite prompts` asks: the tasks (default all six), documents per task, where rows come from and
    the protocol. A pydantic model, as RunRequest."""

    tasks: Sequence[str] | None = None
    limit: int | None = None
    data_dir: Path | None = None  # None: the Hub datasets, as lm-eval loads them
    protocol: Protocol = Protocol.LEADERBOARD_V1


@dataclass(frozen=True)
class TaskPrompts:
    """One task's requests as a run would send them, document by document, and how long building them took."""

    data: TaskData
    documents: list[DocumentRequests]
    seconds: float

    @property
    def requests(self) -> int:
        return sum(len(d.requests) for d in self.documents)


def build_prompts(
    request: PromptsRequest, suite: SuiteSpec | None = None, progress: Progress | None = None
) -> Iterator[TaskPrompts]:
    """Each task's requests in suite order, document by document (Hub order), as a run would send them.

    The cheap checks (task keys, limit, data dir) run on the call; the tasks are built as the result is iterated.
    """
    say = progress_or_log(progress)
    suite = (suite or load_suite()).for_protocol(request.protocol)
    specs = suite.select(request.tasks)
    check_limit(request.limit)
    plan = plan_data(request.data_dir, specs)
    return _built(plan.tasks, request.limit, say)


def _built(tasks: Sequence[TaskData], limit: int | None, say: Progress) -> Iterator[TaskPrompts]:
    tasks_dir = default_tasks_dir()
    task_manager = engine.build_task_manager(tasks_dir)
    for data in tasks:
        if data.fewshot.fallback:
            say(f"warning: {data.spec.key}: {data.fewshot.note}")
        started = time.perf_counter()
        group = engine.load_task_group(task_manager, tasks_dir, data)
        documents = engine.build_requests(group, limit, Seeds())
        yield TaskPrompts(data=data, documents=documents, seconds=time.perf_counter() - started)

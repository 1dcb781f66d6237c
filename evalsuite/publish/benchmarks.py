"""Which Hub benchmark (dataset id, task id) each H6 task's `.eval_results` entry names.

The suite spec (tasks/suite.yaml, `hub_benchmark`) says where each task goes. The Hub has the last word: a
dataset is a benchmark only while it holds an `eval.yaml` listing its tasks, so where the Hub can be reached
each dataset's eval.yaml is read first (huggingface_hub's download, cached; from the cache when offline) and
the task id taken from it. A dataset without one is left out, saying so. With neither the Hub nor a cached
copy, the spec's mapping is used, only for datasets it records as registered, and that is said too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from evalsuite.suite import HubBenchmark, SuiteSpec, TaskSpec

EVAL_YAML = "eval.yaml"  # the file that makes a dataset a benchmark (hub-docs docs/hub/eval-results.md)


class Origin(StrEnum):
    HUB = "the dataset's eval.yaml"
    SPEC = "tasks/suite.yaml"


@dataclass(frozen=True)
class Benchmark:
    """A task's place on the Hub: what its `.eval_results` entry's `dataset` says, and on what scale."""

    task_key: str
    task_id: str  # the spec's, or the one the dataset's eval.yaml lists
    spec: HubBenchmark
    origin: Origin

    @property
    def dataset_id(self) -> str:
        return self.spec.dataset_id

    def value(self, fraction: float) -> float:
        return self.spec.value(fraction)


@dataclass
class Benchmarks:
    """The benchmarks found for the suite's tasks, the datasets known not to be benchmarks, and what to tell
    the user about how they were found (one line each)."""

    found: dict[str, Benchmark] = field(default_factory=dict)  # task key -> benchmark
    not_benchmarks: set[str] = field(default_factory=set)  # dataset ids the Hub holds no eval.yaml for
    notes: list[str] = field(default_factory=list)

    def for_task(self, key: str) -> Benchmark | None:
        return self.found.get(key)


def from_spec(
    suite: SuiteSpec, hint: str = " (`card update --eval-results` checks each dataset's eval.yaml on the Hub)"
) -> Benchmarks:
    """The spec's mapping alone: the tasks whose dataset it records as registered (no Hub read); `hint` ends
    the line naming the others."""
    out = Benchmarks()
    unconfirmed = []
    for spec in suite.tasks:
        mapped = spec.hub_benchmark
        if mapped is None:
            continue
        if mapped.registered:
            out.found[spec.key] = _benchmark(spec, mapped, mapped.task_id, Origin.SPEC)
        else:
            unconfirmed.append(f"{spec.display_name} ({mapped.dataset_id})")
    if unconfirmed:
        out.notes.append(f"left out of .eval_results, not known to be Hub benchmarks: {', '.join(unconfirmed)}{hint}")
    return out


def from_hub(suite: SuiteSpec) -> Benchmarks:
    """Each mapped dataset's eval.yaml read from the Hub (or its cache); the spec where neither has it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError

    out = Benchmarks()
    unreachable: list[TaskSpec] = []
    why = ""  # what the first failure said
    for spec in suite.tasks:
        mapped = spec.hub_benchmark
        if mapped is None:
            continue
        try:
            # after one failure the rest come from the cache only: huggingface_hub backs off ~20 s per file
            # on a Hub that is down, and the next files would wait as long for the same answer
            path = hf_hub_download(
                mapped.dataset_id, EVAL_YAML, repo_type="dataset", local_files_only=bool(unreachable)
            )
        except (RemoteEntryNotFoundError, RepositoryNotFoundError):
            out.not_benchmarks.add(mapped.dataset_id)
            out.notes.append(
                f"{spec.display_name} left out of .eval_results: {mapped.dataset_id} has no {EVAL_YAML} on the Hub "
                "(not a registered benchmark)"
            )
            continue
        except Exception as e:  # offline, unreachable, down or rate-limiting, not cached: the spec's mapping
            if not unreachable:
                why = _reason(e)
            unreachable.append(spec)
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        task_id, problem = task_in_eval_yaml(spec, mapped, text)
        if task_id is None:
            out.notes.append(
                f"{spec.display_name} left out of .eval_results: {mapped.dataset_id}'s {EVAL_YAML} {problem}"
            )
            continue
        out.found[spec.key] = _benchmark(spec, mapped, task_id, Origin.HUB)
        if task_id != mapped.task_id:
            out.notes.append(
                f"{spec.display_name}: task id {task_id!r} from {mapped.dataset_id}'s {EVAL_YAML} "
                f"(tasks/suite.yaml says {mapped.task_id!r})"
            )
    if unreachable:
        fallback = from_spec(suite.model_copy(update={"tasks": tuple(unreachable)}), hint="")
        out.found.update(fallback.found)
        names = ", ".join(s.hub_benchmark.dataset_id for s in unreachable if s.hub_benchmark)
        out.notes.append(
            f"the Hub could not be reached for {EVAL_YAML} of {names}{why}: using tasks/suite.yaml's benchmarks "
            "(unchecked)"
        )
        out.notes.extend(fallback.notes)
    return out


def _reason(error: Exception) -> str:
    """Why the Hub gave no answer, on one line: the HTTP or connection error under huggingface_hub's "not in
    the cache" error where there is one; nothing extra when offline was asked for (HF_HUB_OFFLINE=1)."""
    cause = error.__cause__ or error.__context__
    shown = cause if isinstance(cause, Exception) else error
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(shown, OfflineModeIsEnabled) or (
        shown is error and type(error).__name__ == "LocalEntryNotFoundError"
    ):
        return " (offline)"
    text = str(shown).splitlines()[0] if str(shown) else ""
    return f" ({type(shown).__name__}{': ' + text if text else ''})"


def task_in_eval_yaml(spec: TaskSpec, mapped: HubBenchmark, text: str) -> tuple[str | None, str]:
    """The task id in a benchmark's eval.yaml for this task, or None and why there is none.

    eval.yaml lists `tasks: [{id, config, split}]`. The task is the one with the spec's id; else the one on
    the config and split the suite scores; else the only one.
    """
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        return None, "is not valid YAML"
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("id"), str) for t in tasks):
        return None, "has no `tasks` list with an `id` for each"
    ids = [t["id"] for t in tasks]
    if mapped.task_id in ids:
        return mapped.task_id, ""
    scored = (spec.hub_config, spec.data.eval_split)
    same_data = [t["id"] for t in tasks if (t.get("config"), t.get("split")) == scored]
    if len(same_data) == 1:
        return same_data[0], ""
    if len(tasks) == 1:
        return ids[0], ""
    return None, (
        f"lists tasks {', '.join(ids)}: none is {mapped.task_id!r} or the only one on config "
        f"{spec.hub_config!r}, split {spec.data.eval_split!r}"
    )


def _benchmark(spec: TaskSpec, mapped: HubBenchmark, task_id: str, origin: Origin) -> Benchmark:
    return Benchmark(spec.key, task_id, mapped, origin)

"""Which files a run reads: a plan per task (the snapshot's split files with their sha256, or the Hub), and the
documented few-shot fallback. Knows nothing of lm-eval (evalsuite.engine turns a plan into task overrides).

Few-shot fallback: when a snapshot lacks a task's few-shot split (HellaSwag's train split is not in
../shared/data/h6), exemplars are drawn from the eval split instead, excluding the document being scored
(lm-eval drops the scored doc when the few-shot split is the split it evaluates). The task is then marked
not leaderboard-comparable, since the leaderboard drew its exemplars from train.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from evalsuite.data.rows import sha256_and_rows
from evalsuite.errors import DataDirError, param
from evalsuite.suite import FewshotSampler, Protocol, TaskSpec


@dataclass(frozen=True)
class SplitFile:
    split: str
    path: Path
    sha256: str
    rows: int


@dataclass(frozen=True)
class FewshotSource:
    """Where a task's few-shot exemplars come from."""

    split: str | None
    sampler: FewshotSampler | None
    fallback: bool = False
    note: str = ""


@dataclass(frozen=True)
class TaskData:
    """How one task's rows are read. `files` is empty when lm-eval loads the Hub dataset."""

    spec: TaskSpec
    files: tuple[SplitFile, ...]
    fewshot: FewshotSource

    @property
    def is_local(self) -> bool:
        return bool(self.files)

    def file(self, split: str) -> SplitFile | None:
        return next((f for f in self.files if f.split == split), None)

    def leaderboard_differences(self, protocol: Protocol) -> list[str]:
        """Why this task's requests are not the leaderboard's (empty: they are, document by document).

        They are when the protocol is leaderboard-v1 and exemplars come from the leaderboard's complete
        few-shot split; for exemplars drawn along the leaderboard's walk, the eval split must be complete
        too, since the walk shuffles all of it.
        """
        if protocol is not Protocol.LEADERBOARD_V1:
            return [f"protocol {protocol.value}: lm-eval 0.4's exemplars and settings, not the leaderboard's"]
        if self.spec.num_fewshot == 0:
            return []
        if self.fewshot.fallback:
            return [self.fewshot.note]
        needs_full = [self.fewshot.split] if self.fewshot.split else []
        if self.spec.fewshot_sampler == "leaderboard-walk":
            needs_full.append(self.spec.data.eval_split)
        short = [
            f"{split} split has {found.rows} of {self.spec.data.rows[split]} rows"
            for split in needs_full
            if (found := self.file(split)) is not None and found.rows != self.spec.data.rows[split]
        ]
        return [f"{', '.join(short)}, so exemplars differ from the leaderboard's"] if short else []


@dataclass(frozen=True)
class DataPlan:
    """The data of one run: `root` is the snapshot folder, or None for the Hub."""

    root: Path | None
    tasks: tuple[TaskData, ...]


def split_path(root: Path, spec: TaskSpec, split: str) -> Path:
    return root / spec.data.dir / f"{split}.jsonl"


def plan_hub(specs: Iterable[TaskSpec]) -> DataPlan:
    return DataPlan(
        root=None,
        tasks=tuple(
            TaskData(spec=s, files=(), fewshot=FewshotSource(s.fewshot_split, s.fewshot_sampler)) for s in specs
        ),
    )


def plan_local(root: Path, specs: Iterable[TaskSpec]) -> DataPlan:
    """Plan a run over a snapshot folder; raise DataDirError if an eval split is missing or empty."""
    if not root.is_dir():
        raise DataDirError(f"{param('data_dir')} {root}: no such directory")
    planned = []
    for spec in specs:
        eval_path = split_path(root, spec, spec.data.eval_split)
        if not eval_path.is_file():
            raise DataDirError(
                f"{param('data_dir')} {root}: missing {eval_path.relative_to(root)} (the {spec.data.eval_split} "
                f"split {spec.key} is scored on); add it or leave {spec.key} out with {param('tasks')}"
            )
        files = [_split_file(eval_path, spec.data.eval_split, spec)]
        fewshot = FewshotSource(spec.fewshot_split, spec.fewshot_sampler)
        if spec.num_fewshot > 0 and spec.fewshot_split and spec.fewshot_split != spec.data.eval_split:
            pool_path = split_path(root, spec, spec.fewshot_split)
            if pool_path.is_file():
                files.append(_split_file(pool_path, spec.fewshot_split, spec))
            else:
                fewshot = FewshotSource(
                    split=spec.data.eval_split,
                    sampler=spec.fewshot_sampler,
                    fallback=True,
                    note=(
                        f"{spec.fewshot_split} split missing from the data dir; exemplars drawn from "
                        f"{spec.data.eval_split}, excluding the scored document (not leaderboard-comparable)"
                    ),
                )
        planned.append(TaskData(spec=spec, files=tuple(files), fewshot=fewshot))
    return DataPlan(root=root, tasks=tuple(planned))


def plan_data(data_dir: Path | None, specs: Iterable[TaskSpec]) -> DataPlan:
    """A snapshot's plan when `data_dir` is given, else the Hub's."""
    return plan_local(data_dir, specs) if data_dir is not None else plan_hub(specs)


def _split_file(path: Path, split: str, spec: TaskSpec) -> SplitFile:
    digest, rows = sha256_and_rows(path, spec)
    if rows == 0:
        raise DataDirError(f"{path}: the file is empty; a split needs at least one row")
    return SplitFile(split=split, path=path.resolve(), sha256=digest, rows=rows)

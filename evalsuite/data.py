"""Where each task's rows come from: the Hub (as lm-eval loads them) or an offline snapshot folder.

A snapshot is laid out like ../shared/data/h6: `<dataset dir>/<split>.jsonl`, one row per line in the Hub's
schema. This module plans which files a run reads (with their sha256), decides the documented few-shot
fallback, and verifies snapshots; it knows nothing of lm-eval (runner.py turns a plan into task overrides).

Few-shot fallback: when a snapshot lacks a task's few-shot split (HellaSwag's train split is not in
../shared/data/h6), exemplars are drawn from the eval split instead, excluding the document being scored
(lm-eval drops the scored doc when the few-shot split is the split it evaluates). The task is then marked
not leaderboard-comparable, since the leaderboard drew its exemplars from train.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from evalsuite.errors import DataDirError
from evalsuite.protocol import Protocol
from evalsuite.suite import ColumnType, SuiteSpec, TaskSpec


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
    sampler: str | None
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

    def for_task(self, key: str) -> TaskData:
        return next(t for t in self.tasks if t.spec.key == key)


def split_path(root: Path, spec: TaskSpec, split: str) -> Path:
    return root / spec.data.dir / f"{split}.jsonl"


def sha256_and_rows(path: Path, spec: TaskSpec | None = None) -> tuple[str, int]:
    """The file's sha256 and its row count. Every row must be a JSON object and, given the task, have its
    columns and sane values (checked here, in the one read, so a corrupt row stops a run before the model
    loads, naming its file and line)."""
    digest = hashlib.sha256()
    rows = 0
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            digest.update(line)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:  # JSONDecodeError and UnicodeDecodeError alike
                raise DataDirError(f"{path}:{number}: not a JSON row ({e}); fix or remove the line") from None
            problem = row_problem(row, spec) if spec is not None else None
            if problem is None and not isinstance(row, dict):
                problem = "a row must be a JSON object"
            if problem:
                raise DataDirError(f"{path}:{number}: {problem}; fix or remove the row")
            rows += 1
    return digest.hexdigest(), rows


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
        raise DataDirError(f"--data-dir {root}: no such directory")
    planned = []
    for spec in specs:
        eval_path = split_path(root, spec, spec.data.eval_split)
        if not eval_path.is_file():
            raise DataDirError(
                f"--data-dir {root}: missing {eval_path.relative_to(root)} (the {spec.data.eval_split} split "
                f"{spec.key} is scored on); add it or leave {spec.key} out with --tasks"
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


def eval_rows(data: TaskData) -> list[dict[str, Any]]:
    """Every row of the task's eval split in the Hub's order: from the snapshot file, or from the Hub through
    `datasets` (for a task of several subsets, the config holding them all, as MMLU's `all`). Hub rows are
    checked as snapshot rows are, so a changed dataset stops here, before a model loads."""
    spec = data.spec
    split = data.file(spec.data.eval_split)
    if split is not None:
        text = split.path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    from datasets import load_dataset

    config = spec.data.hub_all_config or spec.data.hub_config
    where = f"{spec.data.hub_dataset}" + (f" ({config})" if config else "") + f", split {spec.data.eval_split}"
    try:
        dataset = load_dataset(spec.data.hub_dataset, config, split=spec.data.eval_split)
    except Exception as e:  # the Hub down, a config or split renamed: the library's error, on one line
        why = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        raise DataDirError(
            f"{where}: could not load it from the Hub ({why}); pass --data-dir with an offline snapshot"
        ) from None
    rows = [dict(row) for row in dataset]
    for number, row in enumerate(rows):
        if problem := row_problem(row, spec):
            raise DataDirError(f"{where}, row {number}: {problem}; the Hub dataset changed, pass --data-dir")
    return rows


def _split_file(path: Path, split: str, spec: TaskSpec) -> SplitFile:
    digest, rows = sha256_and_rows(path, spec)
    if rows == 0:
        raise DataDirError(f"{path}: the file is empty; a split needs at least one row")
    return SplitFile(split=split, path=path.resolve(), sha256=digest, rows=rows)


# --------------------------------------------------------------------------------------------- verify


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"  # usable, but the run is partial or not leaderboard-comparable
    ERROR = "error"  # a run needing this split fails


@dataclass(frozen=True)
class Finding:
    level: Level
    file: str
    message: str


_JSON_TYPES: dict[ColumnType, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "array": list,
    "object": dict,
}


def verify_snapshot(root: Path, suite: SuiteSpec) -> list[Finding]:
    """Check every split the suite reads: present, full row count, every row parses and has the schema."""
    if not root.is_dir():
        raise DataDirError(f"{root}: no such directory")
    findings: list[Finding] = []
    for spec in suite.tasks:
        for split in spec.needed_splits:
            path = split_path(root, spec, split)
            rel = str(path.relative_to(root))
            is_eval = split == spec.data.eval_split
            if not path.is_file():
                if is_eval:
                    findings.append(Finding(Level.ERROR, rel, f"missing: {spec.key} is scored on this split"))
                else:
                    findings.append(
                        Finding(
                            Level.WARN,
                            rel,
                            f"missing: few-shot exemplars fall back to {spec.data.eval_split} "
                            "(runs are marked not leaderboard-comparable)",
                        )
                    )
                continue
            findings.append(_check_file(path, rel, spec, spec.data.rows[split]))
    return findings


def _check_file(path: Path, rel: str, spec: TaskSpec, full_rows: int) -> Finding:
    rows = 0
    with path.open("r", encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            rows += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                return Finding(Level.ERROR, rel, f"line {line_no}: not JSON ({e.msg})")
            if problem := row_problem(row, spec):
                return Finding(Level.ERROR, rel, f"line {line_no}: {problem}")
    if rows == 0:
        return Finding(Level.ERROR, rel, "empty file")
    if rows > full_rows:
        return Finding(Level.ERROR, rel, f"{rows} rows, more than the full split's {full_rows}: another dataset?")
    if rows != full_rows:
        return Finding(Level.WARN, rel, f"{rows} of {full_rows} rows: runs over it are partial")
    return Finding(Level.OK, rel, f"{rows} rows")


def row_problem(row: object, spec: TaskSpec) -> str | None:
    """What is wrong with one row of a task's split: not an object, a missing or ill-typed column, or a value
    the task cannot score (an answer that is not among the choices, an unknown subject)."""
    if problem := _schema_problem(row, spec.data.columns):
        return problem
    if not isinstance(row, dict):  # _schema_problem says so first; this tells the type checker
        return "a row must be a JSON object"
    check = _VALUE_CHECKS.get(spec.key)
    return check(row, spec) if check else None


def _arc_values(row: dict[str, Any], spec: TaskSpec) -> str | None:
    choices = row["choices"]
    labels, texts = choices.get("label"), choices.get("text")
    if not isinstance(labels, list) or not isinstance(texts, list) or len(labels) != len(texts) or not labels:
        return "choices must hold `label` and `text` lists of one length"
    if row["answerKey"] not in labels:
        return f"answerKey {row['answerKey']!r} is not among the choice labels {labels}"
    return None


def _hellaswag_values(row: dict[str, Any], spec: TaskSpec) -> str | None:
    if not (row["label"].isdigit() and int(row["label"]) < len(row["endings"])):
        return f"label {row['label']!r} does not index one of the {len(row['endings'])} endings"
    return None


def _mmlu_values(row: dict[str, Any], spec: TaskSpec) -> str | None:
    column = spec.data.subset_column
    if column and spec.data.subsets and row[column] not in spec.data.subsets:
        return f"{column} {row[column]!r} is not one of the {len(spec.data.subsets)} MMLU subjects"
    if not 0 <= row["answer"] < len(row["choices"]):
        return f"answer {row['answer']} does not index one of the {len(row['choices'])} choices"
    return None


def _truthfulqa_values(row: dict[str, Any], spec: TaskSpec) -> str | None:
    targets = row["mc2_targets"]
    choices, labels = targets.get("choices"), targets.get("labels")
    if not isinstance(choices, list) or not isinstance(labels, list) or len(choices) != len(labels):
        return "mc2_targets must hold `choices` and `labels` lists of one length"
    if not set(labels) <= {0, 1} or 1 not in labels:
        return "mc2_targets labels must be 0/1 with at least one true answer"
    return None


def _winogrande_values(row: dict[str, Any], spec: TaskSpec) -> str | None:
    return None if row["answer"] in ("1", "2") else f"answer {row['answer']!r} is neither '1' nor '2'"


def _gsm8k_values(row: dict[str, Any], spec: TaskSpec) -> str | None:
    return None if "####" in row["answer"] else "answer has no `#### <number>` final line"


# value checks per suite task key (the suite's six datasets)
_VALUE_CHECKS: dict[str, Callable[[dict[str, Any], TaskSpec], str | None]] = {
    "arc": _arc_values,
    "hellaswag": _hellaswag_values,
    "mmlu": _mmlu_values,
    "truthfulqa": _truthfulqa_values,
    "winogrande": _winogrande_values,
    "gsm8k": _gsm8k_values,
}


def _schema_problem(row: object, columns: dict[str, ColumnType]) -> str | None:
    if not isinstance(row, dict):
        return "a row must be a JSON object"
    for name, kind in columns.items():
        if name not in row:
            return f"column {name!r} missing"
        value = row[name]
        expected = _JSON_TYPES[kind]
        if not isinstance(value, expected) or (kind == "integer" and isinstance(value, bool)):
            return f"column {name!r} should be {kind}, found {type(value).__name__}"
    return None

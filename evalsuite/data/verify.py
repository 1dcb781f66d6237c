"""`evalsuite data verify`: every split the suite reads, present, complete and well-formed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from evalsuite.data.plan import split_path
from evalsuite.data.rows import row_problem
from evalsuite.errors import DataDirError
from evalsuite.suite import SuiteSpec, TaskSpec


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"  # usable, but the run is partial or not leaderboard-comparable
    ERROR = "error"  # a run needing this split fails


@dataclass(frozen=True)
class Finding:
    level: Level
    file: str
    message: str


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
                why = e.msg.removesuffix(" at")  # "Unterminated string starting at": the position is ours to add
                return Finding(Level.ERROR, rel, f"line {line_no}: not JSON ({why} at column {e.colno})")
            if problem := row_problem(row, spec):
                return Finding(Level.ERROR, rel, f"line {line_no}: {problem}")
    if rows == 0:
        return Finding(Level.ERROR, rel, "empty file")
    if rows > full_rows:
        return Finding(Level.ERROR, rel, f"{rows} rows, more than the full split's {full_rows}: another dataset?")
    if rows != full_rows:
        return Finding(Level.WARN, rel, f"{rows} of {full_rows} rows: runs over it are partial")
    return Finding(Level.OK, rel, f"{rows} rows")

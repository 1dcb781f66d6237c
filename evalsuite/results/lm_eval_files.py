"""lm-eval's formats, read and written here only: what `simple_evaluate` returns (the keys evalsuite reads), the
per-sample files a run folder keeps in lm-eval's layout, and lm-eval's request-cache files. Every other module
goes through these functions (JSON only: lm-eval itself is never imported here); the keys and names are
checked against the installed lm-eval by tests/test_dependency_contract.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.errors import ResultsSchemaError

LM_EVAL_DIR = "lm_eval"  # a run folder's copy of lm-eval's own output
REQUEST_CACHE = "requests"  # lm-eval's request cache of one suite task: `requests-<key>` + `_rank<N>.db`
_CACHE_TABLE = "unnamed"  # SqliteDict's default table, where lm-eval's CachingLM keeps answered requests


# ------------------------------------------------------------------------ what simple_evaluate returns


def subtask_names(output: Mapping[str, Any], group: str) -> list[str]:
    """The lm-eval tasks a group ran (MMLU: its 57 subjects), in lm-eval's order; [] if none."""
    return list(output.get("group_subtasks", {}).get(group) or [])


def shots(output: Mapping[str, Any], task: str) -> int | None:
    return output.get("n-shot", {}).get(task)


def metrics(output: Mapping[str, Any], task: str) -> Mapping[str, Any]:
    """The task's row of `results`: `"<metric>,<filter>"` -> value (numpy floats, "N/A" stderrs)."""
    return output["results"].get(task, {})


def documents_scored(output: Mapping[str, Any], task: str) -> int:
    """Documents the task scored (after --limit or a preset): n-samples' `effective` count."""
    return int(output["n-samples"][task]["effective"])


def model_sha(output: Mapping[str, Any]) -> str | None:
    """The Hub commit lm-eval resolved for the model (None off the Hub)."""
    return output.get("config", {}).get("model_sha") or None


# ------------------------------------------------------------------------------- a run folder's files


def output_file(task_key: str) -> str:
    """lm-eval's output of one suite task, as a run folder keeps it under LM_EVAL_DIR."""
    return f"{task_key}.json"


def samples_file(task: str) -> str:
    """The per-document samples of one lm-eval task, named as lm-eval's --log_samples names them."""
    return f"samples_{task}.jsonl"


def output_text(output: Mapping[str, Any]) -> str:
    """lm-eval's output of one task (plain JSON values) as a run folder keeps it."""
    return json.dumps(output, indent=2, ensure_ascii=False)


def samples_text(samples: list[dict[str, Any]]) -> str:
    """`samples` (plain JSON values) as a samples file: one JSON object per line."""
    return "".join(json.dumps(sample, ensure_ascii=False) + "\n" for sample in samples)


def sample_scores(run_dir: Path, task: str, metric: str, filter_name: str) -> dict[tuple[int, str], float] | None:
    """(doc_id, doc_hash) -> the metric's per-document score in a run folder's samples file of `task`, for
    the samples of `filter_name`; None when the run kept no samples."""
    path = run_dir / LM_EVAL_DIR / samples_file(task)
    if not path.is_file():
        return None
    scores = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        sample = json.loads(line)
        if sample.get("filter", "none") != filter_name:
            continue
        scores[(int(sample["doc_id"]), str(sample.get("doc_hash", "")))] = float(sample[metric])
    return scores


@dataclass(frozen=True)
class LoggedDocument:
    """One document of a run's samples file, as lm-eval scored it: the requests it sent and what came back."""

    task: str  # the lm-eval task (`arc_challenge`, `mmlu_anatomy`)
    doc_id: int
    doc: Mapping[str, Any]  # the dataset row
    contexts: tuple[str, ...]  # one per request (Winogrande: one per option; else all the same)
    continuations: tuple[str, ...]  # multiple choice: one per choice; generation: ()
    loglikelihoods: tuple[tuple[float, bool], ...]  # multiple choice: (log-likelihood, is greedy) per choice
    generated: str | None  # generation: the model's text, before the answer was extracted
    answer: str | None  # generation: the extracted answer (the filter's output)
    target: Any  # lm-eval's target (an index, or the reference text)
    metrics: Mapping[str, float]  # the document's value of each metric the task computes


def logged_documents(run_dir: Path, task: str, filter_name: str) -> list[LoggedDocument] | None:
    """The documents of a run folder's samples file of lm-eval task `task`, for `filter_name`'s samples; None
    when the run kept no samples."""
    path = run_dir / LM_EVAL_DIR / samples_file(task)
    if not path.is_file():
        return None
    documents = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsSchemaError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})") from e
    for number, line in enumerate(lines, start=1):
        try:
            document = _logged_document(task, json.loads(line), filter_name)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:  # truncated, or not lm-eval's
            why = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
            raise ResultsSchemaError(
                f"{path}: line {number} is not a sample as lm-eval writes them ({why}); the file is damaged: run "
                "the task again with --log-samples"
            ) from e
        if document is not None:
            documents.append(document)
    return documents


def _logged_document(task: str, sample: Any, filter_name: str) -> LoggedDocument | None:
    """One line of a samples file as a LoggedDocument; None when it is another filter's."""
    if sample.get("filter", "none") != filter_name:
        return None
    requests = [list(arguments) for arguments in sample["arguments"]]  # [context, continuation or kwargs]
    generative = any(isinstance(r[1], Mapping) for r in requests if len(r) > 1)
    responses = sample.get("filtered_resps") or []
    return LoggedDocument(
        task=task,
        doc_id=int(sample["doc_id"]),
        doc=sample.get("doc") or {},
        contexts=tuple(str(r[0]) for r in requests),
        continuations=() if generative else tuple(str(r[1]) for r in requests),
        loglikelihoods=() if generative else tuple((float(r[0]), bool(r[1])) for r in responses),
        generated=str(sample["resps"][0][0]) if generative else None,
        answer=str(responses[0]) if generative and responses else None,
        target=sample.get("target"),
        metrics={m: float(sample[m]) for m in sample.get("metrics", []) if m in sample},
    )


# ------------------------------------------------------------------------------------- request cache


def request_cache_path(folder: Path, task_key: str) -> str:
    """What to pass lm-eval as `use_cache` for one suite task (lm-eval appends `_rank<N>.db`)."""
    return str(folder / f"{REQUEST_CACHE}-{task_key}")


def request_cache_task(db: Path) -> str:
    """The suite task key of a request cache file (`requests-<key>_rank<N>.db`)."""
    return db.name.removeprefix(f"{REQUEST_CACHE}-").rsplit("_rank", 1)[0]


def _request_caches(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{REQUEST_CACHE}-*_rank*.db"))


def _answered(db: Path) -> int:
    """Requests answered in one cache (0 for a database lm-eval has not made its table in yet). sqlite3's
    DatabaseError when the file is not a database."""
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if _CACHE_TABLE not in tables:
            return 0
        return int(conn.execute(f"SELECT COUNT(*) FROM {_CACHE_TABLE}").fetchone()[0])


def cached_request_counts(folder: Path) -> dict[str, int]:
    """Suite task key -> requests answered in lm-eval's request caches under `folder` (all ranks); a damaged
    cache counts none (`damaged_request_caches` names it)."""
    import sqlite3

    counts: dict[str, int] = {}
    for db in _request_caches(folder):
        task_key = request_cache_task(db)
        try:
            answered = _answered(db)
        except sqlite3.DatabaseError:
            answered = 0
        counts[task_key] = counts.get(task_key, 0) + answered
    return counts


def damaged_request_caches(folder: Path) -> dict[Path, str]:
    """The request caches under `folder` that are not readable databases, and why (random bytes, a truncated
    file): their answers cannot be reused."""
    import sqlite3

    damaged = {}
    for db in _request_caches(folder):
        try:
            _answered(db)
        except sqlite3.DatabaseError as e:
            damaged[db] = f"{type(e).__name__}: {e}"
    return damaged

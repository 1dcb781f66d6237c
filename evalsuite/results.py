"""The results file: schema, building it from lm-eval's output, aggregation, and atomic read/write.

lm-eval's result keys ("acc_norm,none", "acc_norm_stderr,none") are parsed here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evalsuite import lm_eval_files
from evalsuite.errors import OutputDirError, ResultsSchemaError, RunError
from evalsuite.files import staging_folder
from evalsuite.lm_eval_files import LM_EVAL_DIR
from evalsuite.model_ref import ModelSource
from evalsuite.protocol import Protocol
from evalsuite.suite import MetricKey, TaskSpec

# Do not change the meaning of a field without incrementing this (and adding a migration to MIGRATIONS).
SCHEMA_VERSION = 2
RESULTS_FILE = "results.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Backend(StrEnum):
    """How log-likelihood requests reach the model. Both give the same choices and values (to float rounding)."""

    SHARED_PREFIX = "shared-prefix"  # evalsuite.backend: each shared prefix forwarded once
    LM_EVAL_HF = "lm-eval-hf"  # lm-eval's own HFLM, request by request


class ModelInfo(_Model):
    id: str = Field(description="Hub id, or the folder/file name of a local model")
    source: ModelSource
    location: str = Field(description="Hub id or absolute path as loaded")
    revision: str | None = Field(description="revision asked for (MODEL@revision)")
    sha: str | None = Field(description="Hub commit sha resolved by lm-eval, or sha256 of a .gguf file")
    dtype: str
    parameters: int | None


class DataFileInfo(_Model):
    split: str
    path: str
    sha256: str
    rows: int


class FewshotInfo(_Model):
    split: str | None
    sampler: str | None
    fallback: bool = Field(description="the suite's few-shot split was missing; see note")
    note: str = ""


# What a reader may believe of a number: a score is a finite fraction, a stderr finite and >= 0. A file that
# breaks these (hand-edited, truncated, written by a bug) is refused on reading, never rendered or compared.
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Stderr = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
# h6_average is stored rounded by JSON's float repr only; anything further off than this was not computed here.
AVERAGE_TOLERANCE = 1e-9


class SubtaskScore(_Model):
    lm_eval_task: str
    value: Fraction
    stderr: Stderr | None
    documents: Count


class TaskResult(_Model):
    key: str
    display_name: str
    lm_eval_group: str
    lm_eval_tasks: list[str]
    num_fewshot: int = Field(description="as lm-eval actually ran it (checked against the suite)")
    metric: MetricKey
    aggregation: Literal["single", "macro_mean"]
    value: Fraction = Field(description="fraction in [0, 1]; macro mean over subtasks for MMLU")
    stderr: Stderr | None
    weighted_value: Fraction | None = Field(
        None, description="size-weighted mean over subtasks (lm-eval's own group number), when aggregated"
    )
    documents: Count = Field(description="documents scored")
    full_documents: Count = Field(description="documents in the full eval split")
    fewshot: FewshotInfo
    data_files: list[DataFileInfo] = Field(description="empty when lm-eval loaded the Hub dataset")
    leaderboard_comparable: bool = Field(
        description="every request is the leaderboard's for its document (protocol leaderboard-v1, the "
        "leaderboard's complete splits, no few-shot fallback); how many documents were scored is `documents`, "
        "and the run's status"
    )
    not_comparable_reasons: list[str] = Field(
        default_factory=list, description="why the requests are not the leaderboard's (empty when comparable)"
    )
    prompt_sha256: str | None = Field(
        None, description="sha256 over every request of the task, document by document (protocol.prompt_fingerprint)"
    )
    seconds: float
    subtasks: list[SubtaskScore] = Field(default_factory=list)
    subset_sha256: str | None = Field(
        None, description="sha256 of the scored document indices when a preset chose them (compare checks it)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> TaskResult:
        if self.documents > self.full_documents:
            raise ValueError(f"{self.key}: {self.documents} documents scored of a split of {self.full_documents}")
        if self.leaderboard_comparable and self.not_comparable_reasons:
            raise ValueError(f"{self.key}: leaderboard_comparable is true but reasons say it is not")
        return self

    @property
    def is_full(self) -> bool:
        return self.documents == self.full_documents


class Seeds(_Model):
    """lm-eval's four seeds (python random, numpy, torch, few-shot sampler); the defaults are lm-eval's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    random: int = 0
    numpy: int = 1234
    torch: int = 1234
    fewshot: int = 1234

    @classmethod
    def all(cls, seed: int) -> Seeds:
        return cls(random=seed, numpy=seed, torch=seed, fewshot=seed)


class RunSettings(_Model):
    protocol: Protocol = Field(
        description="what the model was asked: leaderboard-v1 (the leaderboard's requests) "
        "or lm-eval (lm-eval 0.4's task definitions)"
    )
    limit: int | None
    batch_size: int | str
    batch_sizes_used: list[int] = Field(default_factory=list, description="what --batch-size auto found")
    add_bos_token: bool
    chat_template: bool = False
    seeds: Seeds
    preset: str | None = Field(None, description="the document-subset preset (e.g. nightly), if any")
    model_args: dict[str, Any]
    data_source: Literal["hub", "local"]
    data_dir: str | None
    device: str
    backend: Backend = Field(
        Backend.LM_EVAL_HF,
        description="how log-likelihoods were computed: shared-prefix (evalsuite) or lm-eval-hf; "
        "same choices, values equal to float rounding",
    )
    processes: int = Field(
        1, description="data-parallel processes (accelerate launch, torchrun), each scoring a share of documents"
    )


class Versions(_Model):
    evalsuite: str
    lm_eval: str
    transformers: str
    torch: str
    datasets: str
    python: str


class Timing(_Model):
    model_load_seconds: float
    total_seconds: float


class SuiteResults(_Model):
    schema_version: int = Field(default=SCHEMA_VERSION, description="do not change fields' meaning without bumping")
    run_id: str
    created_at: datetime
    suite: str
    suite_version: int
    model: ModelInfo
    tasks: list[TaskResult]
    status: Literal["complete", "partial"]
    partial_reasons: list[str] = Field(default_factory=list)
    h6_average: Fraction | None = Field(description="mean of the six values; only when the run is complete")
    leaderboard_comparable: bool = Field(description="complete, and every task leaderboard-comparable")
    settings: RunSettings
    versions: Versions
    timing: Timing

    @property
    def is_complete(self) -> bool:
        """Every task on its full split: the run has an H6 average and can go on a card."""
        return self.status == "complete"

    @model_validator(mode="after")
    def _consistent(self) -> SuiteResults:
        """Recompute what is derived; a file whose stored summary disagrees is refused, not believed."""
        keys = [t.key for t in self.tasks]
        if len(set(keys)) != len(keys):
            raise ValueError(f"a task appears twice ({', '.join(sorted(k for k in set(keys) if keys.count(k) > 1))})")
        if (self.status == "complete") != (self.h6_average is not None):
            raise ValueError(f"status {self.status} with h6_average {self.h6_average}: a complete run has one, "
                             "a partial run none")  # fmt: skip
        if self.h6_average is not None:
            mean = h6_average(self.tasks)
            if abs(self.h6_average - mean) > AVERAGE_TOLERANCE:
                raise ValueError(f"h6_average {self.h6_average} is not the mean of the task values ({mean})")
        comparable = self.status == "complete" and all(t.leaderboard_comparable for t in self.tasks)
        if self.leaderboard_comparable and not comparable:
            raise ValueError("leaderboard_comparable is true but the run is partial or a task is not comparable")
        return self

    def task(self, key: str) -> TaskResult | None:
        return next((t for t in self.tasks if t.key == key), None)


# ----------------------------------------------------------------------------------- from lm-eval


def _float(value: Any) -> float | None:
    """lm-eval reports numpy floats, and "N/A" for a stderr it could not compute."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _leaf_scores(spec: TaskSpec, output: dict[str, Any]) -> list[SubtaskScore]:
    leaves = lm_eval_files.subtask_names(output, spec.lm_eval_group)
    if not leaves:
        raise RunError(f"lm-eval output has no subtasks for group {spec.lm_eval_group!r}")
    scores = []
    for leaf in leaves:
        shots = lm_eval_files.shots(output, leaf)
        if shots != spec.num_fewshot:
            raise RunError(f"{leaf} ran {shots}-shot but the suite says {spec.num_fewshot}-shot")
        row = lm_eval_files.metrics(output, leaf)
        if spec.metric.lm_eval_key not in row:
            found = ", ".join(k for k in row if "," in k and "_stderr" not in k)
            raise RunError(f"{leaf}: lm-eval reported no {spec.metric} (found: {found or 'nothing'})")
        value = _float(row[spec.metric.lm_eval_key])
        if value is None:
            raise RunError(f"{leaf}: lm-eval reported {spec.metric} = {row[spec.metric.lm_eval_key]} (not a number)")
        scores.append(
            SubtaskScore(
                lm_eval_task=leaf,
                value=value,
                stderr=_float(row.get(spec.metric.lm_eval_stderr_key)),
                documents=lm_eval_files.documents_scored(output, leaf),
            )
        )
    return scores


def aggregate(spec: TaskSpec, scores: list[SubtaskScore]) -> tuple[float, float | None, float | None]:
    """(value, stderr, weighted value) of a task from its leaves.

    macro_mean is the leaderboard's MMLU number: the plain mean of the subjects. Its stderr treats the
    subjects as independent: sqrt(sum se_i^2) / k. The weighted value is lm-eval's doc-weighted mean.
    """
    if spec.aggregation == "single":
        if len(scores) != 1:
            raise RunError(f"{spec.key}: expected one lm-eval task, got {len(scores)}")
        return scores[0].value, scores[0].stderr, None
    k = len(scores)
    value = sum(s.value for s in scores) / k
    stderrs = [s.stderr for s in scores if s.stderr is not None]
    stderr = math.sqrt(sum(se * se for se in stderrs)) / k if len(stderrs) == k else None
    total = sum(s.documents for s in scores)
    weighted = sum(s.value * s.documents for s in scores) / total
    return value, stderr, weighted


def task_result(
    spec: TaskSpec,
    output: dict[str, Any],
    *,
    fewshot: FewshotInfo,
    data_files: list[DataFileInfo],
    leaderboard_differences: list[str],
    seconds: float,
    document_ids: dict[str, list[int]] | None = None,
    prompt_sha256: str | None = None,
) -> TaskResult:
    scores = _leaf_scores(spec, output)
    value, stderr, weighted = aggregate(spec, scores)
    documents = sum(s.documents for s in scores)
    return TaskResult(
        key=spec.key,
        display_name=spec.display_name,
        lm_eval_group=spec.lm_eval_group,
        lm_eval_tasks=[s.lm_eval_task for s in scores],
        num_fewshot=spec.num_fewshot,
        metric=spec.metric,
        aggregation=spec.aggregation,
        value=value,
        stderr=stderr,
        weighted_value=weighted,
        documents=documents,
        full_documents=spec.full_eval_rows,
        fewshot=fewshot,
        data_files=data_files,
        leaderboard_comparable=not leaderboard_differences,
        not_comparable_reasons=leaderboard_differences,
        prompt_sha256=prompt_sha256,
        seconds=round(seconds, 3),
        subtasks=scores if spec.aggregation != "single" else [],
        subset_sha256=_subset_digest(document_ids),
    )


def _subset_digest(document_ids: dict[str, list[int]] | None) -> str | None:
    if document_ids is None:
        return None
    return hashlib.sha256(json.dumps(document_ids, sort_keys=True).encode()).hexdigest()


def completeness(
    suite_keys: tuple[str, ...], tasks: list[TaskResult], limit: int | None, preset: str | None = None
) -> list[str]:
    """Why a run is partial (empty when complete): the H6 average needs all six tasks on full data."""
    reasons = [f"--preset {preset} (a fixed subset of documents)"] if preset else []
    ran = {t.key for t in tasks}
    if missing := [k for k in suite_keys if k not in ran]:
        reasons.append(f"tasks not run: {', '.join(missing)}")
    if limit is not None:
        reasons.append(f"--limit {limit}")
    reasons += [f"{t.key}: {t.documents} of {t.full_documents} documents" for t in tasks if not t.is_full]
    return reasons


def h6_average(tasks: list[TaskResult]) -> float:
    return sum(t.value for t in tasks) / len(tasks)


# ------------------------------------------------------------------------------------- read / write


def write_run(
    results: SuiteResults,
    lm_eval_outputs: dict[str, str],
    output_dir: Path,
    model_dir_name: str,
) -> Path:
    """Write `<output_dir>/<model_dir_name>/<run_id>/` all at once: staged, then renamed into place.

    `lm_eval_outputs` maps file names (relative to the run's lm_eval/ folder) to their text. On failure
    nothing is left behind, not even the folders this call created.
    """
    created = _missing_parents(output_dir / model_dir_name)
    final = output_dir / model_dir_name / results.run_id
    staging: Path | None = None
    written = False
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            raise OutputDirError(f"{final} already exists; results are never overwritten")
        staging = staging_folder(final.parent, f".{results.run_id}.")
        (staging / LM_EVAL_DIR).mkdir()
        for name, text in lm_eval_outputs.items():
            (staging / LM_EVAL_DIR / name).write_text(text, encoding="utf-8")
        (staging / RESULTS_FILE).write_text(results.model_dump_json(indent=2) + "\n", encoding="utf-8")
        os.replace(staging, final)
        written = True
        return final
    except OSError as e:
        raise OutputDirError(f"cannot write results under {output_dir}: {e.strerror or e}") from e
    finally:
        if not written:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            for folder in reversed(created):
                try:
                    folder.rmdir()
                except OSError:
                    pass


def _missing_parents(path: Path) -> list[Path]:
    """`path` and its ancestors that do not exist yet, outermost first."""
    missing = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing.append(folder)
    return list(reversed(missing))


def check_output_dir(output_dir: Path) -> None:
    """Fail early, before hours of compute, if results could not be written under `output_dir`."""
    existing = next((p for p in [output_dir, *output_dir.parents] if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise OutputDirError(f"--output-dir {output_dir}: {existing} is not a directory")
    try:
        probe = tempfile.NamedTemporaryFile(dir=existing, prefix=".evalsuite-write-probe-")
    except OSError as e:
        raise OutputDirError(f"--output-dir {output_dir}: {existing} is not writable ({e.strerror})") from e
    probe.close()


def read_results(path: Path) -> SuiteResults:
    """Read a results.json (or a run folder holding one), validated: every score a finite fraction, documents
    within their split, the H6 average the mean of the six. Anything else is one ResultsSchemaError."""
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise ResultsSchemaError(f"{path}: cannot read ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise ResultsSchemaError(f"{path}: not UTF-8 (byte {e.start}); not a results file evalsuite wrote") from e
    except json.JSONDecodeError as e:
        raise ResultsSchemaError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from e
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ResultsSchemaError(f"{path}: not an evalsuite results file (no integer schema_version)")
    if version > SCHEMA_VERSION:
        raise ResultsSchemaError(
            f"{path}: schema_version {version} was written by a newer evalsuite (this one reads "
            f"{SCHEMA_VERSION}); upgrade evalsuite"
        )
    try:
        raw = migrate(raw)
        return SuiteResults.model_validate(raw)
    except (KeyError, TypeError) as e:
        raise ResultsSchemaError(f"{path}: invalid results file of schema_version {version}: {e!r}") from e
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        if where:
            raise ResultsSchemaError(f"{path}: invalid results file at {where}: {message}") from e
        raise ResultsSchemaError(f"{path}: invalid results file: {message}") from e


def run_dirs(path: Path) -> list[Path]:
    """The run folders (holding a results.json) directly under a model's results folder, oldest first."""
    return sorted(p.parent for p in path.glob(f"*/{RESULTS_FILE}") if not p.parent.name.startswith("."))


def locate_run(path: Path, newest_complete: bool) -> tuple[Path, str | None]:
    """The run a path names: a results.json, a run folder, or a model's results folder (`results/org__name`).

    For a model's folder: its newest complete run when `newest_complete` (with a note saying which), else
    an error listing the runs to choose from.
    """
    if not path.is_dir() or (path / RESULTS_FILE).exists():
        return path, None
    runs = run_dirs(path)
    if not runs:
        raise ResultsSchemaError(f"{path}: no {RESULTS_FILE} in it or in its run folders")
    listing = ", ".join(r.name for r in runs[-5:]) + (f" (and {len(runs) - 5} older)" if len(runs) > 5 else "")
    if not newest_complete:
        raise ResultsSchemaError(f"{path} holds {len(runs)} runs ({listing}); give one run folder")
    complete = [r for r in runs if read_results(r).status == "complete"]
    if not complete:
        raise ResultsSchemaError(f"{path} holds no complete run ({listing}); give a run folder and --allow-partial")
    return complete[-1], f"using {complete[-1]}, the newest complete run of {len(runs)}"


# ------------------------------------------------------------------------------------------ migrations


def _v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """v2 records the protocol. Every v1 run asked lm-eval 0.4's requests (its own few-shot draws and GSM8K
    settings), which v1 still called leaderboard-comparable when the few-shot split was complete."""
    raw["settings"]["protocol"] = Protocol.LM_EVAL.value
    reason = "protocol lm-eval: lm-eval 0.4's exemplars and settings, not the leaderboard's (a schema 1 run)"
    for task in raw["tasks"]:
        task["leaderboard_comparable"] = False
        task["not_comparable_reasons"] = [reason]
    raw["leaderboard_comparable"] = False
    return raw


# MIGRATIONS[v - 1] turns a schema v file into a schema v + 1 one; append-only.
MIGRATIONS = [_v1_to_v2]


def migrate(raw: dict[str, Any]) -> dict[str, Any]:
    """A results file's raw JSON, brought from its schema_version to the current one."""
    for step in MIGRATIONS[raw["schema_version"] - 1 :]:
        raw = step(raw)
    raw["schema_version"] = SCHEMA_VERSION
    return raw


def results_json_schema() -> dict[str, Any]:
    return SuiteResults.model_json_schema()

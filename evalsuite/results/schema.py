"""The results file's schema (results.json): pydantic models, validated on reading so that no impossible number
(NaN, > 100 %, an average that is not the mean of the six) is ever rendered or compared.

Do not change the meaning of a field without incrementing SCHEMA_VERSION and adding a migration
(evalsuite/results/migrations.py); `python -m evalsuite.schema` prints the JSON Schema committed in
evalsuite/schema/ (a test fails while it is stale).
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from evalsuite._version import __version__
from evalsuite.model import ModelSource
from evalsuite.records import Record
from evalsuite.settings import Dtype, Precision, Seeds, WeightType, loaded_as
from evalsuite.suite import FewshotSampler, MetricKey, Protocol

# Do not change the meaning of a field without incrementing this (and adding a migration to MIGRATIONS).
SCHEMA_VERSION = 4

# A batch size as results files record it, in every file kind: a positive int, "auto" or "auto:N".
RecordedBatchSize = Annotated[int, Field(ge=1)] | Annotated[str, Field(pattern=r"^auto(:[1-9][0-9]*)?$")]


class ModelInfo(Record):
    id: str = Field(description="Hub id, or the folder/file name of a local model")
    source: ModelSource
    location: str = Field(description="Hub id or absolute path as loaded")
    revision: str | None = Field(description="revision asked for (MODEL@revision)")
    sha: str | None = Field(description="Hub commit sha resolved by lm-eval, or sha256 of a .gguf file")
    dtype: Dtype = Field(description="the dtype the model loaded in (under 8bit and 4bit, what its layers compute in)")
    parameters: int | None
    precision: Precision = Field(
        description="the leaderboard's precision: float16, bfloat16, 8bit, 4bit (bitsandbytes), GPTQ; or float32"
    )
    weight_type: WeightType = Field(
        WeightType.ORIGINAL,
        description="the leaderboard's weight type: Original, Adapter (a PEFT adapter: this model, over "
        "base_model) or Delta (this model's weights added to base_model's)",
    )
    base_model: str | None = Field(None, description="the base model of an Adapter or a Delta")
    base_location: str | None = Field(None, description="the base model's Hub id or absolute path as loaded")
    base_revision: str | None = Field(None, description="the base model's revision asked for")
    base_sha: str | None = Field(None, description="the base model's Hub commit (or .gguf sha256)")

    @property
    def loaded_as(self) -> str:
        """How the model ran, as tables and cards say it: `bfloat16`; `4bit, computing in float32`; `float16,
        adapter over ORG/BASE`."""
        return loaded_as(self.precision, self.dtype, self.weight_type, self.base_model)

    def weights_label(self, with_precision: bool = False) -> str:
        """The precision and weight type where they are not a whole model in 16 or 32 bits (`4bit`, `Adapter`),
        else empty: what a leaderboard row or a history line adds after the model's name. `with_precision`:
        the precision always (`bfloat16`), for a model shown at several."""
        parts = [str(self.precision)] if self.precision.quantized or with_precision else []
        return ", ".join(parts + ([self.weight_type.value] if self.weight_type is not WeightType.ORIGINAL else []))


class DataFileInfo(Record):
    split: str
    path: str
    sha256: str
    rows: int


class FewshotInfo(Record):
    split: str | None
    sampler: FewshotSampler | None
    fallback: bool = Field(description="the suite's few-shot split was missing; see note")
    note: str = ""


# What a reader may believe of a number: a score is a finite fraction, a stderr finite and >= 0. A file that
# breaks these (hand-edited, truncated, written by a bug) is refused on reading, never rendered or compared.
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Stderr = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
# h6_average is stored rounded by JSON's float repr only; anything further off than this was not computed here.
AVERAGE_TOLERANCE = 1e-9


class SubtaskScore(Record):
    lm_eval_task: str
    value: Fraction
    stderr: Stderr | None
    documents: Count


class TaskResult(Record):
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


class RunSettings(Record):
    protocol: Protocol = Field(
        description="what the model was asked: leaderboard-v1 (the leaderboard's requests) "
        "or lm-eval (lm-eval 0.4's task definitions)"
    )
    limit: int | None
    batch_size: RecordedBatchSize
    batch_sizes_used: list[int] = Field(default_factory=list, description="what --batch-size auto found")
    add_bos_token: bool
    chat_template: bool = False
    seeds: Seeds
    preset: str | None = Field(None, description="the document-subset preset (e.g. nightly), if any")
    model_args: dict[str, Any] = Field(description="the model's arguments as lm-eval recorded them")
    data_source: Literal["hub", "local"]
    data_dir: str | None
    device: str
    backend: str = Field(
        "lm-eval-hf",
        description="the backend that ran the model (evalsuite.engine.backends): shared-prefix, lm-eval-hf or "
        "another registered one; files before the backend was recorded ran lm-eval-hf",
    )
    backend_options: dict[str, Any] = Field(
        default_factory=dict,
        description="the backend's typed options, every one with its value (shared-prefix: pack_tokens, "
        "generation); files migrated from schema 2 hold those their model_args gave",
    )
    processes: int = Field(
        1, description="data-parallel processes (accelerate launch, torchrun), each scoring a share of documents"
    )


class Versions(Record):
    """The versions a file was written with (every command records them the same way)."""

    evalsuite: str
    lm_eval: str
    transformers: str
    torch: str
    datasets: str
    python: str

    @classmethod
    def installed(cls) -> Versions:
        """The installed versions, read from the packages' metadata (nothing is imported)."""
        from importlib.metadata import version

        return cls(
            evalsuite=__version__,
            lm_eval=version("lm_eval"),
            transformers=version("transformers"),
            torch=version("torch"),
            datasets=version("datasets"),
            python=platform.python_version(),
        )


class Timing(Record):
    model_load_seconds: float
    total_seconds: float


class SuiteResults(Record):
    """A run's results file (results.json): the model, every task's result, the settings, the versions, and the
    H6 average when the run is complete. Validated on every read: nothing impossible is ever believed."""

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


def h6_average(tasks: Sequence[TaskResult]) -> float:
    """The leaderboard's average: the plain mean of the tasks' values."""
    return sum(t.value for t in tasks) / len(tasks)

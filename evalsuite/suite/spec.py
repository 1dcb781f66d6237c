"""The suite spec: which tasks H6 has and how each is run, scored and shown (tasks/suite.yaml)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from evalsuite.errors import SuiteConfigError, invalid_file
from evalsuite.paths import bundled_dir
from evalsuite.records import FrozenRecord
from evalsuite.suite.protocol import Protocol


class MetricKey(FrozenRecord):
    """An lm-eval metric: its name and the filter it was computed after ("none" for most tasks)."""

    name: str
    filter: str = "none"

    @property
    def lm_eval_key(self) -> str:
        return f"{self.name},{self.filter}"

    @property
    def lm_eval_stderr_key(self) -> str:
        return f"{self.name}_stderr,{self.filter}"

    @property
    def display(self) -> str:
        """As a person writes it: `acc_norm`; the filter only where there is one (`exact_match (strict-match)`)."""
        return self.name if self.filter == "none" else f"{self.name} ({self.filter})"

    def __str__(self) -> str:
        return self.lm_eval_key


class CardFields(FrozenRecord):
    """model-index fields as the leaderboard bot wrote them (PROTOCOL.md 5.2)."""

    dataset_type: str
    dataset_config: str | None = None
    dataset_split: str
    metric_type: str
    metric_name: str | None = None


class HubBenchmark(FrozenRecord):
    """Where the Hub's `.eval_results/*.yaml` files put a task: a benchmark dataset the Hub registered (it has
    an eval.yaml listing its task ids), the task id, the scale of the value, and whether the dataset was seen
    registered when the spec was written (offline, only those are written)."""

    dataset_id: str
    task_id: str
    scale: Literal["percent", "fraction"] = "percent"
    registered: bool

    def value(self, fraction: float) -> float:
        """A score (a fraction in [0, 1]) on this benchmark's scale: percent with 2 decimals, or 4 decimals."""
        return round(100 * fraction, 2) if self.scale == "percent" else round(fraction, 4)


ColumnType = Literal["string", "integer", "array", "object"]


class DataLayout(FrozenRecord):
    """Where a task's rows live: on the Hub, and in an offline snapshot as <dir>/<split>.jsonl."""

    hub_dataset: str
    hub_config: str | None = None
    hub_all_config: str | None = Field(
        None, description="the Hub config holding every subset in one split, in the Hub's order (MMLU's `all`)"
    )
    dir: str
    eval_split: str
    subset_column: str | None = None
    subsets: tuple[str, ...] = Field((), description="the values subset_column takes (MMLU: its 57 subjects)")
    rows: dict[str, int] = Field(description="full row count of every split the suite reads")
    columns: dict[str, ColumnType]


# random: lm-eval's seeded sampler; first_n: the split's first rows in order; leaderboard-walk: the draws of
# the leaderboard's harness (evalsuite.protocol), which replace `random` under protocol leaderboard-v1.
FewshotSampler = Literal["random", "first_n", "leaderboard-walk"]


class TaskSpec(FrozenRecord):
    """One task of the suite (tasks/suite.yaml): its lm-eval group, shots, metric, data and leaderboard column."""

    key: str
    column: str
    display_name: str
    lm_eval_group: str
    num_fewshot: int = Field(ge=0)
    fewshot_split: str | None = None
    fewshot_sampler: FewshotSampler | None = None
    metric: MetricKey
    aggregation: Literal["single", "macro_mean"]
    card: CardFields
    hub_benchmark: HubBenchmark | None = None
    data: DataLayout
    lm_eval_overrides: dict[str, Any] = Field(
        default_factory=dict, description="lm-eval task-config keys a protocol sets on every member of the group"
    )

    @model_validator(mode="after")
    def _fewshot_is_consistent(self) -> TaskSpec:
        if self.num_fewshot > 0 and (self.fewshot_split is None or self.fewshot_sampler is None):
            raise ValueError(f"task {self.key!r}: num_fewshot > 0 needs fewshot_split and fewshot_sampler")
        for split in self.needed_splits:
            if split not in self.data.rows:
                raise ValueError(f"task {self.key!r}: data.rows has no count for split {split!r}")
        return self

    @property
    def needed_splits(self) -> tuple[str, ...]:
        """Eval split first, then the few-shot split when the task uses one."""
        if self.num_fewshot > 0 and self.fewshot_split and self.fewshot_split != self.data.eval_split:
            return (self.data.eval_split, self.fewshot_split)
        return (self.data.eval_split,)

    @property
    def full_eval_rows(self) -> int:
        return self.data.rows[self.data.eval_split]

    @property
    def hub_config(self) -> str:
        """The Hub config the suite scores (MMLU: `all`, the config holding every subject), as eval.yaml names it."""
        return self.data.hub_all_config or self.data.hub_config or "default"

    def under(self, protocol: ProtocolSpec) -> TaskSpec:
        """This task as `protocol` runs it."""
        override = protocol.tasks.get(self.key, ProtocolTask())
        sampler = self.fewshot_sampler
        if sampler == "random" and protocol.exemplars == "leaderboard-walk":
            sampler = "leaderboard-walk"
        return self.model_copy(
            update={
                "fewshot_sampler": sampler,
                "metric": override.metric or self.metric,
                "lm_eval_overrides": dict(override.lm_eval),
            }
        )


class ProtocolTask(FrozenRecord):
    """What a protocol changes in one task beyond its exemplars."""

    metric: MetricKey | None = None
    lm_eval: dict[str, Any] = Field(default_factory=dict, description="lm-eval task-config keys to set")


class ProtocolSpec(FrozenRecord):
    summary: str
    exemplars: Literal["lm-eval", "leaderboard-walk"]
    tasks: dict[str, ProtocolTask] = Field(default_factory=dict)


class Preset(FrozenRecord):
    """A fixed subset of documents: `documents[key]` per lm-eval task (per subject for MMLU)."""

    seed: int
    documents: dict[str, int]

    def document_ids(self, lm_eval_task: str, task_key: str, available: int) -> list[int]:
        """The eval-document indices this preset scores for one lm-eval task holding `available` documents."""
        wanted = min(self.documents[task_key], available)
        return sorted(random.Random(f"{self.seed}:{lm_eval_task}").sample(range(available), wanted))


class SuiteSpec(FrozenRecord):
    """The suite (tasks/suite.yaml): its six tasks, protocols and presets; `for_protocol` resolves one protocol."""

    name: str
    version: int
    title: str
    tasks: tuple[TaskSpec, ...]
    presets: dict[str, Preset] = Field(default_factory=dict)
    protocols: dict[Protocol, ProtocolSpec]
    protocol: Protocol | None = Field(None, description="the protocol `tasks` are resolved for (None: as written)")

    @model_validator(mode="after")
    def _keys_are_unique(self) -> SuiteSpec:
        keys = [t.key for t in self.tasks]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate task keys in {keys}")
        return self

    @model_validator(mode="after")
    def _presets_cover_every_task(self) -> SuiteSpec:
        for name, preset in self.presets.items():
            if sorted(preset.documents) != sorted(self.keys):
                raise ValueError(f"preset {name!r} must give a document count for each task: {', '.join(self.keys)}")
        return self

    @model_validator(mode="after")
    def _protocols_are_complete(self) -> SuiteSpec:
        if missing := [p.value for p in Protocol if p not in self.protocols]:
            raise ValueError(f"protocols: missing {', '.join(missing)}")
        for name, protocol in self.protocols.items():
            if unknown := [k for k in protocol.tasks if k not in self.keys]:
                raise ValueError(f"protocol {name.value!r} names unknown tasks: {', '.join(unknown)}")
        return self

    def for_protocol(self, protocol: Protocol) -> SuiteSpec:
        """The suite with every task as `protocol` runs it (metric, exemplar rule, lm-eval overrides)."""
        if self.protocol is not None:
            if self.protocol is not protocol:
                raise SuiteConfigError(f"the suite is already resolved for protocol {self.protocol.value}")
            return self
        spec = self.protocols[protocol]
        return self.model_copy(update={"tasks": tuple(t.under(spec) for t in self.tasks), "protocol": protocol})

    def preset(self, name: str) -> Preset:
        if name not in self.presets:
            raise SuiteConfigError(f"unknown preset {name!r}; choose from: {', '.join(self.presets) or 'none'}")
        return self.presets[name]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(t.key for t in self.tasks)

    def task(self, key: str) -> TaskSpec:
        for spec in self.tasks:
            if spec.key == key:
                return spec
        raise SuiteConfigError(f"unknown task {key!r}; choose from: {', '.join(self.keys)}")

    def select(self, keys: Sequence[str] | None) -> tuple[TaskSpec, ...]:
        """The tasks named (in suite order), or all of them when `keys` is empty or None."""
        if not keys:
            return self.tasks
        wanted = [self.task(k) for k in keys]  # raises on an unknown key
        return tuple(t for t in self.tasks if t in wanted)


def default_tasks_dir() -> Path:
    return bundled_dir("tasks")


def load_suite(path: Path | None = None) -> SuiteSpec:
    """Read and validate a suite spec (default: the bundled tasks/suite.yaml)."""
    path = path or default_tasks_dir() / "suite.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return SuiteSpec.model_validate(raw)
    except OSError as e:
        raise SuiteConfigError(f"{path}: cannot read the suite spec ({e.strerror})") from e
    except yaml.YAMLError as e:
        raise SuiteConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from e
    except ValidationError as e:
        raise SuiteConfigError(invalid_file(path, "suite spec", e)) from e

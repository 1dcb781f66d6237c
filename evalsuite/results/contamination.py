"""A contamination check's files: `contamination.json` (`ContaminationResults`, JSON Schema committed at
evalsuite/schema/contamination.v1.json) and `items.jsonl` (one `ItemRecord` per item), in
`<output_dir>/<org>__<name>/contamination-<run_id>/` beside the model's runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evalsuite.errors import ResultsSchemaError, invalid_file
from evalsuite.model import ModelSource
from evalsuite.settings import Dtype

CONTAMINATION_SCHEMA_VERSION = 1
CONTAMINATION_FILE = "contamination.json"
ITEMS_FILE = "items.jsonl"
MEANING = (
    "share of items whose real text the target finds likelier than all but a fraction (< threshold) of "
    "paraphrase-like neighbours sampled by the reference: a sign of contamination, not a proof (GSM8K scores "
    "high for many clean models)"
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckedModel(_Model):
    id: str
    source: ModelSource
    location: str
    revision: str | None
    file_sha256: str | None = Field(description="sha256 of a .gguf file")


class ContaminationSettings(_Model):
    items: int = Field(ge=1)
    neighbours: int = Field(ge=2)
    prefix_ratio: float = Field(gt=0, lt=1)
    threshold: float = Field(gt=0, le=1)
    seed: int
    batch_size: int | Literal["auto"] = Field(
        description="rows per scoring forward; auto: as many as fit (halved on out-of-memory)"
    )
    shared_prefix: bool = Field(
        default=True,
        description="prefix forwarded once per item and neighbours scored packed (false: the original's way)",
    )
    dtype: Dtype
    device: str
    data_dir: str | None = Field(description="the offline snapshot read; null: the Hub datasets")


class ContaminationTask(_Model):
    key: str
    column: str = Field(description="the task's short name, as contamination tables head their columns (ARC)")
    display_name: str
    share: float = Field(ge=0, le=1, allow_inf_nan=False, description="share of items with r(x) < threshold")
    reported: str = Field(description="as cards quote it: `result < 0.1, %: 0.06`")
    items: int = Field(ge=1)
    candidates: int = Field(description="eval rows that make an item text")
    skipped_rows: int = Field(description="eval rows the original skips (ARC answer keys outside A-D)")
    seconds: float


class ContaminationResults(_Model):
    schema_version: int = CONTAMINATION_SCHEMA_VERSION
    kind: Literal["contamination"] = "contamination"
    run_id: str
    created_at: datetime
    meaning: str = MEANING
    target: CheckedModel
    reference: CheckedModel
    settings: ContaminationSettings
    tasks: list[ContaminationTask]
    versions: dict[str, str] = Field(
        description="library versions (evalsuite.results.Versions' fields; checks before evalsuite 0.3 hold four)"
    )
    total_seconds: float


class ItemRecord(_Model):
    """One line of items.jsonl: the item, L(x), r(x) and every neighbour's loss under the target."""

    task: str
    row: int = Field(description="the item's row in the eval split, Hub order")
    text: str
    loss: float
    rank: float = Field(description="r(x): the share of neighbours with a lower loss")
    below_threshold: bool
    neighbour_losses: list[float]

    def line(self) -> str:
        return json.dumps(self.model_dump())


def is_contamination(path: Path) -> bool:
    """A contamination check's file or folder (not a run's results)."""
    return path.name == CONTAMINATION_FILE or (path.is_dir() and (path / CONTAMINATION_FILE).is_file())


def read_contamination(path: Path) -> ContaminationResults:
    if path.is_dir():
        path = path / CONTAMINATION_FILE
    try:
        return ContaminationResults.model_validate_json(path.read_bytes())
    except OSError as e:
        raise ResultsSchemaError(f"{path}: cannot read ({e.strerror})") from e
    except ValidationError as e:
        raise ResultsSchemaError(invalid_file(path, "contamination file", e)) from e


def find_contamination(folders: Iterable[Path]) -> list[ContaminationResults]:
    """The contamination checks under the results folders (none is fine)."""
    roots = [root for root in folders if root.is_dir()]
    return [read_contamination(path) for root in roots for path in sorted(root.rglob(CONTAMINATION_FILE))]

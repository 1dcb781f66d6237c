"""A contamination check's files: `contamination.json` (`ContaminationResults`, JSON Schema committed at
evalsuite/schema/contamination.v2.json) and `items.jsonl` (one `ItemRecord` per item), in
`<output_dir>/<org>__<name>/contamination-<run_id>/` beside the model's runs. Settings are recorded in the
types results.json records them in (dtype, batch size, seeds, versions).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from evalsuite.errors import ResultsSchemaError, invalid_file
from evalsuite.files import is_hidden_under
from evalsuite.model import ModelSource
from evalsuite.records import Record
from evalsuite.results.io import read_versioned, recorded_location, write_results_folder
from evalsuite.results.schema import RecordedBatchSize, Versions
from evalsuite.settings import Dtype, Seeds

# Do not change the meaning of a field without incrementing this (and adding a migration to MIGRATIONS below).
CONTAMINATION_SCHEMA_VERSION = 2
CONTAMINATION_FILE = "contamination.json"
ITEMS_FILE = "items.jsonl"
CHECK_FOLDER_PREFIX = "contamination-"  # <model folder>/contamination-<run id>/
MEANING = (
    "share of items whose real text the target finds likelier than all but a fraction (< threshold) of "
    "paraphrase-like neighbours sampled by the reference: a sign of contamination, not a proof (GSM8K scores "
    "high for many clean models)"
)


class CheckedModel(Record):
    id: str
    source: ModelSource
    location: str
    revision: str | None
    file_sha256: str | None = Field(description="sha256 of a .gguf file")


class ContaminationSettings(Record):
    items: int = Field(ge=1)
    neighbours: int = Field(ge=2)
    prefix_ratio: float = Field(gt=0, lt=1)
    threshold: float = Field(gt=0, le=1)
    seeds: Seeds = Field(description="seeds.random shuffles the items, seeds.torch samples the neighbours")
    batch_size: RecordedBatchSize = Field(
        description="rows per scoring forward; auto: as many as fit (halved on out-of-memory)"
    )
    shared_prefix: bool = Field(
        default=True,
        description="prefix forwarded once per item and neighbours scored packed (false: the original's way)",
    )
    dtype: Dtype
    device: str
    data_dir: str | None = Field(description="the offline snapshot read; null: the Hub datasets")
    model_args: dict[str, str] = Field(default_factory=dict, description="from_pretrained's arguments, as given")


class ContaminationTask(Record):
    key: str
    column: str = Field(description="the task's short name, as contamination tables head their columns (ARC)")
    display_name: str
    share: float = Field(ge=0, le=1, allow_inf_nan=False, description="share of items with r(x) < threshold")
    reported: str = Field(description="as cards quote it: `result < 0.1, %: 0.06`")
    items: int = Field(ge=1)
    candidates: int = Field(description="eval rows that make an item text")
    skipped_rows: int = Field(description="eval rows the original skips (ARC answer keys outside A-D)")
    seconds: float


class ContaminationResults(Record):
    """A contamination check's file (contamination.json): both models, the settings, each task's share."""

    schema_version: int = CONTAMINATION_SCHEMA_VERSION
    kind: Literal["contamination"] = "contamination"
    run_id: str
    created_at: datetime
    meaning: str = MEANING
    target: CheckedModel
    reference: CheckedModel
    settings: ContaminationSettings
    tasks: list[ContaminationTask]
    versions: Versions
    total_seconds: float


class ItemRecord(Record):
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


def _v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """v2 records settings in results.json's types: `seed` (one int, for the item shuffle and the neighbour
    sampling alike) becomes the four `seeds`, all that int; `versions` are `Versions`, and v1 checks written
    before evalsuite 0.3 held four of its six fields (the others: "not recorded")."""
    settings = raw["settings"]
    settings["seeds"] = Seeds.all(settings.pop("seed")).model_dump()
    not_recorded = {name: "not recorded" for name in Versions.model_fields}
    raw["versions"] = not_recorded | dict(raw.get("versions") or {})
    return raw


MIGRATIONS = [_v1_to_v2]  # MIGRATIONS[v - 1] turns a v file into a v + 1 one; append-only


def read_contamination(path: Path) -> ContaminationResults:
    """Read a contamination.json (or a check's folder holding one), migrated to the current schema and validated;
    anything else is one ResultsSchemaError."""
    if path.is_dir():
        path = path / CONTAMINATION_FILE
    raw, version = read_versioned(path, "contamination file", CONTAMINATION_SCHEMA_VERSION)
    try:
        for step in MIGRATIONS[version - 1 :]:
            raw = step(raw)
        raw["schema_version"] = CONTAMINATION_SCHEMA_VERSION
        return ContaminationResults.model_validate(raw)
    except (KeyError, TypeError) as e:
        raise ResultsSchemaError(f"{path}: invalid contamination file of schema_version {version}: {e!r}") from e
    except ValidationError as e:
        raise ResultsSchemaError(invalid_file(path, "contamination file", e)) from e


def write_check(
    results: ContaminationResults,
    items_jsonl: str,
    output_dir: Path,
    model_dir_name: str,
    staging_in: Path | None = None,
) -> Path:
    """Write `<output_dir>/<model_dir_name>/contamination-<run_id>/` (contamination.json, items.jsonl: one
    ItemRecord line per item, task by task) all at once; nothing is left behind on failure."""
    files = {ITEMS_FILE: items_jsonl, CONTAMINATION_FILE: results.model_dump_json(indent=2) + "\n"}
    name = f"{CHECK_FOLDER_PREFIX}{results.run_id}"
    return write_results_folder(output_dir, model_dir_name, name, files, staging_in)


def check_locations(model_dir: Path) -> set[str]:
    """The target locations the contamination checks in a model's results folder record."""
    paths = model_dir.glob(f"{CHECK_FOLDER_PREFIX}*/{CONTAMINATION_FILE}")
    return {where for path in paths if (where := recorded_location(path, "target"))}


def find_contamination(folders: Iterable[Path]) -> list[ContaminationResults]:
    """The contamination checks under the results folders (none is fine)."""
    roots = [root for root in folders if root.is_dir()]
    return [
        read_contamination(path)
        for root in roots
        for path in sorted(root.rglob(CONTAMINATION_FILE))
        if not is_hidden_under(path, root)  # a check being written (`.inprogress-*`, `.contamination-*.partial`)
    ]

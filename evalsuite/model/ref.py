"""The MODEL argument: a Hub id with optional @revision, a local HF model folder, or a .gguf file, classified and
checked without loading anything (a .gguf is dequantized when it loads: evalsuite.engine.gguf)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from evalsuite.errors import ModelRefError, param

# Hub ids are `name` or `org/name` (letters, digits, `-`, `_`, `.`); an optional `@revision` follows.
_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?)(?:@(?P<rev>[\w./-]+))?$")
_GGUF_MAGIC = b"GGUF"


class ModelSource(StrEnum):
    HUB = "hub"
    LOCAL = "local"
    GGUF = "gguf"


@dataclass(frozen=True)
class ModelRef:
    """What the user named. `location` is the Hub repo id or an absolute path."""

    source: ModelSource
    location: str
    revision: str | None = None

    @property
    def model_id(self) -> str:
        """The id results are filed under: the Hub id, or the folder/file name of a local model."""
        if self.source is ModelSource.HUB:
            return self.location
        path = Path(self.location)
        return path.stem if self.source is ModelSource.GGUF else path.name

    @property
    def results_dir_name(self) -> str:
        """`<org>__<name>`, as the leaderboard's details datasets name models; `local__<name>` off the Hub (a local
        model's folder is this one unless another location's runs hold it: evalsuite.run.checkpoint.model_folder)."""
        if self.source is ModelSource.HUB:
            org, _, name = self.location.rpartition("/")
            return f"{org or 'hub'}__{name}"
        return f"local__{self.model_id}"

    @property
    def distinct_dir_name(self) -> str:
        """`local__<name>__<8 hex>`: the folder of a local model whose plain `results_dir_name` already holds
        another location's runs (decided by evalsuite.run.checkpoint.model_folder)."""
        return f"{self.results_dir_name}__{location_digest(self.location)}"

    def config_keys(self) -> frozenset[str]:
        """The attributes of a local model folder's config.json (which --model-args may override); none known
        for Hub and GGUF models before they are fetched or converted."""
        if self.source is not ModelSource.LOCAL:
            return frozenset()
        return frozenset(read_config(Path(self.location)))


def location_digest(location: str) -> str:
    """The first 8 hex of the sha256 of a model's location (its absolute path): what tells two local models of
    one name apart, in a results folder's name and a leaderboard's row."""
    return hashlib.sha256(location.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class LoadableModel:
    """What lm-eval's HF backend loads: `pretrained` (Hub id or folder) at `revision`."""

    ref: ModelRef
    pretrained: str
    revision: str | None
    # sha256 of the .gguf file for GGUF models; Hub commit shas are resolved by lm-eval after loading.
    file_sha256: str | None = None


def parse_model_ref(text: str, option: str | None = None) -> ModelRef:
    """Classify MODEL, or the model the parameter `option` names (`delta`); raise ModelRefError for paths that do
    not exist and strings that are no Hub id."""
    named = f"{param(option)} " if option else ""  # a message names the option the model came from
    what = param(option) if option else "MODEL"
    text = text.strip()
    if not text:
        raise ModelRefError(f"{what} is empty: give a Hub id (org/name[@revision]), a model folder or a .gguf file")
    path = Path(text).expanduser()
    looks_like_path = text.startswith((".", "/", "~")) or text.endswith(".gguf") or text.count("/") > 1
    if path.exists():
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ModelRefError(
                    f"{named}{text}: folder has no config.json; point {what} at a Hugging Face model folder"
                )
            read_config(path)
            return ModelRef(ModelSource.LOCAL, str(path.resolve()))
        if path.suffix == ".gguf":
            check_gguf_header(path)
            return ModelRef(ModelSource.GGUF, str(path.resolve()))
        raise ModelRefError(f"{named}{text}: not a model folder or a .gguf file")
    if looks_like_path:
        raise ModelRefError(f"{named}{text}: no such file or directory")
    match = _HUB_ID.match(text)
    if not match:
        raise ModelRefError(f"{named}{text!r} is not a Hub id (org/name[@revision]) nor an existing path")
    return ModelRef(ModelSource.HUB, match["repo"], match["rev"])


def read_config(folder: Path) -> dict[str, Any]:
    """A model folder's config.json, checked for what transformers needs to pick the model class."""
    path = folder / "config.json"
    config = read_json_object(path, "the model")
    if not isinstance(config.get("model_type"), str) or not config["model_type"]:
        raise ModelRefError(
            f"{path} has no model_type, so transformers cannot tell which model class to build; add it "
            '(e.g. "model_type": "llama") or re-download the model'
        )
    return config


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON file holding an object (a config); anything else is one ModelRefError saying to fix `what`."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelRefError(f"{path}: not readable JSON ({e}); fix or re-download {what}") from e
    if not isinstance(value, dict):
        raise ModelRefError(f"{path}: not a JSON object; fix or re-download {what}")
    return value


def check_gguf_header(path: Path) -> None:
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != _GGUF_MAGIC:
        raise ModelRefError(f"{path}: not a GGUF file (bad header); re-download it or pass a model folder")

"""The MODEL argument: a Hub id with optional @revision, a local HF model folder, or a .gguf file.

A .gguf file is dequantized once into a safetensors folder in evalsuite's cache, keyed by the file's
sha256, so later runs load it like any local model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from evalsuite.errors import ModelRefError
from evalsuite.paths import cache_dir

log = logging.getLogger(__name__)

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
        """`<org>__<name>`, as the leaderboard's details datasets name models; `local__<name>` off the Hub."""
        if self.source is ModelSource.HUB:
            org, _, name = self.location.rpartition("/")
            return f"{org or 'hub'}__{name}"
        return f"local__{self.model_id}"

    def config_keys(self) -> frozenset[str]:
        """The attributes of a local model folder's config.json (which --model-args may override); none known
        for Hub and GGUF models before they are fetched or converted."""
        if self.source is not ModelSource.LOCAL:
            return frozenset()
        return frozenset(read_config(Path(self.location)))


@dataclass(frozen=True)
class LoadableModel:
    """What lm-eval's HF backend loads: `pretrained` (Hub id or folder) at `revision`."""

    ref: ModelRef
    pretrained: str
    revision: str | None
    # sha256 of the .gguf file for GGUF models; Hub commit shas are resolved by lm-eval after loading.
    file_sha256: str | None = None


def parse_model_ref(text: str) -> ModelRef:
    """Classify MODEL; raise ModelRefError for paths that do not exist and strings that are no Hub id."""
    text = text.strip()
    if not text:
        raise ModelRefError("MODEL is empty: give a Hub id (org/name[@revision]), a model folder or a .gguf file")
    path = Path(text).expanduser()
    looks_like_path = text.startswith((".", "/", "~")) or text.endswith(".gguf") or text.count("/") > 1
    if path.exists():
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ModelRefError(f"{text}: folder has no config.json; point MODEL at a Hugging Face model folder")
            read_config(path)
            return ModelRef(ModelSource.LOCAL, str(path.resolve()))
        if path.suffix == ".gguf":
            check_gguf_header(path)
            return ModelRef(ModelSource.GGUF, str(path.resolve()))
        raise ModelRefError(f"{text}: not a model folder or a .gguf file")
    if looks_like_path:
        raise ModelRefError(f"{text}: no such file or directory")
    match = _HUB_ID.match(text)
    if not match:
        raise ModelRefError(f"{text!r} is not a Hub id (org/name[@revision]) nor an existing path")
    return ModelRef(ModelSource.HUB, match["repo"], match["rev"])


def read_config(folder: Path) -> dict[str, Any]:
    """A model folder's config.json, checked for what transformers needs to pick the model class."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelRefError(f"{path}: not readable JSON ({e}); fix or re-download the model") from e
    if not isinstance(config, dict):
        raise ModelRefError(f"{path}: not a JSON object; fix or re-download the model")
    if not isinstance(config.get("model_type"), str) or not config["model_type"]:
        raise ModelRefError(
            f"{path} has no model_type, so transformers cannot tell which model class to build; add it "
            '(e.g. "model_type": "llama") or re-download the model'
        )
    return config


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def check_hub_access(ref: ModelRef, hub_dataset: str | None) -> None:
    """Before anything loads: one line when the run needs the Hub (a Hub model; datasets without --data-dir,
    `hub_dataset` being one of them) and cannot have it, instead of the libraries' retries and tracebacks.

    A model the Hub does not know (or that needs a login) is caught here too.
    """
    needs_model = ref.source is ModelSource.HUB
    if _truthy(os.environ.get("HF_DATASETS_OFFLINE")):
        hub_dataset = None  # the user says the datasets are cached
    if not needs_model and hub_dataset is None:
        return
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    cached = needs_model and isinstance(try_to_load_from_cache(ref.location, "config.json", revision=ref.revision), str)
    if _truthy(os.environ.get("HF_HUB_OFFLINE")):
        if needs_model and not cached:
            raise ModelRefError(
                f"HF_HUB_OFFLINE is set and {ref.location} is not in the Hugging Face cache; unset it, or download "
                f"the model (`hf download {ref.location}`) and pass its folder"
            )
        return
    api = HfApi()
    try:
        if needs_model:
            api.model_info(ref.location, revision=ref.revision, timeout=10)
        else:
            api.dataset_info(hub_dataset, timeout=10)  # type: ignore[arg-type]
    except GatedRepoError:
        raise ModelRefError(
            f"{ref.location} is gated: accept its terms on the Hub and log in (`hf auth login`)"
        ) from None
    except RevisionNotFoundError:
        raise ModelRefError(f"{ref.location} has no revision {ref.revision!r} on the Hub") from None
    except RepositoryNotFoundError:
        what = ref.location if needs_model else hub_dataset
        raise ModelRefError(f"{what}: not found on the Hub (a typo, or private: log in with `hf auth login`)") from None
    except Exception as e:  # network: DNS, refused, timeout, proxy; the Hub rate-limiting or down
        if _http_status(e) == 429:
            login = "" if os.environ.get("HF_TOKEN") else ", or log in (`hf auth login`) for a higher limit"
            raise ModelRefError(
                "the Hugging Face Hub is rate-limiting this machine (429 Too Many Requests); wait a few minutes "
                f"and run again{login}"
            ) from None
        if not _is_network_error(e):
            raise
        why = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        if needs_model and not cached:
            raise ModelRefError(
                f"the Hugging Face Hub is unreachable ({why}) and {ref.location} is not in the local cache; run "
                f"where the Hub is reachable, or download the model there (`hf download {ref.location}`) and pass "
                "its folder as MODEL"
            ) from None
        if needs_model:
            raise ModelRefError(
                f"the Hugging Face Hub is unreachable ({why}); {ref.location} is in the local cache: run with "
                "HF_HUB_OFFLINE=1 to use it" + (" and --data-dir for the datasets" if hub_dataset else "")
            ) from None
        raise ModelRefError(
            f"the Hugging Face Hub is unreachable ({why}) and the datasets come from it: pass --data-dir with an "
            "offline snapshot (see `evalsuite data verify`), or set HF_DATASETS_OFFLINE=1 if they are cached"
        ) from None


def _http_status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _is_network_error(error: BaseException) -> bool:
    """A Hub that cannot be reached: no connection, a timeout, or a server error (5xx) after the client's retries."""
    names = {cls.__name__ for cls in type(error).__mro__}
    status = _http_status(error)
    return bool(names & {"ConnectError", "ConnectTimeout", "TimeoutException", "NetworkError", "TransportError",
                         "ConnectionError", "OfflineModeIsEnabled"}) or isinstance(error, OSError) or (
        status is not None and status >= 500)  # fmt: skip


def check_gguf_header(path: Path) -> None:
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != _GGUF_MAGIC:
        raise ModelRefError(f"{path}: not a GGUF file (bad header); re-download it or pass a model folder")


def prepare_model(ref: ModelRef) -> LoadableModel:
    """Make `ref` loadable by HF transformers, dequantizing a GGUF file into the cache on first use."""
    if ref.source is not ModelSource.GGUF:
        return LoadableModel(ref=ref, pretrained=ref.location, revision=ref.revision)
    gguf = Path(ref.location)
    digest = _sha256(gguf)
    folder = cache_dir() / "gguf" / f"{gguf.stem}-{digest[:16]}"
    if not (folder / "config.json").is_file():
        _dequantize_gguf(gguf, folder)
    return LoadableModel(ref=ref, pretrained=str(folder), revision=None, file_sha256=digest)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _dequantize_gguf(gguf: Path, folder: Path) -> None:
    """Write a float32 safetensors copy of `gguf` (and its tokenizer) to `folder`, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    log.info("dequantizing %s into %s (once)", gguf.name, folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
            )
        except Exception as e:  # transformers raises many kinds for a damaged file
            raise ModelRefError(f"{gguf}: cannot read this GGUF file ({type(e).__name__}: {e})") from e
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

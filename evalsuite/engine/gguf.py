"""A .gguf MODEL made loadable: dequantized once (transformers' GGUF reader) into a float32 safetensors folder in
evalsuite's cache, keyed by the file's sha256, so later runs load it like any local model."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

from evalsuite.errors import ModelRefError
from evalsuite.model import LoadableModel, ModelRef, ModelSource
from evalsuite.paths import cache_dir

log = logging.getLogger(__name__)


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

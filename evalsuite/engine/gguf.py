"""A .gguf MODEL made loadable: dequantized once (transformers' GGUF reader) into a float32 safetensors folder in
evalsuite's cache, keyed by the file's sha256, so later runs load it like any local model.

Several runs may start at once on an empty cache: the folder is made under an exclusive lock of its own
(`<folder>.lock`, flock: released by the OS even on kill -9), so one dequantizes and the others wait for it and
then load what it wrote. A dequantization that was killed leaves a `.partial-<folder>-*` staging folder; the
next one, holding the lock, removes it.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from evalsuite import faults
from evalsuite.errors import ModelRefError, OutputDirError
from evalsuite.model import LoadableModel, ModelRef, ModelSource
from evalsuite.paths import cache_dir

log = logging.getLogger(__name__)


def prepare_model(ref: ModelRef) -> LoadableModel:
    """Make `ref` loadable by HF transformers, dequantizing a GGUF file into the cache on first use."""
    model = locate_model(ref)
    folder = Path(model.pretrained)
    if ref.source is ModelSource.GGUF and not (folder / "config.json").is_file():
        with _locked(folder):
            if not (folder / "config.json").is_file():  # another run may have written it while this one waited
                _dequantize_gguf(Path(ref.location), folder)
    return model


def locate_model(ref: ModelRef) -> LoadableModel:
    """Where `ref` loads from, without making it loadable: a GGUF file's folder in the cache is named by the
    file's sha256 (what a cluster's driver knows of a model its workers dequantize, run/sweep.py)."""
    if ref.source is not ModelSource.GGUF:
        return LoadableModel(ref=ref, pretrained=ref.location, revision=ref.revision)
    gguf = Path(ref.location)
    digest = _sha256(gguf)
    folder = cache_dir() / "gguf" / f"{gguf.stem}-{digest[:16]}"
    return LoadableModel(ref=ref, pretrained=str(folder), revision=None, file_sha256=digest)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold `<folder>.lock` (waiting for another process that holds it)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = (folder.parent / f"{folder.name}.lock").open("a+")
    except OSError as e:
        raise OutputDirError(f"cannot use the model cache {folder.parent}: {e.strerror or e}") from e
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _dequantize_gguf(gguf: Path, folder: Path) -> None:
    """Write a float32 safetensors copy of `gguf` (and its tokenizer) to `folder`, atomically. The caller holds
    the folder's lock, so staging folders of this model left by a killed dequantization are stale."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    prefix = f".partial-{folder.name}-"
    for leftover in folder.parent.glob(f"{prefix}*"):
        log.info("removing %s, left by a dequantization that did not finish", leftover)
        shutil.rmtree(leftover, ignore_errors=True)
    log.info("dequantizing %s into %s (once)", gguf.name, folder)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=folder.parent))
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
            )
        except Exception as e:  # transformers raises many kinds for a damaged file
            raise ModelRefError(f"{gguf}: cannot read this GGUF file ({type(e).__name__}: {e})") from e
        try:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            faults.reached("dequantizing")
            staging.rename(folder)
        except OSError as e:
            raise OutputDirError(f"cannot write the dequantized model into {folder.parent}: {e.strerror or e}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)

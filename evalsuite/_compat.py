"""What evalsuite uses or changes inside its dependencies beyond their public API; each item is checked against
the installed version by tests/test_dependency_contract.py.

lm-eval:

- `lm_eval.utils.apply_template(template, doc)` compiles its Jinja template anew on every call: building
  requests spends 93% of its time there (measured here: ARC's 1,172 documents 30 s, MMLU's 14,042 73 s).
  `cache_compiled_templates` puts the same function over a cache of compiled templates in its place: the
  same text (same environment, same template, same document), 20-30x faster (ARC 1.5 s, MMLU 2.5 s).
- `lm_eval.evaluator.get_git_commit_hash()` runs `git describe` with git's stderr on the terminal, so every
  task of a run outside a git checkout printed `fatal: not a git repository`. `quiet_git_probe` puts the same
  probe there with git's stderr discarded (same result: the hash, or None).

transformers:
- a model's KV cache goes in and comes out as `cache` since transformers 5.2x (`past_key_values`, the old
  name, is deprecated: removed from `forward` in 5.40, from `generate` in 6.0). `kv_cache_kwarg` and
  `returned_kv_cache` use whichever name the installed version has; `Cache.batch_repeat_interleave` copies
  a one-row cache to many rows (the contamination check's shared prefill). generation.py's decode steps
  pass their cache by the same name (no deprecation warning on every GSM8K run). Beyond that, only
  generation.py's continuous batching edits a cache's layers (`DynamicLayer.keys/values/update`), in place,
  as its own adapter; the contract test covers it too (docs/ARCHITECTURE.md lists every touch point).

datasets:
- every load of a packaged builder (the `json` files of `--data-dir`, once per lm-eval task: 62 in a full run)
  first sends a download-count HEAD request to s3.amazonaws.com (`load.increase_load_count`, 3 s timeout),
  unless `config.HF_UPDATE_DOWNLOAD_COUNTS` is false. `no_download_count_pings` turns it off for the calls
  inside it and back after: an offline run makes no network call, and no environment variable is changed.

huggingface_hub: exported API only (ModelCard, ModelCardData, EvalResult, HfApi). The one rule evalsuite
repeats rather than calls is where a card's front matter ends (`readme.FRONT_MATTER`: card update edits the
bytes, which ModelCard cannot do); the contract test checks it cuts cards where ModelCard does.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from typing import Any

__all__ = [
    "cache_compiled_templates",
    "no_download_count_pings",
    "quiet_git_probe",
    "kv_cache_kwarg",
    "returned_kv_cache",
]


@contextlib.contextmanager
def no_download_count_pings() -> Iterator[None]:
    """No download-count request from `datasets.load_dataset` inside the block (see the module's docstring)."""
    from datasets import config

    saved = config.HF_UPDATE_DOWNLOAD_COUNTS
    config.HF_UPDATE_DOWNLOAD_COUNTS = False
    try:
        yield
    finally:
        config.HF_UPDATE_DOWNLOAD_COUNTS = saved


_CACHED = "_evalsuite_caches_compiled_templates"


def cache_compiled_templates() -> None:
    """Make lm-eval compile each prompt template once per process (idempotent)."""
    from lm_eval import utils

    if getattr(utils.apply_template, _CACHED, False):
        return
    compile_template = functools.lru_cache(maxsize=4096)(utils.env.from_string)

    def apply_template(template: str, doc: dict[str, Any]) -> str:
        return compile_template(template).render(**doc)

    setattr(apply_template, _CACHED, True)
    utils.apply_template = apply_template


def quiet_git_probe() -> None:
    """Make lm-eval's git-hash probe silent when the working directory is not a git checkout (idempotent)."""
    import subprocess

    from lm_eval import evaluator

    if getattr(evaluator.get_git_commit_hash, _CACHED, False):
        return

    def get_git_commit_hash() -> str | None:
        try:
            out = subprocess.run(
                ["git", "describe", "--always"], capture_output=True, check=True, timeout=10
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.decode().strip() or None

    setattr(get_git_commit_hash, _CACHED, True)
    evaluator.get_git_commit_hash = get_git_commit_hash


def kv_cache_kwarg(model: Any) -> str:
    """The keyword a model's `forward` and `generate` take a KV cache by (`cache`, or `past_key_values`)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_kv_cache(outputs: Any) -> Any:
    """The KV cache a forward with `use_cache=True` returned, under either name."""
    cache = getattr(outputs, "cache", None)
    return cache if cache is not None else outputs.past_key_values

"""What evalsuite uses or changes inside its dependencies beyond their public API; each item is checked against
the installed version by tests/test_dependency_contract.py.

lm-eval:

- `lm_eval.utils.apply_template(template, doc)` compiles its Jinja template anew on every call, where building
  requests spends most of its time (bench/request_building.py; figures in bench/RESULTS.md).
  `cache_compiled_templates` puts the same function over a cache of compiled templates in its place: the
  same text (same environment, same template, same document), many times faster.
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
  as its own adapter, and only generation.py drives transformers' ContinuousBatchingManager (the opt-in
  engine); the contract tests cover both.

datasets' one touch point is evalsuite/data/hub.py's, huggingface_hub's (exported API only) are in
evalsuite/publish and evalsuite/model; docs/ARCHITECTURE.md lists every touch point with its guard.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

__all__ = [
    "cache_compiled_templates",
    "quiet_git_probe",
    "kv_cache_kwarg",
    "returned_kv_cache",
]

# Set on the functions evalsuite puts in lm-eval's place, so that doing it again is a no-op.
_CACHING_TEMPLATES = "_evalsuite_caches_compiled_templates"
_QUIET_PROBE = "_evalsuite_quiet_git_probe"


def cache_compiled_templates() -> None:
    """Make lm-eval compile each prompt template once per process (idempotent)."""
    from lm_eval import utils

    if getattr(utils.apply_template, _CACHING_TEMPLATES, False):
        return
    compile_template = functools.lru_cache(maxsize=4096)(utils.env.from_string)

    def apply_template(template: str, doc: dict[str, Any]) -> str:
        return compile_template(template).render(**doc)

    setattr(apply_template, _CACHING_TEMPLATES, True)
    utils.apply_template = apply_template


def quiet_git_probe() -> None:
    """Make lm-eval's git-hash probe silent when the working directory is not a git checkout (idempotent)."""
    import subprocess

    from lm_eval import evaluator

    if getattr(evaluator.get_git_commit_hash, _QUIET_PROBE, False):
        return

    def get_git_commit_hash() -> str | None:
        try:
            out = subprocess.run(
                ["git", "describe", "--always"], capture_output=True, check=True, timeout=10
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.decode().strip() or None

    setattr(get_git_commit_hash, _QUIET_PROBE, True)
    evaluator.get_git_commit_hash = get_git_commit_hash


def kv_cache_kwarg(model: Any) -> str:
    """The keyword a model's `forward` and `generate` take a KV cache by (`cache`, or `past_key_values`)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_kv_cache(outputs: Any) -> Any:
    """The KV cache a forward with `use_cache=True` returned, under either name."""
    cache = getattr(outputs, "cache", None)
    return cache if cache is not None else outputs.past_key_values


# What importing gptqmodel sets in os.environ when unset (its tokenicer points the Hugging Face caches at
# /tmp/tokenicer_hf_home): put back as they were, so that the user's cache, and what child processes inherit, stay.
_GPTQMODEL_ENVIRONMENT = ("HF_HOME", "HF_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_MODULES_CACHE")


def prepare_gptqmodel() -> None:
    """Import gptqmodel as evalsuite needs it, before transformers' GPTQ integration does: quiet (it logs through
    logbar's shared logger, which sets itself to INFO when first made and prints a banner on import; made here
    first, at lm-eval's level, it speaks only when lm-eval may: -v), and leaving the environment as it was."""
    import contextlib
    import io
    import logging
    import os

    before = {name: os.environ.get(name) for name in _GPTQMODEL_ENVIRONMENT}
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the empty line logbar prints when made (to stdout)
            try:
                from logbar import LogBar
            except ImportError:  # no gptqmodel: the run's checks said so before loading
                return
            LogBar.shared().setLevel(max(logging.INFO, logging.getLogger("lm_eval").getEffectiveLevel()))
            import gptqmodel  # noqa: F401
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

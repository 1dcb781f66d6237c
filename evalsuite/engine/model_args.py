"""`model_args` beyond evalsuite's own settings (`--model-args k=v,...`): parsed as lm-eval parses them, and
checked against what the model class takes before anything loads."""

from __future__ import annotations

from evalsuite.errors import SuiteConfigError, param
from evalsuite.settings import Backend, GenerationEngine

# model_args keys evalsuite sets from its own settings (the RunRequest field that sets each); model_args may not.
RESERVED_MODEL_ARGS = {
    "pretrained": "model",
    "revision": "model",  # MODEL@revision
    "dtype": "dtype",
    "device": "device",
    "batch_size": "batch_size",
    "add_bos_token": "add_bos_token",
}

# transformers' from_pretrained keywords a user may pass through model_args (lm-eval forwards what HFLM does not
# take to from_pretrained). Checked against transformers by tests/test_dependency_contract.py.
FROM_PRETRAINED_MODEL_ARGS = (
    "attn_implementation", "cache_dir", "device_map", "force_download", "local_files_only", "max_memory",
    "offload_buffers", "offload_folder", "subfolder", "token", "use_kernels", "use_safetensors", "variant",
)  # fmt: skip


def parse_model_args(text: str | None) -> dict[str, str]:
    """Parse `k=v,k2=v2` as lm-eval does, refusing keys evalsuite sets itself."""
    if not text:
        return {}
    parsed: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SuiteConfigError(f"{param('model_args')}: {item!r} is not key=value")
        key = key.strip()
        if key in RESERVED_MODEL_ARGS:
            field = param(RESERVED_MODEL_ARGS[key]) + ("@revision" if key == "revision" else "")
            raise SuiteConfigError(f"{param('model_args')} sets {key!r}; use {field} instead")
        parsed[key] = value.strip()
    return parsed


def check_model_args(args: dict[str, str], backend: Backend, config_keys: frozenset[str] = frozenset()) -> None:
    """Refuse model args the model class would only reject after loading: unknown keys (not HFLM's, not
    from_pretrained's, not the local model's config.json attributes) and ill-typed values of evalsuite's own."""
    import inspect

    from lm_eval.models.huggingface import HFLM

    hflm = {n for n in inspect.signature(HFLM.__init__).parameters if n not in ("self", "kwargs")}
    ours = {"pack_tokens", "generation"} if backend is Backend.SHARED_PREFIX else set()
    known = hflm | ours | set(FROM_PRETRAINED_MODEL_ARGS) | config_keys
    for key, value in args.items():
        if key not in known:
            near = sorted(k for k in known if k.split("_")[0] == key.split("_")[0])[:3]
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise SuiteConfigError(
                f"{param('model_args')} {key}={value}: {key!r} is not an argument of lm-eval's HF model, of "
                f"from_pretrained or of the model's config{hint}"
            )
    if "pack_tokens" in args:
        try:
            pack = int(args["pack_tokens"])
        except ValueError:
            pack = 0
        if pack < 1:
            raise SuiteConfigError(
                f"{param('model_args')} pack_tokens={args['pack_tokens']}: give a positive number of tokens"
            )
    if "generation" in args and args["generation"] not in {e.value for e in GenerationEngine}:
        raise SuiteConfigError(
            f"{param('model_args')} generation={args['generation']}: give "
            + " or ".join(e.value for e in GenerationEngine)
        )

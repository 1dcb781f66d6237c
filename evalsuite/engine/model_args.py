"""`--model-args k=v,...` and `--backend-options k=v,...`: parsed as lm-eval parses its model args. What each key
may be is the backend's to say (ModelBackend.check_model_args, ModelBackend.options), before anything loads."""

from __future__ import annotations

from evalsuite.errors import OptionError, param

# model_args keys evalsuite sets from its own settings (the RunRequest field that sets each); model_args may not.
RESERVED_MODEL_ARGS = {
    "pretrained": "model",
    "revision": "model",  # MODEL@revision
    "dtype": "dtype",
    "device": "device",
    "batch_size": "batch_size",
    "add_bos_token": "add_bos_token",
}


def parse_key_values(text: str | None, name: str) -> dict[str, str]:
    """`k=v,k2=v2` as lm-eval parses it (values stay text); `name` is the parameter an error names."""
    if not text:
        return {}
    parsed: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"{param(name)}: {item!r} is not key=value")
        parsed[key.strip()] = value.strip()
    return parsed


def parse_model_args(text: str | None) -> dict[str, str]:
    """Parse `k=v,k2=v2` as lm-eval does, refusing keys evalsuite sets itself."""
    parsed = parse_key_values(text, "model_args")
    for key in parsed:
        if key in RESERVED_MODEL_ARGS:
            field = param(RESERVED_MODEL_ARGS[key]) + ("@revision" if key == "revision" else "")
            raise OptionError(f"{param('model_args')} sets {key!r}; use {field} instead")
    return parsed

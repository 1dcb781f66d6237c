"""The model under evaluation as the user named it (MODEL: a Hub id with an optional @revision, a Hugging Face
model folder, or a .gguf file), classified and checked before anything loads, and whether the Hub can serve it.

Imports huggingface_hub inside `check_hub_access` only; never lm-eval, torch or transformers (loading, and a
GGUF's dequantization, are evalsuite.engine's).
"""

from evalsuite.model.hub import access_refused, check_hub_access, unreachable_reason
from evalsuite.model.ref import (
    LoadableModel,
    ModelRef,
    ModelSource,
    check_gguf_header,
    location_digest,
    parse_model_ref,
    read_config,
)
from evalsuite.model.weights import ModelWeights, check_precision, resolve_weights, tensor_shapes

__all__ = [
    "LoadableModel",
    "ModelRef",
    "ModelSource",
    "ModelWeights",
    "check_precision",
    "resolve_weights",
    "tensor_shapes",
    "check_gguf_header",
    "access_refused",
    "check_hub_access",
    "location_digest",
    "parse_model_ref",
    "read_config",
    "unreachable_reason",
]

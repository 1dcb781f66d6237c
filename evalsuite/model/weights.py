"""MODEL's weights as the leaderboard filed them (its submissions' `Weight type`), checked before anything loads:
- Original: MODEL is the whole model;
- Adapter (`--adapter ADAPTER[@REV]`): a PEFT adapter run over a base model, MODEL or the adapter's own
  `base_model_name_or_path`;
- Delta (`--delta BASE[@REV]`): MODEL's weights are added to BASE's, tensor by tensor (lm-eval's `delta`).

And what a checkpoint's own config says of its quantization (`quantization_config.quant_method`), which a
`--precision` must not contradict. Only files are read here (config.json, adapter_config.json, safetensors
headers); nothing is imported from torch or transformers.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from evalsuite.errors import ModelRefError, OptionError, param
from evalsuite.model.ref import ModelRef, ModelSource, parse_model_ref, read_config, read_json_object
from evalsuite.settings import Precision, WeightType

ADAPTER_CONFIG = "adapter_config.json"  # what makes a folder or Hub repo a PEFT adapter


@dataclass(frozen=True)
class ModelWeights:
    """What a run loads: `base` (the model transformers loads), and for an adapter or a delta, `part` (what is
    put on top of it). `evaluated` is the model results are filed under: the adapter or the delta, as the
    leaderboard filed them, else the base."""

    type: WeightType
    base: ModelRef
    part: ModelRef | None = None

    @property
    def evaluated(self) -> ModelRef:
        return self.part if self.part is not None else self.base

    @classmethod
    def original(cls, ref: ModelRef) -> ModelWeights:
        return cls(WeightType.ORIGINAL, ref)


def resolve_weights(model: str | None, adapter: str | None, delta: str | None) -> ModelWeights:
    """MODEL, `--adapter` and `--delta` as one ModelWeights, checked; a bad combination or a mismatch is one line."""
    if adapter and delta:
        raise OptionError(f"{param('adapter')} and {param('delta')} do not go together: give one")
    if adapter:
        part = parse_adapter_ref(adapter)
        named = adapter_base_model(part)
        if model:
            base = parse_model_ref(model)
            if named is not None and _name(named) != _name(base.location):
                raise ModelRefError(
                    f"{param('adapter')} {adapter} was trained on {named}, not on MODEL {model}; give its base "
                    "model as MODEL, or leave MODEL out"
                )
        elif named is None:
            raise ModelRefError(f"{param('adapter')} {adapter}: its {ADAPTER_CONFIG} names no base model; give MODEL")
        else:
            try:
                base = parse_model_ref(named)
            except ModelRefError as e:  # say where the name came from: not MODEL, the adapter's own config
                raise ModelRefError(
                    f"{e.marked} (the base model named by {param('adapter')} {adapter}'s {ADAPTER_CONFIG}; give "
                    "the base model as MODEL)"
                ) from e
        check_adapter_shapes(part, base)
        return ModelWeights(WeightType.ADAPTER, base, part)
    if not model:
        raise ModelRefError("give MODEL (a Hub id, a model folder or a .gguf file)")
    ref = parse_model_ref(model)
    if delta:
        base = parse_model_ref(delta, "delta")
        if base.source is ModelSource.GGUF or ref.source is ModelSource.GGUF:
            raise ModelRefError(f"{param('delta')}: a delta adds safetensors weights; a .gguf cannot be either side")
        check_delta_shapes(ref, base)
        return ModelWeights(WeightType.DELTA, base, ref)
    return ModelWeights.original(ref)


def parse_adapter_ref(text: str) -> ModelRef:
    """An adapter: a local folder holding adapter_config.json, or a Hub id[@revision]."""
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / ADAPTER_CONFIG).is_file():
            raise ModelRefError(f"{param('adapter')} {text}: no {ADAPTER_CONFIG} there; point it at a PEFT adapter")
        return ModelRef(ModelSource.LOCAL, str(path.resolve()))
    if path.exists() or text.startswith((".", "/", "~")):
        raise ModelRefError(f"{param('adapter')} {text}: not a folder holding a PEFT adapter")
    return parse_model_ref(text, "adapter")  # a Hub id (a path that does not exist was refused above)


def adapter_base_model(adapter: ModelRef) -> str | None:
    """The base model an adapter names (`base_model_name_or_path`), from its adapter_config.json: a folder's, or a
    Hub adapter's at its revision (through the Hub's cache; offline, the cache alone)."""
    if adapter.source is ModelSource.HUB:
        from evalsuite.model.hub import hub_file

        path = hub_file(adapter, ADAPTER_CONFIG, "adapter")
        if path is None:
            raise ModelRefError(f"{param('adapter')} {adapter.location}: no {ADAPTER_CONFIG} (not a PEFT adapter)")
    elif adapter.source is ModelSource.LOCAL:
        path = Path(adapter.location) / ADAPTER_CONFIG
    else:
        return None
    config = read_json_object(path, "the adapter")
    base = config.get("base_model_name_or_path")
    return base if isinstance(base, str) and base else None


def _name(model: str) -> str:
    """A model's name without its org or folder (`HuggingFaceTB/SmolLM2-135M` and `/models/SmolLM2-135M` agree)."""
    return model.rstrip("/").rpartition("/")[2].partition("@")[0].lower()


def checkpoint_precision(ref: ModelRef) -> Precision | None:
    """The precision a local checkpoint's config.json fixes (`quantization_config`): GPTQ, or bitsandbytes'
    8bit/4bit; None when it is not quantized, or not known before loading (Hub, GGUF). A quantization evalsuite
    records no precision for (AWQ, ...) is one line."""
    if ref.source is not ModelSource.LOCAL:
        return None
    quantization = read_config(Path(ref.location)).get("quantization_config")
    if not isinstance(quantization, dict):
        return None
    method = str(quantization.get("quant_method", "")).lower()
    if method == "gptq":
        return Precision.GPTQ
    if method == "bitsandbytes":
        return Precision.INT4 if quantization.get("load_in_4bit") else Precision.INT8
    raise ModelRefError(
        f"{ref.location} is quantized with {method or 'an unnamed method'}, which the leaderboard had no precision "
        "for; evalsuite runs float16, bfloat16, 8bit, 4bit (bitsandbytes) and GPTQ checkpoints"
    )


def check_precision(precision: Precision | None, ref: ModelRef) -> Precision | None:
    """The precision a run uses: `precision` as given, checked against the checkpoint's own quantization (one
    line when they disagree); the checkpoint's when none is given; None: from the dtype."""
    fixed = checkpoint_precision(ref)
    if fixed is not None and precision is not None and precision is not fixed:
        raise OptionError(
            f"{param('precision')} {precision}: {ref.location} is a {fixed} checkpoint (its config.json's "
            f"quantization_config); give {param('precision')} {fixed} or leave it out"
        )
    if precision is Precision.GPTQ and fixed is None and ref.source is ModelSource.LOCAL:
        raise OptionError(
            f"{param('precision')} GPTQ: {ref.location} is not a GPTQ checkpoint (its config.json has no "
            "quantization_config with quant_method gptq); quantize it first, or choose 8bit or 4bit"
        )
    return fixed or precision


def check_delta_shapes(delta: ModelRef, base: ModelRef) -> None:
    """Every tensor of the base has one of the same shape in the delta (what adding them needs), read from the
    safetensors headers of two local folders; Hub models are checked as they load."""
    if delta.source is not ModelSource.LOCAL or base.source is not ModelSource.LOCAL:
        return
    delta_shapes, base_shapes = tensor_shapes(Path(delta.location)), tensor_shapes(Path(base.location))
    if not delta_shapes or not base_shapes:
        return  # weights not in safetensors: lm-eval checks as it adds them
    for name, shape in base_shapes.items():
        found = delta_shapes.get(name)
        if found is None:
            raise ModelRefError(f"{param('delta')}: MODEL {delta.location} has no tensor {name}, which the base has")
        if found != shape:
            raise ModelRefError(
                f"{param('delta')}: tensor {name} is {list(found or [])} in MODEL {delta.location} but "
                f"{list(shape)} in the base {base.location}; a delta must have the base's shapes"
            )


# PEFT's names in a saved adapter: `base_model.model.<the base's module>.lora_A.weight` ([rank, in features]) and
# `.lora_B.weight` ([out features, rank]); other tensors (modules_to_save) under the base's own names.
_PEFT_PREFIX = "base_model.model."
_LORA_SIDES = {".lora_A.weight": -1, ".lora_B.weight": 0}  # the dimension each shares with the base's weight


def check_adapter_shapes(adapter: ModelRef, base: ModelRef) -> None:
    """Each adapter tensor fits the base's weight it goes on (LoRA's A its input features, B its output features;
    a saved whole module its shape), read from the safetensors headers of two local folders, before anything
    loads; Hub models, and tensors under names the base has none of, are left to PEFT as it loads."""
    if adapter.source is not ModelSource.LOCAL or base.source is not ModelSource.LOCAL:
        return
    adapter_shapes, base_shapes = tensor_shapes(Path(adapter.location)), tensor_shapes(Path(base.location))
    for name, shape in sorted(adapter_shapes.items()):
        module = name.removeprefix(_PEFT_PREFIX)
        side = next((suffix for suffix in _LORA_SIDES if module.endswith(suffix)), None)
        target = module.removesuffix(side) + ".weight" if side else module
        expected = base_shapes.get(target)
        if expected is None or not shape:
            continue
        if side is None:
            fits, what = shape == expected, f"{list(shape)}"
        else:
            if len(shape) != 2 or len(expected) != 2:
                continue  # a convolution's or an embedding's LoRA: PEFT checks it
            dim = _LORA_SIDES[side]
            features = f"{'input' if dim else 'output'} features {shape[dim]}"
            fits, what = shape[dim] == expected[dim], f"{list(shape)} ({features})"
        if not fits:
            raise ModelRefError(
                f"{param('adapter')} {adapter.location}: tensor {name} is {what}, which does not fit {target} "
                f"{list(expected)} of the base {base.location}; the adapter was trained on another model: give its "
                "own base"
            )


def tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape over a folder's *.safetensors files, from their headers alone."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with file.open("rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(size))
        except (OSError, struct.error, ValueError) as e:
            raise ModelRefError(f"{file}: not a readable safetensors file ({e}); re-download it") from e
        for name, info in header.items():
            if name != "__metadata__" and isinstance(info, dict):
                shapes[name] = tuple(int(n) for n in info.get("shape", []))
    return shapes


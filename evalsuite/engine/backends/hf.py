"""What the backends built on lm-eval's HF model (HFLM) share: which model args they take, how they load a model
through lm-eval, and the contamination check's scorer (transformers' `AutoModelForCausalLM`).

lm-eval and transformers are imported inside the functions: importing this module loads neither.
"""

from __future__ import annotations

import importlib.util
import inspect
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from evalsuite.engine.backends import BackendOptions, LoadedModel, ModelBackend, ModelSettings
from evalsuite.engine.processes import Processes
from evalsuite.errors import ModelRefError, OptionError, RunError, param
from evalsuite.model import LoadableModel, ModelRef, ModelSource, access_refused
from evalsuite.settings import Dtype, Precision, WeightType

if TYPE_CHECKING:
    from lm_eval.api.model import LM

    from evalsuite.engine.neighbours import CausalLM

# transformers' from_pretrained keywords a user may pass through model_args (lm-eval forwards what HFLM does not
# take to from_pretrained). Checked against transformers by tests/test_dependency_contract.py.
FROM_PRETRAINED_MODEL_ARGS = (
    "attn_implementation", "cache_dir", "device_map", "force_download", "local_files_only", "max_memory",
    "offload_buffers", "offload_folder", "subfolder", "token", "use_kernels", "use_safetensors", "variant",
)  # fmt: skip
# HFLM's arguments for adapters, deltas and GPTQ, which evalsuite sets from --adapter, --delta and --precision
WEIGHT_KEYWORDS = {"peft": "adapter", "delta": "delta", "autogptq": "precision", "gptqmodel": "precision"}
# The contamination check loads with from_pretrained itself: these, trust_remote_code and the config's attributes.
SCORER_MODEL_ARGS = (*FROM_PRETRAINED_MODEL_ARGS, "trust_remote_code")


def typed_value(text: str) -> Any:
    """A `--model-args` value as lm-eval's own command line passes it on (`True` -> True, `3` -> 3, `'3'` -> "3"):
    lm-eval's `handle_arg_string`. Without it `trust_remote_code=False` would reach HFLM as the truthy "False"."""
    from lm_eval.utils import handle_arg_string

    return handle_arg_string(text)


class HFBackend(ModelBackend):
    """A backend whose model is an lm-eval HF model class (`lm_class`)."""

    # keywords of the LM class that evalsuite sets from its own settings, or that are this backend's options
    own_keywords: ClassVar[frozenset[str]] = frozenset()

    def lm_class(self) -> type[LM]:
        """The lm-eval model class (imported here, when a model loads)."""
        raise NotImplementedError

    def lm_keywords(self, options: BackendOptions) -> dict[str, Any]:
        """The options as keywords of the LM class."""
        return {}

    def check_model_args(self, args: Mapping[str, str], config_keys: frozenset[str] = frozenset()) -> None:
        """Refuse model args the model class would only reject after loading: unknown keys (not HFLM's, not
        from_pretrained's, not the local model's config.json attributes)."""
        from lm_eval.models.huggingface import HFLM

        hflm = {n for n in inspect.signature(HFLM.__init__).parameters if n not in ("self", "kwargs")}
        known = (hflm | set(FROM_PRETRAINED_MODEL_ARGS) | config_keys) - self.own_keywords
        for key, value in args.items():
            if key in WEIGHT_KEYWORDS:
                raise OptionError(f"{param('model_args')} {key}={value}: give {param(WEIGHT_KEYWORDS[key])} instead")
            if key in self.own_keywords:
                raise OptionError(f"{param('model_args')} {key}={value}: {self._own_keyword_remedy(key)}")
            if key not in known:
                near = sorted(k for k in known if k.split("_")[0] == key.split("_")[0])[:3]
                hint = f" (did you mean {', '.join(near)}?)" if near else ""
                raise OptionError(
                    f"{param('model_args')} {key}={value}: {key!r} is not an argument of lm-eval's HF model, of "
                    f"from_pretrained or of the model's config{hint}"
                )

    def _own_keyword_remedy(self, key: str) -> str:
        return f"backend {self.name} sets {key!r} itself"

    def load(self, model: LoadableModel, settings: ModelSettings) -> LoadedModel:
        recorded: dict[str, Any] = {
            "pretrained": model.pretrained,
            "dtype": settings.dtype.value,
            "add_bos_token": settings.add_bos_token,
            **settings.model_args,
        }
        if model.revision:
            recorded["revision"] = model.revision
        arguments = {k: typed_value(v) if k in settings.model_args else v for k, v in recorded.items()}
        arguments |= self.lm_keywords(self.options_of(settings))
        weights = weight_arguments(settings)
        recorded |= weights.recorded
        arguments |= weights.arguments
        started = time.perf_counter()
        try:
            lm = self.lm_class().create_from_arg_obj(
                arguments, {"batch_size": settings.batch_size.recorded, "device": settings.device}
            )
        except OSError as e:
            raise RunError(f"cannot load model {model.pretrained!r}: {str(e).splitlines()[0]}") from e
        seconds = time.perf_counter() - started
        inner = getattr(lm, "model", None)
        check_quantized(inner, settings.precision)
        parameters = int(inner.num_parameters()) if inner is not None and hasattr(inner, "num_parameters") else None
        dtype = Dtype.of_loaded(str(getattr(inner, "dtype", settings.dtype.value)).removeprefix("torch."))
        return LoadedModel(
            lm=lm,
            model_args=recorded,
            device=settings.device,
            parameters=parameters,
            dtype=dtype,
            load_seconds=seconds,
            backend=self.name,
            processes=getattr(lm, "processes", Processes()),
        )

    def check_scorer_model_args(self, args: Mapping[str, str], config_keys: frozenset[str] = frozenset()) -> None:
        """The contamination check loads with from_pretrained: its keywords, trust_remote_code and the config's
        attributes; HFLM's own arguments (batch sizes, lengths, adapters) do not apply there."""
        known = set(SCORER_MODEL_ARGS) | config_keys
        for key, value in args.items():
            if key not in known:
                raise OptionError(
                    f"{param('model_args')} {key}={value}: the contamination check loads the model with "
                    f"from_pretrained, which takes {', '.join(SCORER_MODEL_ARGS)} and the config's attributes"
                )

    def load_scorer(self, model: LoadableModel, dtype: Dtype, device: str, model_args: Mapping[str, str]) -> CausalLM:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from evalsuite.engine.neighbours import CausalLM

        keywords = {k: typed_value(v) for k, v in model_args.items()}
        torch_dtype = getattr(torch, dtype.value) if dtype is not Dtype.AUTO else "auto"
        try:
            loaded: Any = AutoModelForCausalLM.from_pretrained(
                model.pretrained, revision=model.revision, dtype=torch_dtype, **keywords
            )
            tokenizer_keywords = {k: v for k, v in keywords.items() if k in ("trust_remote_code", "token", "cache_dir")}
            tokenizer = AutoTokenizer.from_pretrained(model.pretrained, revision=model.revision, **tokenizer_keywords)
        except OSError as e:
            raise ModelRefError(f"cannot load model {model.pretrained!r}: {str(e).splitlines()[0]}") from e
        loaded.to(device).eval()
        tokenizer.padding_side = "right"  # as the original: right padding, pads masked out of the loss
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return CausalLM(loaded, tokenizer)


class WeightArguments:
    """What a run's precision and weight type add to the LM class's arguments (`arguments`) and to what
    results.json records of them (`recorded`, plain JSON)."""

    def __init__(self) -> None:
        self.arguments: dict[str, Any] = {}
        self.recorded: dict[str, Any] = {}


def weight_arguments(settings: ModelSettings) -> WeightArguments:
    """8bit and 4bit as a bitsandbytes config computing in the run's dtype (`quantization`, see LoadsWeights);
    GPTQ from the checkpoint's own config (HFLM passes it on); an adapter as HFLM's `peft`; a delta as
    LoadsWeights' `delta_weights`."""
    import torch

    weights = WeightArguments()
    compute = getattr(torch, settings.dtype.value)
    if settings.precision is Precision.INT8:
        from transformers import BitsAndBytesConfig

        weights.arguments["quantization"] = BitsAndBytesConfig(load_in_8bit=True)
        weights.recorded |= {"load_in_8bit": True}
    elif settings.precision is Precision.INT4:
        from transformers import BitsAndBytesConfig

        weights.arguments["quantization"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=compute)
        weights.recorded |= {"load_in_4bit": True, "bnb_4bit_compute_dtype": settings.dtype.value}
    elif settings.precision is Precision.GPTQ:
        from evalsuite.engine.compat import prepare_gptqmodel

        prepare_gptqmodel()  # before transformers' GPTQ integration imports it
    if settings.weight_type is WeightType.ADAPTER and importlib.util.find_spec("gptqmodel") is not None:
        from evalsuite.engine.compat import prepare_gptqmodel

        prepare_gptqmodel()  # peft imports gptqmodel when it is installed: first here, keeping the environment
    if settings.part is not None:
        folder = local_folder(settings.part)
        key = "peft" if settings.weight_type is WeightType.ADAPTER else "delta_weights"
        weights.arguments[key] = folder
        weights.recorded[key] = settings.part.location + (
            f"@{settings.part.revision}" if settings.part.revision else ""
        )
    return weights


def local_folder(ref: ModelRef) -> str:
    """An adapter's or a delta's files on disk: a local folder as it is, a Hub repo at its revision through the
    Hub's cache (offline: the cache alone). Fetched here so that the adapter's own revision is the one used
    (HFLM would ask for the base model's)."""
    if ref.source is not ModelSource.HUB:
        return ref.location
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(ref.location, revision=ref.revision)
    except Exception as e:  # huggingface_hub raises many kinds (not found, offline without a cache, gated)
        if (refused := access_refused(e, ref.location)) is not None:  # gated, 401/403: the Hub's one line
            raise refused from e
        raise RunError(f"cannot fetch {ref.location}: {type(e).__name__}: {str(e).splitlines()[0]}") from e


# The module classes of quantized linear layers, by name, among a layer's classes and their bases: bitsandbytes',
# and gptqmodel's kernels (`TorchAtenLinear`, `MarlinQuantLinear`, ...), all built on its `BaseQuantLinear`.
QUANTIZED_LAYERS = {
    Precision.INT8: ("Linear8bitLt",),
    Precision.INT4: ("Linear4bit",),
    Precision.GPTQ: ("BaseQuantLinear",),
}


def check_quantized(model: Any, precision: Precision | None) -> None:
    """The loaded model holds the precision's quantized layers; a quantization silently not applied (lm-eval
    #973: 8bit and 4bit GPTQ scoring the same) is a RunError, never a run."""
    if precision is None or not precision.quantized or model is None:
        return
    names = QUANTIZED_LAYERS[precision]
    found = sum(1 for m in model.modules() if any(c.__name__ in names for c in type(m).__mro__))
    if not found:
        raise RunError(
            f"--precision {precision}: the model loaded without {precision} layers (none of {', '.join(names)}); "
            "the quantization was not applied, so nothing is scored"
        )


class LoadsWeights:
    """Mixed into the backends' HFLM classes, before HFLM: what evalsuite loads beyond HFLM's own arguments.

    - `quantization`: a bitsandbytes config for from_pretrained. HFLM passes on only the checkpoint's own
      (`_create_model(quantization_config=)`), and transformers 5 no longer takes `load_in_8bit`/`load_in_4bit`
      keywords (HFLM would hand them to the model class, which refuses them).
    - `delta_weights`: a folder whose tensors are added to the loaded model's, each parameter once. HFLM's own
      `delta` adds through `state_dict()`, where tied weights appear under both names, so a model that ties its
      embeddings (SmolLM2) would get their delta twice.
    """

    _model: Any

    def __init__(self, *args: Any, quantization: Any = None, delta_weights: str | None = None, **kwargs: Any) -> None:
        self._evalsuite_quantization = quantization
        self._evalsuite_delta = delta_weights
        super().__init__(*args, **kwargs)

    def _create_model(self, *args: Any, quantization_config: Any = None, **kwargs: Any) -> None:
        quantization = self._evalsuite_quantization or quantization_config
        super()._create_model(*args, quantization_config=quantization, **kwargs)  # type: ignore[misc]
        if self._evalsuite_delta is not None:
            add_delta(self._model, Path(self._evalsuite_delta))


def add_delta(model: Any, folder: Path) -> None:
    """Add a folder's safetensors tensors to the model's parameters of the same names (each shared one once)."""
    import torch
    from safetensors.torch import load_file

    delta: dict[str, Any] = {}
    for file in sorted(folder.glob("*.safetensors")):
        delta |= load_file(str(file))
    if not delta:
        raise RunError(f"--delta: {folder} holds no *.safetensors weights to add")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name not in delta:
                raise RunError(f"--delta: {folder} has no tensor {name}, which the base model has")
            if tuple(delta[name].shape) != tuple(parameter.shape):
                raise RunError(
                    f"--delta: tensor {name} is {list(delta[name].shape)} there, {list(parameter.shape)} in the base"
                )
            parameter.add_(delta[name].to(device=parameter.device, dtype=parameter.dtype))

"""Backends: the ways evalsuite runs a model, each a named `ModelBackend` in a lazy registry.

A backend declares, before anything loads, what a run must know of it:
- its typed options (`options`, a pydantic model: `--backend-options k=v,...`), recorded in results.json;
- which model args it takes (`check_model_args`: `--model-args k=v,...`);
- whether it can run data-parallel with the single-process numbers (`data_parallel`);
- whether its requests and numbers are lm-eval HFLM's (`hflm_exact`): only then can a task it ran be the
  leaderboard's (otherwise results.json says why not, task by task);
and it loads a model as lm-eval's `LM` (`load`), and, where it can, as the contamination check's scorer
(`load_scorer`).

Two ship with evalsuite (`BUILTIN`):
- `shared-prefix` (the default, backends/shared_prefix.py): lm-eval's HF model whose log-likelihood requests
  share the forward pass of their common prefix, and whose GSM8K generations decode with continuous batching
  (option `generation`: evalsuite's loop or transformers' manager, generation.GreedyGenerator);
- `lm-eval-hf` (backends/lm_eval_hf.py): lm-eval's HF model itself.

A new backend is one module that defines a `ModelBackend`, made known in one of two ways:
- an entry point of the group `evalsuite.backends` in the package that ships it (pyproject.toml:
  `[project.entry-points."evalsuite.backends"] my-backend = "my_package.backend:BACKEND"`): found in every
  process that asks for a backend, a Ray worker or a torchrun rank as well as the CLI, as inspect_ai
  (`ensure_entry_points`, group `inspect_ai`) and vLLM (`vllm.general_plugins`) find their plugins;
- `register_backend("my-backend", "my_package.backend:BACKEND")` in this process only (tests, notebooks).

The registry holds `module:attribute` strings and imports a backend only when it is asked for by name, so naming
backends (the CLI's help, results files) loads no model library; entry points are read (not imported) the
first time a name is looked up. Why not lm-eval's own registry (`@register_model`): it maps names to `LM` classes
and knows nothing of what must be checked before a model loads; inspect_ai's `@modelapi` is lazy for the same
reason as this one.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from evalsuite.engine.processes import Processes
from evalsuite.errors import OptionError, param
from evalsuite.model import LoadableModel, ModelRef
from evalsuite.records import FrozenRecord
from evalsuite.settings import DEFAULT_BACKEND, BatchSize, Dtype, Precision, WeightType

if TYPE_CHECKING:
    from lm_eval.api.model import LM

    from evalsuite.engine.neighbours import CausalLM

# name -> "module:attribute" of its ModelBackend: the two that ship; entry points and registered backends join them
BUILTIN: dict[str, str] = {
    DEFAULT_BACKEND: "evalsuite.engine.backends.shared_prefix:BACKEND",  # shared-prefix
    "lm-eval-hf": "evalsuite.engine.backends.lm_eval_hf:BACKEND",
    "served": "evalsuite.engine.backends.served:BACKEND",  # a model behind an OpenAI-compatible server (vLLM)
}
ENTRY_POINT_GROUP = "evalsuite.backends"

_registry: dict[str, str | ModelBackend] = dict(BUILTIN)
_entry_points_read = False


class BackendOptions(FrozenRecord):
    """A backend's typed options (`--backend-options k=v,...`), every one with a default; none by default.

    Recorded in results.json (`settings.backend_options`), every option with its value. A field's validator
    may raise ValueError with a short remedy ("give a positive number of tokens"): it becomes the error line.
    """


@dataclass(frozen=True)
class ModelSettings:
    """How a run loads its model, as typed values (what `ModelBackend.load` is given)."""

    dtype: Dtype
    device: str
    batch_size: BatchSize
    add_bos_token: bool
    backend: str = DEFAULT_BACKEND
    backend_options: BackendOptions | None = None  # None: the backend's defaults
    model_args: dict[str, str] = field(default_factory=dict)  # `--model-args`, checked by the backend
    precision: Precision | None = None  # None: unquantized, in `dtype`; 8bit/4bit/GPTQ: `dtype` is the compute dtype
    weight_type: WeightType = WeightType.ORIGINAL
    part: ModelRef | None = None  # the adapter (Adapter) or the delta weights (Delta) over the loaded model


@dataclass
class LoadedModel:
    """A model as a backend loaded it: lm-eval's `LM`, and what results.json records of it."""

    lm: LM
    model_args: dict[str, Any]  # what lm-eval records as the model's arguments
    device: str
    parameters: int | None
    dtype: Dtype  # as the loaded model reports it
    load_seconds: float
    backend: str = DEFAULT_BACKEND
    processes: Processes = field(default_factory=Processes)  # data-parallel ranks (backends that split forwards)


class ModelBackend(ABC):
    """A way to run a model. Subclasses set the class attributes and implement `load`."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line: what it does, for the docs and `--backend` errors
    options: ClassVar[type[BackendOptions]] = BackendOptions
    data_parallel: ClassVar[bool] = False
    hflm_exact: ClassVar[bool] = False
    # why a task it ran is not the leaderboard's, as results.json and cards say it (backends not hflm_exact)
    not_exact_because: ClassVar[str] = "its requests or numbers are not lm-eval HFLM's"
    reprobes_batch_size: ClassVar[bool] = False  # takes lm-eval's `auto:N` (probe the batch size again N times)

    def parse_options(self, given: Mapping[str, Any], flag: str = "backend_options") -> BackendOptions:
        """The options from `k=v` values (strings, as a command line gives them, or typed): checked, typed, every
        default filled in. A bad one is one OptionError naming `flag` and the option."""
        try:
            return self.options.model_validate(dict(given))
        except ValidationError as e:
            first = e.errors()[0]
            key = str(first["loc"][0]) if first["loc"] else ""
            if first["type"] == "extra_forbidden":
                known = ", ".join(self.options.model_fields) or "none"
                raise OptionError(
                    f"{param(flag)} {key}={given.get(key)}: {key!r} is not an option of backend {self.name} "
                    f"(its options: {known})"
                ) from e
            why = str(first["msg"]).removeprefix("Value error, ")
            raise OptionError(f"{param(flag)} {key}={given.get(key)}: {why}") from e

    def options_of(self, settings: ModelSettings) -> BackendOptions:
        """The settings' options for this backend (its defaults when none were given)."""
        options = settings.backend_options if settings.backend_options is not None else self.options()
        if not isinstance(options, self.options):
            raise TypeError(f"backend {self.name} takes {self.options.__name__}, not {type(options).__name__}")
        return options

    def check_model_args(self, args: Mapping[str, str], config_keys: frozenset[str] = frozenset()) -> None:
        """Refuse, before anything loads, model args the backend would only reject after loading. Default: it
        takes none."""
        if args:
            key = next(iter(args))
            raise OptionError(f"{param('model_args')} {key}={args[key]}: backend {self.name} takes no model args")

    def moved_model_args(self, args: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """(model args, options) from `--model-args` of older versions, where this backend's options were model
        args (`generation=`, `pack_tokens=`): the options among them are taken out. Default: none move."""
        return dict(args), {}

    def where(self, settings: ModelSettings) -> str | None:
        """Where the model runs, when not in this process on `settings.device` (the loading line says it)."""
        return None

    @abstractmethod
    def load(self, model: LoadableModel, settings: ModelSettings) -> LoadedModel:
        """The model, loaded as lm-eval's `LM` with these settings."""

    def check_scorer_model_args(self, args: Mapping[str, str], config_keys: frozenset[str] = frozenset()) -> None:
        """Refuse, before anything loads, model args `load_scorer` would not take. Default: no scorer at all."""
        raise OptionError(f"{param('backend')} {self.name} cannot load a model for the contamination check")

    def load_scorer(self, model: LoadableModel, dtype: Dtype, device: str, model_args: Mapping[str, str]) -> CausalLM:
        """The model and its tokenizer as the contamination check scores with them (CausalLM)."""
        raise OptionError(f"{param('backend')} {self.name} cannot load a model for the contamination check")


def register_backend(name: str, target: str | ModelBackend) -> None:
    """Make `name` a backend in this process: `target` is a ModelBackend, or `module:attribute` naming one
    (imported when asked for). A name already taken is replaced (tests; a package that improves a built-in).
    A backend other processes must find too (a cluster's workers) is an entry point (the module's docstring)."""
    _check_name(name, target)
    _read_entry_points()  # so an entry point of the same name read later cannot replace this one
    _registry[name] = target


def _check_name(name: str, target: str | ModelBackend) -> None:
    if not name or any(c.isspace() or c in ",=" for c in name):
        raise ValueError(f"backend name {name!r}: no spaces, commas or '='")
    if isinstance(target, str) and ":" not in target:
        raise ValueError(f"backend {name}: give 'module:attribute', not {target!r}")


def _read_entry_points() -> None:
    """The installed distributions' backends (group `evalsuite.backends`), read once per process: names and
    targets only, nothing imported. A built-in name is not taken over by an entry point."""
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in _registry:
            continue
        try:
            _check_name(point.name, point.value)
        except ValueError:
            continue  # a distribution's malformed entry: not a backend, and no reason to fail every run
        _registry[point.name] = point.value


def unregister_backend(name: str) -> None:
    """Forget a registered backend; a built-in goes back to its own."""
    if name in BUILTIN:
        _registry[name] = BUILTIN[name]
    else:
        _registry.pop(name, None)


def backend_names() -> list[str]:
    """Every backend's name: the built-ins, the installed entry points, the registered (nothing is imported)."""
    _read_entry_points()
    return list(_registry)


def get_backend(name: str) -> ModelBackend:
    """The backend registered as `name` (imported on first use); an unknown name is one OptionError."""
    _read_entry_points()
    target = _registry.get(name)
    if target is None:
        raise OptionError(f"{param('backend')} {name!r}: choose {' or '.join(backend_names())}")
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        found = getattr(importlib.import_module(module), attribute)
        if not isinstance(found, ModelBackend) or found.name != name:
            raise TypeError(f"{target} is not the ModelBackend named {name!r}")
        _registry[name] = target = found
    return target


__all__ = [
    "BUILTIN",
    "DEFAULT_BACKEND",
    "ENTRY_POINT_GROUP",
    "BackendOptions",
    "LoadedModel",
    "ModelBackend",
    "ModelSettings",
    "backend_names",
    "get_backend",
    "register_backend",
    "unregister_backend",
]

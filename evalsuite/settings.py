"""The settings that move scores, as typed values: parsed once from what a user writes (`--batch-size auto:4`,
`--dtype bfloat16`, `--seed 0,1234,1234,1234`), passed through every layer as these types, and recorded in the
results files in the JSON they always had (a batch size as `8` or `"auto"`, a dtype as `"float32"`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator

from evalsuite.errors import OptionError, param
from evalsuite.records import FrozenRecord

# The backend a run uses unless it names another (evalsuite.engine.backends: the registry of every backend's name,
# the built-ins, installed entry points and registered ones alike); here so that the CLI's default and results
# files need no engine import.
DEFAULT_BACKEND = "shared-prefix"


class GenerationEngine(StrEnum):
    """What decodes GSM8K's greedy generations in the shared-prefix backend (its option `generation`, recorded in
    results.json). Both give lm-eval's texts; bench/RESULTS.md has their times."""

    EVALSUITE = "evalsuite"  # evalsuite.engine.generation.ContinuousGreedy: its own continuous batching (default)
    TRANSFORMERS = "transformers"  # transformers' ContinuousBatchingManager, driven by ManagedGreedy


class Dtype(StrEnum):
    """The model's dtype; `auto` lets transformers take the checkpoint's own."""

    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"
    AUTO = "auto"

    @classmethod
    def parse(cls, text: str) -> Dtype:
        try:
            return cls(text)
        except ValueError as e:
            names = [d.value for d in cls]
            raise OptionError(f"{param('dtype')} {text!r}: choose {', '.join(names[:-1])} or {names[-1]}") from e

    @classmethod
    def of_loaded(cls, name: str) -> Dtype:
        """The dtype a loaded model reports (torch's name, `float32`), as results files record it."""
        if name == cls.AUTO.value or name not in {d.value for d in cls}:
            raise OptionError(
                f"the model loaded in {name}, which evalsuite does not record; pass {param('dtype')} float32, "
                "bfloat16 or float16"
            )
        return cls(name)

    @classmethod
    def default_for(cls, device: str) -> Dtype:
        """float32 on a CPU (bfloat16 matmuls are slow there), bfloat16 on a GPU."""
        return cls.BFLOAT16 if device.startswith("cuda") else cls.FLOAT32


class Precision(StrEnum):
    """How the model's weights are held while it runs, in the leaderboard's names (its submissions' `Precision`,
    its archive's column), plus float32 (evalsuite's CPU default, never a leaderboard precision).

    float32/float16/bfloat16 load the weights in that dtype; 8bit and 4bit quantize them on load with
    bitsandbytes, computing in `--dtype`; GPTQ loads a GPTQ checkpoint (its own config says so) through
    transformers' GPTQ integration. docs/protocols.md has what the leaderboard did for each."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    INT8 = "8bit"
    INT4 = "4bit"
    GPTQ = "GPTQ"

    @classmethod
    def parse(cls, text: str) -> Precision:
        for precision in cls:
            if text.lower() == precision.value.lower():
                return precision
        names = [p.value for p in cls]
        raise OptionError(f"{param('precision')} {text!r}: choose {', '.join(names[:-1])} or {names[-1]}")

    @classmethod
    def of_dtype(cls, dtype: Dtype) -> Precision:
        """The precision of an unquantized model loaded in `dtype` (what results files before schema 4 ran)."""
        return cls(dtype.value) if dtype is not Dtype.AUTO else cls.FLOAT32

    @property
    def quantized(self) -> bool:
        return self in (Precision.INT8, Precision.INT4, Precision.GPTQ)

    @property
    def bitsandbytes(self) -> bool:
        return self in (Precision.INT8, Precision.INT4)

    @property
    def named_on_cards(self) -> bool:
        """Whether a card's results name it: every precision but the 16-bit ones, which the leaderboard ran
        unless a submission asked otherwise."""
        return self not in (Precision.FLOAT16, Precision.BFLOAT16)

    @property
    def dtype(self) -> Dtype | None:
        """The dtype this precision loads in (None: a quantized one, whose compute dtype is `--dtype`)."""
        return None if self.quantized else Dtype(self.value)


def loaded_as(precision: Precision | None, dtype: Dtype, weight_type: WeightType, base_model: str | None) -> str:
    """How a model runs, as lines, tables and cards say it: `bfloat16`; `4bit, computing in float32`;
    `float16, adapter over ORG/BASE`. No precision: the dtype as asked (`auto` too)."""
    if precision is None:
        text = str(dtype)
    else:
        text = str(precision) + (f", computing in {dtype}" if precision.bitsandbytes else "")
    if weight_type is not WeightType.ORIGINAL:
        text += f", {weight_type.value.lower()} over {base_model}"
    return text


class WeightType(StrEnum):
    """What MODEL's weights are, in the leaderboard's names (its submissions' `Weight type`): the whole model, a
    PEFT adapter over a base model, or a delta to add to a base model's weights."""

    ORIGINAL = "Original"
    ADAPTER = "Adapter"
    DELTA = "Delta"


@dataclass(frozen=True)
class BatchSize:
    """Rows per forward pass: a fixed number, or `auto` (the largest that fits; evalsuite's backends halve it on
    out-of-memory), or lm-eval's `auto:N` (probe again N times over the run; the lm-eval-hf backend only)."""

    rows: int | None = 8  # None: auto
    reprobes: int | None = None  # auto:N

    def __post_init__(self) -> None:
        if self.rows is not None and (self.rows < 1 or self.reprobes is not None):
            raise ValueError(f"BatchSize(rows={self.rows}, reprobes={self.reprobes}): a fixed size is a positive int")
        if self.reprobes is not None and self.reprobes < 1:
            raise ValueError(f"BatchSize(reprobes={self.reprobes}): auto:N needs N >= 1")

    @classmethod
    def auto_size(cls, reprobes: int | None = None) -> BatchSize:
        return cls(rows=None, reprobes=reprobes)

    @classmethod
    def parse(cls, text: str | int, allow_reprobes: bool = True) -> BatchSize:
        """`8`, `auto` or `auto:N` (`allow_reprobes=False`: `auto:N` refused, as where nothing probes)."""
        text = str(text)
        if text == "auto":
            return cls.auto_size()
        if text.startswith("auto:") and allow_reprobes:
            try:
                again = int(text.removeprefix("auto:"))
            except ValueError:
                again = 0
            if again < 1:
                raise OptionError(
                    f"{param('batch_size')} {text!r}: give auto, auto:N (N a positive int) or a positive int"
                )
            return cls.auto_size(again)
        try:
            rows = int(text)
        except ValueError:
            rows = 0
        if rows < 1:
            raise OptionError(f"{param('batch_size')} {text!r}: give a positive int or 'auto'")
        return cls(rows)

    @property
    def auto(self) -> bool:
        return self.rows is None

    @property
    def recorded(self) -> int | str:
        """As results files and lm-eval's HFLM take it: an int, `"auto"` or `"auto:N"`."""
        return self.rows if self.rows is not None else str(self)

    def __str__(self) -> str:
        if self.rows is not None:
            return str(self.rows)
        return "auto" if self.reprobes is None else f"auto:{self.reprobes}"


SEED_LIMIT = 2**32  # numpy's seeds are 0 <= seed < 2**32


class Seeds(FrozenRecord):
    """lm-eval's four seeds (python random, numpy, torch, few-shot sampler); the defaults are lm-eval's."""

    random: int = 0
    numpy: int = 1234
    torch: int = 1234
    fewshot: int = 1234

    @classmethod
    def all(cls, seed: int) -> Seeds:
        return cls(random=seed, numpy=seed, torch=seed, fewshot=seed)

    @classmethod
    def parse(cls, text: str) -> Seeds:
        """lm-eval's --seed: one int for all four seeds, or `random,numpy,torch,fewshot`."""
        shape = f"{param('seeds')} {text!r}: give an int or four comma-separated ints"
        try:
            parts = [int(p) for p in text.split(",")]
        except ValueError as e:
            raise OptionError(shape) from e
        if any(not 0 <= p < SEED_LIMIT for p in parts):
            raise OptionError(f"{param('seeds')} {text!r}: seeds go from 0 to {SEED_LIMIT - 1}")
        if len(parts) == 1:
            return cls.all(parts[0])
        if len(parts) == 4:
            return cls(random=parts[0], numpy=parts[1], torch=parts[2], fewshot=parts[3])
        raise OptionError(shape)


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise OptionError(f"{param('limit')} {limit}: give a positive number of documents per task")


# Request fields (pydantic) that take a setting as its type or as the text a user writes, parsed once here:
# `batch_size="auto"`, `dtype="bfloat16"`, `seeds=0` or `"0,1234,1234,1234"`. A bad value is one OptionError.


def _as_batch_size(value: Any) -> Any:
    return value if isinstance(value, BatchSize) else BatchSize.parse(value)


def _as_dtype(value: Any) -> Any:
    return value if value is None or isinstance(value, Dtype) else Dtype.parse(str(value))


def _as_precision(value: Any) -> Any:
    return value if value is None or isinstance(value, Precision) else Precision.parse(str(value))


def _as_seeds(value: Any) -> Any:
    return Seeds.parse(str(value)) if isinstance(value, int | str) and not isinstance(value, bool) else value


BatchSizeField = Annotated[BatchSize, BeforeValidator(_as_batch_size)]
DtypeField = Annotated[Dtype | None, BeforeValidator(_as_dtype)]
PrecisionField = Annotated[Precision | None, BeforeValidator(_as_precision)]
SeedsField = Annotated[Seeds, BeforeValidator(_as_seeds)]


__all__ = [
    "SEED_LIMIT",
    "DEFAULT_BACKEND",
    "BatchSize",
    "BatchSizeField",
    "Dtype",
    "DtypeField",
    "GenerationEngine",
    "Precision",
    "PrecisionField",
    "Seeds",
    "SeedsField",
    "WeightType",
    "check_limit",
    "loaded_as",
]

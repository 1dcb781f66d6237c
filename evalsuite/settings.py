"""The settings that move scores, as typed values: parsed once from what a user writes (`--batch-size auto:4`,
`--dtype bfloat16`, `--seed 0,1234,1234,1234`), passed through every layer as these types, and recorded in the
results files in the JSON they always had (a batch size as `8` or `"auto"`, a dtype as `"float32"`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from evalsuite.errors import SuiteConfigError, param


class Backend(StrEnum):
    """How log-likelihood requests reach the model. Both give the same choices and values (to float rounding)."""

    SHARED_PREFIX = "shared-prefix"  # evalsuite.engine.backend: each shared prefix forwarded once
    LM_EVAL_HF = "lm-eval-hf"  # lm-eval's own HFLM, request by request


class GenerationEngine(StrEnum):
    """What decodes GSM8K's greedy generations in the shared-prefix backend (`--model-args generation=...`).
    Both give lm-eval's texts; bench/RESULTS.md has their times."""

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
            raise SuiteConfigError(f"{param('dtype')} {text!r}: choose {', '.join(names[:-1])} or {names[-1]}") from e

    @classmethod
    def default_for(cls, device: str) -> Dtype:
        """float32 on a CPU (bfloat16 matmuls are slow there), bfloat16 on a GPU."""
        return cls.BFLOAT16 if device.startswith("cuda") else cls.FLOAT32


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
                raise SuiteConfigError(
                    f"{param('batch_size')} {text!r}: give auto, auto:N (N a positive int) or a positive int"
                )
            return cls.auto_size(again)
        try:
            rows = int(text)
        except ValueError:
            rows = 0
        if rows < 1:
            raise SuiteConfigError(f"{param('batch_size')} {text!r}: give a positive int or 'auto'")
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


class Seeds(BaseModel):
    """lm-eval's four seeds (python random, numpy, torch, few-shot sampler); the defaults are lm-eval's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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
            raise SuiteConfigError(shape) from e
        if any(not 0 <= p < SEED_LIMIT for p in parts):
            raise SuiteConfigError(f"{param('seeds')} {text!r}: seeds go from 0 to {SEED_LIMIT - 1}")
        if len(parts) == 1:
            return cls.all(parts[0])
        if len(parts) == 4:
            return cls(random=parts[0], numpy=parts[1], torch=parts[2], fewshot=parts[3])
        raise SuiteConfigError(shape)


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise SuiteConfigError(f"{param('limit')} {limit}: give a positive number of documents per task")


__all__ = ["SEED_LIMIT", "Backend", "BatchSize", "Dtype", "Seeds", "check_limit"]

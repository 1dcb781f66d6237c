"""Greedy generation for GSM8K with continuous batching: a prompt leaves the batch as soon as its own answer is
final, and a waiting prompt takes its place. Two engines, the same texts (lm-eval's HFLM's):

- `ContinuousGreedy` (the default, the shared-prefix backend's option `generation=evalsuite`): evalsuite's own
  loop over one transformers KV cache of `DynamicLayer`s that it edits (rows right-aligned and left-padded,
  spare columns written in place, rows compacted as they leave).
- `ManagedGreedy` (`generation=transformers`): transformers' own `ContinuousBatchingManager` (paged KV cache,
  prefix pages shared), driven the way lm-eval's generation needs (below).

Both are `GreedyGenerator`s, made by `greedy_generator(engine, ...)`: the backend knows the interface, not the
classes.

Why the loop stays the default (figures in bench/RESULTS.md): on real GSM8K requests on a CPU both give
HFLM's texts, but the manager is slower than HFLM's fixed batches and far slower than the loop. With sdpa or
eager attention it runs each forward as one flattened sequence of every request's tokens under a dense
mask, so every query attends over all requests' cached tokens; it is built for flash-attention kernels,
which evalsuite does not switch to on its own (they change the numbers). It has not run on a GPU yet;
bench/gpu_generation.py --paths measures the three side by side.

The loop. lm-eval's HFLM hands fixed batches to `model.generate`, which decodes until the batch's last
prompt is done: one answer that rambles to `max_gen_toks` keeps every other row of its batch decoding. With
the SmolLM2 demo model most GSM8K answers stop within ~60 tokens and a few run to 256, so a fixed batch
spends most of its steps on rows whose text is already final. Here the batch stays full while prompts
wait, and the steps follow the average answer length, not the longest. Every prompt gets the tokens
`model.generate` would give it: at each step the greedy choice from its own prompt and its own tokens, at
the positions it would have alone (rows are left-padded and right-aligned in one KV cache; padding is
masked), so its text is the same up to the float rounding of differently shaped matrix products. A prompt
is final when it emits an end-of-sequence token, reaches its token budget, or when the caller says its
text is final (lm-eval cuts a generation at its first stop string, so what would follow cannot change it).
It works on caches made only of `DynamicLayer`s (full attention, the common decoder LMs); `supports` says
why not otherwise, and the caller then uses lm-eval's path.

The manager ends a request only on an end-of-sequence token or its token budget. Each request streams its
tokens; the caller's `is_final` is asked after each (lm-eval's stop strings), and a request whose text is
final is cancelled with exactly the tokens it had then (the manager may have decoded one more, which is
dropped). Every request must come back finished: a failed request, or a manager that stops before all are
done, raises `GenerationFailed` naming the prompts, never an empty answer (the manager's own
`generate_batch` returns partial results and only logs what is missing). Memory and kernels are set
explicitly: a cache for `CacheBudget.slots` requests of the longest prompt plus its budget, not the
manager's default share of the machine (60% of RAM on CPU, 90% of a GPU); the model's attention as loaded;
no CUDA graphs, no compilation. Out of memory (the error that stopped the manager's thread, by its type)
under `--batch-size auto`: the requests not yet final start again in a new manager with half the requests
and half the tokens per forward (`oom.Rows`, as every loop backs off). It decodes in a thread of its own;
`run` waits on its results in the caller's thread.
"""

from __future__ import annotations

import inspect
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer

from evalsuite.engine import oom
from evalsuite.engine.compat import kv_cache_kwarg
from evalsuite.errors import GenerationFailed
from evalsuite.settings import GenerationEngine

log = logging.getLogger(__name__)

# A waiting prompt is admitted (one prefill forward for all admitted at once) when this share of the
# slots is free; finished rows stay in the batch, ignored, until then. Admitting one prompt per finished
# row would mean a prefill and a copy of the whole KV cache almost every step on a large batch.
REFILL_SHARE = 1 / 8

# Columns each layer's KV buffers hold beyond what is cached, so that a decode step writes its column in
# place. DynamicLayer appends with `torch.cat`, a copy of the whole cache at every step (what that costs a
# decode step: bench/gpu_generation.py, figures in bench/RESULTS.md). Here a copy happens once per this many
# steps, and when rows join or leave.
SPARE_COLUMNS = 64

# generation_config fields under which `generate` changes greedy choices (logits processors); with any of
# them set to something other than these neutral values, the caller keeps lm-eval's path.
_NEUTRAL_GENERATION_SETTINGS: dict[str, tuple] = {
    "num_beams": (None, 1),
    "num_beam_groups": (None, 1),
    "penalty_alpha": (None,),
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "sequence_bias": (None,),
    "exponential_decay_length_penalty": (None,),
    "guidance_scale": (None, 1.0),
    "dola_layers": (None,),
    "prompt_lookup_num_tokens": (None,),
    "stop_strings": (None,),
    "watermarking_config": (None,),
}


def supports(model: PreTrainedModel, engine: GenerationEngine = GenerationEngine.EVALSUITE) -> str | None:
    """None if the engine's greedy continuous batching reproduces `model.generate` for this model; else why not.
    (Both engines are handed no logits processors, so a generation_config that sets one keeps lm-eval's path.)"""
    config = getattr(model, "generation_config", None)
    for name, neutral in _NEUTRAL_GENERATION_SETTINGS.items():
        value = getattr(config, name, None)
        if value not in neutral:
            return f"generation_config.{name}={value!r} changes greedy choices"
    if engine is GenerationEngine.TRANSFORMERS:
        return None  # the manager takes any attention and cache layout it has an allocator for
    attention = getattr(model.config, "_attn_implementation", None) or "eager"
    if attention not in ("sdpa", "eager"):
        return f"attention implementation {attention!r}"
    try:
        layers = DynamicCache(config=model.config).layers
    except Exception as e:  # noqa: BLE001 - any model whose cache cannot be built this way keeps lm-eval's path
        return f"no dynamic KV cache ({e})"
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return "KV cache with sliding-window or other non-full-attention layers"
    return None


def eos_token_ids(model: PreTrainedModel) -> set[int]:
    """The ids on which `generate` ends a row: the model's generation_config.eos_token_id."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        return set()
    return {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}


class _InPlaceLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views of larger buffers: `update` writes the new columns
    into the spare ones. Code that changes the batch's rows or padding replaces `keys` and `values` with
    new tensors, as `_Batch` and DynamicLayer's own methods do; the buffers are then let go at once (not
    held beside the new tensors), and the next update copies the cache into fresh buffers with
    SPARE_COLUMNS to spare, as it does when the spare columns run out."""

    def __init__(self, **kwargs) -> None:
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None
        super().__init__(**kwargs)

    @property
    def keys(self) -> torch.Tensor | None:
        return self._keys

    @keys.setter
    def keys(self, tensor: torch.Tensor | None) -> None:
        self._keys = tensor
        self._let_go_unless_viewed_by(tensor, 0)

    @property
    def values(self) -> torch.Tensor | None:
        return self._values

    @values.setter
    def values(self, tensor: torch.Tensor | None) -> None:
        self._values = tensor
        self._let_go_unless_viewed_by(tensor, 1)

    def _let_go_unless_viewed_by(self, tensor: torch.Tensor | None, which: int) -> None:
        # so that `_buffers`, when set, always holds `keys` and `values` as prefix views
        if self._buffers is not None and not (tensor is not None and _is_prefix(tensor, self._buffers[which])):
            self._buffers = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        cached, new = self.get_seq_length(), key_states.shape[-2]
        if self._buffers is None or cached + new > self._buffers[0].shape[2]:
            assert self.keys is not None and self.values is not None  # set by lazy_initialization
            self._buffers = (
                _with_spare_columns(self.keys, key_states, cached + new),
                _with_spare_columns(self.values, value_states, cached + new),
            )
        keys, values = self._buffers
        keys[..., cached : cached + new, :] = key_states
        values[..., cached : cached + new, :] = value_states
        self.keys, self.values = keys[..., : cached + new, :], values[..., : cached + new, :]
        return self._keys, self._values


def _is_prefix(view: torch.Tensor, buffer: torch.Tensor) -> bool:
    """Whether `view` is buffer[..., :n, :] for some n."""
    return (
        view.dim() == 4 and view.data_ptr() == buffer.data_ptr()
        and view.shape[:2] == buffer.shape[:2] and view.stride() == buffer.stride()
    )  # fmt: skip


def _with_spare_columns(cached: torch.Tensor, new: torch.Tensor, columns: int) -> torch.Tensor:
    """A buffer for `columns` + SPARE_COLUMNS columns of new's shape, holding the cached columns."""
    buffer = new.new_empty((new.shape[0], new.shape[1], columns + SPARE_COLUMNS, new.shape[3]))
    if cached.dim() == 4 and cached.shape[2]:
        buffer[..., : cached.shape[2], :] = cached
    return buffer


def _in_place_cache(model: PreTrainedModel) -> DynamicCache:
    cache = DynamicCache(config=model.config)
    cache.layers = [_InPlaceLayer() for _ in cache.layers]  # all DynamicLayers: `supports` checked
    return cache


@dataclass
class _Batch:
    """The rows decoding together: one KV cache whose rows are right-aligned (left padding masked)."""

    prompts: list[int]  # which prompt each row is
    live: list[bool]  # False once the row's output is final (it stays, ignored, until compaction)
    cache: DynamicCache  # keys/values per layer: [rows, kv_heads, columns, head_dim]
    mask: torch.Tensor  # [rows, columns]: 1 where a real token is cached
    positions: torch.Tensor  # [rows]: position of the next token fed (= real tokens cached)
    last: torch.Tensor  # [rows]: the token fed at the next step (the last one generated)

    @property
    def columns(self) -> int:
        return int(self.mask.shape[1])

    @property
    def layers(self) -> list[Any]:
        """The cache's layers, each holding `keys` and `values` tensors: DynamicLayers (`supports` checked it),
        which transformers types as a union with layers that hold none and with None before the first step."""
        return self.cache.layers

    def drop_partial_step(self) -> None:
        """After a failed step: cut the layers that already took the step's column back to the mask's."""
        for layer in self.layers:
            layer.keys, layer.values = layer.keys[..., : self.columns, :], layer.values[..., : self.columns, :]

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only these rows, then drop the columns that are padding in every row kept."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask, self.positions, self.last = self.mask[index], self.positions[index], self.last[index]
        self.prompts = [self.prompts[r] for r in rows]
        self.live = [self.live[r] for r in rows]
        used = self.mask.any(dim=0)
        start = int(used.long().argmax()) if bool(used.any()) else self.columns
        if start:
            for layer in self.layers:
                layer.keys, layer.values = layer.keys[..., start:, :], layer.values[..., start:, :]
            self.mask = self.mask[:, start:]

    def left_pad(self, columns: int) -> None:
        if columns <= 0:
            return
        for layer in self.layers:
            layer.keys = F.pad(layer.keys, (0, 0, columns, 0))
            layer.values = F.pad(layer.values, (0, 0, columns, 0))
        self.mask = F.pad(self.mask, (columns, 0))

    def extend(self, other: _Batch) -> None:
        """Append other's rows (both right-aligned: the shorter is padded on the left). Out of memory
        half-way leaves this batch as it was, so the caller can back off."""
        rows, columns = len(self.prompts), self.columns
        width = max(columns, other.columns)
        try:
            self.left_pad(width - columns)
            other.left_pad(width - other.columns)
            for mine, theirs in zip(self.layers, other.layers, strict=True):
                mine.keys = torch.cat([mine.keys, theirs.keys])
                mine.values = torch.cat([mine.values, theirs.values])
        except Exception:  # out of memory, mostly: this batch as it was, then the error
            for layer in self.layers:  # the last `columns` columns of the first `rows` rows
                layer.keys = layer.keys[:rows, :, layer.keys.shape[2] - columns :, :]
                layer.values = layer.values[:rows, :, layer.values.shape[2] - columns :, :]
            self.mask = self.mask[:rows, self.mask.shape[1] - columns :]
            raise
        self.mask = torch.cat([self.mask, other.mask])
        self.positions = torch.cat([self.positions, other.positions])
        self.last = torch.cat([self.last, other.last])
        self.prompts += other.prompts
        self.live += other.live


IsFinal = Callable[[int, list[int]], bool]
OnFinal = Callable[[int, list[int]], None]


class GreedyGenerator(ABC):
    """What decodes GSM8K's greedy requests with continuous batching: both engines (settings.GenerationEngine).

    `is_final(prompt, tokens)` is asked as each prompt's tokens come (besides the engine's own end-of-sequence
    and budget endings): lm-eval's stop strings. `on_final(prompt, tokens)` hears each prompt as it finishes.
    Under `backoff_on_oom` (`--batch-size auto`) out of memory halves the prompts decoding at once (`oom.Rows`).
    """

    oom_backoffs: int  # how often it backed off (read by the backend's stats)

    @abstractmethod
    def run(self, prompts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[list[int]]:
        """The generated tokens of every prompt (an end-of-sequence token, if emitted, last), in order; each
        prompt's tokens are `model.generate`'s greedy ones, up to float rounding."""


def greedy_generator(
    engine: GenerationEngine,
    model: PreTrainedModel,
    slots: int,
    longest: int,
    eos: set[int],
    pad_token_id: int,
    is_final: IsFinal,
    on_final: OnFinal,
    backoff_on_oom: bool,
    autocast_dtype: torch.dtype | None = None,
) -> GreedyGenerator:
    """The engine's generator for `slots` prompts at once, the longest `longest` tokens (prompt and budget)."""
    common: dict[str, Any] = dict(
        eos=eos, pad_token_id=pad_token_id, is_final=is_final, on_final=on_final, backoff_on_oom=backoff_on_oom
    )
    if engine is GenerationEngine.TRANSFORMERS:
        return ManagedGreedy(model, budget=CacheBudget(slots, longest), **common)
    return ContinuousGreedy(model, slots=slots, autocast_dtype=autocast_dtype, **common)


class ContinuousGreedy(GreedyGenerator):
    """Greedy decoding of many prompts through one batch of at most `slots` rows (evalsuite's loop).

    `backoff_on_oom`: on out-of-memory, halve the slots (the newest rows go back to the queue and start
    again) instead of raising.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        slots: int,
        eos: set[int],
        pad_token_id: int,
        is_final: Callable[[int, list[int]], bool] = lambda prompt, tokens: False,
        on_final: Callable[[int, list[int]], None] = lambda prompt, tokens: None,
        autocast_dtype: torch.dtype | None = None,
        backoff_on_oom: bool = False,
    ) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.rows = oom.Rows(max(1, int(slots)), auto=backoff_on_oom)  # the slots, halved on out-of-memory
        self.eos = eos
        self.pad_token_id = pad_token_id
        self.is_final = is_final
        self.on_final = on_final
        self.autocast_dtype = autocast_dtype
        self.steps = 0  # decode forwards (prefills not counted)
        self._logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._cache_kwarg = kv_cache_kwarg(model)  # `cache`, or `past_key_values` before transformers 5.2x

    @property
    def slots(self) -> int:
        """Rows decoding at once, at most."""
        return self.rows.rows

    @property
    def oom_backoffs(self) -> int:  # type: ignore[override]
        return self.rows.backoffs

    def run(self, prompts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[list[int]]:
        self._prompts, self._budgets = prompts, max_new_tokens
        self._tokens: list[list[int]] = [[] for _ in prompts]
        self._waiting = deque(i for i in range(len(prompts)) if max_new_tokens[i] > 0)
        for i in range(len(prompts)):
            if max_new_tokens[i] <= 0:
                self.on_final(i, [])
        batch: _Batch | None = None
        with torch.inference_mode():
            while self._waiting or (batch is not None and any(batch.live)):
                batch = self._refill(batch)
                if batch is not None and any(batch.live):
                    batch = self._step_or_shrink(batch)
        return self._tokens

    # --- the loop's parts

    def _refill(self, batch: _Batch | None) -> _Batch | None:
        live = sum(batch.live) if batch else 0
        dead = (len(batch.live) - live) if batch else 0
        free = self.slots - live
        threshold = max(1, int(self.slots * REFILL_SHARE))
        admit = min(free, len(self._waiting))
        if admit and (free >= threshold or live == 0):
            if batch is not None and live == 0:
                batch = None
            elif batch is not None and dead:
                batch.keep([r for r, alive in enumerate(batch.live) if alive])
            chosen = [self._waiting.popleft() for _ in range(admit)]
            admitted = self.rows.attempt(live + len(chosen), lambda: self._admit(batch, chosen), "generating")
            if isinstance(admitted, oom.BackedOff):
                self._waiting.extendleft(reversed(chosen))
                return self._evict_beyond_slots(batch)
            return admitted
        if batch is not None and dead and (dead >= threshold or not self._waiting):
            batch.keep([r for r, alive in enumerate(batch.live) if alive])
        return batch

    def _admit(self, batch: _Batch | None, chosen: list[int]) -> _Batch:
        """The batch with the chosen prompts prefilled and added (a new batch when there is none). Their first
        tokens are recorded once they are in: a back-off half-way leaves them untouched, to start again."""
        new = self._prefill(chosen)
        first = 0 if batch is None else len(batch.prompts)
        if batch is None:
            batch = new
        else:
            batch.extend(new)
        self._record(batch, first_row=first)
        return batch

    def _prefill(self, chosen: list[int]) -> _Batch:
        """One forward over the chosen prompts (left-padded) into a fresh cache, and their first tokens."""
        length = max(len(self._prompts[i]) for i in chosen)
        ids = torch.full((len(chosen), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chosen), length), dtype=torch.long)
        for row, i in enumerate(chosen):
            prompt = self._prompts[i]
            ids[row, length - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
            mask[row, length - len(prompt) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        # as `generate` computes them: 0.. from each row's first real token; padding's value is masked
        position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        cache = _in_place_cache(self.model)
        logits = self._forward(ids, mask, position_ids, cache)
        return _Batch(
            prompts=list(chosen), live=[True] * len(chosen), cache=cache, mask=mask,
            positions=mask.sum(-1), last=logits.argmax(-1),
        )  # fmt: skip

    def _step(self, batch: _Batch) -> _Batch:
        mask = F.pad(batch.mask, (0, 1), value=1)
        logits = self._forward(batch.last[:, None], mask, batch.positions[:, None], batch.cache)
        batch.mask, batch.positions, batch.last = mask, batch.positions + 1, logits.argmax(-1)
        self.steps += 1
        self._record(batch)
        return batch

    def _forward(self, ids, mask, position_ids, cache: DynamicCache) -> torch.Tensor:
        """Float32 logits at each row's last position (the cache grows by the ids' columns)."""
        extra = {"logits_to_keep": 1} if self._logits_to_keep else {}
        with torch.autocast(
            device_type=self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
        ):
            out = self.model(
                input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=True,
                **{self._cache_kwarg: cache}, **extra,
            )  # fmt: skip
        return out.logits[:, -1, :].float()

    def _record(self, batch: _Batch, first_row: int = 0) -> None:
        """Append each live row's new token (from `first_row` on); rows whose output is now final stop being
        live."""
        for row, token in enumerate(batch.last.tolist()[first_row:], start=first_row):
            if not batch.live[row]:
                continue
            prompt = batch.prompts[row]
            tokens = self._tokens[prompt]
            tokens.append(token)
            if token in self.eos or len(tokens) >= self._budgets[prompt] or self.is_final(prompt, tokens):
                batch.live[row] = False
                self.on_final(prompt, tokens)

    # --- out of memory

    def _step_or_shrink(self, batch: _Batch) -> _Batch | None:
        stepped = self.rows.attempt(sum(batch.live), lambda: self._step(batch), "generating")
        if isinstance(stepped, oom.BackedOff):
            batch.drop_partial_step()
            return self._evict_beyond_slots(batch)
        return stepped

    def _evict_beyond_slots(self, batch: _Batch | None) -> _Batch | None:
        """After a back-off: the newest live rows beyond the (halved) slots go back to the front of the queue."""
        if batch is None:
            return None
        live = [r for r, alive in enumerate(batch.live) if alive]
        kept, evicted = live[: self.slots], live[self.slots :]
        for row in reversed(evicted):  # they start again later, from their prompt
            prompt = batch.prompts[row]
            self._tokens[prompt] = []
            self._waiting.appendleft(prompt)
        if not kept:
            return None
        batch.keep(kept)
        return batch


# --- transformers' own continuous batching (ContinuousBatchingManager)

# Tokens per page of the manager's paged KV cache (its default); a request holds whole pages.
PAGE_SIZE = 256
# Prompt and decode tokens one forward of the manager may take (its default; a longer prefill is split).
MAX_BATCH_TOKENS = 8192
# Seconds the caller waits on the manager's results before it checks that the manager still runs.
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class CacheBudget:
    """What one manager is sized for: `slots` requests at once (its `max_requests_per_batch`), each up to
    `tokens` long (prompt and new tokens; the cache holds `pages` whole pages), and at most `batch_tokens`
    tokens per forward."""

    slots: int
    tokens: int
    batch_tokens: int = MAX_BATCH_TOKENS

    @property
    def pages(self) -> int:
        return self.slots * -(-self.tokens // PAGE_SIZE)

    def after_backoffs(self, slots: int, backoffs: int) -> CacheBudget:
        """The budget once out of memory has halved the requests at once to `slots`: the tokens per forward
        halved as often (down to one page)."""
        return CacheBudget(slots, self.tokens, max(PAGE_SIZE, self.batch_tokens >> backoffs))


# After a request failed: how long to wait for the manager's thread to record the error that stopped it (it
# fails every request first, then records the error).
FATAL_ERROR_WAIT_SECONDS = 2.0


class ManagedGreedy(GreedyGenerator):
    """Greedy decoding of many prompts through transformers' ContinuousBatchingManager.

    `backoff_on_oom`: when the manager's thread stops on out-of-memory, the prompts not yet final start again in a
    new manager with half the requests at once and half the tokens per forward, instead of raising.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        budget: CacheBudget,
        eos: set[int],
        pad_token_id: int,
        is_final: IsFinal = lambda prompt, tokens: False,
        on_final: OnFinal = lambda prompt, tokens: None,
        backoff_on_oom: bool = False,
    ) -> None:
        self.model = model
        self.budget = budget
        self.rows = oom.Rows(budget.slots, auto=backoff_on_oom)
        self.eos = sorted(eos)
        self.pad_token_id = pad_token_id
        self.is_final = is_final
        self.on_final = on_final
        self.tokens_decoded = 0  # every token the manager generated, those after a cancellation included

    @property
    def oom_backoffs(self) -> int:  # type: ignore[override]
        return self.rows.backoffs

    def run(self, prompts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[list[int]]:
        tokens: dict[int, list[int]] = {}
        for i, new_tokens in enumerate(max_new_tokens):
            if new_tokens <= 0:
                tokens[i] = []
                self.on_final(i, [])
        waiting = [i for i in range(len(prompts)) if i not in tokens]
        while waiting:
            budget = self.budget.after_backoffs(self.rows.rows, self.rows.backoffs)
            self.rows.attempt(
                budget.slots, lambda: self._run_manager(prompts, max_new_tokens, waiting, tokens, budget), "generating"  # noqa: B023
            )
            waiting = [i for i in waiting if i not in tokens]
        return [tokens[i] for i in range(len(prompts))]

    def _run_manager(
        self, prompts, max_new_tokens, waiting: list[int], tokens: dict[int, list[int]], budget: CacheBudget
    ) -> None:
        """Decode the waiting prompts in one manager; each final one goes into `tokens` as it ends. Out of memory
        in the manager's thread is raised here as that error; any other failure as GenerationFailed."""
        from transformers import ContinuousBatchingConfig, GenerationConfig

        eos: int | list[int] = self.eos or -1  # -1: none (the manager's convention)
        generation_config = GenerationConfig(
            do_sample=False, max_new_tokens=max(max_new_tokens[i] for i in waiting), eos_token_id=eos,
            pad_token_id=self.pad_token_id,
        )  # fmt: skip
        config = ContinuousBatchingConfig(
            page_size=PAGE_SIZE,
            num_blocks=budget.pages,
            max_requests_per_batch=budget.slots,
            max_batch_tokens=budget.batch_tokens,
            allow_block_sharing=True,  # a prompt's pages that equal another's are computed once
            auto_switch_to_flash=False,
            use_cuda_graph=False,
            default_compile_level=0,
        )
        model: Any = self.model  # transformers' ContinuousMixin, which its stubs do not show on PreTrainedModel
        manager = model.init_continuous_batching(generation_config=generation_config, continuous_batching_config=config)
        live: dict[str, int] = {}  # request id -> prompt, until the prompt is final
        seen: dict[str, int] = {}  # tokens of each request seen so far
        with torch.inference_mode():  # the manager's thread runs in the mode it was started in
            manager.start()
        try:
            for i in waiting:
                request_id = f"prompt-{i}"
                manager.add_request(
                    list(prompts[i]), request_id=request_id, max_new_tokens=int(max_new_tokens[i]), streaming=True,
                    eos_token_id=eos,
                )  # fmt: skip
                live[request_id] = i
            while live:
                output = manager.get_result(timeout=POLL_SECONDS)
                if output is None:
                    if not manager.is_running():
                        error = manager.background_thread_status.fatal_error
                        _raise_if_out_of_memory(error)
                        raise GenerationFailed(sorted(live.values()), str(error or "the generation thread stopped"))
                    continue
                generated = list(output.generated_tokens)
                self.tokens_decoded += max(0, len(generated) - seen.get(output.request_id, 0))
                seen[output.request_id] = len(generated)
                prompt = live.get(output.request_id)
                if prompt is None:
                    continue  # a token decoded before the manager saw the request's cancellation
                if output.error is not None:  # the manager hands a request's error on as text: ask its thread why
                    _raise_if_out_of_memory(_fatal_error(manager))
                    raise GenerationFailed([prompt], output.error)
                if output.is_finished() or self.is_final(prompt, generated):
                    if not output.is_finished():
                        manager.cancel_request(output.request_id)
                    del live[output.request_id]
                    tokens[prompt] = generated
                    self.on_final(prompt, generated)
        finally:
            manager.stop(block=True, hard_stop=True)
            manager.destroy()


def _fatal_error(manager: Any) -> BaseException | None:
    """The error that stopped the manager's thread, if it stops (a request of its own failing leaves it running)."""
    import time

    deadline = time.monotonic() + FATAL_ERROR_WAIT_SECONDS
    status = manager.background_thread_status
    while status.fatal_error is None and manager.is_running() and time.monotonic() < deadline:
        time.sleep(0.005)
    return status.fatal_error


def _raise_if_out_of_memory(error: BaseException | None) -> None:
    if error is not None and oom.is_out_of_memory(error):
        raise error

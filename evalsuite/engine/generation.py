"""Greedy generation for GSM8K with continuous batching: a prompt leaves the batch as soon as its own answer is
final, and a waiting prompt takes its place. Two engines, the same texts (lm-eval's HFLM's):

- `ContinuousGreedy` (the default, `--model-args generation=evalsuite`): evalsuite's own loop over one
  transformers KV cache of `DynamicLayer`s that it edits (rows right-aligned and left-padded, spare columns
  written in place, rows compacted as they leave).
- `ManagedGreedy` (`--model-args generation=transformers`): transformers' own `ContinuousBatchingManager`
  (paged KV cache, prefix pages shared), driven the way lm-eval's generation needs (below).

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
no CUDA graphs, no compilation. Out of memory under `--batch-size auto`: the requests not yet final start
again in a new manager with half the requests and half the tokens per forward. It decodes in a thread of
its own; `run` waits on its results in the caller's thread.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer

from evalsuite.engine import oom
from evalsuite.engine.compat import kv_cache_kwarg
from evalsuite.errors import RunError
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
        except (torch.OutOfMemoryError, RuntimeError):
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


class ContinuousGreedy:
    """Greedy decoding of many prompts through one batch of at most `slots` rows.

    `is_final(prompt, tokens)` is asked after every new token of a prompt (besides the end-of-sequence
    and budget checks made here); `on_final(prompt, tokens)` hears each prompt as it finishes.
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
        self.slots = max(1, int(slots))
        self.eos = eos
        self.pad_token_id = pad_token_id
        self.is_final = is_final
        self.on_final = on_final
        self.autocast_dtype = autocast_dtype
        self.backoff_on_oom = backoff_on_oom
        self.oom_backoffs = 0
        self.steps = 0  # decode forwards (prefills not counted)
        self._logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._cache_kwarg = kv_cache_kwarg(model)  # `cache`, or `past_key_values` before transformers 5.2x

    def run(self, prompts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[list[int]]:
        """The generated tokens of every prompt (an end-of-sequence token, if emitted, last), in order."""
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
                    batch = self._guarded(self._step, batch)
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
            try:
                new = self._backing_off(self._prefill, chosen)
                if batch is None:
                    return new
                self._backing_off(batch.extend, new)
            except _OutOfMemory:
                self._waiting.extendleft(reversed(chosen))
                return self._shrink(batch, live + len(chosen))
            return batch
        if batch is not None and dead and (dead >= threshold or not self._waiting):
            batch.keep([r for r, alive in enumerate(batch.live) if alive])
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
        batch = _Batch(
            prompts=list(chosen), live=[True] * len(chosen), cache=cache, mask=mask,
            positions=mask.sum(-1), last=logits.argmax(-1),
        )  # fmt: skip
        self._record(batch)
        return batch

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

    def _record(self, batch: _Batch) -> None:
        """Append each live row's new token; rows whose output is now final stop being live."""
        for row, token in enumerate(batch.last.tolist()):
            if not batch.live[row]:
                continue
            prompt = batch.prompts[row]
            tokens = self._tokens[prompt]
            tokens.append(token)
            if token in self.eos or len(tokens) >= self._budgets[prompt] or self.is_final(prompt, tokens):
                batch.live[row] = False
                self.on_final(prompt, tokens)

    # --- out of memory

    def _guarded(self, step: Callable[[_Batch], _Batch], batch: _Batch) -> _Batch | None:
        try:
            return self._backing_off(step, batch)
        except _OutOfMemory:
            batch.drop_partial_step()
            return self._shrink(batch, sum(batch.live))

    def _backing_off(self, call, argument):
        """call(argument); an out-of-memory error this generator may back off from becomes _OutOfMemory."""
        try:
            return call(argument)
        except oom.CAUGHT as e:
            if not (self.backoff_on_oom and oom.is_out_of_memory(e)):
                raise
            raise _OutOfMemory from e

    def _shrink(self, batch: _Batch | None, wanted: int) -> _Batch | None:
        """Halve the slots; the newest live rows beyond them go back to the front of the queue."""
        self.slots = oom.halved(wanted, "generating")
        self.oom_backoffs += 1
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


class _OutOfMemory(Exception):
    """An out-of-memory error the generator backs off from."""


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

    def halved(self) -> CacheBudget:
        """Half the slots and half the tokens per forward, after running out of memory."""
        if self.slots <= 1 and self.batch_tokens <= PAGE_SIZE:
            raise torch.OutOfMemoryError("out of memory generating for a single request at a time")
        halved = replace(self, slots=max(1, self.slots // 2), batch_tokens=max(PAGE_SIZE, self.batch_tokens // 2))
        log.warning(
            "out of memory generating %d requests (%d tokens per forward) at once; retrying with %d (%d)",
            self.slots, self.batch_tokens, halved.slots, halved.batch_tokens,
        )  # fmt: skip
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return halved


class GenerationFailed(RunError):
    """Requests the manager did not finish: `prompts` (their positions in `run`'s input) and why."""

    def __init__(self, prompts: Sequence[int], reason: str) -> None:
        self.prompts, self.reason = list(prompts), reason
        shown = ", ".join(map(str, self.prompts[:5])) + (", ..." if len(self.prompts) > 5 else "")
        super().__init__(f"generation failed for prompt {shown}: {reason}")

    @property
    def out_of_memory(self) -> bool:
        # the manager reports a failure as text; its own cache check says "Memory footprint ... is more than"
        return "out of memory" in self.reason.lower() or "memory footprint" in self.reason.lower()


class ManagedGreedy:
    """Greedy decoding of many prompts through transformers' ContinuousBatchingManager.

    `is_final(prompt, tokens)` is asked as each prompt's tokens stream in (besides the manager's own
    end-of-sequence and budget endings); `on_final(prompt, tokens)` hears each prompt as it finishes.
    `backoff_on_oom`: when the manager fails on out-of-memory, the prompts not yet final start again with
    half the budget (`CacheBudget.halved`) instead of raising.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        budget: CacheBudget,
        eos: set[int],
        pad_token_id: int,
        is_final: Callable[[int, list[int]], bool] = lambda prompt, tokens: False,
        on_final: Callable[[int, list[int]], None] = lambda prompt, tokens: None,
        backoff_on_oom: bool = False,
    ) -> None:
        self.model = model
        self.budget = budget
        self.eos = sorted(eos)
        self.pad_token_id = pad_token_id
        self.is_final = is_final
        self.on_final = on_final
        self.backoff_on_oom = backoff_on_oom
        self.oom_backoffs = 0
        self.tokens_decoded = 0  # every token the manager generated, those after a cancellation included

    def run(self, prompts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[list[int]]:
        """The generated tokens of every prompt (an end-of-sequence token, if emitted, last), in order."""
        tokens: dict[int, list[int]] = {}
        for i, budget in enumerate(max_new_tokens):
            if budget <= 0:
                tokens[i] = []
                self.on_final(i, [])
        waiting = [i for i in range(len(prompts)) if i not in tokens]
        while waiting:
            try:
                self._run_manager(prompts, max_new_tokens, waiting, tokens)
            except GenerationFailed as failure:
                if not (self.backoff_on_oom and failure.out_of_memory):
                    if failure.out_of_memory:
                        raise torch.OutOfMemoryError(str(failure)) from failure
                    raise
                self.budget = self.budget.halved()
                self.oom_backoffs += 1
            waiting = [i for i in waiting if i not in tokens]
        return [tokens[i] for i in range(len(prompts))]

    def _run_manager(self, prompts, max_new_tokens, waiting: list[int], tokens: dict[int, list[int]]) -> None:
        """Decode the waiting prompts in one manager; each final one goes into `tokens` as it ends."""
        from transformers import ContinuousBatchingConfig, GenerationConfig

        eos: int | list[int] = self.eos or -1  # -1: none (the manager's convention)
        generation_config = GenerationConfig(
            do_sample=False, max_new_tokens=max(max_new_tokens[i] for i in waiting), eos_token_id=eos,
            pad_token_id=self.pad_token_id,
        )  # fmt: skip
        config = ContinuousBatchingConfig(
            page_size=PAGE_SIZE,
            num_blocks=self.budget.pages,
            max_requests_per_batch=self.budget.slots,
            max_batch_tokens=self.budget.batch_tokens,
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
                        raise GenerationFailed(sorted(live.values()), str(error or "the generation thread stopped"))
                    continue
                generated = list(output.generated_tokens)
                self.tokens_decoded += max(0, len(generated) - seen.get(output.request_id, 0))
                seen[output.request_id] = len(generated)
                prompt = live.get(output.request_id)
                if prompt is None:
                    continue  # a token decoded before the manager saw the request's cancellation
                if output.error is not None:
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

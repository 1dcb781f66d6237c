"""The `shared-prefix` backend (the default): an lm-eval HF model that forwards each shared prefix once.

lm-eval's HFLM forwards every (context, continuation) request on its own, so the few-shot context of a
multiple-choice document goes through the model once per choice (only one-token continuations, MMLU's,
are shared). Here requests whose inputs start with the same tokens are packed into one row:

    row        P P P P P | a a | b b b | c        P: shared prefix, once; a, b, c: each request's own rest
    positions  0 1 2 3 4 | 5 6 | 5 6 7 | 5        each request sees the positions it would have alone
    attention  causal over P; each rest attends to P and to itself, never to another request's rest

so every request's tokens see exactly the keys and positions they would see in HFLM, and its
log-likelihood is the same up to float rounding. Requests of one document (ARC, HellaSwag, TruthfulQA
choices; Winogrande's two options, which share the few-shot prefix up to the blank) and documents with a
common preamble (MMLU's per-subject 5-shot prefix, TruthfulQA's fixed QA primer) pack together. Only the
positions that score a continuation go through the LM head. Requests with identical inputs (MMLU's one-token
choices) are forwarded once, as HFLM does.

Tokenization, truncation and the request cache are HFLM's, so its requests and numbers are HFLM's (choices
identical, log-likelihoods to float rounding: tests/test_parity.py). Generation (GSM8K) keeps HFLM's
tokenization, stop strings and text clean-up, but greedy requests decode with continuous batching
(evalsuite/engine/generation.py, the `generation` option): a request leaves when its own answer is final and a
waiting one takes its place, instead of a fixed batch decoding until its longest answer ends. `--batch-size
N`: at most N requests decoding at once; under `auto` that number comes from the free memory. In a
data-parallel launch the forwards and generations are split across processes (evalsuite/engine/processes.py).

Options (`--backend-options`, `SharedPrefixOptions`): `pack_tokens`, the row budget of a pack; `generation`,
what decodes greedy generations (evalsuite's loop or transformers' manager).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from pydantic import Field, field_validator

from evalsuite import faults
from evalsuite.engine import generation, oom
from evalsuite.engine.backends import BackendOptions
from evalsuite.engine.backends.hf import HFBackend, LoadsWeights
from evalsuite.engine.packing import (
    DEFAULT_PACK_TOKENS,
    Pack,
    Request,
    build_batch,
    pack_requests,
    rows_in_next_forward,
)
from evalsuite.engine.processes import Processes
from evalsuite.errors import GenerationFailed, RunError, param
from evalsuite.progress import bar_open
from evalsuite.progress import requests as requests_progress
from evalsuite.settings import DEFAULT_BACKEND, BatchSize, GenerationEngine

if TYPE_CHECKING:
    from lm_eval.api.model import LM

log = logging.getLogger(__name__)

MODEL_NAME = "evalsuite-hf"  # lm-eval registry name


class SharedPrefixOptions(BackendOptions):
    pack_tokens: int = Field(
        DEFAULT_PACK_TOKENS, description="tokens per packed row: requests sharing a prefix fill rows up to this"
    )
    generation: GenerationEngine = Field(
        GenerationEngine.EVALSUITE,
        description="what decodes GSM8K's greedy generations: evalsuite (its own loop) or transformers (its "
        "ContinuousBatchingManager); both give HFLM's texts",
    )

    @field_validator("pack_tokens", mode="before")
    @classmethod
    def _positive(cls, value: Any) -> int:
        try:
            tokens = int(value)
        except (TypeError, ValueError):
            tokens = 0
        if tokens < 1 or isinstance(value, bool):
            raise ValueError("give a positive number of tokens")
        return tokens

    @field_validator("generation", mode="before")
    @classmethod
    def _engine(cls, value: Any) -> GenerationEngine:
        try:
            return GenerationEngine(value)
        except ValueError:
            raise ValueError(f"give {' or '.join(e.value for e in GenerationEngine)}") from None


class SharedPrefixBackend(HFBackend):
    name = DEFAULT_BACKEND  # shared-prefix
    summary = "each shared few-shot prefix forwarded once; GSM8K decoded with continuous batching"
    options = SharedPrefixOptions
    data_parallel = True  # it splits forwards itself (engine/processes.py), with the single-process numbers
    hflm_exact = True  # HFLM's requests and tokenization; choices identical, log-likelihoods to float rounding
    # its options, and HFLM's `backend` (the model type: it packs causal models only)
    own_keywords: ClassVar[frozenset[str]] = frozenset({"pack_tokens", "generation", "backend"})

    def lm_class(self) -> type[LM]:
        return SharedPrefixLM

    def lm_keywords(self, options: BackendOptions) -> dict[str, Any]:
        assert isinstance(options, SharedPrefixOptions)
        return {"pack_tokens": options.pack_tokens, "generation": options.generation.value}

    def moved_model_args(self, args: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """`pack_tokens` and `generation` were model args before evalsuite 0.4."""
        moved = {k: v for k, v in args.items() if k in ("pack_tokens", "generation")}
        return {k: v for k, v in args.items() if k not in moved}, moved

    def _own_keyword_remedy(self, key: str) -> str:
        if key == "backend":
            return (
                "HFLM's model type; the shared-prefix backend runs causal models only (for another type, "
                f"{param('backend')} lm-eval-hf)"
            )
        return f"an option of this backend: give it as {param('backend_options')} {key}=..."


BACKEND = SharedPrefixBackend()

AUTO_BATCH_START = 64  # rows per forward that batch size auto tries first, halving on out-of-memory
# Generation (GSM8K) under batch size auto: the KV cache of a batch may take this share of the free memory
# (the rest is for the prefill's activations), and a batch holds at most this many prompts.
GENERATION_MEMORY_SHARE = 0.6
GENERATION_MAX_ROWS = 256


@dataclass
class ForwardStats:
    """What the backend sent through the model since the last reset (read by bench/)."""

    requests: int = 0
    forward_calls: int = 0
    tokens: int = 0  # real tokens through the transformer
    padded_tokens: int = 0  # batch x row length, padding included
    oom_backoffs: int = 0


def generation_rows(free_bytes: int, kv_bytes_per_token: int, tokens_per_row: int) -> int:
    """Prompts per generation batch: as many as the KV cache of their full length (prompt and new tokens)
    fits in a share of the free memory. A decode step of a large model costs about the same for 64 or
    128 rows (bench/RESULTS.md), so the largest batch that fits is the fastest."""
    rows = int(free_bytes * GENERATION_MEMORY_SHARE) // max(1, kv_bytes_per_token * tokens_per_row)
    return max(1, min(GENERATION_MAX_ROWS, rows))


def kv_bytes_per_token(config: Any, element_size: int) -> int:
    """Bytes of KV cache one token takes across all layers (an upper bound for sliding-window models)."""
    layers = int(config.num_hidden_layers)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or int(config.hidden_size) // heads)
    return layers * 2 * kv_heads * head_dim * element_size


def free_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    import os

    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _document(request, position: int) -> str:
    """How an error names a generation request: its task and document, or its position."""
    if request.task_name is not None and request.doc_id is not None:
        return f"{request.task_name} document {request.doc_id}"
    return f"request {position}"


def _normalized_gen_kwargs(gen_kwargs: dict, default_max_gen_toks: int) -> dict:
    from lm_eval.models.utils import normalize_gen_kwargs

    return dict(normalize_gen_kwargs(dict(gen_kwargs), default_max_gen_toks))


@register_model(MODEL_NAME)
class SharedPrefixLM(LoadsWeights, HFLM):
    """HFLM whose log-likelihood requests share the forward pass of their common prefix.

    Keywords beyond HFLM's, the backend's options (SharedPrefixOptions): `pack_tokens`, the row budget of a
    pack; `generation` (evalsuite or transformers), what decodes greedy generations.
    """

    def __init__(
        self, *args, pack_tokens: int | str = DEFAULT_PACK_TOKENS, generation: str = "evalsuite", **kwargs
    ) -> None:
        self.generation_engine = GenerationEngine(generation)  # checked before loading (SharedPrefixOptions)
        super().__init__(*args, **kwargs)
        # the batch size as evalsuite asked for it (HFLM keeps only "auto" of `auto:N`)
        self.batch = BatchSize.parse(kwargs.get("batch_size", 1))
        accelerator = getattr(self, "accelerator", None)  # set by HFLM under a multi-process launcher
        self.processes = Processes.of_accelerator(accelerator)
        self.pack_tokens = int(pack_tokens)
        self.stats = ForwardStats()
        self._keeps_selected_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    # lm-eval splits documents across ranks, and each rank then draws its few-shot exemplars from its own
    # random stream, so scores change with the number of processes (lm-eval issue #1719). Here lm-eval sees
    # one process everywhere (its HFLM and evaluator read these two properties): every rank builds every
    # request, exactly as a single process does, and this class splits the forwards across ranks
    # (`self.processes`) and gathers the answers.
    @property
    def rank(self) -> int:
        return 0

    @property
    def world_size(self) -> int:
        return 1

    # Rows of the generation chunk being run under batch size auto: HFLM's generate_until batches by
    # `self.batch_size`, so while a chunk runs this is what it reads (None: HFLM's own value).
    _chunk_rows: int | None = None

    @property
    def batch_size(self) -> int | str:
        return self._chunk_rows if self._chunk_rows is not None else super().batch_size

    def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        # lm-eval's "Tokenizing inputs" bar: hidden while evalsuite's task bar shows the progress
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm or bar_open())

    @property
    def _attention(self) -> str:
        return getattr(self.model.config, "_attn_implementation", None) or "eager"

    @property
    def _is_causal(self) -> bool:
        # HFLM's own `backend` attribute is the model type (causal or seq2seq), not an evalsuite backend
        return self.backend == "causal"

    def _can_pack(self) -> bool:
        # flash-attention kernels take no arbitrary masks; those models run as plain HFLM
        return self._is_causal and self._attention in ("sdpa", "eager")

    def _loglikelihood_tokens(
        self,
        requests: list[tuple[tuple[str, str], list[int], list[int]]],
        disable_tqdm: bool = False,
        override_bs: int | None = None,
    ) -> list[tuple[float, bool]]:
        if not self._can_pack():
            plain = super()._loglikelihood_tokens
            return self.processes.map(
                requests, cost=lambda r: len(r[1]), compute=lambda mine: plain(mine, disable_tqdm, override_bs)
            )

        scored = []
        for i, (_, context, continuation) in enumerate(requests):
            if not context or not continuation or len(continuation) > self.max_length:
                raise RunError(
                    f"a log-likelihood request of {len(context)} context and {len(continuation)} continuation tokens "
                    f"cannot be scored (both must be non-empty, the continuation at most the model's "
                    f"{self.max_length} tokens); check the task's template"
                )
            scored.append(Request(i, (context + continuation)[-(self.max_length + 1) :][:-1], continuation))
        packs = sorted(pack_requests(scored, self.pack_tokens), key=lambda p: -p.length)  # OOM shows up first
        packs = self.processes.my_share(packs, cost=lambda p: p.length)
        mine = sum(len(s.requests) for p in packs for s in p.members)
        self.stats.requests += mine
        log.debug(
            "%d requests in %d packs: %s", len(scored), len(packs),
            ", ".join(f"{p.shared}+{p.length - p.shared}/{len(p.members)}" for p in packs),
        )  # fmt: skip

        answers: list[tuple[float, bool] | None] = [None] * len(requests)
        # a batch size of N means N rows of the pack budget: at most N packs, at most N x pack_tokens padded
        rows = oom.Rows(self._rows_per_forward(override_bs), auto=self.batch.auto)
        tokens = rows.rows * self.pack_tokens
        progress = requests_progress(
            total=mine, desc="Running loglikelihood requests", disable=disable_tqdm or not self.processes.is_main
        )
        lengths = [p.length for p in packs]
        start = 0
        while start < len(packs):
            size = rows_in_next_forward(lengths[start : start + rows.rows], rows.rows, tokens)
            chunk = packs[start : start + size]
            results = rows.attempt(len(chunk), lambda: self._score(chunk), "scoring")  # noqa: B023 - called here
            if isinstance(results, oom.BackedOff):
                tokens = rows.rows * lengths[start]  # the smaller size for the (shorter) packs that follow
                self.stats.oom_backoffs += 1
                continue
            for index, answer in results:
                answers[index] = answer
                request_str = requests[index][0]
                if request_str is not None:
                    self.cache_hook.add_partial("loglikelihood", request_str, answer)
            progress.update(len(results))
            faults.reached("answers-cached")  # some answers are in lm-eval's request cache (it commits each)
            start += len(chunk)
        progress.close()
        if self.processes.count > 1:
            computed = [(i, a) for i, a in enumerate(answers) if a is not None]
            for index, answer in self.processes.gather_everywhere(computed):
                answers[index] = answer
        assert all(a is not None for a in answers)
        return answers  # type: ignore[return-value]

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        """HFLM's generation, each rank generating for its share of the requests (GSM8K)."""
        quiet = disable_tqdm or not self.processes.is_main
        # HFLM batches by prompt length; the longest share sets the wall time, so balance on length
        return self.processes.map(
            requests, cost=lambda r: len(r.args[0]), compute=lambda mine: self._generate(mine, quiet)
        )

    def _generate(self, requests: list, disable_tqdm: bool) -> list[str]:
        """Greedy requests go through continuous batching (evalsuite/engine/generation.py, the engine of the
        `generation` model arg): a prompt leaves the batch when its own answer is final and a waiting prompt
        takes its place. Anything else (sampling, beam search, generation_config processors, sliding-window
        caches for evalsuite's engine, autocast for transformers') goes through HFLM's batches."""
        if not requests:
            return []
        why_not = self._continuous_unsupported(requests)
        if why_not is None:
            return self._generate_continuous(requests, disable_tqdm)
        log.info("generation: lm-eval's batches (%s)", why_not)
        return self._generate_in_batches(requests, disable_tqdm)

    def _continuous_unsupported(self, requests: list) -> str | None:
        if not self._is_causal or self.think_end_token is not None:
            return "not a plain causal model"
        manager = self.generation_engine is GenerationEngine.TRANSFORMERS
        if manager and self.mixed_precision_dtype is not None:  # autocast is per thread; the manager has its own
            return f"autocast to {self.mixed_precision_dtype} with generation=transformers"
        for request in requests:
            kwargs = _normalized_gen_kwargs(request.args[1], self.max_gen_toks)
            extra = {k: v for k, v in kwargs.items() if k not in ("until", "max_gen_toks")}
            if extra != {"do_sample": False, "temperature": 0.0}:
                return f"generation settings {extra}"
        return generation.supports(self.model, self.generation_engine)

    def _generation_slots(self, prompt_lengths: Sequence[int], new_tokens: int) -> int:
        """Prompts decoding at once: the batch size, or under `auto` as many as the KV cache of the longest
        (prompt and new tokens) fits in a share of the free memory, and no more than there are prompts
        (transformers' manager allocates its cache for every slot up front: GBs for 3 prompts on a CPU)."""
        if self.batch.rows is not None:
            return self.batch.rows
        element_size = torch.empty((), dtype=self.mixed_precision_dtype or self.model.dtype).element_size()
        rows = generation_rows(
            free_memory_bytes(self.device),
            kv_bytes_per_token(self.model.config, element_size),
            min(self.max_length, max(prompt_lengths) + new_tokens),
        )
        rows = min(rows, len(prompt_lengths))
        log.info("generation: %d prompts at once (KV cache sized to the free memory)", rows)
        return rows

    def _generate_continuous(self, requests: list, disable_tqdm: bool) -> list[str]:
        from lm_eval.models.utils import handle_stop_sequences, postprocess_generated_text

        eos_text = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        prompts, budgets, stops = [], [], []
        for request in requests:  # tokenized, truncated and stopped as HFLM.generate_until does
            kwargs = _normalized_gen_kwargs(request.args[1], self.max_gen_toks)
            stops.append(handle_stop_sequences(kwargs.pop("until", None), eos=eos_text))
            budgets.append(int(kwargs["max_gen_toks"]))
            ids, _ = self.tok_batch_encode(
                [request.args[0]], left_truncate_len=self.max_length - budgets[-1], truncation=self.truncation
            )
            prompts.append(ids[0].tolist())
        order = sorted(range(len(requests)), key=lambda i: -len(prompts[i]))  # HFLM's order: longest first
        # the stop check decodes only the last tokens, then confirms on the whole text
        tail = max((len(s) for until in stops for s in until), default=0) + 2

        def is_final(position: int, tokens: list[int]) -> bool:
            until = [s for s in stops[order[position]] if s]
            if not until or not any(s in self.tok_decode(tokens[-tail:]) for s in until):
                return False
            return any(s in self.tok_decode(tokens) for s in until)

        texts: list[str | None] = [None] * len(requests)
        progress = requests_progress(len(requests), "Running generate_until requests", disable=disable_tqdm)

        def on_final(position: int, tokens: list[int]) -> None:
            i = order[position]
            texts[i] = postprocess_generated_text(self.tok_decode(tokens), stops[i], None)
            self.cache_hook.add_partial("generate_until", tuple(requests[i].args), texts[i])
            progress.update(1)

        generator = generation.greedy_generator(
            self.generation_engine, self.model,
            slots=self._generation_slots([len(p) for p in prompts], max(budgets)),
            longest=max(len(p) + b for p, b in zip(prompts, budgets, strict=True)),
            eos=generation.eos_token_ids(self.model), pad_token_id=self.tokenizer.pad_token_id,
            is_final=is_final, on_final=on_final, backoff_on_oom=self.batch.auto,
            autocast_dtype=self.mixed_precision_dtype,
        )  # fmt: skip
        try:
            generator.run([prompts[i] for i in order], [budgets[i] for i in order])
        except GenerationFailed as failure:
            documents = ", ".join(_document(requests[order[p]], order[p]) for p in failure.prompts)
            raise RunError(f"generation failed for {documents}: {failure.reason}") from failure
        finally:
            progress.close()
            self.stats.oom_backoffs += generator.oom_backoffs
        assert all(t is not None for t in texts)
        return texts  # type: ignore[return-value]

    def _generate_in_batches(self, requests: list, disable_tqdm: bool) -> list[str]:
        """HFLM's generation; under `--batch-size auto`, in batches sized by the KV cache they need.

        HFLM's own `auto` probes full-length (max_length) forwards with full-vocabulary logits and tries at
        most 64 rows, far below what GSM8K's ~1,000-token prompts allow. Here the batch is computed from the
        free memory and the model's KV size, halved on out-of-memory, and handed to HFLM as a fixed size.
        """
        hflm_generate = super().generate_until
        if not self.batch.auto:
            return hflm_generate(requests, disable_tqdm)
        lengths = [len(self.tok_encode(request.args[0])) for request in requests]
        first = self._generation_slots(lengths, max(self._max_new_tokens(request) for request in requests))
        rows = oom.Rows(first, auto=True)
        order = sorted(range(len(requests)), key=lambda i: -lengths[i])  # longest first: OOM shows up first
        texts: list[str | None] = [None] * len(requests)
        progress = requests_progress(len(requests), "Running generate_until requests", disable=disable_tqdm)
        start = 0
        try:
            while start < len(order):
                chunk = order[start : start + rows.rows]
                self._chunk_rows = len(chunk)  # HFLM runs the chunk as one batch
                batch = [requests[i] for i in chunk]
                out = rows.attempt(len(chunk), lambda: hflm_generate(batch, disable_tqdm=True), "generating")  # noqa: B023
                if isinstance(out, oom.BackedOff):
                    self.stats.oom_backoffs += 1
                    continue
                for i, text in zip(chunk, out, strict=True):
                    texts[i] = text
                progress.update(len(chunk))
                start += len(chunk)
        finally:
            self._chunk_rows = None
            progress.close()
        return texts  # type: ignore[return-value]

    def _max_new_tokens(self, request) -> int:
        return int(_normalized_gen_kwargs(request.args[1], self.max_gen_toks)["max_gen_toks"])

    def _rows_per_forward(self, override_bs: int | None) -> int:
        if self.batch.rows is not None:
            return self.batch.rows
        return int(override_bs) if override_bs else AUTO_BATCH_START

    def _score(self, packs: list[Pack]) -> list[tuple[int, tuple[float, bool]]]:
        dtype = self.mixed_precision_dtype or self.model.dtype
        batch = build_batch(packs, self.device, additive=self._attention == "eager", dtype=dtype)
        # row positions any pack scores: only these go through the LM head
        wanted = sorted(
            {
                p.row_index(k, pos)
                for p in packs
                for k, segment in enumerate(p.members)
                for request in segment.requests
                for pos in request.scored_positions
            }
        )
        column = {row_index: j for j, row_index in enumerate(wanted)}
        with (
            torch.no_grad(),
            torch.autocast(
                device_type=self.device.type,
                dtype=self.mixed_precision_dtype,
                enabled=self.mixed_precision_dtype is not None,
            ),
        ):
            kwargs = {}
            if self._keeps_selected_logits:
                kwargs["logits_to_keep"] = torch.tensor(wanted, device=self.device)
            logits = self.model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                **kwargs,
            ).logits
        if not self._keeps_selected_logits:
            logits = logits[:, wanted]
        log_probs = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
        self.stats.forward_calls += 1
        self.stats.tokens += batch.real_tokens
        self.stats.padded_tokens += batch.input_ids.numel()

        results = []
        for row, pack in enumerate(packs):
            for k, segment in enumerate(pack.members):
                for request in segment.requests:
                    columns = [column[pack.row_index(k, pos)] for pos in request.scored_positions]
                    rows_log_probs = log_probs[row, columns]  # [continuation, vocab]
                    target = torch.tensor(request.continuation, device=rows_log_probs.device)
                    is_greedy = bool((rows_log_probs.argmax(dim=-1) == target).all())
                    log_prob = float(rows_log_probs.gather(1, target[:, None]).sum())
                    results.append((request.index, (log_prob, is_greedy)))
        return results

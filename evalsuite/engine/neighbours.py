"""The contamination test's models at work: the reference samples each item's neighbours, the target scores the
item and its neighbours (L(x), L(z)); as swj0419/detect-pretrain-code-contamination does, or faster with the
same numbers (the prefix forwarded once, neighbours scored packed: `shared_prefix`).

torch and transformers are imported inside the functions (importing evalsuite.engine loads neither).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from evalsuite.contamination import Item, neighbour_rank, prefix_of
from evalsuite.settings import BatchSize

if TYPE_CHECKING:
    from evalsuite.engine.oom import Rows

NEIGHBOUR_TOKENS = 150  # the original truncates neighbours (not x) to this many tokens before scoring
# A packed row holds at most this many tokens: an item's neighbours fill a few rows, and the dense
# attention of a longer row would cost more than the prefix it shares.
PACK_TOKENS = 512


class CausalLM(NamedTuple):
    """A loaded model and its tokenizer, as the check uses them (right padding, a pad token): what a backend's
    `load_scorer` returns (evalsuite.engine.backends)."""

    model: Any
    tokenizer: Any


@dataclass(frozen=True)
class ItemScore:
    item: Item
    loss: float  # L(x) under the target
    neighbour_losses: list[float]  # L(z) under the target, one per neighbour
    neighbours: list[str]

    @property
    def rank(self) -> float:
        return neighbour_rank(self.loss, self.neighbour_losses)


def mean_token_losses(
    model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int, max_length: int | None
) -> list[float]:
    """Mean per-token negative log-likelihood of each text, the original's way (its `evaluate_model`):
    right-padded batches of `batch_size` texts, pads masked out; neighbours truncated to NEIGHBOUR_TOKENS, x not."""
    import torch

    losses: list[float] = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            return_tensors="pt",
            truncation=max_length is not None,
            max_length=max_length,
        ).to(model.device)
        with torch.no_grad():
            logits = model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        targets = batch["input_ids"][:, 1:]
        mask = batch["attention_mask"][:, 1:].bool()
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets, reduction="none")
        losses += ((nll * mask).sum(dim=1) / mask.sum(dim=1)).tolist()
    return losses


def packed_token_losses(
    model: Any, tokenizer: Any, texts: Sequence[str], rows_per_forward: int, max_length: int | None
) -> list[float]:
    """The same losses as `mean_token_losses`, with texts that start alike (an item and its neighbours share
    the item's prefix) packed into rows that forward the common start once (engine/packing.py). A text
    of one token has no predicted token: its loss is +inf (never likelier than x)."""
    import torch

    from evalsuite.engine.packing import Request, build_batch, pack_requests, rows_in_next_forward

    encoded = [tokenizer(text, truncation=max_length is not None, max_length=max_length)["input_ids"] for text in texts]
    losses = [math.inf] * len(texts)
    # input: every token but the last; each position predicts the next token
    requests = [Request(i, ids[:-1], ids[1:]) for i, ids in enumerate(encoded) if len(ids) > 1]
    packs = pack_requests(requests, PACK_TOKENS, min_shared=1, keep_most_shared=False)
    if len(packs) > 1:  # the same number of rows, of even length: padding to the longest row is waste
        even = math.ceil(sum(p.length for p in packs) / len(packs))
        packs = pack_requests(requests, even, min_shared=1, keep_most_shared=False)
    packs.sort(key=lambda p: -p.length)
    eager = getattr(model.config, "_attn_implementation", None) == "eager"
    start = 0
    while start < len(packs):
        lengths = [p.length for p in packs[start : start + rows_per_forward]]
        budget = rows_per_forward * NEIGHBOUR_TOKENS  # padded tokens: as many as full-length neighbour rows take
        chunk = packs[start : start + rows_in_next_forward(lengths, rows_per_forward, budget)]
        start += len(chunk)
        batch = build_batch(chunk, model.device, additive=eager, dtype=model.dtype)
        with torch.no_grad():
            logits = model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids
            ).logits.float()
        log_norm = torch.logsumexp(logits, dim=-1)  # [rows, length]
        for row, pack in enumerate(chunk):
            for k, segment in enumerate(pack.members):
                index = torch.tensor([pack.row_index(k, pos) for pos in range(len(segment.tokens))])
                for request in segment.requests:
                    target = torch.tensor(request.continuation)
                    nll = log_norm[row, index] - logits[row, index, target]
                    losses[request.index] = float(nll.mean())
    return losses


def sample_neighbours(
    model: Any, tokenizer: Any, text: str, count: int, ratio: float, seed: int, shared_prefill: bool = True
) -> list[str]:
    """`count` continuations of x's prefix sampled by the reference model (do_sample with the model's
    generation defaults, as the original), seeded per item. With `shared_prefill` the prefix is forwarded
    once and its KV cache copied to the `count` rows, where the original forwards it once per row; the
    sampling (and its random draws) is `generate`'s own either way."""
    import torch

    from evalsuite.engine.compat import kv_cache_kwarg, returned_kv_cache

    prefix, new_tokens = prefix_of(text, ratio)
    ids = torch.tensor([tokenizer.encode(prefix)], device=model.device)
    cache: dict[str, Any] = {}
    rows = 1
    if shared_prefill and ids.shape[1] > 1:
        with torch.no_grad():
            prefilled = returned_kv_cache(model(ids[:, :-1], use_cache=True))
        prefilled.batch_repeat_interleave(count)
        cache[kv_cache_kwarg(model)] = prefilled
        ids, rows = ids.repeat(count, 1), count
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=1,
            num_return_sequences=count // rows,
            do_sample=True,
            pad_token_id=tokenizer.eos_token_id,
            **cache,
        )
    return tokenizer.batch_decode(out, skip_special_tokens=True)


AUTO_ROWS_CUDA = 256  # rows per scoring forward that batch size auto tries first on a GPU, halving on OOM
AUTO_ROWS_CPU = 32  # the original's batch: a CPU has no out-of-memory error to back off from, only the OOM killer


def scoring_rows(batch_size: BatchSize, device: str) -> Rows:
    """Rows per scoring forward: a fixed number, or under auto as many as fit, halved on out-of-memory and kept
    halved for the items after. Losses do not depend on it (pads are masked), so neither do the numbers."""
    from evalsuite.engine.oom import Rows

    if batch_size.rows is None:
        return Rows(AUTO_ROWS_CUDA if device.startswith("cuda") else AUTO_ROWS_CPU, auto=True)
    return Rows(batch_size.rows)


def score_items(
    items: Sequence[Item],
    target: CausalLM,
    reference: CausalLM,
    neighbours: int,
    ratio: float,
    seed: int,
    batch_size: int | Rows,
    shared_prefix: bool = True,
    on_item: Callable[[ItemScore], object] | None = None,
) -> list[ItemScore]:
    """Score each item: L(x) and its neighbours' L(z) under the target, neighbours from the reference.

    `shared_prefix`: the reference forwards x's prefix once for all neighbours, and the target scores x and
    its neighbours packed (their common start once); otherwise the original's way, every neighbour on its
    own in padded batches of `batch_size`. Same seed, same neighbours; losses equal up to float rounding.
    """
    from evalsuite.engine.oom import Rows

    reference_model, reference_tokenizer = reference
    rows = batch_size if isinstance(batch_size, Rows) else Rows(batch_size)
    scores = []
    for number, item in enumerate(items):
        texts = sample_neighbours(
            reference_model, reference_tokenizer, item.text, neighbours, ratio, seed + number, shared_prefix
        )
        loss, neighbour_losses = _target_losses(target, item.text, texts, rows, shared_prefix)
        score = ItemScore(item, loss, neighbour_losses, texts)
        scores.append(score)
        if on_item is not None:
            on_item(score)
    return scores


def _target_losses(
    target: CausalLM, text: str, neighbours: list[str], rows: Rows, shared_prefix: bool
) -> tuple[float, list[float]]:
    """L(x) and every neighbour's L(z) under the target model."""
    model, tokenizer = target
    if not shared_prefix:
        (loss,) = mean_token_losses(model, tokenizer, [text], 1, None)
        return loss, rows.run(
            lambda n: mean_token_losses(model, tokenizer, neighbours, n, NEIGHBOUR_TOKENS), "scoring neighbours"
        )
    if len(tokenizer(text)["input_ids"]) <= NEIGHBOUR_TOKENS:  # x packs with its neighbours
        loss, *losses = rows.run(
            lambda n: packed_token_losses(model, tokenizer, [text, *neighbours], n, NEIGHBOUR_TOKENS),
            "scoring neighbours",
        )
        return loss, losses
    # x is never truncated, its neighbours are
    (loss,) = packed_token_losses(model, tokenizer, [text], 1, None)
    return loss, rows.run(
        lambda n: packed_token_losses(model, tokenizer, neighbours, n, NEIGHBOUR_TOKENS), "scoring neighbours"
    )

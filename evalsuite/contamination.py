"""The contamination test model cards report beside their H6 numbers (upstage/SOLAR-10.7B-Instruct-v1.0's
"result < 0.1, %: 0.06"), as the public repository swj0419/detect-pretrain-code-contamination computes it:

- per benchmark, the eval split's items as texts x = question + " " + correct answer, shuffled with
  `random.seed(0)`, the first 100 kept;
- L(x): the TARGET model's mean per-token negative log-likelihood of x;
- the first ceil(0.4 x words) words of x are a prefix from which the REFERENCE model samples 100
  continuations, the neighbours z; r(x) = the share of neighbours with L(z) < L(x) (scored by the target);
- reported: the share of items with r(x) < 0.1.

A value near 1 says the target finds the real benchmark text likelier than nearly all its paraphrase-like
neighbours, a sign (not a proof: GSM8K scores high for many clean models) that it was trained on it.

The pure parts (texts, selection, the statistic) are here; `score_items` runs the models (torch and
transformers imported inside it).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from evalsuite.errors import SuiteConfigError
from evalsuite.model_ref import ModelSource

# The tasks the test runs on, by suite key: the original's four, and HellaSwag and Winogrande beyond it.
ORIGINAL_TASKS = ("arc", "mmlu", "truthfulqa", "gsm8k")
_ARC_LABELS = {"A": 0, "B": 1, "C": 2, "D": 3}  # the original skips rows whose answerKey is anything else


def _arc_text(row: dict[str, Any]) -> str | None:
    if row["answerKey"] not in _ARC_LABELS:
        return None
    return row["question"] + " " + row["choices"]["text"][_ARC_LABELS[row["answerKey"]]]


def _mmlu_text(row: dict[str, Any]) -> str:
    return row["question"] + " " + row["choices"][row["answer"]]


def _truthfulqa_text(row: dict[str, Any]) -> str:
    targets = row["mc1_targets"]
    return row["question"] + " " + targets["choices"][targets["labels"].index(1)]


def _gsm8k_text(row: dict[str, Any]) -> str:
    return row["question"] + " " + row["answer"].split("####")[0].strip()


def _hellaswag_text(row: dict[str, Any]) -> str:
    return row["ctx"] + " " + row["endings"][int(row["label"])]


def _winogrande_text(row: dict[str, Any]) -> str:
    return row["sentence"].replace("_", row["option" + row["answer"]])


# Suite task key -> the text x of one eval row (None: the original skips the row).
ITEM_TEXTS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "arc": _arc_text,
    "hellaswag": _hellaswag_text,
    "mmlu": _mmlu_text,
    "truthfulqa": _truthfulqa_text,
    "winogrande": _winogrande_text,
    "gsm8k": _gsm8k_text,
}


@dataclass(frozen=True)
class Item:
    task: str
    row: int  # index of the row in the eval split, Hub order
    text: str


@dataclass(frozen=True)
class Selection:
    items: list[Item]
    candidates: int  # rows that make a text
    skipped: int  # rows the original skips (ARC answer keys outside A-D)


def select_items(task: str, rows: Sequence[dict[str, Any]], count: int, seed: int = 0) -> Selection:
    """The items the original tests: its texts in split order, `random.seed(seed); random.shuffle(...)`, the
    first `count` (a shuffle depends only on the list's length, so shuffling indices picks the same rows)."""
    if task not in ITEM_TEXTS:
        raise SuiteConfigError(f"contamination: no item text for task {task!r}; choose {', '.join(ITEM_TEXTS)}")
    texts = [(i, text) for i, row in enumerate(rows) if (text := ITEM_TEXTS[task](row)) is not None]
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    chosen = [Item(task, texts[j][0], texts[j][1]) for j in order[:count]]
    return Selection(chosen, candidates=len(texts), skipped=len(rows) - len(texts))


# ------------------------------------------------------------------------------------------ statistic


def neighbour_rank(target_loss: float, neighbour_losses: Sequence[float]) -> float:
    """r(x): the share of neighbours the target finds likelier than x (lower loss)."""
    if not neighbour_losses:
        raise ValueError("r(x) needs at least one neighbour")
    return sum(loss < target_loss for loss in neighbour_losses) / len(neighbour_losses)


def reported_share(ranks: Sequence[float], threshold: float) -> float:
    """The number cards report: the share of items whose r(x) is below the threshold."""
    if not ranks:
        raise ValueError("no items")
    return sum(r < threshold for r in ranks) / len(ranks)


def format_share(share: float, threshold: float) -> str:
    """As the original prints it and cards quote it: `result < 0.1, %: 0.06` (a fraction, despite the %)."""
    return f"result < {threshold:g}, %: {share:.2f}"


def prefix_of(text: str, ratio: float) -> tuple[str, int]:
    """The original's prefix (its first ceil(ratio x words) words) and how many new tokens a neighbour gets
    (the remaining word count, at least 1)."""
    words = text.split()
    kept = math.ceil(len(words) * ratio)
    prefix = " ".join(words[:kept]) if kept > 0 else "<|startoftext|> "
    return prefix, max(1, len(words) - kept)


# ------------------------------------------------------------------------------------------ the models


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
    right-padded batches of `batch_size` texts, pads masked out; neighbours truncated to 150 tokens, x not."""
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


NEIGHBOUR_TOKENS = 150  # the original truncates neighbours (not x) to this many tokens before scoring
# A packed row holds at most this many tokens: an item's neighbours fill a few rows, and the dense
# attention of a longer row would cost more than the prefix it shares.
PACK_TOKENS = 512


def packed_token_losses(
    model: Any, tokenizer: Any, texts: Sequence[str], rows_per_forward: int, max_length: int | None
) -> list[float]:
    """The same losses as `mean_token_losses`, with texts that start alike (an item and its neighbours share
    the item's prefix) packed into rows that forward the common start once (evalsuite/packing.py). A text
    of one token has no predicted token: its loss is +inf (never likelier than x)."""
    import torch

    from evalsuite.packing import Request, build_batch, pack_requests, rows_in_next_forward

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
        chunk = packs[start : start + rows_in_next_forward(lengths, rows_per_forward, rows_per_forward * 150)]
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

    from evalsuite._compat import kv_cache_kwarg, returned_kv_cache

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


AUTO_ROWS_CUDA = 256  # rows per scoring forward that `--batch-size auto` tries first on a GPU, halving on OOM
AUTO_ROWS_CPU = 32  # the original's batch: a CPU has no out-of-memory error to back off from, only the OOM killer


@dataclass
class ScoringRows:
    """Rows per scoring forward: a fixed number, or under `auto` as many as fit, halved on out-of-memory and kept
    halved for the items after. Losses do not depend on it (pads are masked), so neither do the numbers."""

    rows: int
    auto: bool = False

    @classmethod
    def parse(cls, batch_size: int | str, device: str) -> ScoringRows:
        if batch_size == "auto":
            return cls(AUTO_ROWS_CUDA if device.startswith("cuda") else AUTO_ROWS_CPU, auto=True)
        return cls(int(batch_size))

    def run(self, score: Callable[[int], list[float]]) -> list[float]:
        """score(rows), retried with half the rows while `auto` and the device runs out of memory."""
        from evalsuite import oom

        while True:
            try:
                return score(self.rows)
            except oom.CAUGHT as e:
                if not oom.may_back_off(e, self.auto, self.rows):
                    raise
            self.rows = oom.halved(self.rows, "scoring neighbours")


def score_items(
    items: Sequence[Item],
    target: tuple[Any, Any],
    reference: tuple[Any, Any],
    neighbours: int,
    ratio: float,
    seed: int,
    batch_size: int | ScoringRows,
    shared_prefix: bool = True,
    on_item: Callable[[ItemScore], object] | None = None,
) -> list[ItemScore]:
    """Score each item: L(x) and its neighbours' L(z) under the target, neighbours from the reference.

    `shared_prefix`: the reference forwards x's prefix once for all neighbours, and the target scores x and
    its neighbours packed (their common start once); otherwise the original's way, every neighbour on its
    own in padded batches of `batch_size`. Same seed, same neighbours; losses equal up to float rounding.
    """
    reference_model, reference_tokenizer = reference
    rows = batch_size if isinstance(batch_size, ScoringRows) else ScoringRows(batch_size)
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
    target: tuple[Any, Any], text: str, neighbours: list[str], rows: ScoringRows, shared_prefix: bool
) -> tuple[float, list[float]]:
    """L(x) and every neighbour's L(z) under the target model."""
    model, tokenizer = target
    if not shared_prefix:
        (loss,) = mean_token_losses(model, tokenizer, [text], 1, None)
        return loss, rows.run(lambda n: mean_token_losses(model, tokenizer, neighbours, n, NEIGHBOUR_TOKENS))
    if len(tokenizer(text)["input_ids"]) <= NEIGHBOUR_TOKENS:  # x packs with its neighbours
        loss, *losses = rows.run(
            lambda n: packed_token_losses(model, tokenizer, [text, *neighbours], n, NEIGHBOUR_TOKENS)
        )
        return loss, losses
    # x is never truncated, its neighbours are
    (loss,) = packed_token_losses(model, tokenizer, [text], 1, None)
    return loss, rows.run(lambda n: packed_token_losses(model, tokenizer, neighbours, n, NEIGHBOUR_TOKENS))


# ------------------------------------------------------------------------------------------ results file

CONTAMINATION_SCHEMA_VERSION = 1
CONTAMINATION_FILE = "contamination.json"
ITEMS_FILE = "items.jsonl"
MEANING = (
    "share of items whose real text the target finds likelier than all but a fraction (< threshold) of "
    "paraphrase-like neighbours sampled by the reference: a sign of contamination, not a proof (GSM8K scores "
    "high for many clean models)"
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckedModel(_Model):
    id: str
    source: ModelSource
    location: str
    revision: str | None
    file_sha256: str | None = Field(description="sha256 of a .gguf file")


class ContaminationSettings(_Model):
    items: int = Field(ge=1)
    neighbours: int = Field(ge=2)
    prefix_ratio: float = Field(gt=0, lt=1)
    threshold: float = Field(gt=0, le=1)
    seed: int
    batch_size: int | Literal["auto"] = Field(
        description="rows per scoring forward; auto: as many as fit (halved on out-of-memory)"
    )
    shared_prefix: bool = Field(
        default=True,
        description="prefix forwarded once per item and neighbours scored packed (false: the original's way)",
    )
    dtype: str
    device: str
    data_dir: str | None = Field(description="the offline snapshot read; null: the Hub datasets")


class ContaminationTask(_Model):
    key: str
    column: str = Field(description="the task's short name, as contamination tables head their columns (ARC)")
    display_name: str
    share: float = Field(ge=0, le=1, allow_inf_nan=False, description="share of items with r(x) < threshold")
    reported: str = Field(description="as cards quote it: `result < 0.1, %: 0.06`")
    items: int = Field(ge=1)
    candidates: int = Field(description="eval rows that make an item text")
    skipped_rows: int = Field(description="eval rows the original skips (ARC answer keys outside A-D)")
    seconds: float


class ContaminationResults(_Model):
    schema_version: int = CONTAMINATION_SCHEMA_VERSION
    kind: Literal["contamination"] = "contamination"
    run_id: str
    created_at: datetime
    meaning: str = MEANING
    target: CheckedModel
    reference: CheckedModel
    settings: ContaminationSettings
    tasks: list[ContaminationTask]
    versions: dict[str, str]
    total_seconds: float


def item_record(score: ItemScore, threshold: float) -> dict[str, Any]:
    """One line of items.jsonl: the item, L(x), r(x) and every neighbour's loss."""
    return {
        "task": score.item.task,
        "row": score.item.row,
        "text": score.item.text,
        "loss": score.loss,
        "rank": score.rank,
        "below_threshold": score.rank < threshold,
        "neighbour_losses": score.neighbour_losses,
    }

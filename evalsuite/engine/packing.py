"""Packing requests that share a prefix into one row, the prefix forwarded once.

    row        P P P P P | a a | b b b | c        P: shared prefix, once; a, b, c: each request's own rest
    positions  0 1 2 3 4 | 5 6 | 5 6 7 | 5        each request sees the positions it would have alone
    attention  causal over P; each rest attends to P and to itself, never to another request's rest

Used by the shared-prefix lm-eval backend (backend.py) and by the contamination check, whose neighbours all
start with their item's prefix (neighbours.py). Only torch is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

# A pack grows while its row stays within this many tokens, or within twice its first member (so the
# choices of a long 25-shot document always pack): rows with a custom mask get dense attention, whose cost
# grows with the square of the row and, on small models, soon outweighs the shared tokens saved.
DEFAULT_PACK_TOKENS = 1024
# Requests join a pack only if they share at least this many leading tokens with it.
MIN_SHARED_TOKENS = 16


@dataclass
class Request:
    index: int  # position in the caller's list
    tokens: list[int]  # model input: (context + continuation)[-(max_length + 1):][:-1]
    continuation: list[int]

    @property
    def scored_positions(self) -> range:
        # the logits at these input positions predict the continuation tokens
        return range(len(self.tokens) - len(self.continuation), len(self.tokens))


@dataclass
class Segment:
    """One model input and the requests that score it: several when inputs are identical (MMLU's
    one-token choices " A".." D" all read the same context), forwarded once, as HFLM does too."""

    tokens: list[int]
    requests: list[Request]


@dataclass
class Pack:
    shared: int  # leading tokens common to all members, forwarded once
    members: list[Segment] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.shared + sum(len(m.tokens) - self.shared for m in self.members)

    def row_index(self, member: int, position: int) -> int:
        """Where a member's input position lies in the packed row."""
        if position < self.shared:
            return position
        offset = self.shared + sum(len(m.tokens) - self.shared for m in self.members[:member])
        return offset + position - self.shared


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def pack_requests(
    requests: list[Request], max_tokens: int, min_shared: int = MIN_SHARED_TOKENS, keep_most_shared: bool = True
) -> list[Pack]:
    """Group requests that share a prefix; sorted order puts the longest common prefixes side by side.

    `keep_most_shared`: a request joins a pack only if the pack keeps at least half its shared prefix (for
    lm-eval's requests, below). Off, any `min_shared` common tokens will do: texts sampled from one prefix
    (the contamination check's neighbours) share exactly that prefix, and rows of them are cheap."""
    segments: dict[tuple[int, ...], Segment] = {}
    for request in requests:
        segments.setdefault(tuple(request.tokens), Segment(request.tokens, [])).requests.append(request)
    packs: list[Pack] = []
    for segment in sorted(segments.values(), key=lambda s: s.tokens):
        if packs:
            last = packs[-1]
            # the pack's prefix is common to all members, so sharing with the first is sharing with all
            shared = min(last.shared, common_prefix(last.members[0].tokens, segment.tokens))
            grown = shared + sum(len(m.tokens) - shared for m in last.members) + len(segment.tokens) - shared
            # join only if that keeps most of the pack's sharing: a short common opening (two documents
            # whose first exemplar happens to match) would buy a long dense-attention row for little
            worth_it = shared >= min_shared and (2 * shared >= last.shared or not keep_most_shared)
            if worth_it and grown <= max(max_tokens, 2 * len(last.members[0].tokens)):
                last.shared = shared
                last.members.append(segment)
                continue
        packs.append(Pack(shared=len(segment.tokens), members=[segment]))
    return packs


def rows_in_next_forward(lengths: Sequence[int], rows: int, tokens: int) -> int:
    """How many of the packs ahead (lengths, longest first) go into the next forward: at most `rows`, and
    at most `tokens` once padded to the first (longest) one, but always one. Pack lengths vary tenfold
    (MMLU's subjects), so a fixed row count would mostly forward padding next to the longest packs."""
    return max(1, min(rows, len(lengths), tokens // max(lengths[0], 1)))


@dataclass
class PackedBatch:
    input_ids: torch.Tensor  # [rows, length]
    position_ids: torch.Tensor  # [rows, length]
    attention_mask: torch.Tensor  # [rows, 1, length, length], additive
    real_tokens: int


def build_batch(
    packs: list[Pack], device: torch.device, additive: bool = False, dtype: torch.dtype = torch.float32
) -> PackedBatch:
    length = max(p.length for p in packs)
    ids = torch.zeros((len(packs), length), dtype=torch.long)  # pads: token 0, never attended to
    positions = torch.zeros((len(packs), length), dtype=torch.long)
    segment = torch.full((len(packs), length), -1, dtype=torch.long)  # 0 shared, k+1 member k's rest, -1 pad
    for row, pack in enumerate(packs):
        first = pack.members[0].tokens
        ids[row, : pack.shared] = torch.tensor(first[: pack.shared])
        positions[row, : pack.shared] = torch.arange(pack.shared)
        segment[row, : pack.shared] = 0
        start = pack.shared
        for k, member in enumerate(pack.members):
            rest = member.tokens[pack.shared :]
            end = start + len(rest)
            ids[row, start:end] = torch.tensor(rest, dtype=torch.long)
            positions[row, start:end] = torch.arange(pack.shared, pack.shared + len(rest))
            segment[row, start:end] = k + 1
            start = end
    segment = segment.to(device)  # the [rows, length, length] mask is built where it is used
    index = torch.arange(length, device=device)
    causal = index[None, :] <= index[:, None]  # [query, key]
    seg_q, seg_k = segment[:, :, None], segment[:, None, :]
    # pads only see earlier pads (never an empty row, so no NaN); real tokens never see pads
    allowed = causal[None] & ((seg_k == 0) & (seg_q >= 0) | (seg_k == seg_q))
    if additive:  # eager attention adds the mask to the scores; sdpa takes True = attend (and runs faster so)
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, torch.finfo(dtype).min)
    else:
        mask = allowed
    return PackedBatch(
        input_ids=ids.to(device),
        position_ids=positions.to(device),
        attention_mask=mask[:, None],
        real_tokens=sum(p.length for p in packs),
    )

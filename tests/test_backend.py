"""The shared-prefix backend: packing rules (fast), and the real SmolLM2 model scoring packed requests
exactly as lm-eval's HFLM scores them one by one (within 1e-4 in float32, same greedy flags)."""

from __future__ import annotations

import random

import pytest
import torch

from evalsuite.engine.backends.shared_prefix import SharedPrefixLM
from evalsuite.engine.packing import MIN_SHARED_TOKENS, Request, build_batch, pack_requests, rows_in_next_forward


def _request(index: int, tokens: list[int], continuation: int = 1) -> Request:
    return Request(index, tokens, tokens[len(tokens) - continuation :] if continuation else [])


def test_choices_of_one_document_share_their_context():
    context = list(range(100, 400))
    choices = [_request(i, context + [i + 1] * (i + 2), continuation=i + 2) for i in range(4)]
    other = _request(9, list(range(1000, 1300)) + [7, 7])
    packs = pack_requests([*choices, other], max_tokens=2048)
    assert sorted(len(p.members) for p in packs) == [1, 4]
    (doc,) = [p for p in packs if len(p.members) == 4]
    assert doc.shared == 300
    assert doc.length == 300 + sum(i + 2 for i in range(4))


def test_a_short_common_opening_does_not_merge_documents():
    opening = list(range(50, 50 + MIN_SHARED_TOKENS + 4))
    a = [_request(i, opening + list(range(1000, 1400)) + [i + 1]) for i in range(2)]
    b = [_request(2 + i, opening + list(range(2000, 2400)) + [i + 1]) for i in range(2)]
    packs = pack_requests([*a, *b], max_tokens=4096)
    assert [sorted(r.index for m in p.members for r in m.requests) for p in packs] == [[0, 1], [2, 3]]


def test_documents_with_a_common_preamble_pack_until_the_budget():
    preamble = list(range(10, 510))  # e.g. MMLU's 5-shot dev prefix, the same for a whole subject
    docs = [_request(i, preamble + [5000 + i] * 40) for i in range(20)]
    packs = pack_requests(docs, max_tokens=1000)
    assert sorted(r.index for p in packs for m in p.members for r in m.requests) == list(range(20))
    # the budget, or twice the first member (540 tokens) if that is more: 500 + 14 x 40 <= 1080
    assert all(p.shared == 500 and p.length <= 1080 for p in packs)
    assert [len(p.members) for p in packs] == [14, 6]


def test_identical_inputs_are_forwarded_once():
    # MMLU: the choices " A".." D" are one token each, so all four requests of a document read the same
    # input; the documents of a subject share the 5-shot preamble
    preamble = list(range(10, 510))
    requests = [
        Request(4 * doc + choice, preamble + [5000 + doc] * 30, [90 + choice])
        for doc in range(3)
        for choice in range(4)
    ]
    (pack,) = pack_requests(requests, max_tokens=1024)
    assert [len(m.requests) for m in pack.members] == [4, 4, 4]
    assert pack.shared == 500 and pack.length == 500 + 3 * 30


def test_choices_of_a_document_longer_than_the_budget_still_pack():
    context = list(range(3000))
    packs = pack_requests([_request(i, context + [i + 1] * 5) for i in range(4)], max_tokens=1024)
    assert [len(p.members) for p in packs] == [4]


def test_rows_stop_growing_at_twice_the_first_member():
    preamble = list(range(10, 1510))
    docs = [_request(i, preamble + [5000 + i] * 500) for i in range(6)]
    packs = pack_requests(docs, max_tokens=1024)
    assert [len(p.members) for p in packs] == [5, 1]  # 1500 + 5 x 500 <= 2 x 2000 < 1500 + 6 x 500


def test_a_forward_holds_at_most_the_rows_and_the_padded_tokens_asked_for():
    lengths = [7000, 3000, 1200, 1000, 1000, 1000, 1000, 1000, 1000, 900]  # longest first, as scored
    taken, start = [], 0
    while start < len(lengths):
        n = rows_in_next_forward(lengths[start:], rows=8, tokens=8 * 1024)
        taken.append(n)
        start += n
    assert taken == [1, 2, 7]  # 7000 alone (over budget, still one); 3000 + 1200 padded to 2 x 3000; 7 x 1000
    assert rows_in_next_forward([100] * 20, rows=8, tokens=8 * 1024) == 8


def test_packed_rows_give_each_request_its_own_positions_and_attention():
    context = [11, 12, 13]
    a, b = _request(0, context + [21, 22], 2), _request(1, context + [31], 1)
    (pack,) = pack_requests([a, b], max_tokens=64, min_shared=1)
    batch = build_batch([pack], torch.device("cpu"))
    assert batch.input_ids.tolist() == [[11, 12, 13, 21, 22, 31]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 3]]
    allowed = batch.attention_mask[0, 0].int().tolist()
    assert allowed[5] == [1, 1, 1, 0, 0, 1]  # b's token sees the context and itself, not a's rest
    assert allowed[4] == [1, 1, 1, 1, 1, 0]
    assert pack.row_index(1, 3) == 5 and pack.row_index(0, 4) == 4 and pack.row_index(1, 2) == 2


# --- the real model, against lm-eval's own HFLM


def _lms(folder: str, batch_size: int | str, **extra):
    from lm_eval.models.huggingface import HFLM

    args = {"pretrained": folder, "dtype": "float32", "device": "cpu", "batch_size": batch_size, **extra}
    return HFLM(**args), SharedPrefixLM(**args)


def _synthetic_requests(rng: random.Random, vocab: int) -> list[tuple[tuple[str, str], list[int], list[int]]]:
    """Multiple-choice-shaped requests: shared contexts, choices of varied length, a shared preamble."""
    preamble = [rng.randrange(vocab) for _ in range(40)]
    requests = []
    for doc in range(6):
        context = preamble + [rng.randrange(vocab) for _ in range(rng.randrange(5, 60))]
        for choice in range(rng.randrange(2, 6)):
            continuation = [rng.randrange(vocab) for _ in range(rng.randrange(1, 9))]
            requests.append(((f"doc{doc}", f"choice{choice}"), context, continuation))
    mmlu_context = preamble + [rng.randrange(vocab) for _ in range(30)]
    for letter in range(4):  # one-token choices on one context: identical inputs, different targets
        requests.append((("mmlu", f"letter{letter}"), mmlu_context, [rng.randrange(vocab)]))
    rng.shuffle(requests)
    return requests


def test_real_model_log_likelihoods_match_hflm(model_folder: str):
    plain, shared = _lms(model_folder, batch_size=4, max_length=128)  # short window: the long request is truncated
    requests = _synthetic_requests(random.Random(0), vocab=plain.tokenizer.vocab_size)
    requests.append((("long", "x"), list(range(200, 400)), [5, 6, 7]))  # 203 tokens > max_length + 1
    expected = plain._loglikelihood_tokens(requests, disable_tqdm=True)
    got = shared._loglikelihood_tokens(requests, disable_tqdm=True)
    assert [g for _, g in got] == [g for _, g in expected]
    worst = max(abs(a - b) for (a, _), (b, _) in zip(got, expected, strict=True))
    assert worst < 1e-4, worst
    assert shared.stats.requests == len(requests)
    assert shared.stats.tokens < sum(min(len(c) + len(x) - 1, 128) for _, c, x in requests) * 0.6


def test_out_of_memory_backs_off_and_still_answers_everything(model_folder: str, monkeypatch: pytest.MonkeyPatch):
    _, shared = _lms(model_folder, batch_size="auto")
    shared.pack_tokens = 64  # many small packs, so batches of several rows
    requests = _synthetic_requests(random.Random(1), vocab=shared.tokenizer.vocab_size)
    real_score = shared._score

    def score_or_oom(packs):
        if len(packs) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_score(packs)

    monkeypatch.setattr(shared, "_score", score_or_oom)
    got = shared._loglikelihood_tokens(requests, disable_tqdm=True)
    monkeypatch.setattr(shared, "_score", real_score)
    again = shared._loglikelihood_tokens(requests, disable_tqdm=True)
    assert shared.stats.oom_backoffs >= 1
    assert [g for _, g in got] == [g for _, g in again]
    assert [lp for lp, _ in got] == pytest.approx([lp for lp, _ in again], abs=1e-4)  # other batch shapes


def test_out_of_memory_with_a_fixed_batch_size_is_not_hidden(model_folder: str, monkeypatch: pytest.MonkeyPatch):
    _, shared = _lms(model_folder, batch_size=8)

    def oom(packs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(shared, "_score", oom)
    with pytest.raises(torch.OutOfMemoryError):
        shared._loglikelihood_tokens(_synthetic_requests(random.Random(2), vocab=1000), disable_tqdm=True)

"""GSM8K generation in the shared-prefix backend: both continuous-batching engines (evalsuite/engine/generation.py)
give the texts lm-eval's HFLM gives, on the real SmolLM2 model and real GSM8K rows: evalsuite's own loop (the
default) in fewer decode steps, and transformers' ContinuousBatchingManager (`generation=transformers`) with
lm-eval's stop strings as its tokens stream, both protocols; endings by EOS, budget and context window; failed
requests; batch sizing and out-of-memory back-off; lm-eval's own batches where neither applies."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch
from conftest import SAMPLE_DATA

from evalsuite.engine.backends.shared_prefix import (
    GENERATION_MAX_ROWS,
    GENERATION_MEMORY_SHARE,
    SharedPrefixLM,
    generation_rows,
    kv_bytes_per_token,
)
from evalsuite.engine.generation import CacheBudget, ContinuousGreedy, ManagedGreedy, _Batch, eos_token_ids, supports
from evalsuite.errors import RunError
from evalsuite.suite import Protocol

# lm-eval's gsm8k generation settings, with a smaller token budget to keep the test short
GSM8K_GEN = {"until": ["Question:", "</s>", "<|im_end|>"], "do_sample": False, "temperature": 0.0}


def _args(folder: str, batch_size: int | str, **extra) -> dict:
    return {"pretrained": folder, "dtype": "float32", "device": "cpu", "batch_size": batch_size, **extra}


def _hflm(folder: str, batch_size: int | str, **extra):
    """lm-eval's HFLM alone (each build loads the model: a test builds only the LMs it uses)."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(**_args(folder, batch_size, **extra))


def _shared(folder: str, batch_size: int | str, generation: str = "evalsuite", **extra) -> SharedPrefixLM:
    return SharedPrefixLM(**_args(folder, batch_size, **extra), generation=generation)


def _lms(folder: str, batch_size: int | str, generation: str = "evalsuite", **extra):
    return _hflm(folder, batch_size, **extra), _shared(folder, batch_size, generation, **extra)


def _gsm8k_requests(count: int, max_gen_toks: int, shots: int = 2) -> list:
    """lm-eval's GSM8K prompt shape ("Question: ...\\nAnswer: ...") from the sample rows."""
    from lm_eval.api.instance import Instance

    def rows(split: str) -> list[dict]:
        return [json.loads(line) for line in (SAMPLE_DATA / "gsm8k" / f"{split}.jsonl").read_text().splitlines()]

    train, test = rows("train"), rows("test")
    gen = {**GSM8K_GEN, "max_gen_toks": max_gen_toks}
    requests = []
    for n, doc in enumerate(test[:count]):
        exemplars = train[n : n + shots]  # different exemplars per document, as lm-eval draws them
        context = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in exemplars)
        prompt = f"{context}Question: {doc['question']}\nAnswer:"
        requests.append(Instance("generate_until", doc={}, arguments=(prompt, dict(gen)), idx=0))
    return requests


def _count_forwards(lm) -> list[int]:
    rows: list[int] = []
    lm.model.register_forward_pre_hook(
        lambda _m, args, kwargs: rows.append(int(kwargs["input_ids"].shape[0])), with_kwargs=True
    )
    return rows


# --- the real model against lm-eval's HFLM


def test_continuous_batching_gives_hflm_texts_in_fewer_steps(model_folder: str):
    requests = _gsm8k_requests(6, max_gen_toks=64)  # token counts 64, 36, 15, 29, 64, 27
    plain, shared = _lms(model_folder, batch_size=3)
    plain_forwards, shared_forwards = _count_forwards(plain), _count_forwards(shared)
    expected = plain.generate_until(requests, disable_tqdm=True)
    got = shared.generate_until(requests, disable_tqdm=True)
    assert got == expected  # text by text, in the caller's order
    # some answers stop at "Question:" early and some run to the budget: that is what there is to save
    lengths = [len(shared.tok_encode(text)) for text in got]
    assert min(lengths) < 32 and max(lengths) >= 48
    assert max(shared_forwards) <= 3  # never more rows than the batch size
    assert len(shared_forwards) < len(plain_forwards)  # decode steps (and prefills)
    assert sum(shared_forwards) < sum(plain_forwards)  # rows decoded


def test_generated_tokens_equal_generate_prompt_by_prompt(model_folder: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32).eval()
    assert supports(model) is None
    # prompts of very different lengths, so rows joining the batch are padded, and left padding trimmed
    prompts = [tokenizer(r.args[0])["input_ids"][-(120 + 90 * i) :] for i, r in enumerate(_gsm8k_requests(6, 1))]
    expected = []
    for i, prompt in enumerate(prompts):  # as many tokens as row i keeps (4 + 3i): all the comparison reads
        out = model.generate(
            torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            max_new_tokens=4 + 3 * i, do_sample=False, pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
        expected.append(out[0, len(prompt) :].tolist())
    finished: list[int] = []
    generator = ContinuousGreedy(
        model, slots=2, eos=eos_token_ids(model), pad_token_id=tokenizer.pad_token_id,
        is_final=lambda i, tokens: len(tokens) >= 4 + 3 * i,  # rows leave at different steps
        on_final=lambda i, tokens: finished.append(i),
    )  # fmt: skip
    got = generator.run(prompts, [24] * len(prompts))
    assert sorted(finished) == list(range(len(prompts)))
    for i, tokens in enumerate(got):
        assert tokens == expected[i][: len(tokens)]
        assert len(tokens) == min(4 + 3 * i, len(expected[i]))


# --- batch size under --batch-size auto, and out of memory


def test_generation_batch_fills_a_share_of_the_free_memory_with_kv_cache():
    from transformers import LlamaConfig

    solar = LlamaConfig(num_hidden_layers=48, hidden_size=4096, num_attention_heads=32, num_key_value_heads=8)
    per_token = kv_bytes_per_token(solar, element_size=2)
    assert per_token == 48 * 2 * 8 * 128 * 2  # K and V, 8 KV heads of 128, bf16: 192 KiB
    # one H100 after the 10.7B weights: ~57 GB free; GSM8K prompts up to ~1,000 tokens + 256 new
    rows = generation_rows(57 * 10**9, per_token, 1000 + 256)
    assert rows == int(57 * 10**9 * GENERATION_MEMORY_SHARE) // (per_token * 1256)
    assert 64 < rows < GENERATION_MAX_ROWS  # more than lm-eval's auto ever tries (64)
    assert generation_rows(10**15, per_token, 1256) == GENERATION_MAX_ROWS
    assert generation_rows(10**6, per_token, 1256) == 1  # never zero


def _fail_above(lm, rows: int) -> None:
    """Make the model raise CUDA's out-of-memory error on forwards of more than `rows` rows."""

    def forward_or_oom(_module, args, kwargs):
        if kwargs["input_ids"].shape[0] > rows:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    lm.model.register_forward_pre_hook(forward_or_oom, with_kwargs=True)


def test_auto_generation_backs_off_on_out_of_memory_with_the_same_texts(model_folder: str):
    requests = _gsm8k_requests(5, max_gen_toks=24)
    expected = _hflm(model_folder, batch_size=2).generate_until(requests, disable_tqdm=True)

    auto = _shared(model_folder, batch_size="auto")
    _fail_above(auto, 3)  # the free memory allows all 5; the "GPU" takes 3
    got = auto.generate_until(requests, disable_tqdm=True)
    assert got == expected
    assert auto.stats.oom_backoffs >= 1


def test_out_of_memory_with_a_fixed_batch_size_is_raised(model_folder: str):
    fixed = _shared(model_folder, batch_size=4)
    _fail_above(fixed, 2)
    with pytest.raises(torch.OutOfMemoryError):
        fixed.generate_until(_gsm8k_requests(4, max_gen_toks=4), disable_tqdm=True)


# --- where continuous batching does not apply: lm-eval's batches


def test_generation_config_processors_keep_lm_evals_batches(model_folder: str, monkeypatch: pytest.MonkeyPatch):
    from lm_eval.models.huggingface import HFLM

    requests = _gsm8k_requests(7, max_gen_toks=12)
    auto, fixed = _shared(model_folder, batch_size="auto"), _hflm(model_folder, batch_size=2)
    for lm in (auto, fixed):  # a penalty generate applies on its own: greedy choices change
        lm.model.generation_config.repetition_penalty = 1.3
    assert "repetition_penalty" in (supports(auto.model) or "")
    expected = fixed.generate_until(requests, disable_tqdm=True)

    real_generate = HFLM.generate_until
    batches = []

    def generate_or_oom(self, chunk, disable_tqdm=False):
        if len(chunk) > 3:  # all 7 fit the free memory; the "GPU" takes 3
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        assert self.batch_size == len(chunk)  # HFLM runs each chunk as one batch
        batches.append(len(chunk))
        return real_generate(self, chunk, disable_tqdm)

    monkeypatch.setattr(HFLM, "generate_until", generate_or_oom)
    got = auto.generate_until(requests, disable_tqdm=True)
    assert got == expected  # same texts, in the caller's order
    assert auto.stats.oom_backoffs >= 1 and batches == [3, 3, 1]
    assert auto.batch_size == "auto"  # restored for the next task


def test_sampling_keeps_lm_evals_generation(model_folder: str):
    shared = _shared(model_folder, batch_size=2)
    sampled = _gsm8k_requests(1, max_gen_toks=4)
    sampled[0].args[1].update(do_sample=True, temperature=0.7)
    assert "do_sample" in (shared._continuous_unsupported(sampled) or "")
    assert shared._continuous_unsupported(_gsm8k_requests(2, max_gen_toks=4)) is None


def test_out_of_memory_half_way_through_a_decode_step_backs_off_with_the_same_tokens(model_folder: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32).eval()
    prompts = [tokenizer(r.args[0])["input_ids"][-(100 + 40 * i) :] for i, r in enumerate(_gsm8k_requests(5, 1))]
    expected = ContinuousGreedy(model, slots=1, eos=set(), pad_token_id=0).run(prompts, [12] * 5)

    # the 3rd decode step of 4 rows fails in the middle layer: the layers before it already cached its column
    steps_of_four = []

    def middle_layer_oom(_module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        if hidden.shape[:2] == (4, 1):
            steps_of_four.append(1)
            if len(steps_of_four) == 3:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    model.model.layers[len(model.model.layers) // 2].register_forward_pre_hook(middle_layer_oom, with_kwargs=True)
    generator = ContinuousGreedy(model, slots=4, eos=set(), pad_token_id=0, backoff_on_oom=True)
    got = generator.run(prompts, [12] * 5)
    assert len(steps_of_four) == 3 and generator.oom_backoffs == 1 and generator.slots == 2
    assert got == expected


def _toy_batch(rows: int, columns: int, first_prompt: int) -> _Batch:
    from transformers import DynamicCache

    layers = [(torch.randn(rows, 2, columns, 4), torch.randn(rows, 2, columns, 4)) for _ in range(3)]
    return _Batch(
        prompts=list(range(first_prompt, first_prompt + rows)), live=[True] * rows,
        cache=DynamicCache(ddp_cache_data=layers), mask=torch.ones(rows, columns, dtype=torch.long),
        positions=torch.full((rows,), columns), last=torch.zeros(rows, dtype=torch.long),
    )  # fmt: skip


def test_merged_rows_are_right_aligned_and_a_failed_merge_changes_nothing(monkeypatch: pytest.MonkeyPatch):
    from evalsuite.engine import generation

    batch, new = _toy_batch(2, 5, first_prompt=0), _toy_batch(1, 8, first_prompt=2)
    before = [(layer.keys.clone(), layer.values.clone()) for layer in batch.layers]
    real_cat, calls = torch.cat, []

    def cat_fails_on_the_third_call(tensors, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the second layer's keys: the first layer is already merged
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_cat(tensors, *args, **kwargs)

    monkeypatch.setattr(generation.torch, "cat", cat_fails_on_the_third_call)
    with pytest.raises(torch.OutOfMemoryError):
        batch.extend(new)
    monkeypatch.undo()
    assert batch.mask.tolist() == [[1] * 5] * 2 and batch.prompts == [0, 1]
    for layer, (keys, values) in zip(batch.layers, before, strict=True):
        assert torch.equal(layer.keys, keys) and torch.equal(layer.values, values)

    new = _toy_batch(1, 8, first_prompt=2)
    batch.extend(new)  # now it fits: the old rows are padded on the left to the new row's 8 columns
    assert batch.prompts == [0, 1, 2] and batch.mask.tolist() == [[0, 0, 0] + [1] * 5] * 2 + [[1] * 8]
    first = batch.layers[0]
    assert first.keys.shape == (3, 2, 8, 4) and torch.equal(first.keys[:2, :, 3:], before[0][0])
    assert not first.keys[:2, :, :3].any()  # padding is zeros, and masked
    batch.keep([0, 1])  # the long row leaves: the columns that are padding in both rows left are dropped
    assert batch.prompts == [0, 1] and batch.columns == 5 and batch.mask.tolist() == [[1] * 5] * 2
    assert torch.equal(batch.layers[0].keys, before[0][0])


def test_decode_steps_write_the_cache_in_place_and_hold_what_dynamic_layer_holds():
    """The in-place layer caches exactly what transformers' DynamicLayer caches, through prefill, steps past
    the spare columns, rows replaced the way `_Batch.keep` replaces them, and a cut-back partial step; and
    it copies the cache only when the spare columns run out or the tensors were replaced."""
    from transformers.cache_utils import DynamicLayer

    from evalsuite.engine.generation import SPARE_COLUMNS, _InPlaceLayer

    torch.manual_seed(0)
    ours, reference = _InPlaceLayer(), DynamicLayer()
    buffers_seen: list[torch.Tensor] = []  # kept alive, so no two share an id

    def buffers() -> int:
        return len({id(b) for b in buffers_seen})

    def update(columns: int) -> None:
        keys, values = torch.randn(ours_rows, 2, columns, 4), torch.randn(ours_rows, 2, columns, 4)
        got = ours.update(keys, values)
        want = reference.update(keys, values)
        assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
        buffers_seen.append(ours._buffers[0])

    ours_rows = 3
    update(7)  # prefill
    for _ in range(SPARE_COLUMNS + 1):
        update(1)
    assert buffers() == 2  # one buffer for the prefill, one when its spare columns ran out
    assert all(b is buffers_seen[0] for b in buffers_seen[: SPARE_COLUMNS + 1])

    index = torch.tensor([2, 0])  # rows leave, as in `_Batch.keep`: new tensors, then a fresh buffer
    ours.batch_select_indices(index)
    reference.batch_select_indices(index)
    assert ours._buffers is None  # let go at once, not held beside the new tensors until the next update
    ours_rows = 2
    update(1)
    assert buffers() == 3

    for layer in (ours, reference):  # all-padding columns dropped on the left, as `_Batch.keep` does
        layer.keys, layer.values = layer.keys[..., 1:, :], layer.values[..., 1:, :]
    update(1)
    assert buffers() == 4

    for layer in (ours, reference):  # a failed step cut back, as in `_Batch.drop_partial_step`
        layer.keys, layer.values = layer.keys[..., :-1, :], layer.values[..., :-1, :]
    update(1)
    update(1)
    assert buffers() == 4 and ours.keys.shape == reference.keys.shape == (2, 2, 7 + SPARE_COLUMNS + 3, 4)


# --- transformers' ContinuousBatchingManager (generation=transformers)


def _run_requests(count: int, max_gen_toks: int, protocol: Protocol = Protocol.LEADERBOARD_V1) -> list:
    """The first GSM8K requests of the sample rows exactly as `evalsuite run` builds them, with a smaller
    token budget than the task's 256 to keep the tests short."""
    from lm_eval.api.instance import Instance

    from evalsuite.run.prompts import PromptsRequest, build_prompts

    (task,) = build_prompts(PromptsRequest(tasks=["gsm8k"], limit=count, data_dir=SAMPLE_DATA, protocol=protocol))
    return [
        Instance(
            "generate_until",
            doc={},
            arguments=(context, {**settings, "max_gen_toks": max_gen_toks}),  # type: ignore[dict-item]
            idx=0,
            metadata=("gsm8k", document.doc_id, 1),
        )  # fmt: skip
        for document in task.documents
        for context, settings in document.requests
    ]


def _model(folder: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(), tokenizer


HflmTexts = Callable[[Protocol, int, int], list[str]]


@pytest.fixture(scope="module")
def hflm_texts(model_folder: str) -> HflmTexts:
    """Plain HFLM's texts (batch size 3) for `_run_requests(count, budget, protocol)`: one HFLM, and each
    (protocol, count, budget) generated once per module, for the tests that compare the manager with it."""
    made: dict[tuple[Protocol, int, int], list[str]] = {}
    plain = _hflm(model_folder, batch_size=3)

    def texts(protocol: Protocol, count: int, budget: int) -> list[str]:
        if (protocol, count, budget) not in made:
            requests = _run_requests(count, max_gen_toks=budget, protocol=protocol)
            made[protocol, count, budget] = plain.generate_until(requests, disable_tqdm=True)
        return list(made[protocol, count, budget])

    return texts


@pytest.mark.parametrize("protocol, count, budget", [(Protocol.LEADERBOARD_V1, 3, 32), (Protocol.LM_EVAL, 4, 24)])
def test_the_managers_texts_are_hflms_on_real_gsm8k_requests(
    model_folder: str, hflm_texts: HflmTexts, protocol, count, budget
):
    requests = _run_requests(count, max_gen_toks=budget, protocol=protocol)
    stops = requests[0].args[1]["until"]
    assert (":" in stops) == (protocol is Protocol.LEADERBOARD_V1)  # the leaderboard's first stop is ':'
    shared = _shared(model_folder, batch_size=3, generation="transformers")
    requests_per_forward: list[int] = []
    shared.model.register_forward_pre_hook(
        lambda _m, args, kwargs: requests_per_forward.append(len(kwargs["cu_seq_lens_q"]) - 1), with_kwargs=True
    )
    expected = hflm_texts(protocol, count, budget)
    got = shared.generate_until(requests, disable_tqdm=True)
    assert got == expected  # text by text, in the caller's order
    assert requests_per_forward and max(requests_per_forward) <= 3  # --batch-size 3: at most 3 requests at once
    lengths = [len(shared.tok_encode(text)) for text in got]
    assert max(lengths) == budget and min(lengths) < budget, lengths  # budget and stop-string endings
    if protocol is Protocol.LEADERBOARD_V1:  # cut at the first ':', as test_leaderboard_v1 shows for a run
        assert all(":" not in text for text in got) and "" in got


def test_endings_by_end_of_sequence_and_by_budget_are_generates(model_folder: str):
    model, tokenizer = _model(model_folder)
    prompts = [tokenizer(r.args[0])["input_ids"][-(150 + 60 * i) :] for i, r in enumerate(_run_requests(4, 1))]
    budgets = [12, 12, 3, 7]
    expected = []
    for prompt, budget in zip(prompts, budgets, strict=True):  # each prompt's budget: all the checks read
        ids = torch.tensor([prompt])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=budget, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=None)  # fmt: skip
        expected.append(out[0, len(prompt) :].tolist())
    # an "end-of-sequence" token the model emits for the first time 4th or later in the first prompt's answer:
    # that request ends on it, the token kept last
    first = next(k for k in range(3, 12) if expected[0][k] not in expected[0][:k])
    eos = expected[0][first]
    finished: list[int] = []
    generator = ManagedGreedy(
        model, budget=CacheBudget(slots=2, tokens=400), eos={eos}, pad_token_id=tokenizer.pad_token_id,
        on_final=lambda i, tokens: finished.append(i),
    )  # fmt: skip
    got = generator.run(prompts, budgets)
    assert sorted(finished) == [0, 1, 2, 3]
    for i, tokens in enumerate(got):
        ends = [k for k, t in enumerate(expected[i][: budgets[i]]) if t == eos]
        want = expected[i][: ends[0] + 1] if ends else expected[i][: budgets[i]]
        assert tokens == want, i
    assert got[0][-1] == eos and len(got[0]) == first + 1 and len(got[2]) == 3


def test_a_text_final_at_a_stop_string_is_cancelled_with_the_tokens_it_had(model_folder: str):
    model, tokenizer = _model(model_folder)
    prompts = [tokenizer(r.args[0])["input_ids"][-200:] for r in _run_requests(3, 1)]
    # the reference decodes exactly the tokens each prompt keeps (4 + 3i); the cancelled run gets 20 each
    whole = ManagedGreedy(model, budget=CacheBudget(slots=3, tokens=300), eos=set(), pad_token_id=0).run(
        prompts, [4 + 3 * i for i in range(3)]
    )
    generator = ManagedGreedy(
        model, budget=CacheBudget(slots=3, tokens=300), eos=set(), pad_token_id=0,
        is_final=lambda i, tokens: len(tokens) >= 4 + 3 * i,
    )  # fmt: skip
    got = generator.run(prompts, [20] * 3)
    assert got == [whole[i][: 4 + 3 * i] for i in range(3)]
    assert generator.tokens_decoded < 3 * 20  # cancelled: the manager stopped decoding them early


def test_a_prompt_longer_than_the_context_window_is_cut_as_lm_eval_cuts_it(model_folder: str):
    requests = _run_requests(2, max_gen_toks=16)
    plain, shared = _lms(
        model_folder, batch_size=2, generation="transformers", max_length=256
    )  # GSM8K's prompts are ~700 tokens
    assert len(shared.tok_encode(requests[0].args[0])) > 256
    assert shared.generate_until(requests, disable_tqdm=True) == plain.generate_until(requests, disable_tqdm=True)


# --- a request that fails, a manager that stops


def test_a_failed_generation_is_an_error_naming_the_prompts_never_an_empty_answer(model_folder: str):
    shared = _shared(model_folder, batch_size=2, generation="transformers")
    calls: list[int] = []

    def fails_on_the_third_forward(_module, args, kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("a kernel failed")

    shared.model.register_forward_pre_hook(fails_on_the_third_forward, with_kwargs=True)
    with pytest.raises(RunError, match=r"^generation failed for gsm8k document \d: a kernel failed$"):
        shared.generate_until(_run_requests(3, max_gen_toks=8), disable_tqdm=True)


def test_a_manager_that_stops_before_every_request_is_done_is_an_error(model_folder: str, monkeypatch):
    from transformers.generation.continuous_batching import ContinuousBatchingManager

    model, _ = _model(model_folder)
    monkeypatch.setattr(ContinuousBatchingManager, "_run_generation_loop", lambda self, use_inference_mode: None)
    generator = ManagedGreedy(model, budget=CacheBudget(slots=2, tokens=64), eos=set(), pad_token_id=0)
    with pytest.raises(RunError, match="generation failed for prompt 0, 1: the generation thread stopped"):
        generator.run([[1, 2, 3], [4, 5]], [4, 4])


def _fail_above_tokens(lm, tokens: int) -> None:
    """Make the model raise CUDA's out-of-memory error on forwards of more than `tokens` tokens."""

    def forward_or_oom(_module, args, kwargs):
        if kwargs["input_ids"].numel() > tokens:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    lm.model.register_forward_pre_hook(forward_or_oom, with_kwargs=True)


def test_the_manager_backs_off_on_out_of_memory_under_auto_with_the_same_texts(
    model_folder: str, hflm_texts: HflmTexts
):
    # the requests and HFLM's texts of test_the_managers_texts_are_hflms_on_real_gsm8k_requests[leaderboard-v1]
    requests = _run_requests(3, max_gen_toks=32)
    expected = hflm_texts(Protocol.LEADERBOARD_V1, 3, 32)

    auto = _shared(model_folder, batch_size="auto", generation="transformers")
    _fail_above_tokens(auto, 1500)  # the free memory allows all 3 prompts (~2,900 tokens) in one forward; the "GPU" not
    assert sum(len(auto.tok_encode(r.args[0])) for r in requests) > 1500  # so the first forward fails
    got = auto.generate_until(requests, disable_tqdm=True)
    assert got == expected
    assert auto.stats.oom_backoffs >= 1


def test_the_managers_out_of_memory_with_a_fixed_batch_size_is_raised(model_folder: str):
    fixed = _shared(model_folder, batch_size=4, generation="transformers")
    _fail_above_tokens(fixed, 1500)
    with pytest.raises(torch.OutOfMemoryError):
        fixed.generate_until(_run_requests(4, max_gen_toks=4), disable_tqdm=True)


def test_the_end_of_sequence_ids_are_generation_configs(model_folder: str):
    model, tokenizer = _model(model_folder)
    assert eos_token_ids(model) == {tokenizer.convert_tokens_to_ids("<|im_end|>")}
    model.generation_config.eos_token_id = [2, 0]
    assert eos_token_ids(model) == {0, 2}

"""Where GSM8K's generation time goes on a GPU: prefill vs decode steps, per cache and batch size.

GSM8K is H6's only generation task and, once the multiple-choice tasks share their prefixes, most of a
10.7B model's H6 wall time (bench/gpu.py). This times, on the SOLAR-10.7B-shaped random model, one
prefill and N decode steps for each configuration: `model.generate` with a dynamic (lm-eval's path) or
static KV cache, and evalsuite's ContinuousGreedy with its in-place cache. The prompts are 5-shot
"Question: / Answer:" prompts built from the real GSM8K rows, the shape of lm-eval's (not its exact text:
only their lengths matter here).

    python bench/gpu_generation.py --data-dir ../shared/data/h6 --tokenizer TOKENIZER_FOLDER
    python bench/gpu_generation.py ... --batches 64,128 --profile      # where a decode step's time goes
    python bench/gpu_generation.py ... --schedule 276 --batches 138    # fixed batches vs continuous
    python bench/gpu_generation.py ... --pretrained DIR --device cpu --dtype float32   # a real model, on CPU

`--schedule N` compares the two ways of scheduling N prompts: lm-eval's fixed batches (`model.generate`,
a batch decodes until its longest answer ends) and evalsuite's continuous batching
(evalsuite/engine/generation.py). A random model never stops on its own, so each prompt stops at the length of
its GSM8K reference answer plus the "\n\nQuestion:" that ends it (capped at 256 tokens), a stand-in for
the answer lengths of a model that solves the task; both schedules get the same lengths.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from gpu import SOLAR_10_7B, TINY, _sync, build_model  # noqa: E402

MAX_NEW_TOKENS = 256  # lm-eval's max_gen_toks for gsm8k


def _rows(data_dir: Path, split: str) -> list[dict]:
    lines = (data_dir / "gsm8k" / f"{split}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def gsm8k_prompts(data_dir: Path, count: int) -> list[str]:
    """GSM8K-shaped 5-shot prompts from the real rows (train exemplars, test questions)."""
    shots = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in _rows(data_dir, "train")[:5])
    return [f"{shots}Question: {r['question']}\nAnswer:" for r in _rows(data_dir, "test")[:count]]


def answer_lengths(data_dir: Path, tokenizer, count: int) -> list[int]:
    """Tokens of each reference answer and the stop string after it, capped at MAX_NEW_TOKENS."""
    answers = [f" {r['answer']}\n\nQuestion:" for r in _rows(data_dir, "test")[:count]]
    return [min(MAX_NEW_TOKENS, len(tokenizer(a, add_special_tokens=False)["input_ids"])) for a in answers]


def compare_schedules(model, tokenizer, prompts: list[str], lengths: list[int], batch: int, device: str) -> None:
    """Fixed batches (model.generate, a row stops at its length) vs continuous batching, same lengths."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    from evalsuite.engine.generation import ContinuousGreedy

    vocab = model.config.vocab_size
    ids = [[t % vocab for t in tokenizer(p, add_special_tokens=False)["input_ids"]] for p in prompts]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # lm-eval's order: longest prompt first

    class StopAtLength(StoppingCriteria):
        def __init__(self, start: int, targets: list[int]) -> None:
            self.start, self.targets = start, torch.tensor(targets, device=device)

        def __call__(self, input_ids, scores, **kwargs):
            return (input_ids.shape[1] - self.start) >= self.targets

    _sync(device)
    started, fixed_steps = time.perf_counter(), 0
    with torch.no_grad():
        for first in range(0, len(order), batch):
            chunk = order[first : first + batch]
            width = max(len(ids[i]) for i in chunk)
            input_ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for row, i in enumerate(chunk):
                input_ids[row, width - len(ids[i]) :] = torch.tensor(ids[i])
                mask[row, width - len(ids[i]) :] = 1
            stop = StopAtLength(width, [lengths[i] for i in chunk])
            model.generate(
                input_ids=input_ids.to(device), attention_mask=mask.to(device), max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False, pad_token_id=0, eos_token_id=None, stopping_criteria=StoppingCriteriaList([stop]),
            )  # fmt: skip
            fixed_steps += max(lengths[i] for i in chunk)
    _sync(device)
    fixed = time.perf_counter() - started

    generator = ContinuousGreedy(
        model, slots=batch, eos=set(), pad_token_id=0,
        is_final=lambda position, tokens: len(tokens) >= lengths[order[position]],
    )  # fmt: skip
    _sync(device)
    started = time.perf_counter()
    generator.run([ids[i] for i in order], [MAX_NEW_TOKENS] * len(order))
    _sync(device)
    continuous = time.perf_counter() - started

    scale = 1319 / len(prompts) / 60
    print(
        f"{len(prompts)} prompts, {batch} at once, answers of {min(lengths)}-{max(lengths)} tokens "
        f"(mean {sum(lengths) / len(lengths):.0f}):\n"
        f"  fixed batches (lm-eval): {fixed:.1f}s, {fixed_steps} decode steps; "
        f"1,319 documents: {fixed * scale:.1f} min\n"
        f"  continuous (evalsuite):  {continuous:.1f}s, {generator.steps} decode steps; 1,319 documents: "
        f"{continuous * scale:.1f} min; ratio {continuous / fixed:.2f}",
        flush=True,
    )


def leaderboard_requests(data_dir: Path, count: int, protocol: str) -> list:
    """The first `count` GSM8K generation requests exactly as `evalsuite run` sends them (lm-eval Instances)."""
    from lm_eval.api.instance import Instance

    from evalsuite.run.prompts import PromptsRequest, build_prompts
    from evalsuite.suite import Protocol

    request = PromptsRequest(tasks=["gsm8k"], limit=count, data_dir=data_dir, protocol=Protocol(protocol))
    (task,) = build_prompts(request)
    return [
        Instance(
            "generate_until",
            doc={},
            arguments=(context, dict(settings)),
            idx=0,
            metadata=("gsm8k", document.doc_id, 1),
        )  # fmt: skip
        for document in task.documents
        for context, settings in document.requests
    ]


def compare_paths(model, tokenizer, requests: list, batch_size: int | str, device: str) -> list[dict]:
    """lm-eval's HFLM (fixed batches through `model.generate`), evalsuite's own continuous batching (the
    "loop", ContinuousGreedy, the default) and transformers' ContinuousBatchingManager ("manager",
    ManagedGreedy, `--backend-options generation=transformers`), one
    after the other on the same model and requests: texts, wall time, tokens decoded, peak memory.

    Tokens decoded: rows of the decode forwards (fixed batches and the loop: a row stays in its batch until
    the batch's last answer ends or the loop compacts it; the prefill's first token not counted); for the
    manager, the tokens it generated after each prefill, those after a cancellation included."""
    import torch
    from lm_eval.models.huggingface import HFLM

    from evalsuite.engine import generation
    from evalsuite.engine.backends.shared_prefix import SharedPrefixLM

    decode_rows = [0]

    def count(_module, args, kwargs) -> None:
        ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        if ids.shape[1] == 1:
            decode_rows[0] += int(ids.shape[0])

    hook = model.register_forward_pre_hook(count, with_kwargs=True)
    managed: list[generation.ManagedGreedy] = []
    real_run = generation.ManagedGreedy.run

    def recording_run(self, prompts, budgets):
        managed.append(self)
        return real_run(self, prompts, budgets)

    generation.ManagedGreedy.run = recording_run  # type: ignore[method-assign]
    paths = []
    try:
        for path in ("lm-eval HFLM", "loop", "manager"):
            common = dict(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=None)
            if path == "lm-eval HFLM":
                lm = HFLM(**common)
            else:  # the shared-prefix backend with each engine (`--backend-options generation=...`)
                lm = SharedPrefixLM(**common, generation="evalsuite" if path == "loop" else "transformers")
            decode_rows[0], managed[:] = 0, []
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            _sync(device)
            started = time.perf_counter()
            texts = lm.generate_until(requests, disable_tqdm=True)
            _sync(device)
            seconds = time.perf_counter() - started
            decoded = sum(g.tokens_decoded for g in managed) - len(requests) if path == "manager" else decode_rows[0]
            peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
            paths.append({"path": path, "texts": texts, "seconds": seconds, "decoded": decoded, "peak_mb": peak})
    finally:
        generation.ManagedGreedy.run = real_run  # type: ignore[method-assign]
        hook.remove()
    return paths


def print_paths(paths: list[dict], requests: int, heading: str) -> None:
    reference = paths[0]["texts"]
    print(heading)
    print("| path | texts equal to lm-eval HFLM's | wall s | ratio to HFLM | tokens decoded | tokens/s | peak MB |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for p in paths:
        same = sum(a == b for a, b in zip(p["texts"], reference, strict=True))
        peak = "-" if p["peak_mb"] is None else f"{p['peak_mb']:,.0f}"
        print(
            f"| {p['path']} | {same} of {requests} | {p['seconds']:.1f} | {p['seconds'] / paths[0]['seconds']:.2f} "
            f"| {p['decoded']:,} | {p['decoded'] / p['seconds']:,.0f} | {peak} |"
        )
    for p in paths[1:]:
        for i, (a, b) in enumerate(zip(p["texts"], reference, strict=True)):
            if a != b:
                at = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
                print(
                    f"{p['path']}: request {i} differs from character {at}: {a[at : at + 40]!r} vs {b[at : at + 40]!r}"
                )
    print(flush=True)


class ForwardClock:
    """Times every forward of the model (device synchronised at both ends), so that prefill and decode steps
    come from one run: subtracting a separately timed prefill from a longer run is noisy on a CPU."""

    def __init__(self, model, device: str) -> None:
        self.device = device
        self.forwards: list[tuple[bool, float, float]] = []  # (decode step?, start, end)
        model.register_forward_pre_hook(self._started, with_kwargs=True)
        model.register_forward_hook(self._ended, with_kwargs=True)

    def _started(self, _module, args, kwargs) -> None:
        _sync(self.device)
        ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        self._current = (int(ids.shape[1]) == 1, time.perf_counter())

    def _ended(self, _module, args, kwargs, output) -> None:
        _sync(self.device)
        self.forwards.append((*self._current, time.perf_counter()))

    def split(self, ended: float) -> tuple[float, float, float]:
        """Prefill seconds; wall ms per decode step from the last prefill to `ended` (the loop's own work
        included); ms per decode step inside the model's forward."""
        prefills = [(start, end) for decode, start, end in self.forwards if not decode]
        steps = [end - start for decode, start, end in self.forwards if decode]
        after_prefill = max(end for _, end in prefills)
        return (
            sum(end - start for start, end in prefills),
            (ended - after_prefill) / len(steps) * 1000,
            sum(steps) / len(steps) * 1000,
        )


# torch.cuda.memory_stats() counters that show allocator churn: cudaMalloc/cudaFree calls and the retries
# after which the caching allocator frees its cache (each a device synchronisation).
ALLOCATOR_COUNTERS = ("num_device_alloc", "num_device_free", "num_alloc_retries", "segment.all.allocated")


def profile_steps(run, label: str, device: str) -> None:
    """Profile a prefill and 8 decode steps: top operators by GPU time and by CPU time, how busy the GPU
    was, and the allocator's cudaMalloc/cudaFree calls. A decode step far above its memory-traffic time
    (stop 8: ~185 ms where reading a 10.7B model's weights takes ~7 ms) is either the GPU busy with
    something (GPU-time table) or the GPU waiting on the host (low busy share; CPU table, allocator)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    before = torch.cuda.memory_stats() if cuda else {}
    started = time.perf_counter()
    with profile(activities=activities) as prof:
        run()
        _sync(device)
    wall_us = (time.perf_counter() - started) * 1e6
    events = prof.key_averages()
    print(f"--- profile, {label}: a prefill and 8 decode steps, {wall_us / 1e3:.0f} ms", flush=True)
    if cuda:
        print(events.table(sort_by="self_device_time_total", row_limit=12), flush=True)
        gpu_us = sum(getattr(e, "self_device_time_total", 0) for e in events)
        print(f"GPU busy {gpu_us / 1e3:.0f} ms of {wall_us / 1e3:.0f} ms ({gpu_us / wall_us:.0%})")
        after = torch.cuda.memory_stats()
        counts = {k: after.get(k, 0) - before.get(k, 0) for k in ALLOCATOR_COUNTERS if k in after}
        print("allocator during the profile: " + ", ".join(f"{k} +{v}" for k, v in counts.items()), flush=True)
    print(events.table(sort_by="self_cpu_time_total", row_limit=12), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--batches", default="64,128")
    parser.add_argument(
        "--caches", default="dynamic,continuous",
        help="dynamic/static: model.generate with that KV cache (lm-eval's path is dynamic); continuous: "
        "evalsuite's ContinuousGreedy (its in-place cache), all prompts in one batch",
    )  # fmt: skip
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--pretrained", help="a model folder to load instead of the random SOLAR-shaped model")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--profile", action="store_true", help="profile 8 decode steps of each cache (first batch)")
    parser.add_argument("--schedule", type=int, help="compare fixed and continuous batching on this many prompts")
    parser.add_argument(
        "--paths", type=int,
        help="lm-eval's HFLM, evalsuite's loop and transformers' manager on this many real GSM8K requests "
        "(as `evalsuite run` builds them): texts, wall time, tokens decoded",
    )  # fmt: skip
    parser.add_argument("--protocol", default="leaderboard-v1", help="the requests' protocol (with --paths)")
    parser.add_argument("--batch-size", default="8", help="the backends' batch size (with --paths)")
    parser.add_argument("--max-gen-toks", type=int, help="a smaller token budget than the task's 256 (with --paths)")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    tokenizer.padding_side = "left"
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    dtype = getattr(torch, args.dtype)
    if args.pretrained:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(args.pretrained, dtype=dtype, attn_implementation="sdpa")
        model = model.to(args.device).eval()
    else:  # --paths feeds the tokenizer's ids to the model unfolded: give the model the tokenizer's vocabulary
        shape = (TINY if args.tiny else SOLAR_10_7B) | ({"vocab_size": len(tokenizer)} if args.paths else {})
        model = build_model(shape, args.device, dtype)
    vocab = model.config.vocab_size
    batches = [int(b) for b in args.batches.split(",")]
    if args.paths:
        import platform

        requests = leaderboard_requests(args.data_dir, args.paths, args.protocol)
        for request in requests if args.max_gen_toks else []:
            request.args[1]["max_gen_toks"] = args.max_gen_toks
        batch_size = args.batch_size if args.batch_size.startswith("auto") else int(args.batch_size)
        paths = compare_paths(model, tokenizer, requests, batch_size, args.device)
        import transformers

        model_name = Path(args.pretrained).name if args.pretrained else "random SOLAR-10.7B-shaped"
        heading = (
            f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.device} "
            f"({torch.cuda.get_device_name() if args.device.startswith('cuda') else platform.machine()}, "
            f"{torch.get_num_threads()} threads), torch {torch.__version__}, transformers {transformers.__version__}; "
            f"model {model_name} ({args.dtype}); {len(requests)} GSM8K requests "
            f"under {args.protocol}; batch size {args.batch_size}"
            f"{f'; max_gen_toks {args.max_gen_toks}' if args.max_gen_toks else ''}\n"
        )
        print_paths(paths, len(requests), heading)
        return
    if args.schedule:
        prompts = gsm8k_prompts(args.data_dir, args.schedule)
        lengths = answer_lengths(args.data_dir, tokenizer, args.schedule)
        for batch in batches:
            compare_schedules(model, tokenizer, prompts, lengths, batch, args.device)
        return
    prompts = gsm8k_prompts(args.data_dir, max(batches))

    def generate(batch: int, cache: str, new_tokens: int) -> None:
        if cache == "continuous":
            return continuous(batch, new_tokens)
        encoded = tokenizer(prompts[:batch], return_tensors="pt", padding=True)
        ids = (encoded["input_ids"] % vocab).to(args.device)
        extra = {} if cache == "dynamic" else {"cache_implementation": cache}
        with torch.no_grad():
            model.generate(
                input_ids=ids, attention_mask=encoded["attention_mask"].to(args.device),
                max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0, **extra,
            )  # fmt: skip

    def continuous(batch: int, new_tokens: int) -> None:
        from evalsuite.engine.generation import ContinuousGreedy

        encoded = tokenizer(prompts[:batch], add_special_tokens=False)["input_ids"]
        ids = [[t % vocab for t in row] for row in encoded]
        ContinuousGreedy(model, slots=batch, eos=set(), pad_token_id=0).run(ids, [new_tokens] * batch)

    shape = tuple(tokenizer(prompts, padding=True, return_tensors="pt")["input_ids"].shape)
    print(f"prompt tokens, padded (batch, length): {shape}")
    clock = ForwardClock(model, args.device)
    for cache in args.caches.split(","):
        for batch in batches:
            generate(batch, cache, 2)  # warm-up
            clock.forwards.clear()
            generate(batch, cache, args.new_tokens)
            _sync(args.device)
            prefill, step_ms, forward_ms = clock.split(ended=time.perf_counter())
            print(
                f"cache={cache:10s} batch={batch:4d}: prefill {prefill:.2f}s, decode {step_ms:.1f} ms/step "
                f"({forward_ms:.1f} in the forward), {batch * 1000 / step_ms:.0f} tokens/s; 256 tokens for "
                f"1319 documents: {(prefill + 255 * step_ms / 1000) * 1319 / batch / 60:.1f} min",
                flush=True,
            )
            if args.profile and batch == batches[0]:
                profile_steps(lambda b=batch, c=cache: generate(b, c, 9), cache, args.device)
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

"""GPU benchmark: a randomly initialised SOLAR-10.7B-shaped model on the real H6 prompts, both backends.

Builds a Llama model with SOLAR-10.7B's architecture (48 layers, hidden 4096, 32 heads, 8 KV heads,
intermediate 14336, vocab 32000) in bf16 directly on the GPU, tokenizes the real multiple-choice
requests of the suite (leaderboard shot counts, rows from --data-dir) with --tokenizer (token ids folded
into the 32000-token vocabulary: lengths are what matter here), and scores them through lm-eval's HFLM
and through evalsuite's shared-prefix backend. Per task it prints requests, tokens forwarded, seconds,
tokens/s, MFU against a bf16 matmul peak measured on the spot, and the agreement of the two backends'
choices. Finally it projects the full H6 wall time (all documents; GSM8K from a timed fixed batch of
greedy generations, which a random model never stops early, counted the same for both backends: an upper
bound. How much evalsuite's continuous batching saves on GSM8K is measured by
`bench/gpu_generation.py --schedule`, which stops each prompt at its reference answer's length).

    python bench/gpu.py --data-dir ../shared/data/h6 --tokenizer .cache/evalsuite/gguf/<SmolLM2 folder>
    python bench/gpu.py --tiny --device cpu ...     # the same code on a toy-sized model (a smoke test)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SOLAR_10_7B = {
    "num_hidden_layers": 48,
    "hidden_size": 4096,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
}
TINY = SOLAR_10_7B | {
    "num_hidden_layers": 2,
    "hidden_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 256,
}
MULTIPLE_CHOICE = ("arc", "hellaswag", "mmlu", "truthfulqa", "winogrande")

Request = tuple[tuple[str, str], list[int], list[int]]


@dataclass
class TaskFigures:
    task: str
    documents: int
    full_documents: int
    requests: int
    tokens_plain: int
    tokens_ours: int
    seconds_plain: float
    seconds_ours: float
    tokens_per_s_plain: float
    tokens_per_s_ours: float
    mfu_plain: float
    mfu_ours: float
    same_choices: float  # fraction of documents whose argmax choice agrees between backends
    max_abs_diff: float


def build_model(config_values: dict, device: str, dtype):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**config_values, torch_dtype=dtype)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            model = LlamaForCausalLM(config)
        finally:
            torch.set_default_dtype(previous)
    return model.eval()


def matmul_peak_tflops(device: str, dtype, size: int = 8192, repeats: int = 20) -> float:
    import torch

    if not device.startswith("cuda"):
        size, repeats = 1024, 5
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def collect_requests(data_dir: Path, keys: list[str], limit: int, mmlu_limit: int, encode, vocab: int):
    """The suite's real requests per task, as (docs, requests) with token ids folded into `vocab`."""
    from evalsuite.data import plan_local
    from evalsuite.engine import runner
    from evalsuite.settings import Seeds
    from evalsuite.suite import Protocol, default_tasks_dir, load_suite

    suite = load_suite().for_protocol(Protocol.LEADERBOARD_V1)  # evalsuite run's default
    tasks_dir = default_tasks_dir()
    task_manager = runner.build_task_manager(tasks_dir)
    plan = plan_local(data_dir, suite.select(keys))
    collected: dict[str, tuple[int, int, list[Request], list]] = {}
    for data in plan.tasks:
        group = runner.load_task_group(task_manager, tasks_dir, data)
        runner.build_requests(group, mmlu_limit if data.spec.key == "mmlu" else limit, Seeds())
        requests: list[Request] = []
        generations = []
        documents = 0
        for task in group.tasks.values():
            documents += len({inst.doc_id for inst in task.instances})
            for inst in task.instances:
                if inst.request_type == "loglikelihood":
                    context, continuation = inst.args
                    ctx, cont = encode(context, continuation)
                    key = (f"{task.config.task}:{inst.doc_id}", continuation)
                    requests.append((key, [t % vocab for t in ctx], [t % vocab for t in cont]))
                elif inst.request_type == "generate_until":
                    generations.append(inst.args)
        collected[data.spec.key] = (documents, data.spec.full_eval_rows, requests, generations)
    return collected


def hflm_tokens(requests: list[Request], max_length: int) -> int:
    """Tokens HFLM forwards: each request's truncated input, once per distinct input (lm-eval groups
    requests whose inputs are identical, e.g. MMLU's one-token choices, into one forward row)."""
    inputs = {tuple((c + x)[-(max_length + 1) :][:-1]) for _, c, x in requests}
    return sum(len(i) for i in inputs)


def _choices_agree(requests: list[Request], plain, ours) -> float:
    by_doc: dict[str, list[int]] = {}
    for i, ((doc, _), _, _) in enumerate(requests):
        by_doc.setdefault(doc, []).append(i)
    agree = sum(max(idx, key=lambda i: plain[i][0]) == max(idx, key=lambda i: ours[i][0]) for idx in by_doc.values())
    return agree / max(len(by_doc), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "h6")
    parser.add_argument("--tokenizer", required=True, help="a Hugging Face tokenizer folder (e.g. SmolLM2's)")
    parser.add_argument("--tasks", default=",".join((*MULTIPLE_CHOICE, "gsm8k")))
    parser.add_argument("--limit", type=int, default=100, help="documents per task")
    parser.add_argument("--mmlu-limit", type=int, default=5, help="documents per MMLU subject")
    parser.add_argument("--gsm8k-batch", type=int, default=64, help="GSM8K prompts generated at once")
    parser.add_argument("--max-gen-tokens", type=int, default=256, help="lm-eval's GSM8K generation budget")
    parser.add_argument("--batch-size", default="auto", help="both backends: an int, or auto")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--tiny", action="store_true", help="a toy model of the same family (smoke test)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    from evalsuite.engine.backends.shared_prefix import SharedPrefixLM

    dtype = getattr(torch, args.dtype)
    config = TINY if args.tiny else SOLAR_10_7B
    keys = [k.strip() for k in args.tasks.split(",") if k.strip()]
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    started = time.perf_counter()
    model = build_model(config, args.device, dtype)
    _sync(args.device)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"model: {parameters / 1e9:.2f}B parameters, built in {time.perf_counter() - started:.0f}s", flush=True)
    peak = matmul_peak_tflops(args.device, dtype)
    print(f"{args.dtype} matmul peak measured: {peak:.0f} TFLOP/s", flush=True)

    lm_args = {"pretrained": model, "tokenizer": tokenizer, "batch_size": args.batch_size, "device": args.device}
    plain, ours = HFLM(**lm_args), SharedPrefixLM(**lm_args)
    collected = collect_requests(
        args.data_dir, keys, args.limit, args.mmlu_limit, plain._encode_pair, config["vocab_size"]
    )

    # warm-up (kernel selection, allocator, autotuning), so the first task timed does not pay for it
    warm = [r for key in keys if key in MULTIPLE_CHOICE for r in collected[key][2][:16]]
    for lm in (plain, ours):
        lm._loglikelihood_tokens(warm, disable_tqdm=True)
    ours.stats.tokens = 0
    _sync(args.device)

    figures: list[TaskFigures] = []

    def mfu(tokens: int, seconds: float) -> float:
        return tokens * 2 * parameters / seconds / (peak * 1e12)  # 2 FLOPs per parameter per token

    for key in [k for k in keys if k in MULTIPLE_CHOICE]:
        documents, full_documents, requests, _ = collected[key]
        plain_tokens = hflm_tokens(requests, plain.max_length)
        timings = {}
        answers = {}
        for name, lm in (("plain", plain), ("ours", ours)):
            _sync(args.device)
            t0 = time.perf_counter()
            answers[name] = lm._loglikelihood_tokens(requests, disable_tqdm=True)
            _sync(args.device)
            timings[name] = time.perf_counter() - t0
        ours_tokens = ours.stats.tokens
        ours.stats.tokens = 0
        figures.append(
            TaskFigures(
                task=key,
                documents=documents,
                full_documents=full_documents,
                requests=len(requests),
                tokens_plain=plain_tokens,
                tokens_ours=ours_tokens,
                seconds_plain=round(timings["plain"], 2),
                seconds_ours=round(timings["ours"], 2),
                tokens_per_s_plain=round(plain_tokens / timings["plain"]),
                tokens_per_s_ours=round(ours_tokens / timings["ours"]),
                mfu_plain=round(mfu(plain_tokens, timings["plain"]), 3),
                mfu_ours=round(mfu(ours_tokens, timings["ours"]), 3),
                same_choices=round(_choices_agree(requests, answers["plain"], answers["ours"]), 4),
                max_abs_diff=max(abs(a[0] - b[0]) for a, b in zip(answers["plain"], answers["ours"], strict=True)),
            )
        )
        f = figures[-1]
        print(
            f"{key}: {f.documents} docs, {f.requests} requests; tokens {f.tokens_plain} -> {f.tokens_ours} "
            f"({f.tokens_ours / f.tokens_plain:.2f}); {f.seconds_plain:.1f}s -> {f.seconds_ours:.1f}s "
            f"({f.seconds_ours / f.seconds_plain:.2f}); MFU {f.mfu_plain:.2f} / {f.mfu_ours:.2f}; "
            f"same choice on {100 * f.same_choices:.1f}% of documents ({args.dtype}; max |d| {f.max_abs_diff:.2g})",
            flush=True,
        )

    projection = {f.task: (f.seconds_plain, f.seconds_ours, f.full_documents / f.documents) for f in figures}
    generation_seconds = None
    if "gsm8k" in keys:
        documents, full_documents, _, generations = collected["gsm8k"]
        prompts = [context for context, _ in generations][: args.gsm8k_batch]
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        batch = tokenizer(prompts, return_tensors="pt", padding=True)
        ids = (batch["input_ids"] % config["vocab_size"]).to(args.device)
        _sync(args.device)
        t0 = time.perf_counter()
        with torch.no_grad():
            model.generate(
                input_ids=ids,
                attention_mask=batch["attention_mask"].to(args.device),
                max_new_tokens=args.max_gen_tokens,
                min_new_tokens=args.max_gen_tokens,
                do_sample=False,
                pad_token_id=0,
            )
        _sync(args.device)
        generation_seconds = time.perf_counter() - t0
        per_document = generation_seconds / len(prompts)
        projection["gsm8k"] = (generation_seconds, generation_seconds, full_documents / len(prompts))
        print(f"gsm8k: {len(prompts)} prompts x {args.max_gen_tokens} new tokens in {generation_seconds:.1f}s "
              f"({per_document:.2f}s per document; fixed batch, the same for both backends here: "
              f"continuous batching is timed by bench/gpu_generation.py --schedule)", flush=True)  # fmt: skip

    plain_total = sum(p * scale for p, _, scale in projection.values())
    ours_total = sum(o * scale for _, o, scale in projection.values())
    print(
        f"projected full H6 ({', '.join(projection)}): plain lm-eval {plain_total / 60:.1f} min, "
        f"evalsuite {ours_total / 60:.1f} min (scoring only; model load and data preparation not included)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device,
                    "parameters": parameters,
                    "matmul_peak_tflops": peak,
                    "tasks": [asdict(f) for f in figures],
                    "gsm8k_seconds": generation_seconds,
                    "projected_minutes": {"plain": plain_total / 60, "evalsuite": ours_total / 60},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()

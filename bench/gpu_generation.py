"""Where GSM8K's generation time goes on a GPU: prefill vs decode steps, per cache and batch size.

GSM8K is H6's only generation task and, once the multiple-choice tasks share their prefixes, most of a
10.7B model's H6 wall time (bench/gpu.py). This times, on the SOLAR-10.7B-shaped random model, one
prefill and N decode steps through `model.generate` for each configuration. The prompts are 5-shot
"Question: / Answer:" prompts built from the real GSM8K rows, the shape of lm-eval's (not its exact text:
only their lengths matter here).

    python bench/gpu_generation.py --data-dir ../shared/data/h6 --tokenizer TOKENIZER_FOLDER
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


def gsm8k_prompts(data_dir: Path, count: int) -> list[str]:
    """GSM8K-shaped 5-shot prompts from the real rows (train exemplars, test questions)."""

    def rows(split: str) -> list[dict]:
        lines = (data_dir / "gsm8k" / f"{split}.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    shots = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in rows("train")[:5])
    return [f"{shots}Question: {r['question']}\nAnswer:" for r in rows("test")[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--batches", default="64,128")
    parser.add_argument("--caches", default="dynamic,static")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--profile", action="store_true", help="top operators of 8 decode steps (first config)")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    tokenizer.padding_side = "left"
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    config = TINY if args.tiny else SOLAR_10_7B
    model = build_model(config, args.device, torch.bfloat16)
    batches = [int(b) for b in args.batches.split(",")]
    prompts = gsm8k_prompts(args.data_dir, max(batches))

    def generate(batch: int, cache: str, new_tokens: int) -> float:
        encoded = tokenizer(prompts[:batch], return_tensors="pt", padding=True)
        ids = (encoded["input_ids"] % config["vocab_size"]).to(args.device)
        extra = {} if cache == "dynamic" else {"cache_implementation": cache}
        _sync(args.device)
        started = time.perf_counter()
        with torch.no_grad():
            model.generate(
                input_ids=ids, attention_mask=encoded["attention_mask"].to(args.device),
                max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0, **extra,
            )  # fmt: skip
        _sync(args.device)
        return time.perf_counter() - started

    shape = tuple(tokenizer(prompts, padding=True, return_tensors="pt")["input_ids"].shape)
    print(f"prompt tokens, padded (batch, length): {shape}")
    for cache in args.caches.split(","):
        for batch in batches:
            generate(batch, cache, 2)  # warm-up
            prefill = generate(batch, cache, 1)
            total = generate(batch, cache, args.new_tokens)
            step_ms = (total - prefill) / (args.new_tokens - 1) * 1000
            print(
                f"cache={cache:8s} batch={batch:4d}: prefill {prefill:.2f}s, decode {step_ms:.1f} ms/step, "
                f"{batch * 1000 / step_ms:.0f} tokens/s; 256 tokens for 1319 documents: "
                f"{(prefill + 255 * step_ms / 1000) * 1319 / batch / 60:.1f} min",
                flush=True,
            )
            if args.profile and cache == args.caches.split(",")[0] and batch == batches[0]:
                from torch.profiler import ProfilerActivity, profile

                activities = [ProfilerActivity.CPU]
                if args.device.startswith("cuda"):
                    activities.append(ProfilerActivity.CUDA)
                with profile(activities=activities) as prof:
                    generate(batch, cache, 8)
                sort = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
                print(prof.key_averages().table(sort_by=sort, row_limit=12), flush=True)
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

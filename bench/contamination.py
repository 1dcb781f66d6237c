"""Contamination check: the shared-prefix way against the original's way, on the same items.

The original (swj0419/detect-pretrain-code-contamination) samples an item's 100 neighbours with `generate`
from its prefix repeated 100 times, then scores each neighbour on its own in padded batches of 32. evalsuite's
default forwards the prefix once (its KV cache copied to the 100 rows) and scores x and its neighbours packed
(their common start once, evalsuite/engine/packing.py). Both ways run here in one process on the same model and items,
with the same seeds; the script prints the time of each way, items/s, and whether the sampled neighbours, the
ranks r(x) and the reported shares are identical.

    .venv/bin/python bench/contamination.py --items 5 --record bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "h6"


def _machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}, {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="target and reference (as `evalsuite run`)")
    parser.add_argument("--reference", help="reference model (default: --model)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tasks", default="arc,mmlu,truthfulqa,gsm8k")
    parser.add_argument("--items", type=int, default=5, help="items per task (the seeded shuffle's first N)")
    parser.add_argument("--neighbours", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--record", type=Path, help="append the table, machine and date to this Markdown file")
    args = parser.parse_args()

    import torch

    from evalsuite.contamination import reported_share, select_items
    from evalsuite.data import eval_rows, plan_local
    from evalsuite.engine import DEFAULT_BACKEND, get_backend, prepare_model, resolve, score_items
    from evalsuite.model import parse_model_ref
    from evalsuite.settings import Dtype
    from evalsuite.suite import load_suite

    device, dtype = resolve(args.device, Dtype.parse(args.dtype) if args.dtype else None)
    scorer = get_backend(DEFAULT_BACKEND)  # as run_contamination loads its models
    target = scorer.load_scorer(prepare_model(parse_model_ref(args.model)), dtype, device, {})
    reference = (
        target
        if not args.reference
        else scorer.load_scorer(prepare_model(parse_model_ref(args.reference)), dtype, device, {})
    )

    lines = [
        "| task | items | original s | shared-prefix s | **time ratio** | items/s original / shared | "
        "identical neighbours | identical r(x) | share original / shared | max abs Δ loss |",
        "|---|--:|--:|--:|--:|--:|---|---|--:|--:|",
    ]
    totals = [0.0, 0.0]
    plan = plan_local(args.data_dir, load_suite().select([t.strip() for t in args.tasks.split(",") if t.strip()]))
    for data in plan.tasks:
        task = data.spec.key
        items = select_items(task, eval_rows(data), args.items).items
        timed = []
        for shared in (False, True):
            started = time.perf_counter()
            scores = score_items(items, target, reference, args.neighbours, 0.4, 0, args.batch_size, shared)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            timed.append((time.perf_counter() - started, scores))
        (t_orig, original), (t_shared, shared_scores) = timed
        totals[0] += t_orig
        totals[1] += t_shared
        same_neighbours = all(a.neighbours == b.neighbours for a, b in zip(original, shared_scores, strict=True))
        same_ranks = [a.rank for a in original] == [b.rank for b in shared_scores]
        worst = max(
            abs(x - y)
            for a, b in zip(original, shared_scores, strict=True)
            for x, y in zip([a.loss, *a.neighbour_losses], [b.loss, *b.neighbour_losses], strict=True)
        )
        shares = [reported_share([s.rank for s in scores], 0.1) for scores in (original, shared_scores)]
        lines.append(
            f"| {task} | {len(items)} | {t_orig:.1f} | {t_shared:.1f} | **{t_shared / t_orig:.2f}** "
            f"| {len(items) / t_orig:.3f} / {len(items) / t_shared:.3f} | {'yes' if same_neighbours else 'NO'} "
            f"| {'yes' if same_ranks else 'NO'} | {shares[0]:.2f} / {shares[1]:.2f} | {worst:.1e} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    lines.append(f"| all | | {totals[0]:.1f} | {totals[1]:.1f} | **{totals[1] / totals[0]:.2f}** | | | | | |")
    header = (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {_machine()}; model {Path(args.model).name} ({dtype}, {device}); "
        f"{args.items} items per task, {args.neighbours} neighbours, batch size {args.batch_size}"
    )
    table = "\n".join(lines)
    print(header + "\n\n" + table)
    if args.record:
        with args.record.open("a") as f:
            f.write(f"\n### {header}\n\n{table}\n")


if __name__ == "__main__":
    main()

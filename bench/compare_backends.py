"""Side-by-side benchmark: plain lm-eval (HFLM) vs evalsuite's shared-prefix backend.

Each (task, backend) runs `evalsuite run`'s own code path (same task configs, rows and settings; only
`--backend` differs) in a fresh process, so peak memory is per run. A forward hook on the model counts
what reaches it. Printed per task: requests, forward passes, tokens forwarded (tensor positions,
padding included), forward and task wall seconds, peak memory, the evalsuite / plain ratio, and whether
every per-sample choice is identical (plus the largest log-likelihood difference).

    .venv/bin/python bench/compare_backends.py                       # SmolLM2, ../shared/data/h6, all six
    .venv/bin/python bench/compare_backends.py --tasks arc,hellaswag --limit 20 --record bench/RESULTS.md

The model defaults to the demo's GGUF (make demo fetches it); --model takes anything `evalsuite run` takes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "h6"
BACKENDS = ("lm-eval-hf", "shared-prefix")


@dataclass
class Measured:
    task: str
    backend: str
    requests: int
    forward_calls: int
    tokens: int
    forward_seconds: float
    task_seconds: float
    peak_memory_mb: float
    run_dir: str


# --- child: one task on one backend


def _measure(args: argparse.Namespace) -> None:
    import torch

    from evalsuite import engine
    from evalsuite.run import RunRequest, run_suite

    counters = {"calls": 0, "tokens": 0, "seconds": 0.0}
    original_load = engine.load_model

    def load_and_hook(model, settings):  # count every forward the backend makes
        loaded = original_load(model, settings)
        module = loaded.lm.model
        started: list[float] = []

        def before(_module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            counters["calls"] += 1
            counters["tokens"] += int(ids.numel())
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            started.append(time.perf_counter())

        def after(_module, args, kwargs, output):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            counters["seconds"] += time.perf_counter() - started.pop()

        module.register_forward_pre_hook(before, with_kwargs=True)
        module.register_forward_hook(after, with_kwargs=True)
        return loaded

    engine.load_model = load_and_hook  # the run pipeline loads through evalsuite.engine.load_model
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    outcome = run_suite(
        RunRequest(
            model=args.model,
            tasks=[args.task],
            limit=args.limit_for_task,
            batch_size=args.batch_size,
            dtype=args.dtype,
            device=args.device,
            data_dir=args.data_dir,
            output_dir=Path(args.output_dir),
            log_samples=True,
            backend=args.backend,
        ),
        progress=lambda message: print(f"  {args.backend}: {message}", file=sys.stderr, flush=True),
    )
    (task,) = outcome.results.tasks
    samples = _samples(outcome.run_dir)
    if torch.cuda.is_available():
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    measured = Measured(
        task=args.task,
        backend=args.backend,
        requests=sum(len(s["resps"]) for rows in samples.values() for s in rows.values()),
        forward_calls=counters["calls"],
        tokens=counters["tokens"],
        forward_seconds=round(counters["seconds"], 2),
        task_seconds=round(task.seconds, 2),
        peak_memory_mb=round(peak_mb),
        run_dir=str(outcome.run_dir),
    )
    print(json.dumps(asdict(measured)))


# --- parent: run both, compare, print


def _samples(run_dir: Path) -> dict[str, dict[int, dict]]:
    found = {}
    for path in sorted((Path(run_dir) / "lm_eval").glob("samples_*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        found[path.stem.removeprefix("samples_")] = {row["doc_id"]: row for row in rows}
    return found


def _choice(sample: dict) -> object:
    """What the model picked: the argmax choice, the greedy flags and the per-sample accuracies; or the text."""
    responses = sample["filtered_resps"]
    if responses and isinstance(responses[0], list) and isinstance(responses[0][0], float):
        lls = [r[0] for r in responses]
        argmax = max(range(len(lls)), key=lls.__getitem__)
        # 0/1 accuracies; TruthfulQA MC2 is continuous (its inputs are checked by the log-likelihood difference)
        accuracies = {k: sample[k] for k in ("acc", "acc_norm") if float(sample.get(k, 0.5)).is_integer()}
        return argmax, [r[1] for r in responses], accuracies
    return responses


def _largest_difference(a: dict, b: dict) -> float:
    worst = 0.0
    for x, y in zip(a["filtered_resps"], b["filtered_resps"], strict=True):
        if isinstance(x, list) and isinstance(x[0], float):
            worst = max(worst, abs(x[0] - y[0]))
    return worst


def compare_samples(plain_dir: str, ours_dir: str) -> tuple[bool, float]:
    plain, ours = _samples(Path(plain_dir)), _samples(Path(ours_dir))
    if plain.keys() != ours.keys():
        return False, math.inf
    identical, worst = True, 0.0
    for task, rows in plain.items():
        if rows.keys() != ours[task].keys():
            return False, math.inf
        for doc_id, row in rows.items():
            identical &= _choice(row) == _choice(ours[task][doc_id])
            worst = max(worst, _largest_difference(row, ours[task][doc_id]))
    return identical, worst


def _run_child(args: argparse.Namespace, task: str, backend: str, output_dir: Path) -> Measured:
    limit = args.mmlu_limit if task == "mmlu" else (args.gsm8k_limit if task == "gsm8k" else args.limit)
    command = [
        sys.executable, __file__, "--child", "--task", task, "--backend", backend,
        "--model", args.model, "--data-dir", str(args.data_dir), "--limit-for-task", str(limit),
        "--batch-size", str(args.batch_size), "--output-dir", str(output_dir),
    ]  # fmt: skip
    if args.dtype:
        command += ["--dtype", args.dtype]
    if args.device:
        command += ["--device", args.device]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=os.environ | {"TQDM_DISABLE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"{task} on {backend} failed (exit {done.returncode})")
    return Measured(**json.loads(done.stdout.strip().splitlines()[-1]))


def _ratio(ours: float, plain: float) -> str:
    return f"{ours / plain:.2f}" if plain else "-"


def _table(rows: list[tuple[Measured, Measured, bool, float]]) -> str:
    lines = [
        "| task | requests | forwards plain / ours | tokens plain | tokens ours | tokens ratio | forward s plain "
        "| forward s ours | **forward ratio** | task s plain | task s ours | task ratio | peak MB plain / ours "
        "| identical choices | max abs Δ log-lik |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|",
    ]
    for plain, ours, identical, worst in rows:
        lines.append(
            f"| {plain.task} | {plain.requests} | {plain.forward_calls} / {ours.forward_calls} | {plain.tokens} "
            f"| {ours.tokens} | {_ratio(ours.tokens, plain.tokens)} | {plain.forward_seconds:.1f} "
            f"| {ours.forward_seconds:.1f} | **{_ratio(ours.forward_seconds, plain.forward_seconds)}** "
            f"| {plain.task_seconds:.1f} | {ours.task_seconds:.1f} | {_ratio(ours.task_seconds, plain.task_seconds)} "
            f"| {plain.peak_memory_mb:.0f} / {ours.peak_memory_mb:.0f} | {'yes' if identical else 'NO'} "
            f"| {worst:.1e} |"
        )
    return "\n".join(lines)


def _machine() -> str:
    import torch

    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})"
    return f"{device}, torch {torch.__version__}, {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tasks", default="arc,hellaswag,mmlu,truthfulqa,winogrande,gsm8k")
    parser.add_argument("--limit", type=int, default=10, help="documents per task")
    parser.add_argument("--mmlu-limit", type=int, default=1, help="documents per MMLU subject (57 subjects)")
    parser.add_argument("--gsm8k-limit", type=int, default=2, help="GSM8K documents (generation; same path)")
    parser.add_argument("--batch-size", default="8")
    parser.add_argument("--dtype")
    parser.add_argument("--device")
    parser.add_argument("--record", type=Path, help="append the table, machine and date to this Markdown file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--limit-for-task", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _measure(args)
        return

    rows = []
    with tempfile.TemporaryDirectory(prefix="evalsuite-bench-") as scratch:
        for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
            print(f"{task} ...", file=sys.stderr, flush=True)
            plain, ours = (_run_child(args, task, b, Path(scratch) / b) for b in BACKENDS)
            identical, worst = compare_samples(plain.run_dir, ours.run_dir)
            rows.append((plain, ours, identical, worst))
            print(_table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    limits = f"--limit {args.limit} (MMLU {args.mmlu_limit} per subject, GSM8K {args.gsm8k_limit})"
    header = (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {_machine()}; model {Path(args.model).name}; "
        f"data {args.data_dir}; {limits}; batch size {args.batch_size}"
    )
    table = _table(rows)
    print(header + "\n\n" + table)
    if args.record:
        with args.record.open("a") as f:
            f.write(f"\n### {header}\n\n{table}\n")


if __name__ == "__main__":
    main()

"""Side-by-side benchmark: `evalsuite sweep` on a Ray cluster vs the same `evalsuite run`s one after another.

Two models (the demo's SmolLM2 GGUF, and a copy with changed weights: its first layer's MLP scaled by 0.9), the
same run options for both ways. Printed: each way's wall time and their ratio; per cell (one task of one model)
the worker's seconds, the task's own seconds (lm-eval's, as results.json records them) and what else the cell
spent (its checks, the model's load) as a share of it; what the sweep spent outside its cells (starting,
scheduling, results back, writing); and whether every value equals the sequential run's.

    .venv/bin/python bench/cluster.py                                  # local cluster, sample rows, --limit 2
    .venv/bin/python bench/cluster.py --cluster 127.0.0.1:6379 --data-dir ../shared/data/h6 --record bench/RESULTS.md

`--cluster local` starts a private Ray instance; as root the whole sweep runs in a network namespace of its own
with only loopback up (`unshare -n`), so nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_MODEL = REPO / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DATA = REPO / "evalsuite" / "sample_data" / "h6"


def changed_copy(gguf: Path, into: Path) -> Path:
    """The model with changed weights, as a Hugging Face folder."""
    from safetensors.torch import load_file, save_file

    from evalsuite.engine import prepare_model
    from evalsuite.model import parse_model_ref

    folder = into / "SmolLM2-changed"
    shutil.copytree(prepare_model(parse_model_ref(str(gguf))).pretrained, folder)
    weights = load_file(folder / "model.safetensors")
    for name in [n for n in weights if n.startswith("model.layers.0.mlp.")]:
        weights[name] = weights[name] * 0.9
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def timed(command: list[str], keep: Path | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in (0,):
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    if keep is not None:  # what the command printed, for the record
        keep.write_text(f"$ {' '.join(command)}\n{done.stdout}\n--- stderr\n{done.stderr}")
    return time.perf_counter() - started


def per_task(output: Path, field: str) -> dict[tuple[str, str], float]:
    """(model id, task) -> the task's `field` (value, seconds) in every results.json under `output`."""
    found = {}
    for results in output.glob("*/*/results.json"):
        run = json.loads(results.read_text())
        for task in run["tasks"]:
            found[(run["model"]["id"], task["key"])] = task[field]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", default="2")
    parser.add_argument("--tasks", default=None, help="default: all six")
    parser.add_argument("--cluster", default="local")
    parser.add_argument("--record", type=Path, help="append the table to this Markdown file")
    parser.add_argument("--keep", action="store_true", help="keep the run folders and sweep.json (path printed)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    models = [str(args.model), str(changed_copy(args.model, work))]
    options = ["--limit", args.limit, "--data-dir", str(args.data_dir), "--batch-size", "8", "--device", "cpu"]
    options += ["--tasks", args.tasks] if args.tasks else []
    sequential_out, sweep_out = work / "sequential", work / "sweep"
    sequential_s = sum(timed([str(BIN / "evalsuite"), "run", m, *options, "--output-dir", str(sequential_out)])
                       for m in models)  # fmt: skip
    sweep = [str(BIN / "evalsuite"), "sweep", *models, "--cluster", args.cluster, *options, "--output-dir",
             str(sweep_out)]  # fmt: skip
    if args.cluster == "local" and os.geteuid() == 0:  # only loopback: nothing leaves the machine
        sweep = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *sweep]
    sweep_s = timed(sweep, keep=work / "sweep.log" if args.keep else None)

    expected, got = per_task(sequential_out, "value"), per_task(sweep_out, "value")
    same = expected == got
    status = json.loads((sweep_out / "sweep.json").read_text())
    own = per_task(sweep_out, "seconds")
    rows = []
    for model in status["models"]:
        model_id = json.loads((Path(model["run_dir"]) / "results.json").read_text())["model"]["id"]
        for cell in model["cells"]:
            inside = own[(model_id, cell["task"])]
            rows.append((model_id, cell["task"], cell["node"], cell["seconds"], inside, 1 - inside / cell["seconds"]))
    slots = status["resources"]  # "N node(s), C CPUs[, G GPUs]": cells ran one per CPU (or GPU) slot
    cpus = float(slots.split(", ")[1].split()[0])
    gpus = float(slots.split(", ")[2].split()[0]) if slots.count(",") > 1 else 0
    at_once = gpus or cpus
    busy = sum(r[3] for r in rows) / at_once  # the wall time if the slots were never idle and nothing else ran
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### {now}; {os.cpu_count()} CPU cores ({platform.machine()}), cluster {status['cluster']} "
        f"({status['resources']}); 2 models x {len(rows) // 2} tasks; --limit {args.limit}; data {args.data_dir}",
        "",
        "| way | wall s | ratio to sequential |",
        "|---|--:|--:|",
        f"| sequential `evalsuite run`s | {sequential_s:.1f} | 1.00 |",
        f"| `evalsuite sweep` | {sweep_s:.1f} | **{sweep_s / sequential_s:.2f}** |",
        "",
        f"Values equal to the sequential runs': **{'yes' if same else 'NO'}** ({len(got)} task values).",
        "",
        "| model | task | sequential | sweep |",
        "|---|---|--:|--:|",
        *[f"| {m} | {t} | {expected.get((m, t), float('nan')):.6f} | {got.get((m, t), float('nan')):.6f} |"
          for m, t in sorted(expected.keys() | got.keys())],
        "",
        "| model | task | node | cell s (worker) | task s (lm-eval) | in-cell overhead share |",
        "|---|---|---|--:|--:|--:|",
        *[f"| {m} | {t} | {n} | {w:.1f} | {i:.1f} | {o:.0%} |" for m, t, n, w, i, o in rows],
        "",
        f"In-cell overhead (the task's checks, model load on a worker's first cell of a model) over all cells: "
        f"**{1 - sum(r[4] for r in rows) / sum(r[3] for r in rows):.0%}**. Outside the cells (the command's "
        f"start, the cluster's start, scheduling, results back, writing the folders): sweep wall - cell seconds / "
        f"{at_once:g} slots = {sweep_s:.1f} - {busy:.1f} = **{sweep_s - busy:.1f} s ({1 - busy / sweep_s:.0%})**.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not same:
        print({k: (expected.get(k), got.get(k)) for k in expected.keys() | got.keys() if expected.get(k) != got.get(k)})
    if args.record:
        with args.record.open("a", encoding="utf-8") as f:
            f.write("\n" + text)
    if args.keep:
        print(f"kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()

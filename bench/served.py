"""Side by side: the same documents in-process (the shared-prefix backend) and through a vLLM server (the served
backend), per task: wall time, requests per second, the largest per-document |delta log-likelihood|, and the
documents whose choice flips; GSM8K's texts compared.

    # CPU (this machine): SmolLM2, a vLLM server started from .venv-vllm for the run
    .venv/bin/python bench/served.py --tasks arc,hellaswag,truthfulqa,winogrande,gsm8k --limit 10
    # a server already running (any machine): its root URL
    .venv/bin/python bench/served.py --server http://127.0.0.1:8000 --model ORG/NAME --tasks ... --limit 50
    # GPU (7-10B model; vLLM with CUDA in its own venv): both sides on the GPU, bfloat16
    .venv/bin/python bench/served.py --model upstage/SOLAR-10.7B-v1.0 --vllm-python /opt/vllm/bin/python \\
        --device cuda --dtype bfloat16 --batch-size auto --limit 100 --json served-gpu.json

The in-process run goes first (the server is not started yet, so the two do not share the machine), then the
server starts and the served run goes. Figures go to bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _samples(run_dir: Path) -> dict[tuple[str, int], dict[str, Any]]:
    found = {}
    for path in (run_dir / "lm_eval").glob("samples_*.jsonl"):
        for line in path.read_text().splitlines():
            sample = json.loads(line)
            found[(path.stem.removeprefix("samples_"), sample["doc_id"])] = sample
    return found


def _start_vllm(python: str, model: str, dtype: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
           "VLLM_CPU_KVCACHE_SPACE": "2"}  # fmt: skip
    command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1",
               "--port", str(port), "--dtype", dtype, "--max-model-len", "4096"]  # fmt: skip
    if dtype == "float32":
        command.append("--enforce-eager")  # the CPU build: no graph capture
    with log.open("w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    while True:
        if server.poll() is not None:
            sys.exit(f"vLLM exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(root + "/v1/models", timeout=5):
                return server, root
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("vLLM did not answer within 900 s")
            time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--tasks", default="arc,hellaswag,truthfulqa,winogrande,gsm8k")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "h6"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", default="8")
    parser.add_argument("--server", help="a running server's root URL (else one is started)")
    parser.add_argument("--vllm-python", default=str(REPO / ".venv-vllm" / "bin" / "python"))
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    from evalsuite.engine import prepare_model
    from evalsuite.model import parse_model_ref
    from evalsuite.run import RunRequest, run_suite

    tasks = args.tasks.split(",")
    data_dir = Path(args.data_dir) if args.data_dir else None
    out = Path(tempfile.mkdtemp(prefix="bench-served-"))
    common = {"model": args.model, "tasks": tasks, "limit": args.limit, "batch_size": args.batch_size,
              "data_dir": data_dir, "log_samples": True, "device": args.device, "dtype": args.dtype}  # fmt: skip
    local = run_suite(RunRequest(**common, output_dir=out / "local"))
    assert local is not None
    server = None
    root = args.server
    if root is None:
        folder = prepare_model(parse_model_ref(args.model)).pretrained
        server, root = _start_vllm(args.vllm_python, folder, args.dtype, out / "vllm.log")
    try:
        options = {"url": root.rstrip("/") + "/v1", "concurrency": args.concurrency}
        served = run_suite(RunRequest(**common, output_dir=out / "served", backend="served", backend_options=options))
        assert served is not None
    finally:
        if server is not None:
            os.killpg(server.pid, 15)
            server.wait()

    ours, theirs = _samples(local.run_dir), _samples(served.run_dir)
    rows = []
    for task in local.results.tasks:
        mine = next(t for t in served.results.tasks if t.key == task.key)
        keys = [k for k in theirs if k[0] in task.lm_eval_tasks]
        worst, flips, texts_differ, requests, mc2_delta = 0.0, 0, 0, 0, 0.0
        for key in keys:
            a, b = ours[key], theirs[key]
            requests += len(a["resps"])
            if task.key == "gsm8k":
                texts_differ += a["resps"] != b["resps"]
                continue
            deltas = [abs(float(x[0][0]) - float(y[0][0])) for x, y in zip(a["resps"], b["resps"], strict=True)]
            worst = max([worst, *deltas])
            metric = "acc_norm" if "acc_norm" in a else "acc"
            if task.key == "truthfulqa":  # MC2 is a share of probability, not a choice: its largest move instead
                mc2_delta = max(mc2_delta, abs(float(a[metric]) - float(b[metric])))
            else:
                flips += a[metric] != b[metric]
        rows.append({
            "task": task.key, "documents": len(keys), "requests": requests,
            "seconds_in_process": task.seconds, "seconds_served": mine.seconds,
            "requests_per_s_in_process": requests / task.seconds if task.seconds else None,
            "requests_per_s_served": requests / mine.seconds if mine.seconds else None,
            "max_abs_delta_loglikelihood": worst, "flips": flips, "gsm8k_texts_differ": texts_differ,
            "max_abs_delta_mc2": mc2_delta,
            "value_in_process": task.value, "value_served": mine.value,
        })  # fmt: skip
    print(f"model {args.model}, device {args.device}, dtype {args.dtype}, limit {args.limit}, server {root}")
    print("| task | docs | requests | in-process s | served s | ratio | max abs delta ll | flips | GSM8K differ |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        ratio = r["seconds_served"] / r["seconds_in_process"] if r["seconds_in_process"] else float("nan")
        print(f"| {r['task']} | {r['documents']} | {r['requests']} | {r['seconds_in_process']:.1f} | "
              f"{r['seconds_served']:.1f} | {ratio:.2f} | {r['max_abs_delta_loglikelihood']:.2e} | {r['flips']} | "
              f"{r['gsm8k_texts_differ']} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "tasks": rows}, indent=2))


if __name__ == "__main__":
    main()

"""Time lm-eval building a task's requests (no model), with lm-eval's own template rendering and with the
compiled-template cache evalsuite installs (evalsuite/engine/compat.py), side by side on the same rows.

    python bench/request_building.py [--data-dir ../shared/data/h6] [--tasks arc,mmlu] [--protocol leaderboard-v1]

Each leg runs in its own process (the cache, once installed, stays for the process) and prints the seconds
to load the task and to build its requests, and the prompt fingerprint, which must be the same for both.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _leg(args: argparse.Namespace) -> None:
    from evalsuite.data import plan_local
    from evalsuite.engine import runner
    from evalsuite.settings import Seeds
    from evalsuite.suite import Protocol, default_tasks_dir, load_suite, prompt_fingerprint

    if args.plain:  # lm-eval's own apply_template: build_task_manager would install the cache
        import evalsuite.engine.compat

        evalsuite.engine.compat.cache_compiled_templates = lambda: None
    suite = load_suite().for_protocol(Protocol(args.protocol))
    tasks_dir = default_tasks_dir()
    task_manager = runner.build_task_manager(tasks_dir)
    for data in plan_local(Path(args.data_dir), suite.select(args.tasks.split(","))).tasks:
        started = time.perf_counter()
        group = runner.load_task_group(task_manager, tasks_dir, data)
        loaded = time.perf_counter()
        documents = runner.build_requests(group, None, Seeds())
        built = time.perf_counter()
        row = {"task": data.spec.key, "documents": len(documents), "load_s": round(loaded - started, 2),
               "build_s": round(built - loaded, 2), "fingerprint": prompt_fingerprint(documents)}  # fmt: skip
        print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "h6"))
    parser.add_argument("--tasks", default="arc,mmlu")
    parser.add_argument("--protocol", default="leaderboard-v1")
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--leg", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.leg:
        _leg(args)
        return
    legs = {}
    for name, extra in (("lm-eval", ["--plain"]), ("cached", [])):
        command = [sys.executable, __file__, "--leg", "--data-dir", args.data_dir, "--tasks", args.tasks,
                   "--protocol", args.protocol, *extra]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        legs[name] = {row["task"]: row for row in map(json.loads, done.stdout.splitlines())}
    print("| task | documents | build s, lm-eval | build s, cached templates | ratio | same requests |")
    print("|---|--:|--:|--:|--:|---|")
    for task, plain in legs["lm-eval"].items():
        cached = legs["cached"][task]
        ratio = cached["build_s"] / plain["build_s"] if plain["build_s"] else float("nan")
        same = "yes" if cached["fingerprint"] == plain["fingerprint"] else "NO"
        times = f"{plain['build_s']:.1f} | {cached['build_s']:.1f} | {ratio:.3f}"
        print(f"| {task} | {plain['documents']} | {times} | {same} |")


if __name__ == "__main__":
    main()

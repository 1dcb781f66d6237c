"""Data-parallel runs: two real processes (torchrun, CPU) give the single-process run's scores and samples.

lm-eval's own data parallelism changes few-shot exemplars with the number of processes (issue #1719);
evalsuite's must not, so the two-process run is compared sample by sample with the session's real
single-process run (`real_run`: same model, rows, limit, batch size). MMLU is left out of the two-process
run: its 57 subjects are log-likelihood packs shared out exactly as ARC's, HellaSwag's and Winogrande's are
(`Processes.my_share` over one task's packs), and they would double this test's minutes of CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REAL_RUN_BATCH_SIZE, REAL_RUN_LIMIT, SAMPLE_DATA

from evalsuite.engine.processes import Processes
from evalsuite.results import read_results

PARALLEL_TASKS = ("arc", "hellaswag", "truthfulqa", "winogrande", "gsm8k")  # all but MMLU (module docstring)


@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_shares_cover_every_item_once_and_balance_cost(count: int):
    items = list(enumerate([5, 900, 40, 40, 7, 300, 300, 12, 1, 650, 80]))  # (position, cost)
    shares = [Processes(rank, count).my_share(items, cost=lambda item: item[1]) for rank in range(count)]
    assert sorted(item for share in shares for item in share) == items
    total, largest = sum(c for _, c in items), max(c for _, c in items)
    # greedy, costliest first: no rank carries more than the fair share plus the largest item
    assert max(sum(c for _, c in share) for share in shares) <= total / count + largest
    for share in shares:
        assert share == sorted(share)  # a rank keeps the input's order (packs stay longest first)


def _samples(run_dir: Path) -> dict[tuple[str, int, str], dict]:
    rows = {}
    for path in sorted((run_dir / "lm_eval").glob("samples_*.jsonl")):
        for line in path.read_text().splitlines():
            sample = json.loads(line)
            rows[(path.stem, sample["doc_id"], sample["filter"])] = sample
    return rows


@pytest.mark.subprocess
def test_two_processes_give_the_single_process_results(real_run, gguf_path: Path, tmp_path: Path):
    single, _ = real_run
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "evalsuite", "run", str(gguf_path), "--data-dir", str(SAMPLE_DATA), "--limit", str(REAL_RUN_LIMIT),
        "--batch-size", str(REAL_RUN_BATCH_SIZE), "--tasks", ",".join(PARALLEL_TASKS), "--log-samples",
        "--output-dir", str(out),
    ]  # fmt: skip
    env = os.environ | {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}  # accelerate: gloo on CPU
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(proc.stdout)

    # one voice, one run folder: rank 0 writes and prints, rank 1 only computes
    assert proc.stdout.count("results: ") == 1 and proc.stdout.count("| Average (H6)") == 1
    assert proc.stderr.count("[1/5] arc: 25-shot") == 1
    assert "data-parallel over 2 processes" in proc.stderr
    (run_dir,) = [p for p in (out / "local__SmolLM2-135M-Instruct.Q4_1").iterdir()]
    assert not run_dir.name.startswith(".inprogress")
    parallel = read_results(run_dir)
    assert parallel.settings.processes == 2 and single.results.settings.processes == 1

    singles = [task for task in single.results.tasks if task.key in PARALLEL_TASKS]
    assert [t.key for t in parallel.tasks] == [t.key for t in singles] == list(PARALLEL_TASKS)
    for one, two in zip(singles, parallel.tasks, strict=True):
        assert (one.key, one.documents) == (two.key, two.documents)
        assert two.value == pytest.approx(one.value, abs=1e-6), one.key

    # sample by sample: same prompts (the same few-shot exemplars), same choices, same generations
    expected = {key: sample for key, sample in _samples(single.run_dir).items() if "mmlu" not in key[0]}
    got = _samples(run_dir)
    assert expected.keys() == got.keys() and len(expected) == 10  # 2 docs x 5 tasks, GSM8K 1 filter
    largest = 0.0
    for key, sample in expected.items():
        other = got[key]
        assert other["arguments"] == sample["arguments"], key
        if isinstance(sample["resps"][0][0], str):  # GSM8K: the generated text
            assert other["resps"] == sample["resps"], key
            continue
        lls = [resp[0][0] for resp in sample["resps"]]  # one [log-likelihood, is-greedy] per choice
        other_lls = [resp[0][0] for resp in other["resps"]]
        largest = max(largest, *(abs(a - b) for a, b in zip(lls, other_lls, strict=True)))
        assert lls.index(max(lls)) == other_lls.index(max(other_lls)), key
    print(f"largest log-likelihood difference, 2 processes vs 1: {largest:.2e}")
    assert largest < 1e-4


def _rank_main(rank: int, port: int, results: dict) -> None:
    import torch.distributed as dist

    from evalsuite.errors import OutputDirError

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        processes = Processes(rank, 2)
        state = processes.share({"run_id": "r1"} if rank == 0 else None)
        gathered = processes.gather_everywhere([(rank, f"answer from {rank}")])
        try:
            processes.share(OutputDirError("out is in use by another evalsuite run") if rank == 0 else None)
            failure = None
        except Exception as e:  # noqa: BLE001 - recorded for the test to check
            failure = (type(e).__name__, str(e))
        results[rank] = (state, gathered, failure)
    finally:
        dist.destroy_process_group()


def test_rank_0_shares_values_and_failures_with_every_rank():
    import multiprocessing
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with multiprocessing.get_context("spawn").Manager() as manager:
        results = manager.dict()
        ctx = multiprocessing.get_context("spawn")
        ranks = [ctx.Process(target=_rank_main, args=(rank, port, results)) for rank in range(2)]
        for p in ranks:
            p.start()
        for p in ranks:
            p.join(timeout=120)
        assert [p.exitcode for p in ranks] == [0, 0]
        got = dict(results)
    for rank in (0, 1):
        state, gathered, failure = got[rank]
        assert state == {"run_id": "r1"}
        assert gathered == [(0, "answer from 0"), (1, "answer from 1")]
    assert got[0][2] == ("OutputDirError", "out is in use by another evalsuite run")  # the original, on rank 0
    assert got[1][2] == ("EvalsuiteError", "out is in use by another evalsuite run")  # one line, on the others

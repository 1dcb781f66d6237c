"""The leaderboard's archive read from the Hub through huggingface_hub, against the loopback Hub
(tests/fake_hub.py) serving `open-llm-leaderboard-old/contents` (its one parquet file, written here from the
real rows of tests/fixtures/archive/contents.csv) and `open-llm-leaderboard-old/results` (the real results
files): online, then offline from the cache, and the one-line errors without one. Each command runs as the
installed `evalsuite` in its own process (huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE once)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import FIXTURES, SAKURA
from fake_hub import FakeHub

from evalsuite.archive.hub import CONTENTS_REPO, RESULTS_REPO

pytestmark = pytest.mark.subprocess

EVALSUITE = str(Path(sys.executable).parent / "evalsuite")
ARCHIVE = FIXTURES / "archive"
PARQUET = "data/train-00000-of-00001-96886cb34a7bc800.parquet"  # the file's name in the Hub repo
YI = "HenryJJ/Instruct_Yi-6B_Dolly15K"


def _evalsuite(args: list[str], hub: FakeHub, home: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), **env}
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.run([EVALSUITE, *args], capture_output=True, text=True, env=environment, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def hub():
    hub = FakeHub()
    parquet = io.BytesIO()
    pd.read_csv(ARCHIVE / "contents.csv", dtype={"Model sha": str}).to_parquet(parquet)
    hub.publish_dataset(CONTENTS_REPO, {PARQUET: parquet.getvalue(), "README.md": b"# contents\n"})
    results = {p.relative_to(ARCHIVE / "results").as_posix(): p.read_bytes()
               for p in sorted((ARCHIVE / "results").rglob("results_*.json"))}  # fmt: skip
    hub.publish_dataset(RESULTS_REPO, results)
    with hub.serving():
        yield hub


def _run_of_yi(folder: Path) -> Path:
    """The Sakura fixture as a complete run of HenryJJ/Instruct_Yi-6B_Dolly15K at the published values."""
    document = json.loads((ARCHIVE / "results" / YI / "results_2024-01-06T09-45-44.755529.json").read_text())
    results = document["results"]
    values = {
        "arc": results["harness|arc:challenge|25"]["acc_norm"],
        "hellaswag": results["harness|hellaswag|10"]["acc_norm"],
        "mmlu": sum(v["acc"] for k, v in results.items() if k.startswith("harness|hendrycksTest-")) / 57,
        "truthfulqa": results["harness|truthfulqa:mc|0"]["mc2"], "winogrande": results["harness|winogrande|5"]["acc"],
        "gsm8k": results["harness|gsm8k|5"]["acc"],
    }  # fmt: skip
    data = json.loads((SAKURA / "results.json").read_text())
    data["model"] |= {"id": YI, "location": YI, "sha": document["config_general"]["model_sha"], "dtype": "float16"}
    for task in data["tasks"]:
        task["value"] = values[task["key"]]
    data["h6_average"] = sum(values.values()) / 6
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(data))
    return folder


def test_online_then_offline_from_the_cache(hub: FakeHub, tmp_path: Path):
    home = tmp_path / "hf-home"
    peers = ["leaderboard", "--peers", "Qwen/Qwen-14B,tiiuae/falcon-180B", "--format", "compact"]
    online = _evalsuite(peers, hub, home, tmp_path)
    assert online.returncode == 0, online.stderr
    assert (
        "| Qwen/Qwen-14B | 65.86 | ~ 14B |" in online.stdout
        and "| tiiuae/falcon-180B (8bit) | 67.85 |" in online.stdout
    )
    assert online.stderr == ""  # huggingface_hub's bars and warnings stay quiet
    assert hub.count("GET", f"/datasets/{CONTENTS_REPO}/resolve/") == 1

    run = _run_of_yi(tmp_path / "run")
    compare = ["compare", f"leaderboard:{YI}", str(run)]
    online_compare = _evalsuite(compare, hub, home, tmp_path)
    assert online_compare.returncode == 0, online_compare.stdout + online_compare.stderr
    assert online_compare.stdout.splitlines()[-1] == "reproduces the leaderboard within noise on 6 of 6 tasks"
    # only the model's own folder of the results repo is downloaded
    downloads = [r.path for r in hub.requests if r.method == "GET" and f"/datasets/{RESULTS_REPO}/resolve/" in r.path]
    assert downloads and all(f"/{YI}/" in path for path in downloads)

    before = len(hub.requests)
    for args in (peers, compare):
        offline = _evalsuite(args, hub, home, tmp_path, HF_HUB_OFFLINE="1")
        assert offline.returncode == 0, offline.stderr
    assert len(hub.requests) == before  # nothing asked of the Hub

    # the Hub down (503) with the archive cached: huggingface_hub falls back to the cache
    hub.fail_with(503)
    try:
        down = _evalsuite(peers, hub, home, tmp_path)
    finally:
        hub.fail_with(None)
    assert down.returncode == 0, down.stderr
    assert down.stdout == online.stdout


def test_offline_without_a_cache_is_one_line_and_writes_nothing(hub: FakeHub, tmp_path: Path):
    out = tmp_path / "board.md"
    result = _evalsuite(["leaderboard", "--peers", "Qwen/Qwen-14B", "--output", str(out)], hub, tmp_path / "empty-home",
                        tmp_path, HF_HUB_OFFLINE="1")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: the leaderboard's archive ({CONTENTS_REPO}) is not in the Hugging Face cache and the Hub cannot "
        "be reached; run once where it can, or pass --published-contents with a copy of the contents table"
    )
    assert not out.exists()


def test_an_unreachable_hub_without_a_cache_is_one_line(hub: FakeHub, tmp_path: Path):
    hub.fail_with(500)
    try:
        board = _evalsuite(["leaderboard", "--peers", "Qwen/Qwen-14B"], hub, tmp_path / "home", tmp_path)
        compare = _evalsuite(["compare", f"leaderboard:{YI}", str(_run_of_yi(tmp_path / "run"))], hub,
                             tmp_path / "home", tmp_path)  # fmt: skip
    finally:
        hub.fail_with(None)
    assert board.returncode == 1 and compare.returncode == 2
    for result, repo in ((board, CONTENTS_REPO), (compare, RESULTS_REPO)):
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"error: the leaderboard's archive ({repo}) is not in the Hugging Face cache"), line


def test_a_model_the_results_repo_lacks_is_one_line(hub: FakeHub, tmp_path: Path):
    result = _evalsuite(["compare", "leaderboard:nobody/nothing", str(_run_of_yi(tmp_path / "run"))], hub,
                        tmp_path / "home", tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: nobody/nothing: the leaderboard's archive holds no results file for it ({RESULTS_REPO})"
    )

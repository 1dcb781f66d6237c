"""The headline commands against a Hub-compatible server on loopback (tests/fake_hub.py), through the real
clients: `evalsuite run ORG/MODEL@REV` (huggingface_hub resolves and downloads, transformers and lm-eval load)
and `evalsuite card update --push ORG/MODEL --create-pr` (huggingface_hub's preupload and commit).

The datasets are published too, as their Hub repositories lay them out today (dataset cards whose `configs`
name parquet shards, built from the sample rows; HellaSwag without its train split, as ../shared lacks it),
and the real `datasets` library loads them through lm-eval. Each command that reads the Hub runs as the installed
`evalsuite` in its own process, since huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, when
imported; the local runs they are compared with are the session's real run (conftest's `real_run`) or in this
process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REAL_RUN_BATCH_SIZE, REAL_RUN_LIMIT, SAMPLE_DATA, ChangedModels, LoraModels
from fake_hub import FakeHub, h6_dataset_repos
from typer.testing import CliRunner

from evalsuite.cli import app

pytestmark = pytest.mark.subprocess  # the real clients, in the command's own process (reading HF_ENDPOINT)

EVALSUITE = str(Path(sys.executable).parent / "evalsuite")
TOKEN = "hf_evalsuiteFakeToken0123456789abcdef"  # never to be printed


def _evalsuite(args: list[str], hub: FakeHub, home: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "HF_TOKEN": TOKEN, **env}
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.run([EVALSUITE, *args], capture_output=True, text=True, env=environment, timeout=600)


def _values(output_dir: Path) -> dict[str, float]:
    (results,) = output_dir.glob("*/*/results.json")
    return _values_in(results)


def _values_in(results: Path) -> dict[str, float]:
    return {t["key"]: t["value"] for t in json.loads(results.read_text())["tasks"]}


@pytest.fixture(scope="module")
def published(model_folder: str, tmp_path_factory: pytest.TempPathFactory):
    """SmolLM2 published as org/smollm2 with two revisions: the first commit, and main (a changed README)."""
    hub = FakeHub()
    folder = tmp_path_factory.mktemp("weights")
    for p in Path(model_folder).iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "README.md").write_text("# SmolLM2 on the fake Hub\n")
    first = hub.publish_model("org/smollm2", folder)
    (folder / "README.md").write_text("# SmolLM2 on the fake Hub\n\nSecond revision.\n")
    main = hub.publish_model("org/smollm2", folder)
    for repo_id, files in h6_dataset_repos(SAMPLE_DATA).items():
        hub.publish_dataset(repo_id, files)
    with hub.serving():
        yield hub, first, main


def test_a_hub_model_and_hub_datasets_give_the_local_values_and_rerun_offline(published, real_run, tmp_path: Path):
    hub, first, main = published
    assert first != main
    # the session's real run's settings (conftest), so that its values are the local run's (below)
    tasks = ["--tasks", "truthfulqa,winogrande", "--limit", str(REAL_RUN_LIMIT), "--batch-size",
             str(REAL_RUN_BATCH_SIZE)]  # fmt: skip
    home = tmp_path / "hf-home"

    # no --data-dir: lm-eval loads truthfulqa/truthful_qa and allenai/winogrande (its few-shot train split too)
    online = _evalsuite(["run", f"org/smollm2@{first}", *tasks, "--output-dir", str(tmp_path / "hub")], hub, home)
    assert online.returncode == 0, online.stderr[-3000:]
    (results,) = (tmp_path / "hub").glob("org__smollm2/*/results.json")
    recorded = json.loads(results.read_text())
    assert (recorded["model"]["source"], recorded["model"]["revision"], recorded["model"]["sha"]) == (
        "hub",
        first,
        first,
    )
    assert recorded["settings"]["data_source"] == "hub"
    assert hub.count("GET", f"/org/smollm2/resolve/{first}/model.safetensors") == 1
    assert hub.count("GET", "/datasets/allenai/winogrande/resolve/") >= 2  # its train (few-shot) and validation shards
    assert TOKEN not in online.stdout + online.stderr

    # the same rows read from the snapshot by the same weights from a local folder: the same values. The local run
    # is the session's real run (the GGUF, whose dequantized folder the Hub's weights are a copy of: `published`;
    # the sample rows; the same limit, batch size and seeds), which ran these two tasks among its six
    outcome, _ = real_run
    local = json.loads((outcome.run_dir / "results.json").read_text())
    assert local["settings"]["data_dir"] == str(SAMPLE_DATA.resolve())
    for setting in ("protocol", "limit", "batch_size", "seeds", "add_bos_token", "backend", "backend_options"):
        assert local["settings"][setting] == recorded["settings"][setting], setting
    assert local["model"]["dtype"] == recorded["model"]["dtype"]
    local_values = _values_in(outcome.run_dir / "results.json")
    assert _values(tmp_path / "hub") == {key: local_values[key] for key in ("truthfulqa", "winogrande")}

    # the air-gapped recipe: the same command with HF_HUB_OFFLINE=1 runs from the cache, asking the Hub nothing
    before = len(hub.requests)
    offline = _evalsuite(
        ["run", f"org/smollm2@{first}", *tasks, "--output-dir", str(tmp_path / "offline")],
        hub,
        home,
        HF_HUB_OFFLINE="1",
    )
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert len(hub.requests) == before, [r.path for r in hub.requests[before:]]
    assert _values(tmp_path / "offline") == _values(tmp_path / "hub")


def test_a_split_the_hub_dataset_lacks_is_one_line_and_nothing_written(published, tmp_path: Path):
    hub, first, _ = published
    out = tmp_path / "results"
    result = _evalsuite(["run", f"org/smollm2@{first}", "--tasks", "hellaswag", "--limit", "1", "--output-dir",
                         str(out)], hub, tmp_path / "hf-home")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: hellaswag: the Hub dataset Rowan/hellaswag has no 'train' split, which lm-eval reads for this task; "
        "pass --data-dir with a snapshot (a missing few-shot split falls back to the eval split there)"
    )
    assert not out.exists() or not any(out.rglob("*.json"))


def test_an_unknown_revision_is_one_line_before_anything_loads(published, tmp_path: Path):
    hub, _, _ = published
    out = tmp_path / "results"
    result = _evalsuite(["run", "org/smollm2@nope", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(out)], hub,
                        tmp_path / "hf-home")  # fmt: skip
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line == "error: org/smollm2 has no revision 'nope' on the Hub"
    assert not out.exists()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (503, "the Hugging Face Hub is unreachable (HfHubHTTPError"),
        (429, "the Hugging Face Hub is rate-limiting this machine (429 Too Many Requests); wait"),
    ],
)
def test_a_hub_that_is_down_or_rate_limited_is_one_line_in_bounded_time(published, status, expected, tmp_path):
    hub, first, _ = published
    hub.fail_with(status)
    try:
        before = len(hub.requests)
        result = _evalsuite(["run", f"org/smollm2@{first}", "--data-dir", str(SAMPLE_DATA), "--output-dir",
                             str(tmp_path / "out")], hub, tmp_path / "hf-home")  # fmt: skip
    finally:
        hub.fail_with(None)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {expected}"), line
    assert len(hub.requests) - before <= 6  # retries are bounded
    assert not (tmp_path / "out").exists()


def test_card_push_sends_the_readme_bytes_as_a_pull_request_and_never_the_token(published, tmp_path: Path):
    hub, _, _ = published
    readme = tmp_path / "README.md"
    readme.write_bytes("---\nlicense: apache-2.0\n---\n# My model\n\nCafé, CRLF kept:\r\nend\n".encode())
    repo = hub.models["org/smollm2"]
    head = repo.revisions["main"]
    in_sync = type(head)(head.sha, {**head.files, "README.md": readme.read_bytes()})  # the Hub holds the same card
    repo.revisions["main"] = repo.revisions[head.sha] = in_sync
    try:
        push = ["--push", "org/smollm2", "--create-pr"]
        update = ["card", "update", str(readme), "--results", str(_a_results_file()), *push]
        result = _evalsuite(update, hub, tmp_path / "hf-home")
    finally:
        repo.revisions["main"] = repo.revisions[head.sha] = head
    assert result.returncode == 0, result.stderr[-3000:]
    commit = hub.models["org/smollm2"].commits[-1]
    assert commit["create_pr"] is True
    assert commit["files"] == {"README.md": readme.read_bytes()}  # the Hub's card (= the local one), as updated
    assert commit["parent_commit"] == head.sha
    assert "discussions/" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    uploads = [r for r in hub.requests if "/preupload/" in r.path or "/commit/" in r.path]
    assert uploads and all(r.authorization == f"Bearer {TOKEN}" for r in uploads)


def _a_results_file() -> Path:
    from conftest import SAKURA

    return SAKURA / "results.json"  # a complete run's results: what a card carries


def test_a_config_the_hub_dataset_no_longer_has_is_one_line(published, tmp_path: Path):
    """allenai/winogrande renamed its config: lm-eval asks for winogrande_xl, the dataset card names another."""
    from fake_hub import Repo

    hub, first, _ = published
    original = hub.datasets["allenai/winogrande"]
    files = {name.replace("winogrande_xl", "winogrande_renamed"): content
             for name, content in original.revisions["main"].files.items()}  # fmt: skip
    hub.datasets["allenai/winogrande"] = Repo()
    try:
        hub.publish_dataset("allenai/winogrande", files)
        out = tmp_path / "results"
        result = _evalsuite(["run", f"org/smollm2@{first}", "--tasks", "winogrande", "--limit", "1", "--output-dir",
                             str(out)], hub, tmp_path / "hf-home")  # fmt: skip
    finally:
        hub.datasets["allenai/winogrande"] = original
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: winogrande: the Hub dataset allenai/winogrande changed: ")
    assert line.endswith("; pass --data-dir with a snapshot")
    assert not out.exists() or not any(out.rglob("*.json"))


def test_a_contamination_check_reads_the_hub_datasets_as_the_snapshot(published, model_folder: str, tmp_path: Path):
    hub, first, _ = published
    check = ["--tasks", "mmlu", "--items", "2", "--neighbours", "2"]
    hub_check = _evalsuite(["contamination", f"org/smollm2@{first}", "--reference", f"org/smollm2@{first}", *check,
                            "--output-dir", str(tmp_path / "hub")], hub, tmp_path / "hf-home")  # fmt: skip
    assert hub_check.returncode == 0, hub_check.stderr[-3000:]
    assert hub.count("GET", "/datasets/cais/mmlu/resolve/") >= 1  # MMLU as the original reads it: the `all` config
    # the local check reads nothing from the Hub: in this process
    local_args = ["contamination", model_folder, "--reference", model_folder, *check, "--data-dir", str(SAMPLE_DATA)]
    local_check = CliRunner().invoke(app, [*local_args, "--output-dir", str(tmp_path / "local")])
    assert local_check.exit_code == 0, local_check.output[-3000:]
    (hub_items,) = (tmp_path / "hub").glob("*/contamination-*/items.jsonl")
    (local_items,) = (tmp_path / "local").glob("*/contamination-*/items.jsonl")
    assert hub_items.read_text() == local_items.read_text()  # same items, neighbours' losses and r(x)


def test_a_hub_adapter_and_a_hub_delta_run_online_then_offline_from_the_cache(
    published, lora: LoraModels, changed: ChangedModels, tmp_path: Path
):
    """`--adapter ORG/ADAPTER@REV` (its base, org/smollm2, named by its adapter_config.json) and `ORG/DELTA --delta
    ORG/BASE`, both fetched from the Hub; then the adapter again with HF_HUB_OFFLINE=1, from the cache."""
    hub, _, main = published
    shutil.copytree(lora.adapter, tmp_path / "adapter")
    config_file = tmp_path / "adapter" / "adapter_config.json"  # as an adapter trained on the Hub's model names it
    config_file.write_text(json.dumps(json.loads(config_file.read_text()) | {"base_model_name_or_path": "org/smollm2"}))
    adapter_sha = hub.publish_model("org/smollm2-lora", tmp_path / "adapter")
    hub.publish_model("org/smollm2-delta", changed.delta)

    # one document: TruthfulQA's MC2 is a continuous score, so one document tells the changed model from the adapter
    tasks = ["--tasks", "truthfulqa", "--limit", "1", "--data-dir", str(SAMPLE_DATA)]
    home = tmp_path / "hf-home"
    online = _evalsuite(["run", "--adapter", f"org/smollm2-lora@{adapter_sha}", *tasks,
                         "--output-dir", str(tmp_path / "online")], hub, home)  # fmt: skip
    assert online.returncode == 0, online.stderr[-3000:]
    (results,) = (tmp_path / "online").glob("*/*/results.json")
    recorded = json.loads(results.read_text())["model"]
    assert (recorded["id"], recorded["weight_type"], recorded["base_model"], recorded["revision"]) == (
        "org/smollm2-lora", "Adapter", "org/smollm2", adapter_sha)  # fmt: skip
    assert recorded["base_sha"] == main  # the base at its main revision, as the adapter's config names no revision
    fetched = [r.path for r in hub.requests if r.method == "GET" and r.path.startswith("/org/smollm2-lora/resolve/")]
    assert any(path.endswith("/adapter_model.safetensors") for path in fetched), fetched

    offline = _evalsuite(["run", "--adapter", f"org/smollm2-lora@{adapter_sha}", *tasks,
                          "--output-dir", str(tmp_path / "offline")], hub, home, HF_HUB_OFFLINE="1")  # fmt: skip
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert _values(tmp_path / "offline") == _values(tmp_path / "online")

    with_delta = _evalsuite(["run", "org/smollm2-delta", "--delta", "org/smollm2", *tasks,
                             "--output-dir", str(tmp_path / "delta-run")], hub, home)  # fmt: skip
    assert with_delta.returncode == 0, with_delta.stderr[-3000:]
    (results,) = (tmp_path / "delta-run").glob("*/*/results.json")
    recorded = json.loads(results.read_text())["model"]
    assert (recorded["weight_type"], recorded["base_model"], recorded["base_sha"]) == ("Delta", "org/smollm2", main)
    assert _values(tmp_path / "delta-run") != _values(tmp_path / "online")

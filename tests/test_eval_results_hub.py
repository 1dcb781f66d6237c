"""`card update --eval-results` against the loopback Hub (tests/fake_hub.py), through the real huggingface_hub:
each benchmark's eval.yaml read first (and cached), a dataset without one left out with a line, an unreachable
Hub falling back to tasks/suite.yaml with a line, and `--push` sending the README and the `.eval_results`
file in one commit with their exact bytes.

The eval.yaml files served are in the shape of hub-docs docs/hub/eval-results.md's example (name, description,
evaluation_framework, tasks of id/config/split); their task ids are chosen for the test: openai/gsm8k as
published `.eval_results` files name it (`gsm8k`), allenai/ai2_arc listing both its configs (the task on the
suite's config and split is taken, and its id differs from the spec's), cais/mmlu with one task. Rowan/hellaswag
and allenai/winogrande are on the Hub without one; truthfulqa/truthful_qa is not on this Hub at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import SAKURA
from fake_hub import FakeHub
from huggingface_hub import parse_eval_result_entries

pytestmark = pytest.mark.subprocess  # huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE once, when imported

EVALSUITE = str(Path(sys.executable).parent / "evalsuite")
TOKEN = "hf_evalsuiteFakeToken0123456789abcdef"
FILE = ".eval_results/h6-leaderboard-v1.yaml"


def _eval_yaml(name: str, *tasks: tuple[str, str, str]) -> bytes:
    listed = "".join(f"  - id: {i}\n    config: {c}\n    split: {s}\n" for i, c, s in tasks)
    return f"name: {name}\ndescription: Scores in percent.\nevaluation_framework: lm-eval\ntasks:\n{listed}".encode()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    hub = FakeHub()
    model = tmp_path_factory.mktemp("model")
    (model / "README.md").write_text("# A model\n")
    hub.publish_model("org/model", model)
    card = b"---\nlicense: mit\n---\n# a dataset\n"
    hub.publish_dataset(
        "openai/gsm8k", {"README.md": card, "eval.yaml": _eval_yaml("GSM8K", ("gsm8k", "main", "test"))}
    )
    arc = _eval_yaml("ARC", ("arc_easy", "ARC-Easy", "test"), ("arc_c", "ARC-Challenge", "test"))
    hub.publish_dataset("allenai/ai2_arc", {"README.md": card, "eval.yaml": arc})
    hub.publish_dataset("cais/mmlu", {"README.md": card, "eval.yaml": _eval_yaml("MMLU", ("mmlu", "all", "test"))})
    hub.publish_dataset("Rowan/hellaswag", {"README.md": card})
    hub.publish_dataset("allenai/winogrande", {"README.md": card})
    with hub.serving():
        yield hub


def _evalsuite(args: list[str], hub: FakeHub, home: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "HF_TOKEN": TOKEN, **env}
    if "HF_HUB_OFFLINE" not in env:
        environment.pop("HF_HUB_OFFLINE", None)
    return subprocess.run([EVALSUITE, *args], capture_output=True, text=True, env=environment, timeout=300)


def _update(readme: Path, *extra: str) -> list[str]:
    return ["card", "update", str(readme), "--results", str(SAKURA), "--eval-results", *extra]


def _entries(path: Path):
    return {e.dataset_id: e for e in parse_eval_result_entries(yaml.safe_load(path.read_text()))}


def test_benchmarks_come_from_eval_yaml_and_push_sends_both_files_in_one_commit(hub: FakeHub, tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_bytes(b"---\nlicense: apache-2.0\n---\n# My model\r\n\r\nKept as is.\n")
    on_hub = tmp_path / "on-hub"  # the Hub holds the same card (the push updates the Hub's own text)
    on_hub.mkdir()
    (on_hub / "README.md").write_bytes(readme.read_bytes())
    parent = hub.publish_model("org/model", on_hub)
    home = tmp_path / "hf-home"
    result = _evalsuite(_update(readme, "--push", "org/model", "--create-pr"), hub, home)
    assert result.returncode == 0, result.stderr[-3000:]
    entries = _entries(tmp_path / FILE)
    assert {k: (e.task_id, e.value) for k, e in entries.items()} == {
        "allenai/ai2_arc": ("arc_c", 70.99), "cais/mmlu": ("mmlu", 66.33), "openai/gsm8k": ("gsm8k", 65.2),
    }  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert "AI2 Reasoning Challenge (25-Shot): task id 'arc_c' from allenai/ai2_arc's eval.yaml" in lines[0]
    for name, dataset in [("HellaSwag (10-Shot)", "Rowan/hellaswag"), ("TruthfulQA (0-shot)", "truthfulqa/truthful_qa"),
                          ("Winogrande (5-shot)", "allenai/winogrande")]:  # fmt: skip
        assert f"{name} left out of .eval_results: {dataset} has no eval.yaml on the Hub" in result.stderr
    (commit,) = hub.models["org/model"].commits
    assert commit["create_pr"] is True and commit["parent_commit"] == parent
    assert commit["files"] == {"README.md": readme.read_bytes(), FILE: (tmp_path / FILE).read_bytes()}
    print(f"\nthe commit the Hub got: {commit['summary']!r}, create_pr {commit['create_pr']}")
    for path, data in commit["files"].items():
        print(f"--- {path} ({len(data)} bytes)\n{data.decode()}")
    assert b"# My model\r\n\r\nKept as is.\n" in readme.read_bytes()
    assert "discussions/" in result.stderr and TOKEN not in result.stdout + result.stderr

    # the same again: nothing changes; --check agrees
    again = _evalsuite(_update(readme), hub, home)
    assert again.returncode == 0 and f"{tmp_path / FILE} already up to date" in again.stderr
    assert _evalsuite(_update(readme, "--check"), hub, home).returncode == 0

    # offline with the eval.yaml files cached: the same benchmarks, the same file
    offline = _evalsuite(_update(readme, "--check"), hub, home, HF_HUB_OFFLINE="1")
    assert offline.returncode == 0, offline.stderr


def test_an_unreachable_hub_falls_back_to_the_spec_with_a_line(hub: FakeHub, tmp_path: Path):
    """Offline with nothing cached. (A Hub that answers 503 takes the same path after huggingface_hub's ~20 s
    of back-off, asked once: test_eval_results.py checks that the other datasets come from the cache only.)"""
    readme = tmp_path / "README.md"
    result = _evalsuite(_update(readme), hub, tmp_path / "empty-hf-home", HF_HUB_OFFLINE="1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(_entries(tmp_path / FILE)) == ["openai/gsm8k"]  # the one the spec records as registered
    assert "the Hub could not be reached for eval.yaml of allenai/ai2_arc, Rowan/hellaswag" in result.stderr
    assert "using tasks/suite.yaml's benchmarks (unchecked)" in result.stderr
    assert "(offline)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 4  # the fallback, the ones left out, the two files written
    assert "left out of .eval_results, not known to be Hub benchmarks: AI2 Reasoning Challenge" in result.stderr


def test_a_partial_run_is_one_line_before_the_hub_is_asked(hub: FakeHub, tmp_path: Path):
    from conftest import FIXTURES

    partial = FIXTURES / "results" / "other-models" / "local__tiny" / "20240105T000000Z-0000"
    readme = tmp_path / "README.md"
    before = len(hub.requests)
    result = _evalsuite(["card", "update", str(readme), "--results", str(partial), "--eval-results"], hub, tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "--allow-partial" in result.stderr
    assert len(hub.requests) == before and not readme.exists() and not (tmp_path / ".eval_results").exists()

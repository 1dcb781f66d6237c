"""Every bad `evalsuite run` option fails before the model loads: one line, exit 1, nothing left on disk.

The model loader is replaced by one that fails the test, so each case proves the check comes first; the
model itself is the real SmolLM2 folder (dequantized GGUF) and the rows the real sample data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE_DATA
from typer.testing import CliRunner

from evalsuite import engine
from evalsuite.cli import app
from evalsuite.errors import RunError

cli = CliRunner()


@pytest.fixture(scope="module")
def model_folder(gguf_path: Path) -> Path:
    from evalsuite.engine import prepare_model
    from evalsuite.model import parse_model_ref

    return Path(prepare_model(parse_model_ref(str(gguf_path))).pretrained)


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad option was caught")

    monkeypatch.setattr(engine, "load_model", refuse)


def _without_model_type(folder: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "no-model-type"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text())
    del config["model_type"]
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def _corrupt_rows(tmp_path: Path, edit_line: int, text: str) -> Path:
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA, data)
    path = data / "arc_challenge" / "test.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[edit_line - 1] = text + "\n"
    path.write_text("".join(lines))
    return data


# (case, extra arguments, expected message); "{model}" and "{data}" are filled in per case
CASES: list[tuple[str, list[str], str]] = [
    ("--dtype foo", ["--dtype", "foo"], "--dtype 'foo': choose float32, bfloat16, float16 or auto"),
    ("--device cuda without CUDA", ["--device", "cuda"], "--device cuda: this torch is a CPU build; use --device cpu"),
    ("--device nonsense", ["--device", "gpu0"], "--device 'gpu0': give cpu, cuda or cuda:N"),
    ("unknown --model-args key", ["--model-args", "foo=1"], "'foo' is not an argument of lm-eval's HF model"),
    ("pack_tokens=abc", ["--model-args", "pack_tokens=abc"], "pack_tokens=abc: give a positive number of tokens"),
    ("generation=vllm", ["--model-args", "generation=vllm"], "generation=vllm: give evalsuite or transformers"),
    ("--batch-size auto:foo", ["--batch-size", "auto:foo"], "--batch-size 'auto:foo': give auto, auto:N"),
    ("--batch-size 0", ["--batch-size", "0"], "--batch-size '0': give a positive int or 'auto'"),
    ("--seed -1", ["--seed", "-1"], "--seed '-1': seeds go from 0 to 4294967295"),
    ("--limit 0", ["--limit", "0"], "--limit 0: give a positive number of documents per task"),
    ("unknown task", ["--tasks", "arc,mmlu_pro"], "mmlu_pro"),
    ("config without model_type", ["MODEL=no-model-type"], "config.json has no model_type"),
    ("corrupt row", ["DATA=corrupt"], "arc_challenge/test.jsonl:3: not a JSON row"),
    ("answer not among the choices", ["DATA=bad-answer"], "arc_challenge/test.jsonl:2: answerKey 'Z' is not among"),
]


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_bad_option_fails_before_the_model_loads(case, model_folder, no_model_load, tmp_path: Path):
    _, extra, expected = next(c for c in CASES if c[0] == case)
    model, data = model_folder, SAMPLE_DATA
    if extra == ["MODEL=no-model-type"]:
        model, extra = _without_model_type(model_folder, tmp_path), []
    elif extra == ["DATA=corrupt"]:
        data, extra = _corrupt_rows(tmp_path, 3, '{"id": "broken", "question": '), []
    elif extra == ["DATA=bad-answer"]:
        row = json.loads((SAMPLE_DATA / "arc_challenge" / "test.jsonl").read_text().splitlines()[1])
        data, extra = _corrupt_rows(tmp_path, 2, json.dumps(row | {"answerKey": "Z"})), []
    out = tmp_path / "results"
    args = ["run", str(model), "--data-dir", str(data), "--output-dir", str(out), "--tasks", "arc", "--limit", "1"]
    result = cli.invoke(app, [*args, *extra])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not out.exists(), f"left behind: {list(out.rglob('*'))}"


def test_a_run_that_fails_before_saving_anything_leaves_nothing(model_folder, monkeypatch, tmp_path: Path):
    """Past the checks (the model loads), the first task fails: no `.inprogress-*`, no empty folders."""

    def failing_task(*args, **kwargs):
        raise RunError("lm-eval failed on purpose")

    monkeypatch.setattr(engine, "run_task", failing_task)
    out = tmp_path / "new" / "results"
    args = ["run", str(model_folder), "--data-dir", str(SAMPLE_DATA), "--output-dir", str(out), "--tasks", "arc"]
    result = cli.invoke(app, [*args, "--limit", "1"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == "error: lm-eval failed on purpose"
    assert not out.exists() and (tmp_path / "new").exists() is False


def _evalsuite(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """The installed command in its own process: huggingface_hub reads HF_ENDPOINT and HF_HOME when imported."""
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), **env}
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # an earlier in-process run may have set them
        environment.pop(name, None)
    command = [str(Path(sys.executable).parent / "evalsuite"), *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)


UNREACHABLE = {"HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens on the discard port: connection refused


@pytest.mark.subprocess
def test_an_unreachable_hub_is_one_line_before_anything_loads(tmp_path: Path):
    out = tmp_path / "results"
    args = ["run", "someorg/somemodel", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(out), "--tasks", "arc"]
    result = _evalsuite(args, tmp_path, **UNREACHABLE)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: the Hugging Face Hub is unreachable (ConnectError")
    assert "someorg/somemodel is not in the local cache" in line and "hf download someorg/somemodel" in line
    assert not out.exists()


@pytest.mark.subprocess
def test_datasets_from_an_unreachable_hub_ask_for_a_data_dir(model_folder: Path, tmp_path: Path):
    out = tmp_path / "results"
    result = _evalsuite(["run", str(model_folder), "--output-dir", str(out), "--tasks", "arc"], tmp_path, **UNREACHABLE)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "the datasets come from it: pass --data-dir" in line
    assert not out.exists()


@pytest.mark.subprocess
def test_a_hub_adapter_the_hub_does_not_have_is_named_as_the_adapter(tmp_path: Path):
    """A mistyped `--adapter` id said "org/mistyped-id: not found on the Hub", as if MODEL were mistyped."""
    from fake_hub import FakeHub

    out = tmp_path / "results"
    args = ["run", "--adapter", "org/mistyped-id", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(out),
            "--tasks", "arc"]  # fmt: skip
    with FakeHub().serving() as hub:  # a Hub that has no repo at all
        result = _evalsuite(args, tmp_path, HF_ENDPOINT=hub.endpoint)
    assert result.returncode == 1
    assert result.stderr == (
        "error: --adapter org/mistyped-id: not found on the Hub (a typo, or private: log in with `hf auth login`)\n"
    )
    assert not out.exists()


@pytest.mark.subprocess
def test_a_hub_adapter_the_hub_cannot_be_asked_for_is_not_called_missing(tmp_path: Path):
    """Offline, `--adapter org/some-lora` said "no adapter_config.json (not a PEFT adapter)": a file not fetched was
    read as a file the repo lacks."""
    out = tmp_path / "results"
    args = ["run", "--adapter", "org/some-lora", "--data-dir", str(SAMPLE_DATA), "--output-dir", str(out),
            "--tasks", "arc"]  # fmt: skip
    unreachable = _evalsuite(args, tmp_path, **UNREACHABLE)
    assert unreachable.returncode == 1
    assert unreachable.stderr == (
        "error: the Hugging Face Hub is unreachable (ConnectError) and adapter_config.json of org/some-lora is not in "
        "the local cache; run where the Hub is reachable, or download it there (`hf download org/some-lora`) and "
        "pass its folder\n"
    )
    assert not out.exists()

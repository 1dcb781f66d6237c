"""The command line: bad input gets one line saying what to fix, exit code 1, and nothing written."""

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

from evalsuite.cli import app

runner = CliRunner()


def _bad_run(args: list[str], out: Path, expected: str) -> None:
    result = runner.invoke(app, ["run", *args, "--output-dir", str(out)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert result.stdout == ""
    assert not out.exists(), "nothing may be written under the output dir"


@pytest.fixture
def gguf_stub(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + b"\x00" * 32)
    return path


def test_unknown_task_key(tmp_path: Path, gguf_stub: Path):
    _bad_run([str(gguf_stub), "--tasks", "arc,mmmlu"], tmp_path / "out", "unknown task 'mmmlu'; choose from: arc")


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_limit_must_be_positive(tmp_path: Path, gguf_stub: Path, limit: str):
    _bad_run([str(gguf_stub), "--limit", limit], tmp_path / "out", f"--limit {limit}: give a positive number")


def test_model_path_that_does_not_exist(tmp_path: Path):
    _bad_run([str(tmp_path / "missing.gguf")], tmp_path / "out", "missing.gguf: no such file or directory")


def test_data_dir_missing_a_split(tmp_path: Path, gguf_stub: Path):
    data = tmp_path / "h6"
    shutil.copytree(SAMPLE_DATA, data)
    (data / "mmlu" / "test.jsonl").unlink()
    _bad_run([str(gguf_stub), "--data-dir", str(data)], tmp_path / "out", "missing mmlu/test.jsonl")


def test_unwritable_output_dir(tmp_path: Path, gguf_stub: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(app, ["run", str(gguf_stub), "--output-dir", str(blocker / "results")])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: --output-dir {blocker / 'results'}: {blocker} is not a directory"
    assert blocker.read_text() == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_read_only_output_dir(tmp_path: Path, gguf_stub: Path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    _bad_run([str(gguf_stub)], locked / "results", "is not writable")


def test_bad_options(tmp_path: Path, gguf_stub: Path):
    _bad_run([str(gguf_stub), "--batch-size", "0"], tmp_path / "out", "--batch-size '0': give a positive int or 'auto'")
    _bad_run([str(gguf_stub), "--seed", "1,2"], tmp_path / "out", "--seed '1,2'")
    _bad_run([str(gguf_stub), "--model-args", "dtype=float16"], tmp_path / "out", "use --dtype instead")


@pytest.mark.subprocess
def test_corrupt_gguf_through_the_real_loader(tmp_path: Path):
    """A file with a GGUF header but garbage after it reaches transformers' GGUF reader and fails cleanly."""
    corrupt = tmp_path / "broken.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(4096))
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    env = {**os.environ, "EVALSUITE_CACHE_DIR": str(cache)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "evalsuite",
            "run",
            str(corrupt),
            "--data-dir",
            str(SAMPLE_DATA),
            "--tasks",
            "arc",
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {corrupt}: cannot read this GGUF file"), proc.stderr
    assert not out.exists()
    # the model's lock file stays (a lock file removed while another run waits on it would let two in at once)
    left = [p.name for p in (cache / "gguf").iterdir() if not p.name.endswith(".lock")]
    assert left == [], "no half-converted model may stay in the cache"


def test_tasks_command_prints_the_spec():
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 0
    assert "protocol leaderboard-v1" in result.stdout and "exact_match,leaderboard-v1" in result.stdout
    assert "| arc " in result.stdout and "train (leaderboard-walk)" in result.stdout
    lm_eval = runner.invoke(app, ["tasks", "--protocol", "lm-eval"])
    assert "exact_match,strict-match" in lm_eval.stdout and "train (random)" in lm_eval.stdout
    as_json = runner.invoke(app, ["tasks", "--format", "json"])
    assert '"lm_eval_group": "h6_mmlu"' in as_json.stdout


def test_data_verify_exit_codes(tmp_path: Path, shared_data: Path):
    ok = runner.invoke(app, ["data", "verify", str(shared_data)])
    assert ok.exit_code == 0, ok.output
    assert "warn   | hellaswag/train.jsonl" in ok.stdout
    assert ok.stderr.strip() == "0 error(s), 1 warning(s)"
    assert runner.invoke(app, ["data", "verify", "--strict", str(shared_data)]).exit_code == 1
    broken = tmp_path / "h6"
    shutil.copytree(SAMPLE_DATA, broken)
    (broken / "arc_challenge" / "test.jsonl").unlink()
    bad = runner.invoke(app, ["data", "verify", str(broken)])
    assert bad.exit_code == 1 and "error  | arc_challenge/test.jsonl" in bad.stdout
    missing = runner.invoke(app, ["data", "verify", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and missing.stderr.strip().endswith("nope: no such directory")


def test_preset_and_limit_do_not_mix(tmp_path: Path, gguf_stub: Path):
    _bad_run([str(gguf_stub), "--preset", "nightly", "--limit", "5"], tmp_path / "out", "drop --limit")
    _bad_run([str(gguf_stub), "--preset", "weekly"], tmp_path / "out", "unknown preset 'weekly'")


def test_lm_eval_hf_backend_refuses_a_data_parallel_launch(
    tmp_path: Path, gguf_stub: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as accelerate launch / torchrun set it
    _bad_run(
        [str(gguf_stub), "--backend", "lm-eval-hf"],
        tmp_path / "out",
        "--backend lm-eval-hf cannot run data-parallel: lm-eval's split draws other few-shot exemplars",
    )


def test_unknown_backend(tmp_path: Path, gguf_stub: Path):
    """Backends are a registry, not a closed choice: an unknown name is one line naming the registered ones."""
    result = runner.invoke(app, ["run", str(gguf_stub), "--backend", "vllm", "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 1 and "vllm" in result.output
    assert result.stderr == "error: --backend 'vllm': choose shared-prefix or lm-eval-hf or served\n"
    assert not (tmp_path / "out").exists()


def test_unknown_protocol(tmp_path: Path, gguf_stub: Path):
    _bad_run([str(gguf_stub), "--protocol", "leaderboard-v2"], tmp_path / "out",
             "--protocol 'leaderboard-v2': choose one of leaderboard-v1, lm-eval")  # fmt: skip


def _bad_prompts(args: list[str], expected: str) -> None:
    result = runner.invoke(app, ["prompts", *args])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert result.stdout == ""


def test_prompts_bad_input_is_one_line_and_writes_nothing(tmp_path: Path):
    data = ["--data-dir", str(SAMPLE_DATA)]
    _bad_prompts([*data, "--protocol", "v1"], "--protocol 'v1': choose one of leaderboard-v1, lm-eval")
    _bad_prompts(["--data-dir", str(tmp_path / "nowhere")], f"--data-dir {tmp_path / 'nowhere'}: no such directory")
    _bad_prompts([*data, "--tasks", "arc,gsm8"], "unknown task 'gsm8'")
    _bad_prompts([*data, "--limit", "0"], "--limit 0: give a positive number")
    _bad_prompts([*data, "--output", str(tmp_path / "missing" / "p.jsonl")], f"folder {tmp_path / 'missing'} does not")
    _bad_prompts([*data, "--output", str(tmp_path)], f"--output {tmp_path}: is a directory")
    _bad_prompts(
        [*data, "--output", "/proc/evalsuite-prompts.jsonl"], "--output /proc/evalsuite-prompts.jsonl: cannot write"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.lm_eval
def test_prompts_writes_json_lines_atomically(tmp_path: Path):
    out = tmp_path / "prompts.jsonl"
    out.write_text("an earlier dump\n")
    result = runner.invoke(app, ["prompts", "--data-dir", str(SAMPLE_DATA), "--tasks", "gsm8k,arc", "--limit", "2",
                                 "--output", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(x["task"], x["lm_eval_task"], x["doc_id"]) for x in lines] == [
        ("arc", "arc_challenge", 0), ("arc", "arc_challenge", 1), ("gsm8k", "gsm8k", 0), ("gsm8k", "gsm8k", 1)
    ]  # fmt: skip
    assert all(len(x["requests"]) == 4 for x in lines[:2])  # ARC: one (context, continuation) per choice
    context, settings = lines[2]["requests"][0]
    assert context.endswith("\nAnswer:") and settings["until"] == [":", "Question:", "Question"]
    assert "arc: 2 documents, 8 requests" in result.stderr and f"prompts: {out}" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.jsonl"]  # no temp file left

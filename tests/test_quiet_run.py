"""What a user sees on stderr: by default only evalsuite's lines and, on a terminal, one bar per task; other
libraries' logs, bars and warnings only with -v. The installed `evalsuite` command on the real model and rows.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from conftest import SAMPLE_DATA
from typer.testing import CliRunner

from evalsuite.cli import app

EVALSUITE = str(Path(sys.executable).parent / "evalsuite")
# every line evalsuite itself writes to stderr during a run
OURS = re.compile(r"^(loading \S+ \(float32, cpu\)|warning: .*|\[\d/\d\] \w+: .*|)$")
# the bar: label, bar, requests done/total, elapsed<remaining (the ETA), rate
BAR = re.compile(r"\[\d/\d\] \w+ .*\d+/\d+ requests \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(req/s|s/req)\]")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TQDM_", "EVALSUITE_LOG", "TRANSFORMERS_VERB"))}
    return env | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _run_args(gguf_path: Path, tmp_path: Path, tasks: str) -> list[str]:
    out = tmp_path / "results"
    return ["run", str(gguf_path), "--data-dir", str(SAMPLE_DATA), "--output-dir", str(out), "--tasks", tasks]


@pytest.mark.subprocess
def test_a_logged_run_shows_only_evalsuites_lines(gguf_path: Path, tmp_path: Path):
    """stderr redirected (CI logs): no bars at all, no line from lm-eval, transformers, datasets or git."""
    args = [EVALSUITE, *_run_args(gguf_path, tmp_path, "arc,gsm8k"), "--limit", "1"]
    result = subprocess.run(args, capture_output=True, text=True, env=_environment(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if not OURS.match(line)] == [], result.stderr
    assert "[1/2] arc: 25-shot, acc_norm" in lines and "[2/2] gsm8k: 5-shot, exact_match (leaderboard-v1)" in lines
    assert "| AI2 Reasoning Challenge (25-Shot) | acc_norm " in result.stdout  # the metric as a person writes it


@pytest.mark.subprocess
def test_a_terminal_shows_one_bar_per_task_and_nothing_else(gguf_path: Path, tmp_path: Path):
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    args = [EVALSUITE, *_run_args(gguf_path, tmp_path, "arc,gsm8k"), "--limit", "1"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=secondary, env=_environment(tmp_path))
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the pty closes when the process exits
            break
        if not chunk:
            break
        chunks.append(chunk)
    stdout = process.stdout.read().decode() if process.stdout else ""
    assert process.wait(timeout=600) == 0
    screen = ANSI.sub("", b"".join(chunks).decode())
    pieces = [p.strip() for p in re.split(r"[\r\n]+", screen) if p.strip()]
    bars = [p for p in pieces if BAR.search(p)]
    assert {b.split()[0] + " " + b.split()[1] for b in bars} == {"[1/2] arc", "[2/2] gsm8k"}, pieces
    others = [p for p in pieces if not (BAR.search(p) or OURS.match(p) or re.fullmatch(r"\[\d/\d\] \w+ +0/\d+ .*", p))]
    assert others == [], others
    assert "[1/2] arc: " in screen and "Average (H6)" in stdout


@pytest.mark.subprocess
def test_verbose_lets_the_libraries_speak(gguf_path: Path, tmp_path: Path):
    # Winogrande: 2 short 5-shot requests where ARC's are 4 of 25 shots; the same lm-eval logs and bar
    args = [EVALSUITE, *_run_args(gguf_path, tmp_path, "winogrande"), "--limit", "1", "-v"]
    result = subprocess.run(args, capture_output=True, text=True, env=_environment(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Running loglikelihood requests" in result.stderr  # the backend's own tqdm bar, as with lm-eval
    assert "lm_eval" in result.stderr  # lm-eval's log lines


def test_help_fits_80_columns_without_cut_text(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    commands = [[], ["run"], ["prompts"], ["tasks"], ["contamination"], ["leaderboard"], ["compare"], ["history"],
                ["data", "verify"], ["card", "render"], ["card", "update"]]  # fmt: skip
    for command in commands:
        result = CliRunner().invoke(app, [*command, "--help"], terminal_width=80)
        assert result.exit_code == 0, command
        too_long = [line for line in result.stdout.splitlines() if len(line) > 80]
        assert too_long == [] and "…" not in result.stdout, (command, too_long)

"""Start-up: `evalsuite --help` loads no model library, no pandas and no huggingface_hub; rendering a leaderboard or
a card loads no model library (each command imports what it uses, in its body)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import FIXTURES, SAKURA

pytestmark = pytest.mark.subprocess  # a fresh interpreter: sys.modules as a user's command starts

MODEL_LIBRARIES = {"torch", "lm_eval", "transformers", "datasets", "accelerate"}
# Run the CLI in-process as the `evalsuite` script does, then report which top-level modules were imported.
PROBE = """
import json, sys
from evalsuite.cli import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})), file=sys.__stderr__)
"""


def _modules_after(*args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, check=False
    )
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


def test_help_imports_no_model_library_pandas_or_hub():
    loaded = _modules_after("--help")
    assert "evalsuite" in loaded and "typer" in loaded
    assert not loaded & (MODEL_LIBRARIES | {"pandas", "huggingface_hub", "matplotlib", "scipy"})


@pytest.mark.parametrize(
    "args",
    [
        ["leaderboard", str(FIXTURES / "results")],
        ["card", "render", str(SAKURA), "--format", "markdown"],
        ["compare", str(SAKURA), str(SAKURA)],
        ["run", "--help"],
        ["leaderboard", "--peers", "Qwen/Qwen-14B", "--published-contents", str(FIXTURES / "archive" / "contents.csv")],
        ["compare", "leaderboard:HenryJJ/Instruct_Yi-6B_Dolly15K", str(SAKURA),
         "--published-results", str(FIXTURES / "archive" / "results")],
    ],
    ids=["leaderboard", "card render", "compare", "run --help", "leaderboard --peers", "compare leaderboard:"],
)
def test_commands_that_run_no_model_import_no_model_library(args: list[str]):
    loaded = _modules_after(*args)
    assert not loaded & MODEL_LIBRARIES, sorted(loaded & MODEL_LIBRARIES)


def test_the_leaderboard_imports_pandas_only_for_csv(tmp_path):
    assert "pandas" not in _modules_after("leaderboard", str(FIXTURES / "results"))
    assert "pandas" in _modules_after("leaderboard", str(FIXTURES / "results"), "--format", "csv")

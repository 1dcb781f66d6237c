"""The layers of docs/ARCHITECTURE.md are rules a tool checks: import-linter's contracts in pyproject.toml
(`[tool.importlinter]`) hold for the package, and an import across a layer breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.subprocess  # lint-imports runs as its own command

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package under `root`, with the contracts of `root`/pyproject.toml."""
    return subprocess.run(
        [LINT_IMPORTS, "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_the_package_keeps_its_layers():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "broken"),
    [
        ("publish/leaderboard.py", "from evalsuite.run import pipeline", "Publishing and tracking never import"),
        ("engine/runner.py", "from evalsuite.cli import tables", "Layers"),
        ("results/io.py", "import torch", "Only the engine imports lm-eval, torch"),
        ("track/history.py", "from evalsuite.engine import devices", "Publishing and tracking never import"),
        ("archive/contents.py", "from evalsuite.results import SuiteResults", "Layers"),  # siblings stay apart
    ],
)
def test_an_import_across_a_layer_breaks_a_contract(module: str, bad_import: str, broken: str, tmp_path: Path):
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "evalsuite", copy / "evalsuite", ignore=shutil.ignore_patterns("__pycache__", "sample_data"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    path = copy / "evalsuite" / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n\ndef _deliberately_bad() -> None:\n    {bad_import}\n")
    result = _lint_imports(copy)
    assert result.returncode == 1, result.stdout[-3000:]
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout, result.stdout[-3000:]

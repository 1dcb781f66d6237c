"""The package type-checks clean under mypy ([tool.mypy] in pyproject.toml), so CI fails on a type error as it
does on a failing test. lm-eval, datasets, scipy, pandas, tqdm and gguf ship no types: values from them are Any;
torch, transformers, huggingface_hub and pydantic are checked against their own annotations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.subprocess
def test_the_package_type_checks_clean():
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]

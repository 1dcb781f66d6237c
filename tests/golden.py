"""Golden-file comparison: `pytest --update-golden` rewrites the files; review the diff before committing."""

from __future__ import annotations

from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"


def check_golden(name: str, actual: str, update: bool) -> None:
    path = GOLDEN / name
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
        return
    assert path.is_file(), f"no golden file {path}; run pytest --update-golden"
    expected = path.read_bytes().decode("utf-8")
    assert actual == expected, f"{name} differs from its golden file; run pytest --update-golden and review the diff"

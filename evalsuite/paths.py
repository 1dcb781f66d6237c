"""Where evalsuite finds its bundled files and keeps its cache."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Path:
    """A top-level folder of the project (`tasks`, `templates`).

    An installed wheel carries it inside the package (`evalsuite/_bundled/<name>`, see pyproject.toml);
    a checkout (editable install) reads it from the repository root.
    """
    packaged = _PACKAGE_DIR / "_bundled" / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE_DIR.parent / name


def cache_dir() -> Path:
    """evalsuite's cache: $EVALSUITE_CACHE_DIR, else $XDG_CACHE_HOME/evalsuite, else ~/.cache/evalsuite."""
    if explicit := os.environ.get("EVALSUITE_CACHE_DIR"):
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "evalsuite"

"""Writing files so that readers never see half of one: a temp file beside the target, then a rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block succeeds it atomically becomes `path`.

    The new file keeps the permissions of the file it replaces (a new one gets the umask's default).
    """
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~current_umask()
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def current_umask() -> int:
    """The process umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def staging_folder(parent: Path, prefix: str) -> Path:
    """A new `<prefix>…partial` folder in `parent`, made like any other folder (mkdtemp's is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=parent))
    os.chmod(folder, 0o777 & ~current_umask())
    return folder


def write_folder(final: Path, files: Mapping[str, str]) -> None:
    """Write the folder `final` holding `files` (paths relative to it -> UTF-8 text) all at once: staged in a
    `.<name>.…partial` folder beside it, then renamed into place. FileExistsError if `final` exists (nothing is
    ever overwritten); on any failure the staging folder is gone and `final` was never there."""
    if final.exists():
        raise FileExistsError(f"{final} already exists")
    staging = staging_folder(final.parent, f".{final.name}.")
    try:
        for name, text in files.items():
            path = staging / name
            path.parent.mkdir(exist_ok=True)  # one level (`lm_eval/`): deeper names are a caller's mistake
            path.write_text(text, encoding="utf-8")
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` as UTF-8, newlines untouched (a CRLF file stays CRLF)."""
    with replacing(path) as tmp:
        tmp.write_bytes(text.encode("utf-8"))


def missing_folders(path: Path) -> list[Path]:
    """`path` and its ancestors that do not exist yet, outermost first: what a `mkdir(parents=True)` would make,
    and so what to take away again (`remove_empty_folders`) if the work they were made for fails."""
    missing = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing.append(folder)
    return list(reversed(missing))


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove `folders` (outermost first, as `missing_folders` lists them) from the innermost out, stopping at
    the first that is not empty: a failed run takes away the folders it made, and nothing else."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            break

"""Writing files so that readers never see half of one, and a power cut keeps either the old file or the new: a
temp file beside the target, fsynced, renamed over it, and the folder's entry fsynced too. A folder is written
the same way (`write_folder`: staged, then renamed). A write that must not overwrite someone else's change
checks the file is still what it read just before the rename (`replace_if_unchanged`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from evalsuite import faults

STAGING_SUFFIX = ".partial"


class FileChanged(Exception):
    """The file is no longer what the writer read: someone else changed it meanwhile (nothing was written)."""


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
        faults.reached(f"replacing {path.name}")
        os.replace(tmp, path)
        fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_folder(folder: Path) -> None:
    """Make a folder's entries (a rename into it) survive a power cut."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def staging_folder(parent: Path, prefix: str) -> Path:
    """A new `<prefix>…partial` folder in `parent`, made like any other folder (mkdtemp's is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, suffix=STAGING_SUFFIX, dir=parent))
    os.chmod(folder, 0o777 & ~current_umask())
    return folder


def write_folder(final: Path, files: Mapping[str, str | bytes], staging_in: Path | None = None) -> None:
    """Write the folder `final` holding `files` (paths relative to it -> UTF-8 text, or bytes) all at once: staged in a
    `.<name>.…partial` folder, then renamed into place. FileExistsError if `final` exists (nothing is ever
    overwritten); on any failure the staging folder is gone and `final` was never there.

    `staging_in`: where to stage (on `final`'s file system), default beside `final`. A run stages inside its
    own in-progress folder, so that what a killed writer left is removed with it, and is never another run's.
    Staging folders of `final`'s name left there by a killed writer are removed first."""
    if final.exists():
        raise FileExistsError(f"{final} already exists")
    parent = staging_in or final.parent
    for leftover in parent.glob(f".{final.name}.*{STAGING_SUFFIX}"):
        shutil.rmtree(leftover, ignore_errors=True)
    staging = staging_folder(parent, f".{final.name}.")
    try:
        for name, content in files.items():
            faults.reached(f"staging {name}")
            path = staging / name
            path.parent.mkdir(exist_ok=True)  # one level (`lm_eval/`): deeper names are a caller's mistake
            with path.open("wb") as f:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
                f.flush()
                os.fsync(f.fileno())
        for folder in {(staging / name).parent for name in files} | {staging}:
            fsync_folder(folder)
        faults.reached("staged")
        os.replace(staging, final)
        fsync_folder(final.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` as UTF-8, newlines untouched (a CRLF file stays CRLF)."""
    with replacing(path) as tmp:
        tmp.write_bytes(text.encode("utf-8"))


def replace_if_unchanged(path: Path, expected: bytes | None, text: str) -> None:
    """Write `text` over `path` atomically, if the file still holds `expected` (None: it must not exist) when the
    new text is ready to be renamed over it; else FileChanged, and nothing is written. A writer that appends to
    the file in the instant between that check and the rename can still lose its bytes: POSIX has no
    compare-and-rename; the window is one `stat` and one `rename` long."""
    with replacing(path) as tmp:
        tmp.write_bytes(text.encode("utf-8"))
        try:
            now: bytes | None = path.read_bytes()
        except FileNotFoundError:
            now = None
        if now != expected:
            raise FileChanged(str(path))


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


def is_hidden_under(path: Path, root: Path) -> bool:
    """Whether `path` lies in a folder under `root` whose name starts with a dot: evalsuite's in-progress and
    staging folders (`.inprogress-*`, `.<run-id>.*.partial`), which readers never read as runs."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = path.parts
    return any(part.startswith(".") for part in parts[:-1])

"""Reading and writing run folders: `results.json` validated on every read, a run written all at once (staged,
then renamed), and finding runs in results folders.

    <output_dir>/<org>__<name>/<run_id>/results.json
                                        lm_eval/<task>.json, lm_eval/samples_<lm-eval task>.jsonl
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evalsuite.errors import NoResultsError, OutputDirError, ResultsSchemaError, invalid_file, param
from evalsuite.files import is_hidden_under, missing_folders, remove_empty_folders, write_folder
from evalsuite.results.lm_eval_files import LM_EVAL_DIR
from evalsuite.results.migrations import migrate
from evalsuite.results.schema import SCHEMA_VERSION, SuiteResults

RESULTS_FILE = "results.json"


def write_run(
    results: SuiteResults,
    lm_eval_outputs: dict[str, str],
    output_dir: Path,
    model_dir_name: str,
    staging_in: Path | None = None,
) -> Path:
    """Write `<output_dir>/<model_dir_name>/<run_id>/` all at once: staged (in `staging_in`, the run's in-progress
    folder, or beside it), then renamed into place.

    `lm_eval_outputs` maps file names (relative to the run's lm_eval/ folder) to their text. On failure
    nothing is left behind, not even the folders this call created.
    """
    files = {f"{LM_EVAL_DIR}/{name}": text for name, text in lm_eval_outputs.items()}
    files[RESULTS_FILE] = results.model_dump_json(indent=2) + "\n"
    return write_results_folder(output_dir, model_dir_name, results.run_id, files, staging_in)


def write_results_folder(
    output_dir: Path, model_dir_name: str, name: str, files: dict[str, str], staging_in: Path | None = None
) -> Path:
    """`<output_dir>/<model_dir_name>/<name>/` with `files`, all at once (files.write_folder); on failure nothing
    is left behind, not even the folders this call created."""
    created = missing_folders(output_dir / model_dir_name)
    final = output_dir / model_dir_name / name
    written = False
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        write_folder(final, files, staging_in)
        written = True
        return final
    except FileExistsError as e:
        raise OutputDirError(f"{final} already exists; results are never overwritten") from e
    except OSError as e:
        raise OutputDirError(f"cannot write results under {output_dir}: {e.strerror or e}") from e
    finally:
        if not written:
            remove_empty_folders(created)


def is_written(run_dir: Path) -> bool:
    """Whether a run's folder is in place: renamed whole from its staging copy (results.json is written last)."""
    return (run_dir / RESULTS_FILE).is_file()


def check_output_dir(output_dir: Path) -> None:
    """Fail early, before hours of compute, if results could not be written under `output_dir`."""
    existing = next((p for p in [output_dir, *output_dir.parents] if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise OutputDirError(f"{param('output_dir')} {output_dir}: {existing} is not a directory")
    try:
        probe = tempfile.NamedTemporaryFile(dir=existing, prefix=".evalsuite-write-probe-")
    except OSError as e:
        raise OutputDirError(f"{param('output_dir')} {output_dir}: {existing} is not writable ({e.strerror})") from e
    probe.close()


def read_results(path: Path) -> SuiteResults:
    """Read a results.json (or a run folder holding one), validated: every score a finite fraction, documents
    within their split, the H6 average the mean of the six. Anything else is one ResultsSchemaError."""
    if path.is_dir():
        path = path / RESULTS_FILE
    raw, version = read_versioned(path, "results file", SCHEMA_VERSION)
    try:
        return SuiteResults.model_validate(migrate(raw))
    except (KeyError, TypeError) as e:
        raise ResultsSchemaError(f"{path}: invalid results file of schema_version {version}: {e!r}") from e
    except ValidationError as e:
        raise ResultsSchemaError(invalid_file(path, "results file", e)) from e


def read_versioned(path: Path, what: str, current: int) -> tuple[dict[str, Any], int]:
    """A file evalsuite wrote, as raw JSON with its `schema_version` (1 to `current`), for its migrations and
    validation; anything else (unreadable, not UTF-8, not JSON, no version, a newer one) is one line."""
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise ResultsSchemaError(f"{path}: cannot read ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise ResultsSchemaError(f"{path}: not UTF-8 (byte {e.start}); not a {what} evalsuite wrote") from e
    except json.JSONDecodeError as e:
        why = e.msg.removesuffix(" at")  # "Unterminated string starting at"
        raise ResultsSchemaError(f"{path}: not JSON ({why} at line {e.lineno})") from e
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ResultsSchemaError(f"{path}: not an evalsuite {what} (no integer schema_version)")
    if version > current:
        raise ResultsSchemaError(
            f"{path}: schema_version {version} was written by a newer evalsuite (this one reads {current}); "
            "upgrade evalsuite"
        )
    return raw, version


def run_dirs(path: Path) -> list[Path]:
    """The run folders (holding a results.json) directly under a model's results folder, oldest first."""
    return sorted(p.parent for p in path.glob(f"*/{RESULTS_FILE}") if not p.parent.name.startswith("."))


def run_locations(model_dir: Path) -> set[str]:
    """The model locations (`model.location`) the runs in a model's results folder record."""
    return {where for run in run_dirs(model_dir) if (where := recorded_location(run / RESULTS_FILE, "model"))}


def recorded_location(path: Path, record: str) -> str | None:
    """`<record>.location` of a file evalsuite wrote (a results file's model, a check's target), read without
    validation (every schema records it there); None when the file does not say."""
    try:
        raw = json.loads(path.read_bytes())
        where = raw[record]["location"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return where if isinstance(where, str) else None


@dataclass(frozen=True)
class Run:
    """A run's results with the folder they were read from (where its lm-eval files and samples are), and, when a
    model's folder was given, which of its runs this is and why (`chosen`)."""

    folder: Path
    results: SuiteResults
    chosen: str | None = None


def read_run(path: Path, newest_complete: bool = False) -> Run:
    """The run a path names: a results.json, a run folder, or a model's results folder (`results/org__name`).

    For a model's folder: its newest complete run when `newest_complete` (`chosen` says which), else an error
    listing the runs to choose from.
    """
    if not path.is_dir() or (path / RESULTS_FILE).exists():
        return Run(path.parent if path.is_file() else path, read_results(path))
    runs = run_dirs(path)
    if not runs:
        raise ResultsSchemaError(f"{path}: no {RESULTS_FILE} in it or in its run folders")
    listing = ", ".join(r.name for r in runs[-5:]) + (f" (and {len(runs) - 5} older)" if len(runs) > 5 else "")
    if not newest_complete:
        raise ResultsSchemaError(f"{path} holds {len(runs)} runs ({listing}); give one run folder")
    complete = [(r, results) for r in runs if (results := read_results(r)).status == "complete"]
    if not complete:
        raise ResultsSchemaError(
            f"{path} holds no complete run ({listing}); give a run folder and {param('allow_partial')}"
        )
    folder, newest = complete[-1]
    return Run(folder, newest, f"using {folder}, the newest complete run of {len(runs)}")


def find_runs(
    paths: Iterable[Path], on_unreadable: Callable[[ResultsSchemaError], None] | None = None
) -> list[SuiteResults]:
    """Every run under the given results folders (or the results files themselves), each read and validated.

    In-progress and staging folders (names starting with a dot) are never read as runs, whatever they hold.
    A results file that cannot be read is an error, unless `on_unreadable` takes it (a table of many runs
    goes on without it, saying so); where it leaves nothing, the error says why the only one is unreadable."""
    return [run.results for run in find_run_folders(paths, on_unreadable)]


def find_run_folders(
    paths: Iterable[Path], on_unreadable: Callable[[ResultsSchemaError], None] | None = None
) -> list[Run]:
    """`find_runs`, each run with its folder (whose parent is its model's folder)."""
    paths = list(paths)
    found: list[Run] = []
    unreadable: list[ResultsSchemaError] = []
    for root in paths:
        if root.is_file():
            found.append(Run(root.parent, read_results(root)))
            continue
        if not root.is_dir():
            raise NoResultsError(f"{root}: no such directory")
        for path in sorted(root.rglob(RESULTS_FILE)):
            if is_hidden_under(path, root):
                continue
            try:
                found.append(Run(path.parent, read_results(path)))
            except ResultsSchemaError as e:
                if on_unreadable is None:
                    raise
                unreadable.append(e)
    where = ", ".join(map(str, paths))
    if not found and len(unreadable) == 1:  # why the one there cannot be read, not that there is none
        only = unreadable[0]
        raise NoResultsError(f"the only {RESULTS_FILE} under {where} is unreadable: {only.marked}") from only
    if on_unreadable is not None:
        for error in unreadable:
            on_unreadable(error)
    if not found and unreadable:
        raise NoResultsError(f"none of the {len(unreadable)} {RESULTS_FILE} under {where} can be read")
    if not found:
        raise NoResultsError(f"no {RESULTS_FILE} under {where}; run `evalsuite run` first")
    return found

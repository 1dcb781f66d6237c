"""Errors speak the library's terms to a library caller and name the flag to a CLI user; a re-raised error keeps
its cause, which EVALSUITE_DEBUG=1 shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.cli._app import error_line
from evalsuite.data import plan_local
from evalsuite.errors import DataDirError, EvalsuiteError, OptionError, param
from evalsuite.settings import BatchSize, Dtype, Seeds
from evalsuite.suite import load_suite

cli = CliRunner()


def test_a_library_error_names_the_parameter_and_the_cli_names_the_flag():
    error = DataDirError(f"{param('data_dir')} /x: no such directory; or leave arc out of {param('tasks')}")
    assert str(error) == "data_dir /x: no such directory; or leave arc out of tasks"
    assert error_line(error) == "error: --data-dir /x: no such directory; or leave arc out of --tasks"
    assert error_line(EvalsuiteError(f"use {param('model')}@revision or {param('seeds')}")) == (
        "error: use MODEL@revision or --seed"
    )
    passed_on = EvalsuiteError(error.marked)  # as another process of a data-parallel run raises it
    assert passed_on.message(str.upper) == "DATA_DIR /x: no such directory; or leave arc out of TASKS"


@pytest.mark.parametrize(
    ("parse", "text", "library", "cli_flag"),
    [
        (Dtype.parse, "foo", "dtype 'foo': choose float32, bfloat16, float16 or auto", "--dtype 'foo'"),
        (BatchSize.parse, "0", "batch_size '0': give a positive int or 'auto'", "--batch-size '0'"),
        (Seeds.parse, "-1", "seeds '-1': seeds go from 0 to 4294967295", "--seed '-1'"),
    ],
)
def test_settings_are_parsed_once_in_library_terms(parse, text, library, cli_flag):
    with pytest.raises(OptionError) as caught:  # an option problem, not the suite's
        parse(text)
    assert str(caught.value) == library and error_line(caught.value).startswith(f"error: {cli_flag}")


def test_a_missing_data_dir_in_the_library_and_on_the_command_line(tmp_path: Path):
    with pytest.raises(DataDirError, match=rf"^data_dir {tmp_path / 'nope'}: no such directory$"):
        plan_local(tmp_path / "nope", load_suite().tasks)
    result = cli.invoke(app, ["run", "some/model", "--data-dir", str(tmp_path / "nope")])
    assert result.exit_code == 1 and result.stderr == f"error: --data-dir {tmp_path / 'nope'}: no such directory\n"


def test_evalsuite_debug_shows_the_cause(tmp_path: Path, monkeypatch):
    data = tmp_path / "data"
    (data / "arc_challenge").mkdir(parents=True)
    (data / "arc_challenge" / "test.jsonl").write_text("{not json\n")
    monkeypatch.setenv("EVALSUITE_DEBUG", "1")
    result = cli.invoke(app, ["run", "some/model", "--tasks", "arc", "--data-dir", str(data)])
    assert isinstance(result.exception, DataDirError)  # not turned into one line: the traceback is shown
    assert isinstance(result.exception.__cause__, json.JSONDecodeError)


def test_out_of_memory_is_known_by_its_type_and_every_loop_backs_off_through_one_helper():
    """engine.oom is the one back-off (scoring rows, generation batches, the manager's budget, contamination):
    torch's OutOfMemoryError and Python's MemoryError (transformers' cache-size check) are out of memory, a
    RuntimeError that only says so is not; GenerationFailed is an evalsuite error like any other."""
    import torch

    from evalsuite.engine import oom
    from evalsuite.errors import GenerationFailed, RunError

    assert oom.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert oom.is_out_of_memory(MemoryError("Memory footprint 10 is more than available memory 5"))
    assert not oom.is_out_of_memory(RuntimeError("CUDA out of memory"))  # text is not a type
    rows, tried = oom.Rows(8, auto=True), []

    def forward(n: int) -> int:
        tried.append(n)
        if n > 2:
            raise MemoryError("Memory footprint")
        return n

    assert rows.run(forward, "generating") == 2 and tried == [8, 4, 2] and rows.backoffs == 2
    with pytest.raises(MemoryError):  # a fixed size is the user's: raised as it is
        oom.Rows(8).run(forward, "generating")
    failed = GenerationFailed([3, 1], "a kernel failed")
    assert isinstance(failed, RunError) and str(failed) == "generation failed for prompt 3, 1: a kernel failed"

"""The sweep's own logic, without a cluster: its models file, its request checks, its status file, and the
errors that must come before any model loads (Ray missing, an address where nothing answers, a worker whose
versions differ). The sweep on a real Ray cluster: tests/test_cluster.py."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLE_DATA
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.errors import ClusterError, OptionError
from evalsuite.results import Versions
from evalsuite.run import RunRequest
from evalsuite.run.cells import Cell, run_cell
from evalsuite.run.sweep import SweepModel, SweepRequest, SweepStatus, read_models_file, read_status
from evalsuite.settings import BatchSize, Dtype, Precision

runner = CliRunner()


def test_a_text_models_file_is_one_model_per_line(tmp_path: Path) -> None:
    path = tmp_path / "models.txt"
    path.write_text("# checkpoints of last night\norg/model@step-1000\n\n  org/model@step-2000  # the newest\n")
    assert [m.model for m in read_models_file(path)] == ["org/model@step-1000", "org/model@step-2000"]


def test_a_yaml_models_file_gives_each_model_its_own_settings(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "- org/base\n"
        "- model: org/tuned\n  dtype: bfloat16\n  batch_size: auto\n  model_args: {trust_remote_code: true}\n"
    )
    base = RunRequest(model="", limit=2, output_dir=tmp_path / "out")
    plain, tuned = (m.request(base) for m in read_models_file(path))
    assert (plain.model, plain.dtype, plain.limit) == ("org/base", None, 2)
    assert (tuned.model, tuned.dtype, tuned.limit) == ("org/tuned", Dtype.BFLOAT16, 2)
    assert tuned.batch_size == BatchSize.parse("auto")
    assert tuned.model_args == {"trust_remote_code": "True"}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("- model: org/a\n  dtyp: float16\n", "models.yaml entry 1: invalid model at dtyp: Extra inputs are not"),
        ("model: org/a\n", "give a YAML list of models"),
        ("[]\n", "names no model"),
        ("- model: org/a\n  dtype: float8\n", "dtype 'float8': choose"),
    ],
)
def test_a_bad_models_file_is_one_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(OptionError, match=says):
        base = RunRequest(model="", output_dir=tmp_path)
        [m.request(base) for m in read_models_file(path)]


def test_a_sweep_request_refuses_a_model_twice_and_negative_resources(tmp_path: Path) -> None:
    run = RunRequest(model="org/a", output_dir=tmp_path)
    with pytest.raises(OptionError, match="model org/a is given twice"):
        SweepRequest(runs=[run, run])
    with pytest.raises(OptionError, match=r"^gpus_per_task -1: give 0 or more$"):
        SweepRequest(runs=[run], gpus_per_task=-1)
    with pytest.raises(OptionError, match="one output_dir"):
        SweepRequest(runs=[run, RunRequest(model="org/b", output_dir=tmp_path / "elsewhere")])


def test_one_model_at_several_precisions_or_adapters_is_one_run_each(tmp_path: Path) -> None:
    """What quantizing costs, or which adapter is best: one base model several times in one sweep, each run
    named by the model it evaluates and, where that is not enough, by how it loads."""
    path = tmp_path / "models.yaml"
    path.write_text(
        "- org/base\n- model: org/base\n  precision: 4bit\n- model: org/base\n  dtype: bfloat16\n"
        "- model: org/base\n  adapter: org/lora-a\n- adapter: org/lora-b\n"
        "- model: org/delta\n  delta: org/base\n"
    )
    base = RunRequest(model=None, limit=2, output_dir=tmp_path / "out")
    request = SweepRequest(runs=[m.request(base) for m in read_models_file(path)])
    assert request.labels() == [
        "org/base [default precision]", "org/base [precision 4bit]", "org/base [dtype bfloat16]",
        "org/lora-a", "org/lora-b", "org/delta",
    ]  # fmt: skip
    same = RunRequest(model="org/base", precision="4bit", output_dir=tmp_path / "out")
    with pytest.raises(OptionError, match=r"model org/base \[precision 4bit\] is given twice"):
        SweepRequest(runs=[*request.runs, same])
    (path := tmp_path / "none.yaml").write_text("- dtype: float16\n")
    with pytest.raises(OptionError, match="none.yaml entry 1: .*give model \\(or adapter"):
        read_models_file(path)


def test_the_status_file_round_trips_and_a_damaged_one_is_one_line(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    status = SweepStatus(cluster="local", started_at=now, updated_at=now, models=[])
    (tmp_path / "sweep.json").write_text(status.model_dump_json(by_alias=True))
    assert json.loads((tmp_path / "sweep.json").read_text())["schema"] == "evalsuite.sweep/1"
    assert read_status(tmp_path / "sweep.json") == status
    (tmp_path / "sweep.json").write_text('{"schema": "evalsuite.sweep/1", "cluster": "local"')
    with pytest.raises(OptionError, match="move it away to start the sweep afresh"):
        read_status(tmp_path / "sweep.json")
    assert read_status(tmp_path / "none.json") is None


def test_a_worker_whose_versions_differ_refuses_its_cell_before_loading_anything(tmp_path: Path) -> None:
    driver = Versions.installed().model_copy(update={"transformers": "4.0.0"})
    cell = Cell(request=RunRequest(model=str(tmp_path / "no-such-model"), output_dir=tmp_path), task="arc",
                device="cpu", dtype=Dtype.FLOAT32, versions=driver)  # fmt: skip
    installed = Versions.installed().transformers
    with pytest.raises(ClusterError, match=rf"^worker n1 has transformers {installed}, the driver 4\.0\.0: install"):
        run_cell(cell, node="n1")


def test_a_worker_reuses_its_loaded_model_only_for_the_same_load(
    config_only: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker keeps its last model for the next cell of the same run; a cell of the same model at another
    precision or under an adapter loads again (reusing it would drop the quantization silently, lm-eval #973)."""
    from evalsuite.run import cells, prepare_run

    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(config_only)}))
    loads: list[Any] = []
    monkeypatch.setattr(cells.engine, "prepare_model", lambda ref: ref)

    def load(loadable: Any, settings: Any) -> object:
        loads.append(settings)
        return object()

    monkeypatch.setattr(cells.engine, "load_model", load)
    monkeypatch.setattr(cells, "_last", None)
    order = [{}, {}, {"precision": "4bit"}, {"precision": "4bit"}, {"adapter": str(adapter)}, {}]
    for options in order:
        request = RunRequest(model=str(config_only), tasks=["arc"], data_dir=SAMPLE_DATA, output_dir=tmp_path,
                             **options)  # fmt: skip
        cell = Cell(request=request, task="arc", device="cpu", dtype=Dtype.FLOAT32, versions=Versions.installed())
        cells._loaded(prepare_run(request), cell)
    assert [(s.precision, s.part is not None) for s in loads] == [
        (None, False), (Precision.INT4, False), (None, True), (None, False)
    ]  # fmt: skip


def test_without_ray_the_cluster_options_say_how_to_install_it(
    config_only: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the extra
    result = runner.invoke(app, ["sweep", str(config_only), "--tasks", "arc", "--data-dir",
                                 str(SAMPLE_DATA), "--output-dir", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == "error: --cluster needs Ray, which is not installed: pip install 'evalsuite[cluster]'\n"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_address_where_nothing_answers_is_one_line_before_any_model_loads(
    config_only: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["run", str(config_only), "--cluster", "127.0.0.1:9", "--tasks",
                                 "arc", "--data-dir", str(SAMPLE_DATA),
                                 "--output-dir", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith("error: --cluster 127.0.0.1:9: nothing answers at 127.0.0.1:9 (")
    assert result.stderr.endswith("start the cluster (ray start --head) or check the address\n")
    assert len(result.stderr.splitlines()) == 1
    bad = runner.invoke(app, ["sweep", str(config_only), "--cluster", "headnode"])
    assert bad.stderr == "error: --cluster 'headnode': give a Ray address (HOST:PORT, ray://HOST:PORT, auto) or local\n"


def test_the_sweep_options_are_refused_where_they_do_not_apply(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "org/a", "--gpus-per-task", "1"])
    assert result.exit_code == 1
    assert result.stderr == "error: --gpus-per-task needs --cluster\n"
    none = runner.invoke(app, ["sweep"])
    assert none.stderr == "error: give the models: MODEL arguments, or --models-file\n"


def test_a_sweep_model_refuses_settings_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        SweepModel.model_validate({"model": "org/a", "limit": 3})


def test_the_live_view_is_one_line_per_model_with_tasks_done_running_and_an_eta(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from evalsuite.cli.sweeping import _LiveView
    from evalsuite.run.sweep import CellStatus, ModelStatus, State

    now = datetime.now(UTC)
    cells = [CellStatus(task="arc", state=State.DONE), CellStatus(task="gsm8k", state=State.RUNNING),
             CellStatus(task="mmlu")]  # fmt: skip
    status = SweepStatus(cluster="local", started_at=now, updated_at=now,
                         models=[ModelStatus(model="org/a", state=State.RUNNING, cells=cells),
                                 ModelStatus(model="org/b", state=State.FAILED, error="x")])  # fmt: skip
    view = _LiveView()
    view(status)
    view.close()
    shown = capsys.readouterr().err
    assert "org/a" in shown and "1/3 tasks, running gsm8k" in shown and "<" in shown  # elapsed<remaining
    assert "org/b" in shown and "tasks, failed" in shown

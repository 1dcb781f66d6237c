"""The sweep's own logic, without a cluster: its models file, its request checks, its status file, the errors
that must come before any model loads (Ray missing, an address where nothing answers, a worker whose versions
differ), and its resume, failure, retry and cancel paths on the in-process executor (run/executors.py) with a
cell runner of the tests' own. The sweep on a real Ray cluster (node kill, GPU pinning, workers' versions, the
real cells): tests/test_cluster.py."""

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
        ("- model: org/a\n  dtype: float8\n", "models.yaml entry 1: dtype 'float8': choose"),
        ("- org/b\n- model: org/a\n  precision: 3bit\n", "models.yaml entry 2: precision '3bit': choose float32"),
        ("- model: org/a\n  batch_size: lots\n", "models.yaml entry 1: batch_size 'lots': give a positive int"),
    ],
)
def test_a_bad_models_file_is_one_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(OptionError, match=says):
        base = RunRequest(model="", output_dir=tmp_path)
        [m.request(base) for m in read_models_file(path)]


def test_an_entrys_bad_value_names_the_file_and_entry_not_the_option(tmp_path: Path) -> None:
    """The entry's key is what to fix, not the sweep's --precision (which was not given); nothing is written."""
    path = tmp_path / "models.yaml"
    path.write_text("- org/b\n- model: org/a\n  precision: 3bit\n")
    result = runner.invoke(app, ["sweep", "--models-file", str(path), "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: --models-file {path} entry 2: precision '3bit': choose float32, float16, bfloat16, 8bit, 4bit or "
        "GPTQ\n"
    )
    assert not (tmp_path / "out").exists()


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
        cells._loaded(prepare_run(request.model_copy(update={"device": "cpu", "dtype": Dtype.FLOAT32})))
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
    from evalsuite.cli.cluster import _LiveView
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


def test_an_entry_with_only_an_adapter_runs_over_the_base_its_config_names(
    config_only: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/cluster.md's shape: the first entry is another model, a later one gives only `adapter:`. The
    adapter runs over the base its adapter_config.json names, never over the first entry's model (which ran it
    over step-10000, or refused it, before)."""
    from evalsuite.run import prepare_run
    from evalsuite.run.sweep import SweepOutcome

    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(config_only)}))
    other = tmp_path / "run-42-step-10000"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llama"}))
    path = tmp_path / "models.yaml"
    path.write_text(f"- {other}\n- adapter: {adapter}\n")
    asked: list[SweepRequest] = []

    def drive(request: SweepRequest, verbose: bool) -> SweepOutcome:
        asked.append(request)
        now = datetime.now(UTC)
        return SweepOutcome(SweepStatus(cluster="local", started_at=now, updated_at=now, models=[]), [], [])

    monkeypatch.setattr("evalsuite.cli.sweeping.drive", drive)
    result = runner.invoke(app, ["sweep", "--models-file", str(path), "--tasks", "arc", "--data-dir", str(SAMPLE_DATA),
                                 "--output-dir", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 0, result.output
    first, tuned = asked[0].runs
    assert (first.model, first.adapter) == (str(other), None)
    assert (tuned.model, tuned.adapter) == (None, str(adapter))
    weights = prepare_run(tuned, here=False).weights
    assert (weights.base.location, weights.part and weights.part.location) == (str(config_only), str(adapter))
    # the library's own composition too: an entry's request never takes the model of the base it is laid over
    library = read_models_file(path)[1].request(RunRequest(model=str(other), output_dir=tmp_path / "out"))
    assert library.model is None


# --- the sweep's logic on the in-process executor, with a cell runner of the tests' own

LEAVES = {"arc": "arc_challenge", "truthfulqa": "truthfulqa_mc2", "winogrande": "winogrande"}


def _value(model: str, task: str) -> float:
    """A value of its own for each model's task (so a value read from the wrong cell shows)."""
    return round(0.1 + 0.05 * list(LEAVES).index(task) + 0.2 * ("second" in model), 4)


class FakeCells:
    """Answers cells as a worker would (a task's record and the model's facts), without a model; `fail` maps
    (model folder name, task) to what the runner raises on its n-th attempt: an exception or a list of them."""

    def __init__(self, fail: dict[tuple[str, str], Any] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail or {}

    def __call__(self, cell: Cell, node: str) -> Any:
        from fakes import lm_eval_output

        from evalsuite import engine
        from evalsuite.run.cells import CellResult
        from evalsuite.run.pipeline import ModelFacts
        from evalsuite.suite import load_suite

        model = Path(str(cell.request.model or cell.request.adapter)).name
        self.calls.append((model, cell.task))
        planned = self.fail.get((model, cell.task))
        if isinstance(planned, list):
            if planned:
                raise planned.pop(0)
        elif planned is not None:
            raise planned
        spec = load_suite().task(cell.task)
        finished = engine.FinishedTask(
            lm_eval_output=lm_eval_output(spec, {LEAVES[cell.task]: (_value(model, cell.task), 0.01, 2)}),
            samples={}, seconds=0.5,
        )  # fmt: skip
        facts = ModelFacts(model_args={"pretrained": model}, device=cell.device, parameters=None, dtype=cell.dtype,
                           load_seconds=0.0, backend=cell.request.backend)  # fmt: skip
        return CellResult(task=cell.task, finished=finished, model=facts, node=node, gpus=None,
                          started_at=datetime.now(UTC), seconds=0.5)  # fmt: skip


@pytest.fixture
def two_models(tmp_path: Path) -> list[Path]:
    """Two model folders with a config and no weights (the fake cells load nothing)."""
    folders = []
    for name in ("first-model", "second-model"):
        (folder := tmp_path / name).mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
        folders.append(folder)
    return folders


def _sweep_request(models: list[Path], output: Path, tasks: list[str], **options: Any) -> SweepRequest:
    runs = [RunRequest(model=str(m), tasks=tasks, limit=2, data_dir=SAMPLE_DATA, output_dir=output) for m in models]
    return SweepRequest(runs=runs, **options)


def _in_process(cells: FakeCells) -> Any:
    from evalsuite.run.executors import InProcessExecutor

    return InProcessExecutor(runner=cells, node="here")


def test_a_sweep_in_process_writes_each_models_run_and_the_same_sweep_again_runs_nothing(
    two_models: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evalsuite import faults
    from evalsuite.results import read_results
    from evalsuite.run.sweep import State, run_sweep

    instants: list[str] = []
    monkeypatch.setattr(faults, "reached", instants.append)  # the sweep's saves and writes reach the failpoints
    request = _sweep_request(two_models, tmp_path / "out", ["arc", "truthfulqa"])
    cells, lines = FakeCells(), list[str]()
    outcome = run_sweep(request, progress=lines.append, executor=_in_process(cells))
    assert cells.calls == [("first-model", "arc"), ("first-model", "truthfulqa"), ("second-model", "arc"),
                           ("second-model", "truthfulqa")]  # fmt: skip
    saves = [instant for instant in instants if instant in ("task-saved", "renamed")]
    assert saves == ["task-saved", "task-saved", "renamed", "task-saved", "task-saved", "renamed"]
    assert "replacing sweep.json" in instants and "staged" in instants
    assert outcome.failures == [] and len(outcome.runs) == 2
    for model, run in zip(two_models, outcome.runs, strict=True):
        results = read_results(run.run_dir)
        assert {t.key: t.value for t in results.tasks} == {t: _value(model.name, t) for t in ("arc", "truthfulqa")}
    status = read_status(tmp_path / "out" / "sweep.json")
    assert status is not None and [m.state for m in status.models] == [State.DONE, State.DONE]
    assert all(c.attempts == 1 and c.node == "here" and not c.reused for m in status.models for c in m.cells)
    assert not list((tmp_path / "out").glob("*/.*")), "no checkpoint left behind"

    again, lines = FakeCells(), []
    second = run_sweep(request, progress=lines.append, executor=_in_process(again))
    assert again.calls == [] and [r.run_dir for r in second.runs] == [r.run_dir for r in outcome.runs]
    assert sum("written by an earlier sweep" in line for line in lines) == 2, lines


def test_a_cell_that_raises_fails_its_model_alone_and_its_other_cells_never_run(
    two_models: list[Path], tmp_path: Path
) -> None:
    from evalsuite.run.sweep import State, run_sweep

    cells = FakeCells(fail={("first-model", "arc"): OptionError("model_args x=1: not an argument of this model")})
    request = _sweep_request(two_models, tmp_path / "out", ["arc", "truthfulqa"])
    outcome = run_sweep(request, progress=lambda line: None, executor=_in_process(cells))
    assert cells.calls == [("first-model", "arc"), ("second-model", "arc"), ("second-model", "truthfulqa")]
    [failure] = outcome.failures
    assert (failure.model, failure.line) == (str(two_models[0]), "arc: model_args x=1: not an argument of this model")
    assert isinstance(failure.error, OptionError)
    assert [r.results.model.id for r in outcome.runs] == ["second-model"]
    status = read_status(tmp_path / "out" / "sweep.json")
    assert status is not None
    first = status.models[0]
    assert first.state is State.FAILED and first.error == "arc: model_args x=1: not an argument of this model"
    assert [c.state for c in first.cells] == [State.FAILED, State.FAILED]
    assert not (tmp_path / "out" / "first-model").exists() or not any((tmp_path / "out" / "first-model").iterdir())


def test_a_cell_lost_with_its_worker_runs_again_up_to_the_retries(two_models: list[Path], tmp_path: Path) -> None:
    from evalsuite.run.executors import WorkerLost
    from evalsuite.run.sweep import State, run_sweep

    cells = FakeCells(fail={("first-model", "arc"): [WorkerLost("node n2 died")]})  # once
    outcome = run_sweep(_sweep_request(two_models[:1], tmp_path / "once", ["arc"], retries=1),
                        progress=lambda line: None, executor=_in_process(cells))  # fmt: skip
    assert outcome.failures == [] and cells.calls == [("first-model", "arc")] * 2
    status = read_status(tmp_path / "once" / "sweep.json")
    assert status is not None and status.models[0].cells[0].attempts == 2
    assert status.models[0].cells[0].state is State.DONE

    always = FakeCells(fail={("first-model", "arc"): [WorkerLost("node n2 died")] * 3})
    lost = run_sweep(_sweep_request(two_models[:1], tmp_path / "lost", ["arc"], retries=1),
                     progress=lambda line: None, executor=_in_process(always))  # fmt: skip
    assert always.calls == [("first-model", "arc")] * 2  # the first attempt and one retry
    [failure] = lost.failures
    assert failure.line == "arc: lost with its worker or node every time it ran (WorkerLost: node n2 died)"


def test_an_interrupted_sweep_resumes_without_running_a_finished_cell_again(
    two_models: list[Path], tmp_path: Path
) -> None:
    from evalsuite.errors import Interrupted
    from evalsuite.run.sweep import run_sweep

    request = _sweep_request(two_models, tmp_path / "out", ["arc", "truthfulqa", "winogrande"])
    stopped = FakeCells(fail={("second-model", "truthfulqa"): KeyboardInterrupt()})  # Ctrl-C in the 5th cell
    with pytest.raises(Interrupted) as interrupted:
        run_sweep(request, progress=lambda line: None, executor=_in_process(stopped))
    assert interrupted.value.saved
    assert len(stopped.calls) == 5
    stopped_status = read_status(tmp_path / "out" / "sweep.json")  # what was left to do says it was interrupted
    assert stopped_status is not None and [m.state for m in stopped_status.models] == ["done", "interrupted"]
    assert [c.state for c in stopped_status.models[1].cells] == ["done", "interrupted", "interrupted"]
    resumed, lines = FakeCells(), list[str]()
    outcome = run_sweep(request, progress=lines.append, executor=_in_process(resumed))
    # the first model was written before the Ctrl-C; the second's arc is read back from its checkpoint
    assert resumed.calls == [("second-model", "truthfulqa"), ("second-model", "winogrande")]
    assert "second-model: arc finished before, not rerun" in "\n".join(lines)
    assert [{t.key: t.value for t in r.results.tasks} for r in outcome.runs] == [
        {t: _value(m.name, t) for t in ("arc", "truthfulqa", "winogrande")} for m in two_models
    ]
    status = read_status(tmp_path / "out" / "sweep.json")
    assert status is not None
    assert [(c.task, c.reused) for c in status.models[1].cells] == [
        ("arc", True), ("truthfulqa", False), ("winogrande", False)
    ]  # fmt: skip


# --- two local models of one name (issue 44): a folder each, kept on every later run and resume


def _adapters_named_lora(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A base model folder (`smollm2-hf`) and two adapters over it, both saved as `.../lora`."""
    (base := tmp_path / "smollm2-hf").mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "llama"}))
    adapters = []
    for parent in ("run-a", "run-b"):
        (adapter := tmp_path / parent / "lora").mkdir(parents=True)
        (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
        adapters.append(adapter)
    return base, adapters


def _adapter_sweep(adapters: list[Path], output: Path, tasks: list[str], limit: int = 2) -> SweepRequest:
    return SweepRequest(runs=[RunRequest(model=None, adapter=str(a), tasks=tasks, limit=limit, data_dir=SAMPLE_DATA,
                                         output_dir=output) for a in adapters])  # fmt: skip


def test_two_local_models_of_one_name_get_a_folder_each_and_keep_it(tmp_path: Path) -> None:
    """Two adapters saved as `.../lora` shared `local__lora` (history, leaderboards, resume and sweeps mixed
    them): the first keeps it, the second gets `local__lora__<8 hex of its location's sha256>`, and each is filed
    in its own again on a later run. results.json records the base's location beside its name."""
    import hashlib

    from evalsuite.results import read_results
    from evalsuite.run.sweep import run_sweep

    base, (first, second) = _adapters_named_lora(tmp_path)
    out = tmp_path / "out"
    distinct = f"local__lora__{hashlib.sha256(str(second).encode()).hexdigest()[:8]}"
    outcome = run_sweep(_adapter_sweep([first, second], out, ["arc"]), progress=lambda line: None,
                        executor=_in_process(FakeCells()))  # fmt: skip
    assert outcome.failures == []
    assert [(r.run_dir.parent.name, r.results.model.location) for r in outcome.runs] == [
        ("local__lora", str(first)), (distinct, str(second))
    ]  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted(["local__lora", distinct, "sweep.json"])
    model = outcome.runs[1].results.model
    assert (model.id, model.base_model, model.base_location) == ("lora", "smollm2-hf", str(base))
    assert json.loads((outcome.runs[1].run_dir / "results.json").read_text())["model"]["base_location"] == str(base)

    # later runs of each (other settings: new runs), the second first: each into its own folder again
    for adapter, folder in ((second, distinct), (first, "local__lora")):
        again = run_sweep(_adapter_sweep([adapter], out, ["arc"], limit=3), progress=lambda line: None,
                          executor=_in_process(FakeCells()))  # fmt: skip
        [run] = again.runs
        assert run.run_dir.parent.name == folder and read_results(run.run_dir).model.location == str(adapter)
    assert {p.name: len(list(p.iterdir())) for p in out.iterdir() if p.is_dir()} == {"local__lora": 2, distinct: 2}


def test_the_second_model_of_a_name_resumes_from_its_own_folder(tmp_path: Path) -> None:
    """Interrupted, the second `lora` resumes the checkpoint it left in its own folder (not a new run in the
    first's), and is written there."""
    from evalsuite.errors import Interrupted
    from evalsuite.run.sweep import run_sweep

    _, (first, second) = _adapters_named_lora(tmp_path)
    out = tmp_path / "out"
    run_sweep(_adapter_sweep([first], out, ["arc"]), progress=lambda line: None, executor=_in_process(FakeCells()))
    request = _adapter_sweep([second], out, ["arc", "truthfulqa"])
    with pytest.raises(Interrupted):
        run_sweep(request, progress=lambda line: None,
                  executor=_in_process(FakeCells(fail={("lora", "truthfulqa"): KeyboardInterrupt()})))  # fmt: skip
    [checkpoint] = out.glob("local__lora__*/.inprogress-*")
    resumed, lines = FakeCells(), list[str]()
    [run] = run_sweep(request, progress=lines.append, executor=_in_process(resumed)).runs
    assert resumed.calls == [("lora", "truthfulqa")], lines  # arc read back from its checkpoint
    assert run.run_dir.parent == checkpoint.parent and not checkpoint.exists()
    assert len(list((out / "local__lora").iterdir())) == 1  # the first's run alone


def test_a_run_resumes_its_own_checkpoint_even_one_that_recorded_no_location(tmp_path: Path) -> None:
    """A checkpoint from before state.json recorded the model's location is still found by its key, in the plain
    folder, even when that folder also holds another location's runs; a new key goes to the distinct folder."""
    from evalsuite.model import ModelRef, ModelSource
    from evalsuite.run.checkpoint import model_folder

    out = tmp_path / "out"
    mine, other = ModelRef(ModelSource.LOCAL, "/b/lora"), ModelRef(ModelSource.LOCAL, "/a/lora")
    assert model_folder(out, mine, "k1") == out / "local__lora"  # nothing there yet
    (out / "local__lora" / ".inprogress-k0").mkdir(parents=True)
    (out / "local__lora" / ".inprogress-k0" / "state.json").write_text(json.dumps({"location": other.location}))
    (out / "local__lora" / ".inprogress-k1").mkdir()  # mine, from an older evalsuite: no location
    (out / "local__lora" / ".inprogress-k1" / "state.json").write_text('{"run_id": "r", "created_at": "2026-01-01"}')
    assert model_folder(out, mine, "k1") == out / "local__lora"
    assert model_folder(out, mine, "k2") == out / mine.distinct_dir_name
    assert model_folder(out, other, "k3") == out / "local__lora"  # the other is at home there
    assert model_folder(out, ModelRef(ModelSource.HUB, "org/lora"), "k4") == out / "org__lora"


# --- bad input (issue 44): one line, exit 1, nothing written, no cluster joined where it can be helped


def test_a_sweep_whose_every_model_fails_its_checks_joins_no_cluster_and_writes_nothing(
    config_only: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each model's line once (it was a FileNotFoundError traceback into a new --output-dir, and into an existing
    one Ray started for 16 s after the only model had failed, its line printed twice), naming the models file's
    entry and key that gave the value (it named `--model-args` and `--adapter`, options the command did not have)."""
    from contextlib import contextmanager

    from evalsuite.run import cluster

    @contextmanager
    def connect(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the cluster was joined")
        yield

    monkeypatch.setattr(cluster, "connect", connect)
    (adapter := tmp_path / "not-an-adapter").mkdir()
    path = tmp_path / "models.yaml"
    path.write_text(f"- model: {config_only}\n  model_args: {{bogus_key: 1}}\n- adapter: {adapter}\n")
    for output in (tmp_path / "new", tmp_path / "existing"):
        if output.name == "existing":
            output.mkdir()
        result = runner.invoke(app, ["sweep", "--models-file", str(path), "--tasks", "arc", "--data-dir",
                                     str(SAMPLE_DATA), "--output-dir", str(output)])  # fmt: skip
        assert result.exit_code == 1, result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 2 and all(line.startswith("error: ") for line in lines), result.stderr
        assert lines[0].startswith(f"error: --models-file {path} entry 1: model_args bogus_key=1: 'bogus_key' is not")
        assert lines[0].endswith(f"({config_only})")
        assert lines[1].startswith(f"error: --models-file {path} entry 2: adapter {adapter}: no adapter_config.json")
        assert lines[1].endswith(f"({adapter})")
        assert result.stdout == ""
        assert not output.exists() or not any(output.iterdir())


def test_a_sweep_into_an_output_dir_that_is_a_file_is_one_line(config_only: Path, tmp_path: Path) -> None:
    (afile := tmp_path / "afile").write_text("kept\n")
    result = runner.invoke(app, ["sweep", str(config_only), "--tasks", "arc", "--data-dir", str(SAMPLE_DATA),
                                 "--output-dir", str(afile)])  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == f"error: --output-dir {afile}: {afile} is not a directory\n"
    assert afile.read_text() == "kept\n"


def test_cpus_per_task_0_without_gpus_is_refused(config_only: Path, tmp_path: Path) -> None:
    """It started every cell at once."""
    result = runner.invoke(app, ["sweep", str(config_only), "--cpus-per-task", "0", "--cluster", "127.0.0.1:9"])
    assert result.exit_code == 1
    assert result.stderr == ("error: --cpus-per-task 0: every task would start at once; give more than 0 "
                             "(or --gpus-per-task above 0, so that GPUs bound them)\n")  # fmt: skip
    run = RunRequest(model=str(config_only), output_dir=tmp_path)
    SweepRequest(runs=[run], cpus_per_task=0, gpus_per_task=1)  # GPUs bound them


def test_resources_no_node_has_are_refused_before_any_cell_is_submitted(
    two_models: list[Path], tmp_path: Path
) -> None:
    """`--gpus-per-task 1` on a cluster without GPUs waited for ever."""
    from evalsuite.errors import in_terms
    from evalsuite.run.executors import InProcessExecutor, Node
    from evalsuite.run.sweep import _lacking, run_sweep

    cells, lines = FakeCells(), list[str]()
    for options, says in [
        ({"gpus_per_task": 1}, r"^gpus_per_task 1: no node of the cluster has 1 GPU\(s\) \(local: this process\); "
                               r"ask for less, or use a cluster with such a node$"),
        ({"cpus_per_task": 3}, r"^cpus_per_task 3: no node of the cluster has 3 CPU\(s\) "),
    ]:  # fmt: skip
        executor = InProcessExecutor(runner=cells, node="here", cpus=2, gpus=0)
        with pytest.raises(ClusterError, match=says):
            run_sweep(_sweep_request(two_models, tmp_path / "out", ["arc"], **options), progress=lines.append,
                      executor=executor)  # fmt: skip
    assert cells.calls == [] and lines == []
    assert not (tmp_path / "out").exists()
    # each is on some node, never both on one
    nodes = [Node(cpus=8, gpus=0), Node(cpus=2, gpus=1)]
    both = _lacking(nodes, 4, 1)
    assert both is not None
    assert in_terms(both) == "cpus_per_task 4 with gpus_per_task 1: no node of the cluster has both"
    assert _lacking(nodes, 2, 1) is None and _lacking(nodes, 8, 0) is None


def test_a_cell_no_live_node_can_run_any_more_fails_its_model_instead_of_waiting(
    two_models: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evalsuite.errors import in_terms
    from evalsuite.run import sweep
    from evalsuite.run.executors import InProcessExecutor
    from evalsuite.run.sweep import State, run_sweep

    monkeypatch.setattr(sweep, "NODES_CHECK_S", 0.0)
    monkeypatch.setattr(sweep, "INFEASIBLE_AFTER_S", 0.0)
    fake = FakeCells()

    def node_gone(cell: Cell, node: str) -> Any:
        executor.cpus = 0  # the only node that had a CPU is gone after this cell
        return fake(cell, node)

    executor = InProcessExecutor(runner=node_gone, node="here", cpus=2)
    outcome = run_sweep(_sweep_request(two_models, tmp_path / "out", ["arc", "truthfulqa"]),
                        progress=lambda line: None, executor=executor)  # fmt: skip
    assert fake.calls == [("first-model", "arc")]
    line = "cpus_per_task 1: no node of the cluster has 1 CPU(s) any more (this process); the cells left cannot run"
    assert [(f.model, in_terms(f.line)) for f in outcome.failures] == [(str(m), line) for m in two_models]
    status = read_status(tmp_path / "out" / "sweep.json")
    assert status is not None and [m.state for m in status.models] == [State.FAILED, State.FAILED]
    assert [c.state for c in status.models[0].cells] == [State.DONE, State.FAILED]


def test_sweep_json_says_errors_in_the_librarys_terms_and_the_cli_in_its_own(
    two_models: list[Path], tmp_path: Path
) -> None:
    """sweep.json held the CLI's \\x1f markers."""
    from evalsuite.cli._app import error_line
    from evalsuite.errors import param
    from evalsuite.run.sweep import run_sweep

    error = OptionError(f"{param('model_args')} x=1: not an argument of this model")
    cells = FakeCells(fail={("first-model", "arc"): error})
    outcome = run_sweep(_sweep_request(two_models[:1], tmp_path / "out", ["arc"]), progress=lambda line: None,
                        executor=_in_process(cells))  # fmt: skip
    text = (tmp_path / "out" / "sweep.json").read_text()
    assert "\\u001f" not in text and "\x1f" not in text
    status = read_status(tmp_path / "out" / "sweep.json")
    assert status is not None
    assert status.models[0].error == "arc: model_args x=1: not an argument of this model"
    assert status.models[0].cells[0].error == "model_args x=1: not an argument of this model"
    assert error_line(outcome.failures[0].line) == "error: arc: --model-args x=1: not an argument of this model"


def test_a_private_clusters_folder_left_by_a_killed_command_is_taken_away_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver killed with kill -9 leaves its private cluster's folder (Ray's session: logs, sockets; about 230 KB)
    in the temp folder; the next private cluster takes away those whose owner lock is free, never a live one's."""
    import fcntl
    import tempfile

    from evalsuite.run import cluster

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    killed, live, foreign = (tmp_path / f"{cluster.TEMP_PREFIX}{name}" for name in ("killed", "live", "foreign"))
    for folder in (killed, live, foreign):
        (folder / "session_latest").mkdir(parents=True)
    (killed / cluster.OWNER_LOCK).touch()  # its command is gone: nothing holds the lock
    (live / cluster.OWNER_LOCK).touch()
    with (live / cluster.OWNER_LOCK).open() as held:  # a running command's
        fcntl.flock(held, fcntl.LOCK_EX)
        temp_dir, owner = cluster._private_temp_dir()
        assert not killed.exists() and live.is_dir() and foreign.is_dir()  # a folder without a lock is left
        made = Path(temp_dir)
        assert made.parent == tmp_path and made.name.startswith(cluster.TEMP_PREFIX)
        with (made / cluster.OWNER_LOCK).open() as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while the cluster runs
        cluster._remove(temp_dir, owner)
        assert not made.exists()

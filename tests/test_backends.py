"""Backends behind one interface (evalsuite.engine.backends): a lazy registry of named backends, each declaring its
typed options, the model args it takes, whether it runs data-parallel and whether its numbers are HFLM's.

The toy backend (tests/toy_backend.py) shows a new backend is one file and a registry line, through the real
stack (lm-eval builds and scores the tasks on the real sample rows); the built-in ones are checked before
anything loads, and recorded in results.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SAMPLE_DATA
from typer.testing import CliRunner

from evalsuite import engine
from evalsuite.cli import app
from evalsuite.engine.backends import get_backend, register_backend, unregister_backend
from evalsuite.errors import OptionError
from evalsuite.run import ContaminationRequest, RunRequest, prepare_check, prepare_run, run_suite
from evalsuite.settings import GenerationEngine

cli = CliRunner()


@pytest.fixture
def toy() -> Iterator[str]:
    """The toy backend, registered by its module's name (imported only when asked for), then forgotten."""
    register_backend("toy", "toy_backend:BACKEND")
    yield "toy"
    unregister_backend("toy")


def _request(model: Path, tmp_path: Path, **settings: object) -> RunRequest:
    given = {"tasks": ["arc"], "limit": 1, "data_dir": SAMPLE_DATA, "output_dir": tmp_path / "out", **settings}
    return RunRequest(model=str(model), **given)


def test_the_registry_names_its_backends_and_refuses_unknown_ones(toy: str):
    assert engine.backend_names() == ["shared-prefix", "lm-eval-hf", "served", "toy"]
    with pytest.raises(OptionError, match=r"^backend 'vllm': choose shared-prefix or lm-eval-hf or served or toy$"):
        get_backend("vllm")
    with pytest.raises(ValueError, match="module:attribute"):
        register_backend("vllm", "vllm_backend")
    shared, plain = get_backend("shared-prefix"), get_backend("lm-eval-hf")
    assert (shared.data_parallel, shared.hflm_exact) == (True, True)
    assert (plain.data_parallel, plain.hflm_exact) == (False, True)
    assert get_backend("toy").hflm_exact is False


@pytest.mark.lm_eval
def test_a_new_backend_is_one_file_and_a_registry_line(toy: str, config_only: Path, tmp_path: Path):
    """The toy backend runs ARC and GSM8K through lm-eval on the sample rows: its typed option is recorded, and
    its tasks are never the leaderboard's (its numbers are not HFLM's), whatever they asked."""
    request = _request(config_only, tmp_path, tasks=["arc", "gsm8k"], backend=toy, backend_options="per_character=-1")
    outcome = run_suite(request, progress=lambda message: None)
    assert outcome is not None
    settings = outcome.results.settings
    assert (settings.backend, settings.backend_options) == ("toy", {"per_character": -1.0})
    for task in outcome.results.tasks:
        assert not task.leaderboard_comparable
        assert task.not_comparable_reasons[-1] == "backend toy: its requests or numbers are not lm-eval HFLM's"
    gsm8k = outcome.results.task("gsm8k")
    assert gsm8k is not None and gsm8k.value == 0.0  # the toy's empty answers, scored by lm-eval


def test_a_backends_options_and_model_args_are_checked_before_anything_loads(toy: str, config_only: Path, tmp_path):
    with pytest.raises(OptionError, match=r"nope=1: 'nope' is not an option of backend toy \(its options: per_chara"):
        prepare_run(_request(config_only, tmp_path, backend=toy, backend_options="nope=1"))
    with pytest.raises(OptionError, match="per_character=x: Input should be a valid number"):
        prepare_run(_request(config_only, tmp_path, backend=toy, backend_options="per_character=x"))
    with pytest.raises(OptionError, match="^model_args trust_remote_code=True: backend toy takes no model args$"):
        prepare_run(_request(config_only, tmp_path, backend=toy, model_args="trust_remote_code=True"))
    with pytest.raises(OptionError, match="'generation' is not an option of backend lm-eval-hf .its options: none"):
        prepare_run(_request(config_only, tmp_path, backend="lm-eval-hf", backend_options="generation=transformers"))
    with pytest.raises(OptionError, match="^batch_size auto:3: auto:N probes lm-eval's batch size again N times, wh"):
        prepare_run(_request(config_only, tmp_path, batch_size="auto:3"))  # an option that does not apply
    prepare_run(_request(config_only, tmp_path, backend="lm-eval-hf", batch_size="auto:3"))
    with pytest.raises(OptionError, match="^backend_options pack_tokens=0: give a positive number of tokens$"):
        prepare_run(_request(config_only, tmp_path, backend_options="pack_tokens=0"))
    prepared = prepare_run(_request(config_only, tmp_path, backend_options="generation=transformers,pack_tokens=512"))
    assert prepared.backend_options.model_dump() == {"pack_tokens": 512, "generation": GenerationEngine.TRANSFORMERS}
    assert not (tmp_path / "out").exists()


def test_a_backend_that_cannot_split_its_forwards_refuses_data_parallel(
    toy: str, config_only: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as accelerate launch / torchrun set it
    with pytest.raises(OptionError, match="^backend toy cannot run data-parallel"):
        prepare_run(_request(config_only, tmp_path, backend=toy))


def test_options_given_as_model_args_are_taken_once_with_a_deprecation_line(config_only: Path, tmp_path: Path):
    """Before 0.4 the shared-prefix backend's options were model args; they still work for one release."""
    prepared = prepare_run(_request(config_only, tmp_path, model_args="generation=transformers,pack_tokens=512"))
    assert prepared.model_args == {}
    assert prepared.backend_options.model_dump() == {"pack_tokens": 512, "generation": GenerationEngine.TRANSFORMERS}
    from evalsuite.errors import in_terms

    assert [in_terms(w) for w in prepared.warnings] == [
        "warning: model_args generation=transformers is deprecated (removed in evalsuite 0.5): give backend_options "
        "generation=transformers",
        "warning: model_args pack_tokens=512 is deprecated (removed in evalsuite 0.5): give backend_options "
        "pack_tokens=512",
    ]
    with pytest.raises(OptionError, match="both set generation"):
        prepare_run(_request(config_only, tmp_path, model_args="generation=evalsuite",
                             backend_options="generation=transformers"))  # fmt: skip


def test_hflms_model_type_is_not_the_shared_prefix_backend(config_only: Path, tmp_path: Path):
    """HFLM's own `backend` argument (causal or seq2seq) used to pass, silently turning packing off."""
    with pytest.raises(OptionError, match="backend=causal: HFLM's model type; the shared-prefix backend runs causal"):
        prepare_run(_request(config_only, tmp_path, model_args="backend=causal"))
    prepare_run(_request(config_only, tmp_path, backend="lm-eval-hf", model_args="backend=causal"))  # HFLM's own


def test_model_arg_values_reach_the_model_typed_as_lm_evals_command_line_types_them(
    config_only: Path, monkeypatch: pytest.MonkeyPatch
):
    """`trust_remote_code=False` used to reach HFLM as the string "False", which is true."""
    from evalsuite.engine.backends.shared_prefix import SharedPrefixLM
    from evalsuite.model import LoadableModel, parse_model_ref
    from evalsuite.settings import BatchSize, Dtype

    seen: dict[str, object] = {}

    def capture(arguments: dict[str, object], additional: dict[str, object]) -> None:
        seen.update(arguments, **additional)
        raise OSError("captured, not loaded")

    monkeypatch.setattr(SharedPrefixLM, "create_from_arg_obj", capture)
    backend = get_backend("shared-prefix")
    settings = engine.ModelSettings(
        Dtype.FLOAT32, "cpu", BatchSize(4), False, backend=backend.name,
        backend_options=backend.parse_options({"pack_tokens": "256"}),
        model_args={"trust_remote_code": "False", "max_length": "512"},
    )  # fmt: skip
    ref = parse_model_ref(str(config_only))
    with pytest.raises(Exception, match="captured, not loaded"):
        backend.load(LoadableModel(ref, ref.location, None), settings)
    assert seen["trust_remote_code"] is False and seen["max_length"] == 512
    assert (seen["pack_tokens"], seen["generation"], seen["batch_size"]) == (256, "evalsuite", 4)


def test_the_contamination_check_takes_its_scorer_and_model_args_from_the_registry(config_only: Path, tmp_path):
    request = ContaminationRequest(model=str(config_only), reference=str(config_only), data_dir=SAMPLE_DATA,
                                   tasks=["arc"], items=1, neighbours=2, output_dir=tmp_path / "out",
                                   model_args="trust_remote_code=True")  # fmt: skip
    prepared = prepare_check(request)
    assert prepared.scorer is get_backend("shared-prefix") and prepared.request.model_args == {
        "trust_remote_code": "True"
    }
    with pytest.raises(OptionError, match="max_length=5: the contamination check loads the model with from_pretra"):
        prepare_check(request.model_copy(update={"model_args": {"max_length": "5"}}))


def test_the_command_line_takes_backend_options_and_names_them_in_errors(config_only: Path, tmp_path: Path):
    args = ["run", str(config_only), "--data-dir", str(SAMPLE_DATA), "--output-dir", str(tmp_path / "out")]
    result = cli.invoke(app, [*args, "--backend-options", "generation=vllm"])
    assert result.exit_code == 1
    assert result.stderr == "error: --backend-options generation=vllm: give evalsuite or transformers\n"
    result = cli.invoke(app, [*args, "--model-args", "generation=vllm"])  # the old spelling names its own flag
    assert result.stderr == "error: --model-args generation=vllm: give evalsuite or transformers\n"


def test_a_real_run_records_its_backend_and_its_generation_engine(real_run):
    outcome, messages = real_run
    settings = outcome.results.settings
    assert settings.backend == "shared-prefix"
    assert settings.backend_options == {"pack_tokens": 1024, "generation": "evalsuite"}
    assert "generation" not in settings.model_args and "pack_tokens" not in settings.model_args


def test_the_registry_reads_installed_entry_points_without_importing_them(
    toy_distribution: Path, monkeypatch: pytest.MonkeyPatch
):
    """A distribution's `evalsuite.backends` entry point is a backend name in any process that has it installed;
    reading the names imports nothing, and a built-in name is not taken over."""
    from evalsuite.engine import backends

    monkeypatch.syspath_prepend(str(toy_distribution))
    monkeypatch.setattr(backends, "_registry", dict(backends.BUILTIN))
    monkeypatch.setattr(backends, "_entry_points_read", False)
    assert engine.backend_names() == ["shared-prefix", "lm-eval-hf", "served", "toy"]
    assert backends._registry["toy"] == "evalsuite_toy:BACKEND" and "evalsuite_toy" not in sys.modules


@pytest.mark.subprocess
@pytest.mark.lm_eval
def test_a_backend_installed_as_a_distribution_runs_through_the_cli(
    toy_distribution: Path, config_only: Path, tmp_path: Path
):
    """`evalsuite run --backend toy` in a process of its own that has the toy distribution on its path, and no
    register_backend anywhere: found by its entry point (docs/backends-and-gpus.md)."""
    import os

    command = [str(Path(sys.executable).parent / "evalsuite"), "run", str(config_only), "--backend", "toy",
               "--backend-options", "per_character=-1", "--tasks", "arc", "--limit", "1", "--data-dir",
               str(SAMPLE_DATA), "--output-dir", str(tmp_path / "out")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(toy_distribution)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads(next((tmp_path / "out").glob("*/*/results.json")).read_text())
    assert (results["settings"]["backend"], results["settings"]["backend_options"]) == ("toy", {"per_character": -1.0})
    with pytest.raises(OptionError, match=r"^backend 'toy': choose shared-prefix or lm-eval-hf or served$"):
        get_backend("toy")  # this process does not have the distribution

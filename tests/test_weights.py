"""Precision (float16, bfloat16, 8bit, 4bit, GPTQ) and weight type (Original, Adapter, Delta): issue 35.

Fast: the checks a run makes before anything loads (one line each), the schema 3 -> 4 migration. Real stack
(SmolLM2 on the sample rows, 2 documents per task: TruthfulQA and Winogrande for the weight types, Winogrande for
the quantized runs; real peft, bitsandbytes and gptqmodel):
- a LoRA adapter made here with peft (random, non-zero weights): `--adapter` gives the merged model's numbers;
- a delta (a changed copy minus SmolLM2, its tied embeddings changed too): `--delta` gives the changed copy's;
- 8bit and 4bit through bitsandbytes' CPU path: values that differ from the float32 run's and equal a plain
  transformers forward of the same quantized model.
- GPTQ: SmolLM2 quantized here by gptqmodel (4 bits, groups of 64, on a few real rows as calibration), then run
  with the precision read from its config: values that differ from the float32 run's and equal a plain
  transformers forward of the same checkpoint.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REAL_RUN_BATCH_SIZE, REAL_RUN_LIMIT, SAMPLE_DATA, ChangedModels, LoraModels

from evalsuite.errors import EvalsuiteError, ModelRefError, OptionError
from evalsuite.model import ModelRef, ModelSource, resolve_weights
from evalsuite.model.weights import check_precision
from evalsuite.results.migrations import migrate
from evalsuite.settings import Dtype, Precision, WeightType

# The weight types' runs (adapter, delta): TruthfulQA's and Winogrande's short prompts; ARC's 25-shot ones (~970
# tokens a request) took ~7 s a run for the same check, log-likelihood by log-likelihood.
TASKS = ["truthfulqa", "winogrande"]
# The quantized runs' task, checked request by request against a plain transformers forward: Winogrande's few short
# requests (4 at --limit 2, 133-155 tokens each) against ARC's 8 of 940-990, which took the three quantized
# tests 150 s on one thread for the same check (measured, in float32's distance: 4bit 7.1, 8bit 1.3, GPTQ 3.5; a
# run that ignored the precision would be 0 from it and fail each test).
QUANTIZED_TASK = "winogrande"


# ---- fast: checks before anything loads ----


def _folder(tmp_path: Path, name: str, config: dict[str, Any] | None = None, tensors: dict | None = None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", **(config or {})}))
    if tensors is not None:  # a safetensors file's header, as the format lays it out (no data needed to read shapes)
        header = json.dumps({n: {"dtype": "F32", "shape": s, "data_offsets": [0, 0]} for n, s in tensors.items()})
        (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode())
    return folder


def _adapter(tmp_path: Path, base: str) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base, "peft_type": "LORA"}))
    return folder


def test_precision_names_are_the_leaderboards():
    assert [p.value for p in Precision] == ["float32", "float16", "bfloat16", "8bit", "4bit", "GPTQ"]
    assert Precision.parse("gptq") is Precision.GPTQ and Precision.parse("4BIT") is Precision.INT4
    with pytest.raises(OptionError, match=r"precision .int4.: choose float32, float16"):
        Precision.parse("int4")
    assert Precision.of_dtype(Dtype.BFLOAT16) is Precision.BFLOAT16 and Precision.INT8.dtype is None


def test_adapter_names_its_base_or_takes_model(tmp_path: Path):
    base = _folder(tmp_path, "SmolLM2-135M")
    adapter = _adapter(tmp_path, str(base))
    weights = resolve_weights(None, str(adapter), None)
    assert weights.type is WeightType.ADAPTER and weights.base.location == str(base)
    assert weights.evaluated.location == str(adapter)  # filed under the adapter, as the leaderboard filed them
    # the Hub id of the same model as MODEL agrees by name
    assert resolve_weights(str(base), str(adapter), None).base.location == str(base)


def test_adapter_on_another_base_is_one_line(tmp_path: Path):
    other = _folder(tmp_path, "Llama-2-7b")
    adapter = _adapter(tmp_path, "HuggingFaceTB/SmolLM2-135M")
    with pytest.raises(ModelRefError, match=r"was trained on HuggingFaceTB/SmolLM2-135M, not on MODEL .*Llama-2-7b"):
        resolve_weights(str(other), str(adapter), None)
    with pytest.raises(ModelRefError, match="no adapter_config.json there"):
        resolve_weights(None, str(other), None)
    with pytest.raises(OptionError, match="do not go together"):
        resolve_weights(str(other), str(adapter), str(other))


def _lora(adapter: Path, tensors: dict[str, list[int]]) -> None:
    """An adapter's safetensors header under PEFT's names (base_model.model.<module>.lora_A/B.weight)."""
    named = {f"base_model.model.{n}": {"dtype": "F32", "shape": s, "data_offsets": [0, 0]} for n, s in tensors.items()}
    header = json.dumps(named)
    (adapter / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode())


def test_an_adapter_whose_tensors_do_not_fit_the_base_is_one_line_before_loading(tmp_path: Path):
    """A LoRA trained on a model of another width, its config naming this base: PEFT's size mismatch (169 lines)
    after the model had loaded."""
    from typer.testing import CliRunner

    from evalsuite.cli import app

    q = "model.layers.0.self_attn.q_proj"
    base = _folder(tmp_path, "SmolLM2-135M", tensors={f"{q}.weight": [576, 576], "model.norm.weight": [576]})
    adapter = _adapter(tmp_path, str(base))
    _lora(adapter, {f"{q}.lora_A.weight": [4, 576], f"{q}.lora_B.weight": [576, 4]})
    assert resolve_weights(None, str(adapter), None).type is WeightType.ADAPTER  # fits
    _lora(adapter, {f"{q}.lora_A.weight": [4, 960], f"{q}.lora_B.weight": [960, 4]})  # trained on a 960-wide model
    says = (f"adapter {adapter}: tensor base_model.model.{q}.lora_A.weight is [4, 960] (input features 960), which "
            f"does not fit {q}.weight [576, 576] of the base {base}; the adapter was trained on another model: give "
            "its own base")  # fmt: skip
    with pytest.raises(ModelRefError) as raised:
        resolve_weights(None, str(adapter), None)
    assert str(raised.value) == says
    _lora(adapter, {f"{q}.lora_A.weight": [4, 576], f"{q}.lora_B.weight": [576, 4], "model.norm.weight": [960]})
    with pytest.raises(ModelRefError, match=r"model\.norm\.weight is \[960\], which does not fit model\.norm"):
        resolve_weights(None, str(adapter), None)  # a module saved whole (modules_to_save)
    _lora(adapter, {f"{q}.lora_A.weight": [4, 576], f"{q}.lora_B.weight": [960, 4]})
    with pytest.raises(ModelRefError, match=r"lora_B\.weight is \[960, 4\] \(output features 960\)"):
        resolve_weights(str(base), str(adapter), None)
    _lora(adapter, {f"{q}.lora_A.weight": [4, 960], f"{q}.lora_B.weight": [960, 4]})
    result = CliRunner().invoke(app, ["run", "--adapter", str(adapter), "--tasks", "arc", "--data-dir",
                                      str(SAMPLE_DATA), "--output-dir", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == f"error: --{says}\n"
    assert not (tmp_path / "out").exists()


def test_a_missing_base_says_which_option_or_config_named_it(tmp_path: Path):
    """A base model folder that is not there: the line names where its path came from (the adapter's config, or
    --delta), not only the path."""
    from typer.testing import CliRunner

    from evalsuite.cli import app

    adapter = _adapter(tmp_path, str(tmp_path / "gone-base"))
    says = (f"{tmp_path / 'gone-base'}: no such file or directory (the base model named by adapter {adapter}'s "
            "adapter_config.json; give the base model as MODEL)")  # fmt: skip
    with pytest.raises(ModelRefError, match=f"^{re.escape(says)}$"):
        resolve_weights(None, str(adapter), None)
    model = _folder(tmp_path, "model")
    with pytest.raises(ModelRefError, match=f"^delta {re.escape(str(tmp_path / 'gone'))}: no such file or directory$"):
        resolve_weights(str(model), None, str(tmp_path / "gone"))
    gone = tmp_path / "gone"
    for args, line in [
        (["--adapter", str(adapter)], "error: " + says.replace("named by adapter", "named by --adapter")),
        ([str(model), "--delta", str(gone)], f"error: --delta {gone}: no such file or directory"),
    ]:
        result = CliRunner().invoke(app, ["run", *args, "--tasks", "arc", "--data-dir", str(SAMPLE_DATA),
                                          "--output-dir", str(tmp_path / "out")])  # fmt: skip
        assert (result.exit_code, result.stderr) == (1, line + "\n")
        assert not (tmp_path / "out").exists()


def test_delta_whose_shapes_differ_is_one_line(tmp_path: Path):
    base = _folder(tmp_path, "base", tensors={"lm_head.weight": [10, 4], "model.norm.weight": [4]})
    good = _folder(tmp_path, "good", tensors={"lm_head.weight": [10, 4], "model.norm.weight": [4]})
    wrong = _folder(tmp_path, "wrong", tensors={"lm_head.weight": [12, 4], "model.norm.weight": [4]})
    short = _folder(tmp_path, "short", tensors={"lm_head.weight": [10, 4]})
    assert resolve_weights(str(good), None, str(base)).type is WeightType.DELTA
    with pytest.raises(ModelRefError, match=r"tensor lm_head.weight is \[12, 4\] in MODEL .* but \[10, 4\] in the"):
        resolve_weights(str(wrong), None, str(base))
    with pytest.raises(ModelRefError, match="has no tensor model.norm.weight"):
        resolve_weights(str(short), None, str(base))


def test_a_checkpoints_own_quantization_decides(tmp_path: Path):
    gptq = _folder(tmp_path, "gptq", {"quantization_config": {"quant_method": "gptq", "bits": 4}})
    plain = _folder(tmp_path, "plain")
    awq = _folder(tmp_path, "awq", {"quantization_config": {"quant_method": "awq"}})
    gptq_ref, plain_ref = ModelRef(ModelSource.LOCAL, str(gptq)), ModelRef(ModelSource.LOCAL, str(plain))
    assert check_precision(None, gptq_ref) is Precision.GPTQ  # taken from the checkpoint
    with pytest.raises(OptionError, match=r"precision 4bit: .* is a GPTQ checkpoint .*give (--)?precision GPTQ"):
        check_precision(Precision.INT4, gptq_ref)
    with pytest.raises(OptionError, match="is not a GPTQ checkpoint"):
        check_precision(Precision.GPTQ, plain_ref)
    with pytest.raises(ModelRefError, match="quantized with awq"):
        check_precision(None, ModelRef(ModelSource.LOCAL, str(awq)))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"precision": "float16", "dtype": "bfloat16"}, "loads the weights in float16; drop dtype bfloat16"),
        ({"precision": "4bit", "dtype": "auto"}, "give float32, bfloat16 or float16"),
        ({"precision": "8bit", "device": "mps"}, "bitsandbytes runs on cpu and cuda, not mps"),
    ],
)
def test_precision_settings_that_cannot_run_are_one_line(tmp_path: Path, options: dict[str, str], expected: str):
    from evalsuite.run import RunRequest, prepare_run

    model = _folder(tmp_path, "m")
    request = RunRequest(model=str(model), data_dir=SAMPLE_DATA, output_dir=tmp_path / "out", **options)
    with pytest.raises(EvalsuiteError, match=expected):
        prepare_run(request, here=False)
    assert not (tmp_path / "out").exists()


def test_quantizing_without_bitsandbytes_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import importlib.util

    from evalsuite.run import RunRequest, prepare_run

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name))
    request = RunRequest(model=str(_folder(tmp_path, "m")), precision="8bit", data_dir=SAMPLE_DATA, output_dir=tmp_path)
    with pytest.raises(OptionError, match=r"needs bitsandbytes, which is not installed: pip install 'evalsuite\[quant"):
        prepare_run(request)


def test_a_quantized_precision_under_a_data_parallel_launch_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from evalsuite.run import RunRequest, prepare_run

    monkeypatch.setenv("WORLD_SIZE", "2")  # as accelerate launch or torchrun sets it in each process
    request = RunRequest(model=str(_folder(tmp_path, "m")), precision="4bit", data_dir=SAMPLE_DATA,
                         output_dir=tmp_path / "out")  # fmt: skip
    with pytest.raises(OptionError, match="4bit: a quantized model is not split over processes; run it in one"):
        prepare_run(request)
    assert not (tmp_path / "out").exists()


def test_gptq_without_its_backend_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import importlib.util

    from evalsuite.run import RunRequest, prepare_run

    real = importlib.util.find_spec
    hidden = {"gptqmodel", "optimum"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name))
    gptq = _folder(tmp_path, "gptq", {"quantization_config": {"quant_method": "gptq", "bits": 4}})
    request = RunRequest(model=str(gptq), data_dir=SAMPLE_DATA, output_dir=tmp_path / "out")
    with pytest.raises(OptionError, match=r"GPTQ needs gptqmodel and optimum, which are not installed: pip install"):
        prepare_run(request)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("status", "gated", "expected"),
    [
        (401, True, r"^org/adapter is gated: accept its terms on the Hub and log in \(`hf auth login`\) with that"),
        (401, False, r"^the Hub refused access to org/adapter \(401\): check the token \(HF_TOKEN or `hf auth"),
        (500, False, r"^cannot fetch org/adapter: HfHubHTTPError: 500 Server Error$"),
    ],
    ids=["gated", "401", "500"],
)
def test_a_hub_adapter_the_hub_refuses_says_why_in_one_line(
    status: int, gated: bool, expected: str, monkeypatch: pytest.MonkeyPatch
):
    """An adapter or delta on the Hub is fetched with huggingface_hub's snapshot_download before the model loads
    (engine/backends/hf.local_folder): a gated repo or a refused token is model/hub.py's line, which says what to
    do; any other failure stays a RunError naming the repo."""
    import httpx2 as httpx  # what huggingface_hub builds its errors on
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    from evalsuite.engine.backends.hf import local_folder
    from evalsuite.errors import HubError, RunError
    from evalsuite.model import parse_model_ref

    response = httpx.Response(status, request=httpx.Request("GET", "http://hub/api/models/org/adapter/revision/v1"))
    error_class = GatedRepoError if gated else HfHubHTTPError
    asked = []

    def refused(repo_id: str, revision: str | None = None) -> str:
        asked.append((repo_id, revision))
        raise error_class(f"{status} Server Error" if status >= 500 else "Access restricted.", response=response)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refused)
    with pytest.raises(HubError if status < 500 else RunError, match=expected) as raised:
        local_folder(parse_model_ref("org/adapter@v1"))
    assert asked == [("org/adapter", "v1")] and isinstance(raised.value.__cause__, error_class)


def test_schema_3_files_read_as_original_at_their_dtype():
    raw = {"schema_version": 3, "model": {"dtype": "bfloat16"}, "settings": {}, "tasks": []}
    migrated = migrate(raw)
    assert migrated["model"]["precision"] == "bfloat16" and migrated["model"]["weight_type"] == "Original"


def _quantized_copy(folder: Path, precision: str = "4bit", **model: Any) -> Path:
    """The Sakura results fixture (SOURCES.md there) as a run of the same model at another precision/weights."""
    from conftest import SAKURA

    data = json.loads((SAKURA / "results.json").read_text())
    data = migrate(data)  # to the current schema (it was written before precisions)
    data["model"] |= {"precision": precision, "dtype": "float32", **model}
    target = folder / SAKURA.parent.name / f"{SAKURA.name[:-4]}{precision[:1]}{len(model):03d}"
    target.mkdir(parents=True)
    (target / "results.json").write_text(json.dumps(data, default=str))
    return target


def test_tables_cards_and_compare_say_the_precision_and_weights(tmp_path: Path):
    from conftest import SAKURA
    from typer.testing import CliRunner

    from evalsuite.cli import app

    runner = CliRunner()
    quantized = _quantized_copy(tmp_path)
    board = runner.invoke(app, ["leaderboard", str(tmp_path), "--format", "markdown"])
    assert board.exit_code == 0, board.output
    assert "kyujinpy/Sakura-SOLAR-Instruct (4bit)" in board.stdout  # beside the name, as peers' precisions are
    assert "Sakura-SOLAR-Instruct |" not in board.stdout.replace("**", "")
    card = runner.invoke(app, ["card", "render", str(quantized), "--format", "markdown"])
    assert "(4bit, computing in float32, batch size" in card.stdout
    notes = runner.invoke(app, ["card", "render", str(quantized), "--format", "eval-results"]).stdout
    assert notes.count("precision 4bit") == notes.count("  notes:") >= 1  # every entry
    index = yaml.safe_load(runner.invoke(app, ["card", "render", str(quantized), "--format", "model-index"]).stdout)
    names = [r["metrics"][0].get("name") for r in index["model-index"][0]["results"]]
    assert names == ["normalized accuracy (4bit)", "normalized accuracy (4bit)", "accuracy (4bit)", "mc2 (4bit)",
                     "accuracy (4bit)", "accuracy (4bit)"]  # fmt: skip
    full = yaml.safe_load(runner.invoke(app, ["card", "render", str(SAKURA), "--format", "model-index"]).stdout)
    assert "(" not in str([r["metrics"][0].get("name") for r in full["model-index"][0]["results"]])  # bfloat16
    compared = runner.invoke(app, ["compare", str(SAKURA), str(quantized)])
    assert "precisions differ (bfloat16 vs 4bit): other weights, not only other numerics" in compared.output
    history = runner.invoke(app, ["history", "kyujinpy/Sakura-SOLAR-Instruct", str(tmp_path)]).stdout
    assert "| 4bit, computing in float32 |" in history
    _quantized_copy(tmp_path, "float32")  # the same model at a second precision: each row says its own
    shown = runner.invoke(app, ["leaderboard", str(tmp_path), "--format", "markdown"]).stdout
    assert "Sakura-SOLAR-Instruct (4bit)" in shown and "Sakura-SOLAR-Instruct (float32)" in shown, shown
    adapter = _quantized_copy(tmp_path, "bfloat16", weight_type="Adapter", base_model="upstage/SOLAR-10.7B-v1.0")
    compared = runner.invoke(app, ["compare", str(SAKURA), str(adapter)])
    assert "weights differ (bfloat16 vs bfloat16, adapter over upstage/SOLAR-10.7B-v1.0)" in compared.output


def test_leaderboard_json_and_html_say_the_precision_and_weights_as_markdown_does(tmp_path: Path):
    """JSON had no precision or weight type (an adapter row was `{"model": ..., "dtype": "float32"}`, a 4bit row
    put 4bit in `dtype`), and HTML dropped the "(Adapter)" markdown shows."""
    from typer.testing import CliRunner

    from evalsuite.cli import app

    runner = CliRunner()
    _quantized_copy(tmp_path)
    _quantized_copy(tmp_path, "float32", id="lora", weight_type="Adapter", base_model="upstage/SOLAR-10.7B-v1.0")
    listed = json.loads(runner.invoke(app, ["leaderboard", str(tmp_path), "--format", "json"]).stdout)["rows"]
    shown = {row["model"]: {k: row[k] for k in ("dtype", "precision", "weight_type", "base_model")} for row in listed}
    assert shown == {
        "kyujinpy/Sakura-SOLAR-Instruct": {"dtype": "4bit", "precision": "4bit", "weight_type": "Original",
                                           "base_model": None},
        "lora": {"dtype": "float32", "precision": "float32", "weight_type": "Adapter",
                 "base_model": "upstage/SOLAR-10.7B-v1.0"},
    }  # fmt: skip
    markdown = runner.invoke(app, ["leaderboard", str(tmp_path), "--format", "markdown"]).stdout
    html = runner.invoke(app, ["leaderboard", str(tmp_path), "--format", "html"]).stdout
    for label in ("kyujinpy/Sakura-SOLAR-Instruct (4bit)", "lora (Adapter)"):
        assert label in markdown and label in html, label


# ---- real stack ----


def _run(tmp_path: Path, name: str, model: str | None, **options: Any):
    from evalsuite.run import RunRequest, run_suite

    request = RunRequest(
        model=model, tasks=TASKS, limit=REAL_RUN_LIMIT, batch_size=REAL_RUN_BATCH_SIZE, data_dir=SAMPLE_DATA,
        output_dir=tmp_path / name, log_samples=True, **options,
    )  # fmt: skip
    outcome = run_suite(request)
    assert outcome is not None
    return outcome


def _loglikelihoods(run_dir: Path, tasks: tuple[str, ...] = tuple(TASKS)) -> dict[tuple[str, int, int], float]:
    """(lm-eval task, doc_id, request index) -> the log-likelihood lm-eval logged, for the lm-eval tasks named."""
    found = {}
    for path in sorted((run_dir / "lm_eval").glob("samples_*.jsonl")):
        task = path.stem.removeprefix("samples_")
        if not task.startswith(tasks):
            continue
        for line in path.read_text().splitlines():
            sample = json.loads(line)
            for index, response in enumerate(sample["resps"]):
                found[(task, sample["doc_id"], index)] = float(response[0][0])
    return found


def _values(outcome) -> dict[str, float]:
    return {t.key: t.value for t in outcome.results.tasks}


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and a
    return max(abs(a[k] - b[k]) for k in a)


def _of_base(real_run, ours: dict) -> dict:
    """The shared real run's log-likelihoods (SmolLM2 unchanged, float32) of the same requests."""
    tasks = tuple({task for task, _, _ in ours})
    return {k: v for k, v in _loglikelihoods(real_run[0].run_dir, tasks).items() if k in ours}


def test_adapter_equals_the_merged_model(model_folder: str, real_run, lora: LoraModels, tmp_path: Path):
    with_adapter = _run(tmp_path, "adapter-run", None, adapter=str(lora.adapter))  # base from its config
    whole = _run(tmp_path, "merged-run", str(lora.merged))
    model_info = with_adapter.results.model
    expected = (WeightType.ADAPTER, Path(model_folder).name, "adapter")
    assert (model_info.weight_type, model_info.base_model, model_info.id) == expected
    assert with_adapter.results.settings.model_args["peft"] == str(lora.adapter)
    ours, merged_lls = _loglikelihoods(with_adapter.run_dir), _loglikelihoods(whole.run_dir)
    print(f"adapter vs merged: {_max_difference(ours, merged_lls):.2e}")
    assert _max_difference(ours, merged_lls) < 1e-3  # the adapter ran: unmerged and merged differ by float rounding
    assert _max_difference(ours, _of_base(real_run, ours)) > 1e-2  # and it changed the model
    assert _values(with_adapter) == pytest.approx(_values(whole), abs=1e-6)


def test_delta_equals_the_changed_model(
    model_folder: str, real_run, changed: ChangedModels, changed_run, tmp_path: Path
):
    with_delta = _run(tmp_path, "delta-run", str(changed.delta), delta=model_folder)
    whole = changed_run  # the changed model's own run (of these tasks and Winogrande)
    info = with_delta.results.model
    assert (info.weight_type, info.id, info.base_model) == (WeightType.DELTA, "delta", Path(model_folder).name)
    ours = _loglikelihoods(with_delta.run_dir)
    print(f"delta vs changed: {_max_difference(ours, _loglikelihoods(whole.run_dir)):.2e}")
    assert _max_difference(ours, _loglikelihoods(whole.run_dir)) < 1e-3
    assert _max_difference(ours, _of_base(real_run, ours)) > 1e-2
    assert _values(with_delta) == pytest.approx({k: v for k, v in _values(whole).items() if k in TASKS}, abs=1e-6)


def _transformers_loglikelihoods(model_folder: str, quantization: Any, run_dir: Path) -> dict:
    """The same requests' log-likelihoods from a plain transformers forward of the model quantized the same way
    (HFLM's encoding: context and continuation encoded together, no special tokens)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # a GPTQ checkpoint brings its own config (an explicit None would replace it: its weights load as missing)
    extra = {} if quantization is None else {"quantization_config": quantization}
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32, **extra)
    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    found = {}
    for path in sorted((run_dir / "lm_eval").glob(f"samples_{QUANTIZED_TASK}*.jsonl")):
        task = path.stem.removeprefix("samples_")
        for line in path.read_text().splitlines():
            sample = json.loads(line)
            for index, argument in enumerate(sample["arguments"]):
                context, continuation = argument[0], argument[1]
                whole = tokenizer(context + continuation, add_special_tokens=False).input_ids
                context_ids = tokenizer(context, add_special_tokens=False).input_ids
                target = whole[len(context_ids) :]
                with torch.no_grad():
                    logits = model(torch.tensor([whole[:-1]])).logits[0, -len(target) :].float()
                found[(task, sample["doc_id"], index)] = float(
                    torch.log_softmax(logits, -1).gather(-1, torch.tensor(target)[:, None]).sum()
                )
    return found


# LLM.int8() keeps the input columns that hold an outlier anywhere in the batch in 16 bits, so its numbers depend
# on what shares a forward pass: 8bit is checked through lm-eval's HFLM one request per forward, as the plain
# forward below runs them; 4bit runs through the default backend.
@pytest.mark.parametrize(
    ("precision", "backend", "batch_size"), [(Precision.INT8, "lm-eval-hf", 1), (Precision.INT4, "shared-prefix", 8)]
)
def test_bitsandbytes_quantization_is_what_ran(
    model_folder: str, real_run, tmp_path: Path, precision: Precision, backend: str, batch_size: int
):
    import torch
    from transformers import BitsAndBytesConfig

    from evalsuite.run import RunRequest, run_suite

    request = RunRequest(
        model=model_folder, tasks=[QUANTIZED_TASK], limit=REAL_RUN_LIMIT, batch_size=batch_size, data_dir=SAMPLE_DATA,
        output_dir=tmp_path / "q", log_samples=True, precision=precision.value, backend=backend,
    )  # fmt: skip
    quantized = run_suite(request)
    assert quantized is not None
    assert quantized.results.model.precision is precision
    ours = _loglikelihoods(quantized.run_dir, (QUANTIZED_TASK,))
    config = (
        BitsAndBytesConfig(load_in_8bit=True)
        if precision is Precision.INT8
        else BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)
    )
    plain = _transformers_loglikelihoods(model_folder, config, quantized.run_dir)
    full = {k: v for k, v in _of_base(real_run, ours).items() if k in ours}
    print(f"{precision}: vs transformers {_max_difference(ours, plain):.2e}, float32 {_max_difference(ours, full):.2e}")
    # the quantized model's numbers, not the float32 model's: one request per forward gives the plain forward's
    # exactly; packed rows (shared-prefix) take bitsandbytes' CPU kernels for other shapes (measured on Winogrande:
    # 4bit 0.029 apart, against 7.1 from float32; 8bit 0 apart, against 1.3)
    bound = 1e-3 if batch_size == 1 else _max_difference(ours, full) / 10
    assert _max_difference(ours, plain) < bound
    assert _max_difference(ours, full) > 0.5


@pytest.fixture(scope="module")
def gptq_folder(model_folder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 quantized by gptqmodel on CPU: 4 bits, groups of 64 (its widths, 576 and 1536, are not multiples of
    the usual 128, which the CPU kernel needs), calibrated on ARC questions of the sample rows."""
    from evalsuite.engine.compat import prepare_gptqmodel

    prepare_gptqmodel()  # its import would point this process's Hugging Face caches elsewhere
    from gptqmodel import GPTQModel, QuantizeConfig

    rows = [json.loads(line) for line in (SAMPLE_DATA / "arc_challenge" / "train.jsonl").read_text().splitlines()]
    calibration = [f"Question: {row['question']}\nAnswer: {row['choices']['text'][0]}" for row in rows[:16]]
    work = tmp_path_factory.mktemp("gptq")
    folder = work / "smollm2-gptq"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GPTQMODEL_CPU_WORKERS", "2")  # its default on 2 cores (1) is below what its loader asks for
        patch.chdir(work)  # gptqmodel writes its quantization log to ./logs
        model = GPTQModel.load(model_folder, QuantizeConfig(bits=4, group_size=64), device="cpu")
        model.quantize(calibration, batch_size=1)
        model.save(str(folder))
    return folder


def test_gptq_quantization_is_what_ran(gptq_folder: Path, real_run, tmp_path: Path):
    from evalsuite.run import RunRequest, run_suite

    config = json.loads((gptq_folder / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "gptq"
    request = RunRequest(
        model=str(gptq_folder), tasks=[QUANTIZED_TASK], limit=REAL_RUN_LIMIT, batch_size=REAL_RUN_BATCH_SIZE,
        data_dir=SAMPLE_DATA, output_dir=tmp_path / "gptq", log_samples=True,
    )  # fmt: skip
    quantized = run_suite(request)
    assert quantized is not None
    assert quantized.results.model.precision is Precision.GPTQ  # read from the checkpoint
    ours = _loglikelihoods(quantized.run_dir, (QUANTIZED_TASK,))
    plain = _transformers_loglikelihoods(str(gptq_folder), None, quantized.run_dir)
    full = _of_base(real_run, ours)
    print(f"GPTQ: vs transformers {_max_difference(ours, plain):.2e}, float32 {_max_difference(ours, full):.2e}")
    assert _max_difference(ours, plain) < _max_difference(ours, full) / 10
    assert _max_difference(ours, full) > 0.1

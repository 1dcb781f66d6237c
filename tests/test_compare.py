"""`evalsuite compare`: significance-aware verdicts, comparability, exit codes, formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, SAKURA
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.cli._app import error_line
from evalsuite.errors import OptionError
from evalsuite.results import SCHEMA_VERSION, Run, read_results, read_run
from evalsuite.results.lm_eval_files import LM_EVAL_DIR
from evalsuite.track.compare import NotComparableError, Verdict, compare_runs

runner = CliRunner()
BASE = read_results(SAKURA)


def _derived(raw: dict) -> dict:
    """What a results file derives from its tasks, recomputed after a test edited them (files that disagree are
    refused on reading)."""
    complete = raw["status"] == "complete"
    raw["h6_average"] = sum(t["value"] for t in raw["tasks"]) / len(raw["tasks"]) if complete else None
    raw["leaderboard_comparable"] = complete and all(t["leaderboard_comparable"] for t in raw["tasks"])
    return raw


def _variant(tmp_path: Path, name: str, values: dict[str, float] | None = None, **changes) -> Path:
    """A copy of the Sakura run with some task values (and top-level fields) changed."""
    raw = json.loads((SAKURA / "results.json").read_text())
    for task in raw["tasks"]:
        if values and task["key"] in values:
            task["value"] = values[task["key"]]
    raw |= changes
    folder = tmp_path / name
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(_derived(raw)))
    return folder


def test_identical_runs_are_unchanged(tmp_path: Path):
    result = runner.invoke(app, ["compare", str(SAKURA), str(_variant(tmp_path, "same"))])
    assert result.exit_code == 0, result.output
    assert "no regression (alpha 0.05, max drop 0.0 points)" in result.stdout
    assert result.stdout.startswith(f"baseline:  kyujinpy/Sakura-SOLAR-Instruct run 20240101T000000Z-0000 ({SAKURA})\n")


def test_welch_test_from_stderr_finds_a_large_drop(tmp_path: Path):
    # stored stderr is 0.01 for every task: a 5-point drop is t = 3.54 (1319 documents a side: 2636 degrees of
    # freedom, the normal limit: p = 0.0004)
    cand = _variant(tmp_path, "worse", {"gsm8k": 0.6020, "arc": 0.7089})
    result = runner.invoke(app, ["compare", str(SAKURA), str(cand), "--format", "json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    by_key = {t["key"]: t for t in report["tasks"]}
    assert by_key["gsm8k"]["verdict"] == "regressed" and by_key["gsm8k"]["test"] == "welch-t"
    assert by_key["gsm8k"]["delta_points"] == pytest.approx(-5.0)
    assert by_key["gsm8k"]["p_value"] == pytest.approx(0.000414, rel=1e-2)  # z would give 0.000407
    assert by_key["arc"]["verdict"] == "unchanged"  # -1 point, p = 0.48


def test_max_drop_tolerates_small_significant_drops(tmp_path: Path):
    cand = _variant(tmp_path, "worse", {"gsm8k": 0.6020})
    assert runner.invoke(app, ["compare", str(SAKURA), str(cand), "--max-drop", "5.5"]).exit_code == 0
    assert runner.invoke(app, ["compare", str(SAKURA), str(cand), "--max-drop", "4.5"]).exit_code == 1


def test_improvement_is_not_a_regression(tmp_path: Path):
    cand = _variant(tmp_path, "better", {"mmlu": 0.7133})
    result = runner.invoke(app, ["compare", str(SAKURA), str(cand), "--format", "markdown"])
    assert result.exit_code == 0
    assert result.stdout.startswith("### evalsuite compare: no regression")
    assert "| MMLU (5-Shot)" in result.stdout and "improved" in result.stdout


def _with_samples(tmp_path: Path, name: str, correct: list[int]) -> Path:
    """A Winogrande-only run whose samples file holds one 0/1 score per document."""
    raw = json.loads((SAKURA / "results.json").read_text())
    raw["tasks"] = [t for t in raw["tasks"] if t["key"] == "winogrande"]
    task = raw["tasks"][0]
    task["lm_eval_tasks"] = ["winogrande"]
    task["value"] = sum(correct) / len(correct)
    task["documents"] = len(correct)
    raw |= {"status": "partial", "partial_reasons": ["x"], "h6_average": None}
    folder = tmp_path / name
    (folder / LM_EVAL_DIR).mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(_derived(raw)))
    lines = [
        json.dumps({"doc_id": i, "doc_hash": f"h{i}", "filter": "none", "acc": float(c)}) for i, c in enumerate(correct)
    ]
    (folder / LM_EVAL_DIR / "samples_winogrande.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_paired_mcnemar_uses_only_discordant_documents(tmp_path: Path):
    base = [1] * 30 + [0] * 10
    worse = [0] * 8 + [1] * 22 + [0] * 10  # 8 documents flipped to wrong, none to right
    a, b = _with_samples(tmp_path, "a", base), _with_samples(tmp_path, "b", worse)
    comparison = compare_runs(read_run(a), read_run(b))
    (task,) = comparison.tasks
    assert task.test == "mcnemar" and task.p_value == pytest.approx(2 * 0.5**8)
    assert task.verdict is Verdict.REGRESSED
    # the same 8 flips, balanced by 6 flips the other way: not significant
    mixed = [0] * 8 + [1] * 22 + [1] * 6 + [0] * 4
    c = _with_samples(tmp_path, "c", mixed)
    (task,) = compare_runs(read_run(a), read_run(c)).tasks
    assert task.verdict is Verdict.UNCHANGED and task.p_value == pytest.approx(0.79, abs=0.01)


def test_samples_of_different_documents_are_refused(tmp_path: Path):
    a = _with_samples(tmp_path, "a", [1, 0, 1, 1])
    b = _with_samples(tmp_path, "b", [1, 0, 1, 1])
    path = b / LM_EVAL_DIR / "samples_winogrande.jsonl"
    path.write_text(path.read_text().replace('"h3"', '"other"'))
    with pytest.raises(NotComparableError, match="different documents"):
        compare_runs(read_run(a), read_run(b))


def _refused(args: list[str], expected: str) -> None:
    result = runner.invoke(app, ["compare", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert result.stdout == ""


def test_full_against_partial_is_refused(tmp_path: Path):
    partial = _with_samples(tmp_path, "p", [1, 0])
    _refused([str(SAKURA), str(partial)], "one run is complete, the other partial")


def test_different_data_or_protocol_is_refused(tmp_path: Path):
    raw = json.loads((SAKURA / "results.json").read_text())
    raw["tasks"][0]["num_fewshot"] = 0
    raw["tasks"][1]["data_files"] = [{"split": "validation", "path": "/x", "sha256": "ab" * 32, "rows": 10042}]
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(raw))
    _refused([str(SAKURA), str(folder)], "arc: protocol differs (25-shot acc_norm,none vs 0-shot acc_norm,none)")
    _refused([str(SAKURA), str(folder)], "hellaswag: data differs (sha256 of validation)")


def test_different_schema_versions_are_refused(tmp_path: Path):
    newer = _variant(tmp_path, "newer", schema_version=SCHEMA_VERSION + 1)
    _refused([str(SAKURA), str(newer)], "written by a newer evalsuite")


def test_different_protocols_are_refused(tmp_path: Path):
    raw = json.loads((SAKURA / "results.json").read_text())
    lm_eval = _variant(tmp_path, "lm-eval", settings=raw["settings"] | {"protocol": "lm-eval"})
    _refused([str(SAKURA), str(lm_eval)], "protocols differ (leaderboard-v1 vs lm-eval): the model was asked")
    # a schema-1 run asked lm-eval's requests: it is read as such, so it does not pass as the leaderboard's
    schema_1 = FIXTURES / "results-schema-v1" / SAKURA.parent.name / SAKURA.name
    _refused([str(SAKURA), str(schema_1)], "protocols differ (leaderboard-v1 vs lm-eval)")


def test_different_prompts_on_the_same_documents_are_compared_with_a_warning(tmp_path: Path):
    def fingerprinted(name: str, digest: str) -> Path:
        raw = json.loads((SAKURA / "results.json").read_text())
        for task in raw["tasks"]:
            task["prompt_sha256"] = digest if task["key"] == "arc" else "f" * 64
        return _variant(tmp_path, name, tasks=raw["tasks"])

    a, b = fingerprinted("a", "a" * 64), fingerprinted("b", "b" * 64)
    comparison = compare_runs(read_run(a), read_run(b))
    assert comparison.warnings == [
        "arc: the prompts differ on the same documents (prompt fingerprints aaaaaaaaaaaa vs bbbbbbbbbbbb): another "
        "lm-eval version or seed asked other things"
    ]
    assert compare_runs(read_run(a), read_run(a)).warnings == []


def test_missing_run_is_an_error(tmp_path: Path):
    _refused([str(SAKURA), str(tmp_path / "nope")], "cannot read")


def test_bad_thresholds(tmp_path: Path):
    _refused([str(SAKURA), str(SAKURA), "--alpha", "1.5"], "--alpha 1.5")
    _refused([str(SAKURA), str(SAKURA), "--max-drop", "-1"], "--max-drop -1.0")


@pytest.mark.parametrize(
    ("alpha", "max_drop", "message"),
    [
        (1.5, 0.0, "alpha 1.5: give a level between 0 and 1"),
        (0.0, 0.0, "alpha 0.0: give a level between 0 and 1"),
        (0.05, -1.0, "max_drop -1.0: give a number of points >= 0"),
    ],
)
def test_compare_runs_refuses_thresholds_that_are_no_setting(alpha: float, max_drop: float, message: str):
    """The library checks its own settings (the CLI's --alpha/--max-drop lines are its error, in flags)."""
    run = read_run(SAKURA)
    with pytest.raises(OptionError) as raised:
        compare_runs(run, run, alpha, max_drop)
    assert str(raised.value) == message
    assert error_line(raised.value) == f"error: --{message.replace('max_drop', 'max-drop')}"


def test_results_json_path_or_folder(tmp_path: Path):
    copy = tmp_path / "copy"
    shutil.copytree(SAKURA, copy)
    assert runner.invoke(app, ["compare", str(SAKURA / "results.json"), str(copy)]).exit_code == 0


def test_different_presets_or_subsets_are_refused(tmp_path: Path):
    raw = json.loads((SAKURA / "results.json").read_text())
    raw["settings"]["preset"] = "nightly"
    a = tmp_path / "a"
    a.mkdir()
    (a / "results.json").write_text(json.dumps(raw))
    _refused([str(SAKURA), str(a)], "presets differ (None vs nightly)")
    raw["tasks"][2]["subset_sha256"] = "0" * 64
    b = tmp_path / "b"
    b.mkdir()
    (b / "results.json").write_text(json.dumps(raw))
    _refused([str(a), str(b)], "mmlu: document subsets differ")


def test_few_shot_seed_warns_only_where_it_picks_the_exemplars(tmp_path: Path):
    raw = json.loads((SAKURA / "results.json").read_text())
    reseeded = raw["settings"] | {"seeds": raw["settings"]["seeds"] | {"fewshot": 42}}
    # leaderboard-v1: exemplars follow the leaderboard's walk, whatever the few-shot seed
    v1 = _variant(tmp_path, "v1", settings=reseeded)
    assert compare_runs(Run(SAKURA, BASE), read_run(v1)).warnings == []
    lm_a = _variant(tmp_path, "lm-a", settings=raw["settings"] | {"protocol": "lm-eval"})
    lm_b = _variant(tmp_path, "lm-b", settings=reseeded | {"protocol": "lm-eval"})
    assert compare_runs(read_run(lm_a), read_run(lm_b)).warnings == [
        "seeds differ (different few-shot exemplars)"
    ]

"""`evalsuite compare leaderboard:MODEL RUN`: a run against the leaderboard's own result for the same model,
from the real results files in tests/fixtures/archive/results (SOURCES.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES, SAKURA
from typer.testing import CliRunner

from evalsuite.archive import TASK_KEYS, PublishedResult, read_results_files
from evalsuite.cli import app

PUBLISHED = FIXTURES / "archive" / "results"
YI = "HenryJJ/Instruct_Yi-6B_Dolly15K"
runner = CliRunner()


def _published(model: str = YI) -> PublishedResult:
    return read_results_files(sorted((PUBLISHED / model).glob("results_*.json")), model)


def _run_equal_to(published: PublishedResult, folder: Path, **moved: float) -> Path:
    """The Sakura results fixture made a complete run of `published.model` at the leaderboard's commit and
    dtype, every task (and MMLU subject) at the published value, except `moved` tasks shifted by points."""
    data = json.loads((SAKURA / "results.json").read_text())
    data["model"] |= {"id": published.model, "location": published.model, "sha": published.sha,
                      "dtype": published.precision}  # fmt: skip
    for task in data["tasks"]:
        score = published.tasks[task["key"]]
        task["value"] = score.value + moved.get(task["key"], 0.0) / 100
        task["stderr"] = score.stderr
        if task["key"] == "mmlu":
            task["subtasks"] = [
                {"lm_eval_task": f"mmlu_{subject}", "value": s.value + moved.get(subject, 0.0) / 100,
                 "stderr": s.stderr, "documents": 100}
                for subject, s in published.mmlu_subjects.items()
            ]  # fmt: skip
            task["value"] = sum(sub["value"] for sub in task["subtasks"]) / len(task["subtasks"])  # the macro mean
    data["h6_average"] = sum(t["value"] for t in data["tasks"]) / len(data["tasks"])
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(data))
    return folder


def _compare(run: Path, *args: str, model: str = YI):
    return runner.invoke(
        app, ["compare", f"leaderboard:{model}", str(run), "--published-results", str(PUBLISHED), *args]
    )


def test_a_run_equal_to_the_published_result_reproduces(tmp_path: Path):
    run = _run_equal_to(_published(), tmp_path / "run")
    result = _compare(run)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"leaderboard: {YI} @ 2c0644cf206b, float16 (its published results: results_2024-01-06T09-45-44.755529.json)"
    )
    assert "| AI2 Reasoning Challenge (25-Shot) |       54.86 | 54.86 |    +0.00 | ±1.45 |  1172 | yes    |" in lines
    assert "| Average (H6)                      |       56.85 | 56.85 |    +0.00 |       |       |        |" in lines
    assert lines[-1] == "reproduces the leaderboard within noise on 6 of 6 tasks"
    assert "warning" not in result.output


def test_a_task_moved_by_two_points_on_a_thousand_documents_does_not(tmp_path: Path):
    """ARC, 1,172 documents: one standard error is 1.45 points; 2 points is outside, 1 point within."""
    published = _published()
    moved = _compare(_run_equal_to(published, tmp_path / "two", arc=2.0))
    assert moved.exit_code == 1, moved.output
    assert "|    +2.00 | ±1.45 |  1172 | NO     |" in moved.stdout
    assert moved.stdout.splitlines()[-1] == (
        "reproduces the leaderboard within noise on 5 of 6 tasks (not: AI2 Reasoning Challenge (25-Shot))"
    )
    within = _compare(_run_equal_to(published, tmp_path / "one", arc=-1.0))
    assert within.exit_code == 0 and "|    -1.00 | ±1.45 |  1172 | yes    |" in within.stdout


def test_the_docs_show_what_the_command_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """docs/archive.md's example is this comparison's output (the run folder named `run`)."""
    from conftest import REPO

    doc = (REPO / "docs" / "archive.md").read_text()
    shown = doc.split("(`tests/test_reproduce.py`):\n\n```\n", 1)[1].split("\n```", 1)[0]
    _run_equal_to(_published(), tmp_path / "run", arc=2.0)
    monkeypatch.chdir(tmp_path)
    assert _compare(Path("run")).stdout.rstrip("\n") == shown


def test_json_holds_every_task_and_mmlu_subject(tmp_path: Path):
    run = _run_equal_to(_published(), tmp_path / "run", college_physics=3.0)
    result = _compare(run, "--format", "json")
    assert result.exit_code == 0, result.output  # one subject 3 points off moves MMLU by 3/57: within noise
    data = json.loads(result.stdout)
    assert [t["key"] for t in data["tasks"]] == ["arc", "hellaswag", "mmlu", "truthfulqa", "winogrande", "gsm8k"]
    mmlu = data["tasks"][2]
    assert len(mmlu["subjects"]) == 57
    assert mmlu["subjects"][0]["subject"] == "college_physics" and mmlu["subjects"][0]["delta_points"] == 3.0
    assert mmlu["delta_points"] == pytest.approx(3 / 57, abs=1e-4) and mmlu["basis"] == "same documents"
    text = _compare(run)
    assert "MMLU (5-Shot): 57 subjects compared, the widest gap college_physics +3.00 points" in text.stdout


def test_another_commit_dtype_or_model_is_warned(tmp_path: Path):
    run = _run_equal_to(_published(), tmp_path / "run")
    data = json.loads((run / "results.json").read_text())
    data["model"] |= {"id": "local/Yi-6B-copy", "sha": "a" * 40, "dtype": "bfloat16"}
    (run / "results.json").write_text(json.dumps(data))
    result = _compare(run, model=f"{YI}:float16")  # a bfloat16 run alone is compared to a bfloat16 evaluation
    assert result.exit_code == 0, result.output
    assert f"warning: the run is of local/Yi-6B-copy, the published result of {YI}" in result.stdout
    assert (
        "warning: the leaderboard evaluated commit 2c0644cf206b, the run aaaaaaaaaaaa: the weights may differ"
        in result.stdout
    )
    assert "warning: the leaderboard ran float16, the run bfloat16: other precisions" in result.stdout


def test_a_partial_run_is_refused_unless_asked_then_judged_against_sampling_noise(tmp_path: Path):
    run = _run_equal_to(_published(), tmp_path / "run")
    data = json.loads((run / "results.json").read_text())
    data["status"], data["partial_reasons"] = "partial", ["--limit 100"]
    data["leaderboard_comparable"], data["h6_average"] = False, None
    for task in data["tasks"]:
        task["documents"] = 100
    (run / "results.json").write_text(json.dumps(data))
    refused = _compare(run)
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (
        "error: run 20240101T000000Z-0000 is partial (--limit 100): the leaderboard scored complete splits; pass "
        "--allow-partial to compare it anyway, against sampling noise"
    )
    allowed = _compare(run, "--allow-partial", "--format", "json")
    assert allowed.exit_code == 0, allowed.output
    data = json.loads(allowed.stdout)
    arc = data["tasks"][0]
    assert arc["basis"] == "subset" and arc["tolerance_points"] == pytest.approx(1.96 * 2**0.5 * 1.4542, abs=1e-3)
    assert any(w.startswith("partial run (--limit 100)") for w in data["warnings"])


def test_a_run_that_asked_other_requests_is_refused(tmp_path: Path):
    schema_1 = FIXTURES / "results-schema-v1" / SAKURA.parent.name / SAKURA.name  # read as protocol lm-eval
    result = runner.invoke(app, ["compare", "leaderboard:kyujinpy/Sakura-SOLAR-Instruct", str(schema_1),
                                 "--published-results", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2
    # the published side is read first only after the run: a wrong copy is still said in one line
    assert result.stderr.strip().startswith("error: kyujinpy/Sakura-SOLAR-Instruct: no results_*.json under")
    folder = tmp_path / "kyujinpy" / "Sakura-SOLAR-Instruct"
    folder.mkdir(parents=True)
    (yi_file,) = (PUBLISHED / YI).glob("results_*.json")
    (folder / yi_file.name).write_bytes(yi_file.read_bytes())
    again = runner.invoke(app, ["compare", "leaderboard:kyujinpy/Sakura-SOLAR-Instruct:float16", str(schema_1),
                                "--published-results", str(tmp_path)])  # fmt: skip
    assert again.exit_code == 2
    assert again.stderr.startswith("error: nothing to compare: AI2 Reasoning Challenge (25-Shot): the run did not ask ")


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["leaderboard:Yi-6B", str(SAKURA)],
            "error: leaderboard:Yi-6B: give leaderboard:ORG/NAME or leaderboard:ORG/NAME:PRECISION",
        ),
        (
            [str(SAKURA), "leaderboard:a/b"],
            "error: leaderboard:a/b: the leaderboard's result goes first: compare leaderboard:a/b RUN",
        ),
        (
            [str(SAKURA), str(SAKURA), "--published-results", "x"],
            "error: --published-results goes with a leaderboard:MODEL baseline",
        ),
        (
            [str(SAKURA), str(SAKURA), "--details", "--allow-partial"],
            "error: --allow-partial and --details go with a leaderboard:MODEL baseline",
        ),
        (
            ["leaderboard:a/b", str(SAKURA), "--published-details", "x"],
            "error: --published-details goes with --details",
        ),
        (
            [f"leaderboard:{YI}:float32", str(SAKURA), "--published-results", str(PUBLISHED)],
            f"error: {YI}: no results file of its float32 evaluation (they hold float16)",
        ),
    ],
)
def test_bad_arguments_are_one_line_exit_2(args, message):
    result = runner.invoke(app, ["compare", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == message


def test_a_real_run_against_a_published_result_of_its_own_numbers(real_run, tmp_path: Path):
    """Through the real stack: the SmolLM2 run's results beside a results file in the leaderboard's format
    holding the run's own numbers (keys harness|<task>|<shots>, MMLU per subject). The sample rows make four
    tasks ask other requests than the leaderboard's: they are left out and said; MMLU and TruthfulQA are
    compared, each subject paired, with Δ 0 (TruthfulQA within sampling noise, as a partial run is judged)."""
    outcome, _ = real_run
    results = outcome.results
    entries = {}
    for task in results.tasks:
        key, metric = TASK_KEYS[task.key]  # the leaderboard's names: TruthfulQA's `acc` is its `mc2`
        if task.key == "mmlu":
            for sub in task.subtasks:
                subject = sub.lm_eval_task.removeprefix("mmlu_")
                entries[f"{key}{subject}|5"] = {metric: sub.value, f"{metric}_stderr": sub.stderr}
        else:
            entries[key] = {metric: task.value, f"{metric}_stderr": task.stderr}
    published = f"org/{results.model.id}"  # a local model's id has no org; the archive's ids all do
    folder = tmp_path / published
    folder.mkdir(parents=True)
    document = {"config_general": {"model_name": published, "model_sha": results.model.sha,
                                   "model_dtype": f"torch.{results.model.dtype}"}, "results": entries}  # fmt: skip
    (folder / "results_2024-01-01T00-00-00.000000.json").write_text(json.dumps(document))
    args = ["--published-results", str(tmp_path), "--allow-partial", "--format", "json"]
    result = runner.invoke(app, ["compare", f"leaderboard:{published}", str(outcome.run_dir), *args])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [t["key"] for t in data["tasks"]] == ["mmlu", "truthfulqa"]
    assert [t["delta_points"] for t in data["tasks"]] == [0, 0]
    # one sample document per MMLU subject: neither side has a standard error, so no noise band to judge by
    assert [t["within_noise"] for t in data["tasks"]] == [None, True]
    assert len(data["tasks"][0]["subjects"]) == len(results.task("mmlu").subtasks) == 57
    assert [why.split(":")[0] for why in data["left_out"]] == [
        "AI2 Reasoning Challenge (25-Shot)",
        "HellaSwag (10-Shot)",
        "Winogrande (5-shot)",
        "GSM8k (5-shot)",
    ]
    assert any(w.startswith("the run is of SmolLM2") for w in data["warnings"])


def test_the_runs_precision_chooses_the_archives_evaluation(tmp_path: Path):
    """A run records its precision (schema 4): compare takes the archive's evaluation at it, and names the
    precisions the archive holds when it has none at the run's (the real files hold this model in float16)."""
    run = _run_equal_to(_published(), tmp_path / "run")
    data = json.loads((run / "results.json").read_text())
    assert data["schema_version"] < 4  # the fixture predates precisions: read as float16, its dtype
    assert _compare(run).stdout.splitlines()[0].endswith("float16 (its published results: "
                                                           "results_2024-01-06T09-45-44.755529.json)")  # fmt: skip
    data |= {"schema_version": 4}
    data["model"] |= {"precision": "4bit", "weight_type": "Original"}
    (run / "results.json").write_text(json.dumps(data))
    result = _compare(run)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {YI}: no results file of its 4bit evaluation (they hold float16)"
    # asked for explicitly, the float16 evaluation is set beside the 4bit run, with a line that says so
    result = _compare(run, model=f"{YI}:float16")
    assert result.exit_code == 0, result.output
    assert "warning: the leaderboard ran float16, the run 4bit: other precisions" in result.stdout

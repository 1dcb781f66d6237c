"""Offline snapshots: planning a run's files and `data verify`, on the real rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLE_DATA

from evalsuite.data import DataPlan, Level, TaskData, plan_local, sha256_and_rows, verify_snapshot
from evalsuite.errors import DataDirError
from evalsuite.suite import Protocol, load_suite

SUITE = load_suite()


def _task(plan: DataPlan, key: str) -> TaskData:
    return next(t for t in plan.tasks if t.spec.key == key)


def test_full_snapshot_verifies_with_only_the_hellaswag_train_warning(shared_data: Path):
    findings = verify_snapshot(shared_data, SUITE)
    not_ok = [(f.level, f.file) for f in findings if f.level is not Level.OK]
    assert not_ok == [(Level.WARN, "hellaswag/train.jsonl")]
    by_file = {f.file: f.message for f in findings}
    assert by_file["mmlu/test.jsonl"] == "14042 rows"
    assert by_file["arc_challenge/test.jsonl"] == "1172 rows"


def test_sample_snapshot_is_usable_but_partial():
    findings = verify_snapshot(SAMPLE_DATA, SUITE)
    assert not [f for f in findings if f.level is Level.ERROR]
    assert any(f.file == "arc_challenge/test.jsonl" and "12 of 1172 rows" in f.message for f in findings)


def _copy_sample(tmp_path: Path) -> Path:
    root = tmp_path / "h6"
    shutil.copytree(SAMPLE_DATA, root)
    return root


def test_schema_errors_are_reported_with_their_line(tmp_path: Path):
    root = _copy_sample(tmp_path)
    path = root / "winogrande" / "validation.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('"option1"', '"optionA"')
    path.write_text("\n".join(lines) + "\n")
    (root / "gsm8k" / "test.jsonl").write_text('{"question": "q", "answer": 3}\n')
    (root / "mmlu" / "dev.jsonl").write_text("not json\n")
    (root / "hellaswag" / "validation.jsonl").write_text('{"ctx": "a truncated row')  # cut mid-row: said "starting at"
    (root / "truthful_qa" / "validation.jsonl").unlink()
    errors = {f.file: f.message for f in verify_snapshot(root, SUITE) if f.level is Level.ERROR}
    assert errors == {
        "winogrande/validation.jsonl": "line 3: column 'option1' missing",
        "gsm8k/test.jsonl": "line 1: column 'answer' should be string, found int",
        "mmlu/dev.jsonl": "line 1: not JSON (Expecting value at column 1)",
        "hellaswag/validation.jsonl": "line 1: not JSON (Unterminated string starting at column 9)",
        "truthful_qa/validation.jsonl": "missing: truthfulqa is scored on this split",
    }


def test_plan_records_hashes_and_the_fewshot_fallback():
    v1 = Protocol.LEADERBOARD_V1
    plan = plan_local(SAMPLE_DATA, SUITE.for_protocol(v1).tasks)
    arc = _task(plan, "arc")
    assert [f.split for f in arc.files] == ["test", "train"]
    assert arc.files[0].sha256 == sha256_and_rows(SAMPLE_DATA / "arc_challenge" / "test.jsonl")[0]
    assert not arc.fewshot.fallback
    # the leaderboard's walk shuffles the whole eval split and draws from the whole train split
    assert arc.leaderboard_differences(v1) == [
        "train split has 50 of 1119 rows, test split has 12 of 1172 rows, so exemplars differ from the leaderboard's"
    ]
    hellaswag = _task(plan, "hellaswag")
    assert hellaswag.fewshot.fallback and hellaswag.fewshot.split == "validation"
    assert "train split missing" in hellaswag.fewshot.note
    assert hellaswag.leaderboard_differences(v1) == [hellaswag.fewshot.note]
    assert _task(plan, "truthfulqa").leaderboard_differences(v1) == []  # 0-shot: a partial split is fine
    assert _task(plan, "mmlu").leaderboard_differences(v1) == []  # first 5 dev rows: all of dev is here
    assert _task(plan, "mmlu").leaderboard_differences(Protocol.LM_EVAL) == [
        "protocol lm-eval: lm-eval 0.4's exemplars and settings, not the leaderboard's"
    ]


def test_full_splits_are_leaderboard_comparable(shared_data: Path):
    plan = plan_local(shared_data, SUITE.for_protocol(Protocol.LEADERBOARD_V1).tasks)
    differences = {t.spec.key: t.leaderboard_differences(Protocol.LEADERBOARD_V1) for t in plan.tasks}
    assert differences == {
        "arc": [],
        "hellaswag": [_task(plan, "hellaswag").fewshot.note],  # no train split in ../shared/data/h6
        "mmlu": [],
        "truthfulqa": [],
        "winogrande": [],
        "gsm8k": [],
    }


def test_missing_eval_split_is_an_error(tmp_path: Path):
    root = _copy_sample(tmp_path)
    (root / "gsm8k" / "test.jsonl").unlink()
    with pytest.raises(DataDirError, match=r"missing gsm8k/test.jsonl .*leave gsm8k out with tasks"):
        plan_local(root, SUITE.tasks)
    plan_local(root, SUITE.select(["arc"]))  # fine without gsm8k


def test_data_dir_must_exist(tmp_path: Path):
    with pytest.raises(DataDirError, match="no such directory"):
        plan_local(tmp_path / "nope", SUITE.tasks)


def test_mmlu_subject_filter_on_the_full_file(shared_data: Path, tmp_path: Path):
    """The json loader gets each subject task's config name; the filter keeps exactly that subject's rows."""
    import datasets

    from evalsuite.engine.runner import _keep_rows_of_subset

    files = {"test": str(shared_data / "mmlu" / "test.jsonl"), "dev": str(shared_data / "mmlu" / "dev.jsonl")}
    keep = _keep_rows_of_subset("subject")
    for subject, test_rows in [("anatomy", 135), ("abstract_algebra", 100)]:
        ds = datasets.load_dataset("json", name=subject, data_files=files, cache_dir=str(tmp_path))
        assert len(keep(ds["test"])) == test_rows
        assert len(keep(ds["dev"])) == 5
        assert set(keep(ds["test"])["subject"]) == {subject}


def test_mmlu_subjects_are_the_lm_eval_subject_tasks_of_the_group():
    import yaml

    from evalsuite.suite import default_tasks_dir

    spec = load_suite().task("mmlu")
    group = yaml.safe_load((default_tasks_dir() / f"{spec.lm_eval_group}.yaml").read_text())
    assert [t["task"].removeprefix("mmlu_") for t in group["task"]] == list(spec.data.subsets)


@pytest.mark.parametrize(
    ("file", "edit", "expected"),
    [
        ("arc_challenge/test.jsonl", {"answerKey": "Z"}, "answerKey 'Z' is not among the choice labels"),
        ("hellaswag/validation.jsonl", {"label": "7"}, "label '7' does not index one of the 4 endings"),
        ("mmlu/test.jsonl", {"subject": "astrology"}, "subject 'astrology' is not one of the 57 MMLU subjects"),
        ("mmlu/test.jsonl", {"answer": 4}, "answer 4 does not index one of the 4 choices"),
        ("winogrande/validation.jsonl", {"answer": "3"}, "answer '3' is neither '1' nor '2'"),
        ("gsm8k/test.jsonl", {"answer": "42"}, "answer has no `#### <number>` final line"),
        (
            "truthful_qa/validation.jsonl",
            {"mc2_targets": {"choices": ["a"], "labels": [0]}},
            "0/1 with at least one true answer",
        ),
    ],
)
def test_verify_checks_values_not_only_types(tmp_path: Path, file: str, edit: dict, expected: str):
    data = tmp_path / "h6"
    shutil.copytree(SAMPLE_DATA, data)
    path = data / file
    lines = path.read_text().splitlines()
    lines[0] = json.dumps(json.loads(lines[0]) | edit)
    path.write_text("\n".join(lines) + "\n")
    findings = {f.file: f for f in verify_snapshot(data, load_suite())}
    assert findings[file].level is Level.ERROR and findings[file].message.startswith("line 1: ")
    assert expected in findings[file].message
    with pytest.raises(DataDirError, match=f"{file}:1: "):
        plan_local(data, load_suite().tasks)


def test_verify_refuses_more_rows_than_the_full_split(tmp_path: Path):
    data = tmp_path / "h6"
    shutil.copytree(SAMPLE_DATA, data)
    path = data / "truthful_qa" / "validation.jsonl"
    row = path.read_text().splitlines()[0]
    path.write_text("\n".join([row] * 818) + "\n")
    finding = next(f for f in verify_snapshot(data, load_suite()) if f.file == "truthful_qa/validation.jsonl")
    assert finding.level is Level.ERROR and "818 rows, more than the full split's 817" in finding.message

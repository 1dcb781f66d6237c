"""The suite spec and the lm-eval group YAMLs in tasks/ must describe the same protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evalsuite.errors import SuiteConfigError
from evalsuite.suite import default_tasks_dir, load_suite

TASKS = default_tasks_dir()
SUITE = load_suite()
# The leaderboard (v1) protocol, written out independently of tasks/suite.yaml (PROTOCOL.md 1.3).
PROTOCOL = {
    "arc": (25, "acc_norm,none", "train"),
    "hellaswag": (10, "acc_norm,none", "train"),
    "mmlu": (5, "acc,none", "dev"),
    "truthfulqa": (0, "acc,none", None),
    "winogrande": (5, "acc,none", "train"),
    "gsm8k": (5, "exact_match,strict-match", "train"),
}


def _group(name: str) -> dict:
    return yaml.safe_load((TASKS / f"{name}.yaml").read_text())


def test_suite_pins_the_leaderboard_protocol():
    assert SUITE.keys == tuple(PROTOCOL)
    for spec in SUITE.tasks:
        shots, metric, fewshot_split = PROTOCOL[spec.key]
        assert (spec.num_fewshot, spec.metric.lm_eval_key, spec.fewshot_split) == (shots, metric, fewshot_split)


@pytest.mark.parametrize("spec", SUITE.tasks, ids=lambda s: s.key)
def test_group_yaml_agrees_with_suite(spec):
    group = _group(spec.lm_eval_group)
    assert group["group"] == spec.lm_eval_group
    for member in group["task"]:
        assert isinstance(member, dict) and "task" in member, "members must be `- task:` mappings (see h6_mmlu.yaml)"
        assert member.get("num_fewshot", group.get("num_fewshot")) == spec.num_fewshot
        assert member.get("fewshot_split") in (None, spec.fewshot_split)


def test_truthfulqa_is_mc2_alone():
    assert [m["task"] for m in _group("h6_truthfulqa")["task"]] == ["truthfulqa_mc2"]


def test_mmlu_group_has_lm_evals_57_subjects():
    import lm_eval

    builtin = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"
    subjects = sorted(p.stem for p in builtin.glob("mmlu_*.yaml"))
    assert len(subjects) == 57
    assert sorted(m["task"] for m in _group("h6_mmlu")["task"]) == subjects


def test_h6_group_lists_every_suite_task():
    assert [m["group"] for m in _group("h6")["task"]] == [s.lm_eval_group for s in SUITE.tasks]


@pytest.mark.lm_eval
def test_plain_lm_eval_indexes_the_groups():
    """`lm_eval --include_path tasks --tasks h6` works: lm-eval's own index finds every group."""
    from evalsuite.engine import build_task_manager

    tm = build_task_manager(TASKS)
    for name in ["h6", *(s.lm_eval_group for s in SUITE.tasks)]:
        assert name in tm.all_groups


def test_select_keeps_suite_order_and_rejects_unknown_keys():
    assert [t.key for t in SUITE.select(["gsm8k", "arc"])] == ["arc", "gsm8k"]
    assert SUITE.select(None) == SUITE.tasks
    with pytest.raises(SuiteConfigError, match="unknown task 'arcc'; choose from: arc, hellaswag"):
        SUITE.select(["arcc"])


def test_invalid_suite_file_names_the_field(tmp_path):
    bad = yaml.safe_load((TASKS / "suite.yaml").read_text())
    del bad["tasks"][0]["metric"]
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(SuiteConfigError, match=r"at tasks\.0\.metric: Field required"):
        load_suite(path)


def test_nightly_preset_is_fixed_and_covers_every_task():
    nightly = SUITE.preset("nightly")
    assert sorted(nightly.documents) == sorted(SUITE.keys)
    first = nightly.document_ids("arc_challenge", "arc", 1172)
    assert first == nightly.document_ids("arc_challenge", "arc", 1172)  # same every night
    assert len(first) == 100 and first == sorted(set(first)) and max(first) < 1172
    assert nightly.document_ids("mmlu_anatomy", "mmlu", 135) != nightly.document_ids("mmlu_virology", "mmlu", 135)
    assert nightly.document_ids("arc_challenge", "arc", 12) == list(range(12))  # a small split: all of it
    with pytest.raises(SuiteConfigError, match="unknown preset 'weekly'; choose from: nightly"):
        SUITE.preset("weekly")

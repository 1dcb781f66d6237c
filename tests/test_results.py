"""Aggregation and the results file: unit tests on hand-made lm-eval outputs."""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import FIXTURES
from fakes import lm_eval_output

from evalsuite.errors import OutputDirError, ResultsSchemaError, RunError
from evalsuite.results import (
    SCHEMA_VERSION,
    FewshotInfo,
    ModelInfo,
    RunSettings,
    SuiteResults,
    Timing,
    Versions,
    check_output_dir,
    completeness,
    h6_average,
    read_results,
    task_result,
    write_run,
)
from evalsuite.settings import Seeds
from evalsuite.suite import Protocol, load_suite

SUITE = load_suite().for_protocol(Protocol.LM_EVAL)
SCHEMA_FILE = Path(__file__).resolve().parent.parent / "evalsuite" / "schema" / f"results.v{SCHEMA_VERSION}.json"


def _result(key: str, leaves: dict[str, tuple[float, float | str, int]], **kw):
    spec = SUITE.task(key)
    return task_result(
        spec,
        lm_eval_output(spec, leaves, **kw),
        fewshot=FewshotInfo(split=spec.fewshot_split, sampler=spec.fewshot_sampler, fallback=False),
        data_files=[],
        leaderboard_differences=[],
        seconds=1.0,
    )


def test_mmlu_value_is_the_plain_mean_of_subjects_and_keeps_the_weighted_one():
    # Two subjects of very different sizes: macro and micro means differ.
    r = _result("mmlu", {"mmlu_a": (0.9, 0.03, 100), "mmlu_b": (0.3, 0.1, 10)})
    assert r.value == pytest.approx(0.6)
    assert r.weighted_value == pytest.approx((0.9 * 100 + 0.3 * 10) / 110)
    assert r.stderr == pytest.approx(math.sqrt(0.03**2 + 0.1**2) / 2)
    assert r.documents == 110
    assert [s.lm_eval_task for s in r.subtasks] == ["mmlu_a", "mmlu_b"]


def test_single_task_reads_the_suite_metric_and_not_another():
    r = _result("gsm8k", {"gsm8k": (0.25, 0.05, 40)})
    assert (r.value, r.stderr, r.documents) == (0.25, 0.05, 40)
    assert r.metric.lm_eval_key == "exact_match,strict-match"
    assert r.weighted_value is None and r.subtasks == []


def test_gsm8k_reports_the_leaderboard_check_under_leaderboard_v1():
    spec = load_suite().for_protocol(Protocol.LEADERBOARD_V1).task("gsm8k")
    out = lm_eval_output(spec, {"gsm8k": (0.25, 0.05, 40)})
    out["results"]["gsm8k"] |= {"exact_match,strict-match": 0.5, "exact_match_stderr,strict-match": 0.1}
    r = task_result(spec, out, fewshot=FewshotInfo(split="train", sampler="leaderboard-walk", fallback=False),
                    data_files=[], leaderboard_differences=[], seconds=1.0)  # fmt: skip
    assert r.metric.lm_eval_key == "exact_match,leaderboard-v1" and r.value == 0.25


def test_stderr_not_available_is_recorded_as_none():
    r = _result("arc", {"arc_challenge": (1.0, "N/A", 1)})
    assert r.stderr is None
    assert isinstance(r.value, float)  # numpy float converted


def test_wrong_shot_count_is_refused():
    with pytest.raises(RunError, match="ran 0-shot but the suite says 25-shot"):
        _result("arc", {"arc_challenge": (0.5, 0.1, 10)}, shots=0)


def test_missing_metric_names_what_was_found():
    spec = SUITE.task("arc")
    out = lm_eval_output(spec, {"arc_challenge": (0.5, 0.1, 10)})
    out["results"]["arc_challenge"] = {"acc,none": 0.5, "acc_stderr,none": 0.1}
    with pytest.raises(RunError, match=r"no acc_norm,none \(found: acc,none\)"):
        task_result(
            spec,
            out,
            fewshot=FewshotInfo(split="train", sampler="random", fallback=False),
            data_files=[],
            leaderboard_differences=[],
            seconds=0,
        )


def test_partial_reasons():
    full = [_result(k, {"x": (0.5, 0.1, SUITE.task(k).full_eval_rows)}) for k in SUITE.keys]
    assert completeness(SUITE.keys, full, None) == []
    assert completeness(SUITE.keys, full, 5) == ["--limit 5"]
    assert completeness(SUITE.keys, full[:5], None) == ["tasks not run: gsm8k"]
    short = [_result("arc", {"x": (0.5, 0.1, 20)}), *full[1:]]
    assert completeness(SUITE.keys, short, None) == ["arc: 20 of 1172 documents"]


def test_h6_average_of_published_sakura_solar_numbers():
    # kyujinpy/Sakura-SOLAR-Instruct on the v1 leaderboard: average 74.40 (PROTOCOL.md 1.4).
    published = {
        "arc": 0.7099,
        "hellaswag": 0.8842,
        "mmlu": 0.6633,
        "truthfulqa": 0.7179,
        "winogrande": 0.8366,
        "gsm8k": 0.6520,
    }
    tasks = [_result(k, {"x": (v, 0.01, 100)}) for k, v in published.items()]
    assert round(100 * h6_average(tasks), 2) == 74.40


def _results(tasks=None) -> SuiteResults:
    now = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    tasks = tasks or [_result("arc", {"arc_challenge": (0.5, 0.1, 10)})]
    return SuiteResults(
        run_id="20261122T080000Z-abcd",
        created_at=now,
        suite="h6",
        suite_version=1,
        model=ModelInfo(id="m", source="local", location="/m", revision=None, sha=None, dtype="float32", parameters=1,
                        precision="float32"),
        tasks=tasks,
        status="partial",
        partial_reasons=["x"],
        h6_average=None,
        leaderboard_comparable=False,
        settings=RunSettings(
            protocol=Protocol.LEADERBOARD_V1,
            limit=None,
            batch_size=8,
            add_bos_token=False,
            seeds=Seeds(random=0, numpy=1, torch=1, fewshot=1),
            model_args={},
            data_source="local",
            data_dir="/d",
            device="cpu",
        ),
        versions=Versions(evalsuite="0", lm_eval="0", transformers="0", torch="0", datasets="0", python="3"),
        timing=Timing(model_load_seconds=1, total_seconds=2),
    )


def test_schema_version_comes_first_and_round_trips(tmp_path: Path):
    results = _results()
    run_dir = write_run(results, {"arc.json": "{}"}, tmp_path / "out", "local__m")
    text = (run_dir / "results.json").read_text()
    assert next(iter(json.loads(text))) == "schema_version"
    assert read_results(run_dir) == results
    assert (run_dir / "lm_eval" / "arc.json").read_text() == "{}"
    assert [p.name for p in (tmp_path / "out" / "local__m").iterdir()] == [results.run_id]  # no staging left


def test_committed_json_schema_is_current():
    assert SCHEMA_FILE.is_file(), f"write it: python -m evalsuite.schema > {SCHEMA_FILE}"
    assert json.loads(SCHEMA_FILE.read_text()) == SuiteResults.model_json_schema(), (
        "SuiteResults changed: regenerate with `python -m evalsuite.schema` (and bump SCHEMA_VERSION if a field "
        "changed meaning)"
    )


def test_newer_schema_is_refused(tmp_path: Path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ResultsSchemaError, match="newer evalsuite"):
        read_results(path)


def test_not_a_results_file(tmp_path: Path):
    path = tmp_path / "results.json"
    path.write_text("[1, 2]")
    with pytest.raises(ResultsSchemaError, match="no integer schema_version"):
        read_results(path)


def test_existing_run_is_never_overwritten(tmp_path: Path):
    results = _results()
    run_dir = write_run(results, {}, tmp_path, "local__m")
    before = (run_dir / "results.json").read_bytes()
    with pytest.raises(OutputDirError, match="already exists"):
        write_run(results, {"x.json": "{}"}, tmp_path, "local__m")
    assert (run_dir / "results.json").read_bytes() == before
    assert sorted(p.name for p in run_dir.parent.iterdir()) == [results.run_id]


def test_failed_write_leaves_nothing(tmp_path: Path):
    out = tmp_path / "new" / "results"
    with pytest.raises(OutputDirError):
        write_run(_results(), {"sub/dir/x.json": "{}"}, out, "local__m")  # sub/dir does not exist: write fails
    assert list(tmp_path.iterdir()) == []


def test_output_dir_under_a_file_is_refused(tmp_path: Path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    with pytest.raises(OutputDirError, match="is not a directory"):
        check_output_dir(blocker / "results")


def test_schema_1_files_are_migrated_as_lm_eval_protocol_runs():
    # Every schema-1 run asked lm-eval 0.4's requests; it called itself comparable, which it was not.
    old = FIXTURES / "results-schema-v1" / "kyujinpy__Sakura-SOLAR-Instruct" / "20240101T000000Z-0000"
    assert json.loads((old / "results.json").read_text())["schema_version"] == 1
    assert json.loads((old / "results.json").read_text())["leaderboard_comparable"] is True
    results = read_results(old)
    assert results.schema_version == SCHEMA_VERSION
    assert results.settings.protocol is Protocol.LM_EVAL
    assert results.leaderboard_comparable is False
    assert all(not t.leaderboard_comparable and t.not_comparable_reasons for t in results.tasks)
    assert [round(100 * t.value, 2) for t in results.tasks] == [70.99, 88.42, 66.33, 71.79, 83.66, 65.2]


@pytest.mark.parametrize(
    ("backend", "model_args", "options"),
    [
        ("shared-prefix", {"generation": "transformers", "pack_tokens": "512", "trust_remote_code": "True"},
         {"generation": "transformers", "pack_tokens": 512}),
        ("shared-prefix", {}, {}),  # the defaults of its day, which the file does not say
        ("lm-eval-hf", {"trust_remote_code": "True"}, {}),
    ],
)  # fmt: skip
def test_schema_2_files_move_the_backends_options_out_of_the_model_args(tmp_path, backend, model_args, options):
    """v3 records a backend's typed options apart from the model args, where v2 kept them (`generation=`)."""
    raw = json.loads((FIXTURES / "results" / "kyujinpy__Sakura-SOLAR-Instruct" / "20240101T000000Z-0000" /
                      "results.json").read_text())  # fmt: skip
    assert raw["schema_version"] == 2 and "backend_options" not in raw["settings"]
    raw["settings"] |= {"backend": backend, "model_args": {"pretrained": "x", **model_args}}
    (tmp_path / "results.json").write_text(json.dumps(raw))
    settings = read_results(tmp_path).settings
    assert settings.backend_options == options
    assert settings.model_args == {"pretrained": "x", **{k: v for k, v in model_args.items() if k not in options}}


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_run_folders_follow_the_umask(tmp_path: Path, umask: int):
    old = os.umask(umask)
    try:
        run_dir = write_run(_results(), {}, tmp_path / "out", "local__m")
    finally:
        os.umask(old)
    assert run_dir.stat().st_mode & 0o777 == 0o777 & ~umask
    assert run_dir.parent.stat().st_mode & 0o777 == 0o777 & ~umask

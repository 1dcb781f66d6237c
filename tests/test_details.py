"""A run paired with the leaderboard's details, document by document (`compare leaderboard:ORG/NAME RUN
--details`), and a run's details written in the leaderboard's layout (`details export`, `details push`).

The real tests run SmolLM2 on the leaderboard's rows (../shared/data/h6: ARC, TruthfulQA, Winogrande, GSM8K,
2 documents each) and pair it with details files written as the leaderboard's writer wrote them
(tests/details_fixtures.py: the leaderboard's own prompts, the run's values)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import SAKURA, SHARED_DATA
from details_fixtures import (
    TIMESTAMP,
    Detail,
    card,
    detail_of,
    leaderboard_copy,
    reference_requests,
    row_2023,
    write_2024,
    write_rows,
)
from typer.testing import CliRunner

from evalsuite.archive import details as layout
from evalsuite.cli import app
from evalsuite.errors import ArchiveError
from evalsuite.results import read_run
from evalsuite.results.lm_eval_files import logged_documents

runner = CliRunner()
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the name the fixtures file the run's details under
TASKS = (
    "arc",
    "truthfulqa",
    "winogrande",
    "gsm8k",
)  # HellaSwag: ../shared has no train split, so no leaderboard prompts


# ------------------------------------------------------------------------------------- format (fast)


def _detail(prompt: str = "Question: 2+2?\nAnswer:", acc: float = 1.0) -> Detail:
    return Detail(
        example=prompt,
        full_prompt=prompt,
        predictions=[[-1.5, 1.0], [-3.25, 0.0]],
        choices=[" 4", " 5"],
        gold_index=[0],
        metrics={"acc": acc, "acc_norm": acc},
    )


def test_a_2024_file_is_read_and_its_repr_string_fallback_too(tmp_path: Path):
    rows = [_detail(), _detail("Question: 3+3?\nAnswer:", 0.0)]
    write_2024(tmp_path / "a.parquet", rows)
    write_2024(tmp_path / "b.parquet", rows, force_str=True)  # the writer's `str(v)` for every field
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "b.parquet").schema.field("metrics").type == "string"
    plain = layout.read_details_file(tmp_path / "a.parquet", "harness|arc:challenge|25", TIMESTAMP)
    fallback = layout.read_details_file(tmp_path / "b.parquet", "harness|arc:challenge|25", TIMESTAMP)
    assert plain.generation is layout.Generation.Y2024
    assert plain.documents == fallback.documents
    assert plain.documents[0].loglikelihoods == (-1.5, -3.25)
    assert plain.documents[1].metrics == {"acc": 0.0, "acc_norm": 0.0}
    assert plain.score("acc_norm") == 0.5


def test_unknown_columns_are_one_line(tmp_path: Path):
    write_rows(tmp_path / "x.parquet", [{"full_prompt": "p", "choices": ["a"], "logprobs": [0.1], "label": 0}])
    with pytest.raises(ArchiveError) as e:
        layout.read_details_file(tmp_path / "x.parquet", "harness|arc:challenge|25", TIMESTAMP)
    message = str(e.value)
    assert "\n" not in message
    assert (
        "unknown columns label, logprobs" in message and "its columns: choices, full_prompt, label, logprobs" in message
    )


def test_a_file_that_is_not_parquet_is_one_line_and_a_bug_is_no_such_line(tmp_path: Path, monkeypatch):
    """pyarrow's own errors are the file's (not parquet: ArrowInvalid; damaged: OSError); anything else raised while
    reading is a bug, and surfaces as itself rather than as a file that is not parquet."""
    (tmp_path / "x.parquet").write_text("a details file's name, not its format")
    with pytest.raises(ArchiveError, match=r"x\.parquet: not a parquet file \(ArrowInvalid\)$"):
        layout.read_details_file(tmp_path / "x.parquet", "harness|arc:challenge|25", TIMESTAMP)
    write_2024(tmp_path / "damaged.parquet", [_detail()])
    data = bytearray((tmp_path / "damaged.parquet").read_bytes())
    data[4:44] = b"\xff" * 40  # the first column chunk's page header, after the magic bytes
    (tmp_path / "damaged.parquet").write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=r"damaged\.parquet: not a parquet file \(OSError\)$"):
        layout.read_details_file(tmp_path / "damaged.parquet", "harness|arc:challenge|25", TIMESTAMP)

    import pyarrow.parquet as pq

    def bug(*args: object, **kwargs: object) -> None:
        raise TypeError("a bug in the reader")

    write_2024(tmp_path / "a.parquet", [_detail()])
    monkeypatch.setattr(pq, "read_table", bug)
    with pytest.raises(TypeError, match="a bug in the reader"):
        layout.read_details_file(tmp_path / "a.parquet", "harness|arc:challenge|25", TIMESTAMP)


def test_a_card_whose_metadata_is_not_yaml_is_an_archive_error_and_a_bug_is_not(monkeypatch):
    """The details card's front matter through huggingface_hub's parser: YAML that does not parse, or that is not
    a mapping, is the card's ArchiveError; any other error is a bug and surfaces as itself."""
    with pytest.raises(ArchiveError, match=r"^the details card's metadata cannot be read \(ParserError: "):
        layout.card_configs("---\nconfigs: [a\nb: c\n---\n")
    with pytest.raises(ArchiveError, match=r"^the details card's metadata cannot be read \(ValueError: "):
        layout.card_configs("---\n- a list\n---\n")
    import huggingface_hub

    class Bug:
        def __init__(self, text: str) -> None:
            raise KeyError("a bug in the parser")

    monkeypatch.setattr(huggingface_hub, "DatasetCard", Bug)
    with pytest.raises(KeyError, match="a bug in the parser"):
        layout.card_configs("---\nconfigs: []\n---\n")


def test_a_2023_file_is_read(tmp_path: Path):
    row = {
        "choices": [" 4", " 5"],
        "example": "Mercury_SC_410971",
        "full_prompt": "Q?\nA:",
        "gold": 1,
        "hashes": {"example": "x"},
        "num_effective_few_shots": -1,
        "predictions": [-1.0, -0.5],
        "acc": 1.0,
        "acc_norm": 0.0,
    }
    write_rows(tmp_path / "x.parquet", [row])
    read = layout.read_details_file(tmp_path / "x.parquet", "harness|arc:challenge|25", TIMESTAMP)
    assert read.generation is layout.Generation.Y2023
    assert read.documents[0].gold == (1,) and read.documents[0].example == "Mercury_SC_410971"
    assert read.documents[0].metrics == {"acc": 1.0, "acc_norm": 0.0}


def test_file_names_splits_and_configs():
    assert layout.parse_details_file_name(
        "2023-08-18T12:43:22.147633/details_harness|arc:challenge|25_2023-08-18T12:43:22.147633.parquet"
    ) == ("harness|arc:challenge|25", "2023-08-18T12-43-22.147633")
    assert layout.parse_details_file_name(
        "details_harness|hendrycksTest-anatomy|5_2024-01-06T09-45-44.755529.parquet"
    ) == ("harness|hendrycksTest-anatomy|5", "2024-01-06T09-45-44.755529")
    assert layout.config_name("harness|truthfulqa:mc|0") == "harness_truthfulqa_mc_0"
    assert layout.split_name("2024-01-06T09-45-44.755529") == "2024_01_06T09_45_44.755529"
    assert layout.canonical_timestamp("2024_01_06T09_45_44.755529") == "2024-01-06T09-45-44.755529"
    assert layout.suite_key_of("harness|hendrycksTest-anatomy|5") == ("mmlu", "anatomy")
    assert layout.suite_key_of("harness|drop|3") is None
    text = card(
        {
            "harness_arc_challenge_25": {
                "2023_08_18T12_43_22.147633": [
                    "**/details_harness|arc:challenge|25_2023-08-18T12:43:22.147633.parquet"
                ],
                "latest": ["**/details_harness|arc:challenge|25_2023-08-18T12:43:22.147633.parquet"],
            }
        }
    )
    index = layout.index_from_configs(layout.card_configs(text))
    assert index.latest == {"harness|arc:challenge|25": "2023-08-18T12-43-22.147633"}


def test_the_leaderboards_metrics_come_from_the_runs_per_document_metrics():
    """`details export` names each task's metrics as the leaderboard's details did (archive/tasks.py), each the
    run's per-document metric it is: the shown one the task's own (TruthfulQA's `mc2` is lm-eval's `acc`, GSM8K's
    `acc` its `exact_match`), ARC's and HellaSwag's `acc` beside `acc_norm`."""
    from evalsuite.publish.details import _metric_sources

    assert {t.key: list(_metric_sources(t).items()) for t in read_run(SAKURA).results.tasks} == {
        "arc": [("acc", "acc"), ("acc_norm", "acc_norm")],
        "hellaswag": [("acc", "acc"), ("acc_norm", "acc_norm")],
        "mmlu": [("acc", "acc")],
        "truthfulqa": [("mc2", "acc")],
        "winogrande": [("acc", "acc")],
        "gsm8k": [("acc", "exact_match")],
    }


def test_a_latest_pointing_at_a_run_the_leaderboard_did_not_publish_is_not_read():
    task = "harness|arc:challenge|25"
    index = layout.DetailsIndex(
        {task: {"2024-01-01T00-00-00.1": "a", "2024-02-01T00-00-00.1": "b"}}, {task: "2024-02-01T00-00-00.1"}
    )
    chosen, notes = layout.choose_files(index, ["2024-01-01T00-00-00.1"])
    assert [c.path for c in chosen] == ["a"]
    assert notes == [
        f"{task}: latest points at 2024-02-01T00-00-00.1, a run whose results the leaderboard did not "
        "publish (a test run?); read 2024-01-01T00-00-00.1, the published one"
    ]
    chosen, notes = layout.choose_files(index, [])
    assert [c.path for c in chosen] == ["b"] and "read latest" in notes[0]
    subjects = {layout.task_name("mmlu", s): {"2024-02-01T00-00-00.1": s} for s in ("anatomy", "astronomy")}
    chosen, notes = layout.choose_files(layout.DetailsIndex(subjects), [])
    assert notes == [
        f"2 MMLU subjects ({layout.task_name('mmlu', 'anatomy')}, ...): no run of the leaderboard's results files "
        "(none); read latest (2024-02-01T00-00-00.1)"
    ]


# ---------------------------------------------------------------------------------------- real run


@pytest.fixture(scope="module")
def details_run(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 on the leaderboard's rows, 2 documents of ARC, TruthfulQA, Winogrande and GSM8K, samples logged."""
    from evalsuite.run import RunRequest, run_suite

    if not SHARED_DATA.is_dir():
        pytest.skip(f"the full offline snapshot is not at {SHARED_DATA}")
    request = RunRequest(
        model=str(gguf_path),
        tasks=TASKS,
        limit=2,
        data_dir=SHARED_DATA,
        log_samples=True,
        output_dir=tmp_path_factory.mktemp("details-run"),
    )
    outcome = run_suite(request)
    assert outcome is not None
    return outcome.run_dir


def _leaderboard_rows(run_dir: Path) -> dict[str, list[Detail]]:
    run = read_run(run_dir)
    rows = {}
    for task in run.results.tasks:
        requests = reference_requests(task.key)
        (leaf,) = task.lm_eval_tasks
        documents = logged_documents(run_dir, leaf, task.metric.filter)
        assert documents
        rows[task.key] = [detail_of(task.key, requests[d.doc_id], d, task.num_fewshot) for d in documents]
    return rows


def _compare(run_dir: Path, details_dir: Path, results_dir: Path, *extra: str):
    return runner.invoke(
        app,
        [
            "compare",
            f"leaderboard:{MODEL}",
            str(run_dir),
            "--published-results",
            str(results_dir),
            "--allow-partial",
            "--details",
            "--published-details",
            str(details_dir),
            *extra,
        ],
    )


def test_a_real_run_pairs_with_the_leaderboards_prompts(details_run: Path, tmp_path: Path):
    rows = _leaderboard_rows(details_run)
    details_dir, results_dir = leaderboard_copy(tmp_path, MODEL, rows, {})
    result = _compare(details_run, details_dir, results_dir)
    assert result.exit_code == 0, result.output
    table = result.output.split("leaderboard's details:")[1]
    assert (
        "| AI2 Reasoning Challenge (25-Shot) |      2 |                    0/0 |               2/2 |         0/0 |"
        in table
    )
    for name in ("TruthfulQA (0-shot)", "Winogrande (5-shot)", "GSM8k (5-shot)"):
        line = next(line for line in table.splitlines() if line.startswith(f"| {name}"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1:5] == ["2", "0/0", "2/2", "0/0"], line  # paired, unpaired, prompts identical, flips
        assert cells[-1] == "yes"  # the details' rows give the results file's number
    as_json = json.loads(_compare(details_run, details_dir, results_dir, "--format", "json").output)
    arc = next(t for t in as_json["details"]["tasks"] if t["key"] == "arc")
    assert arc["max_loglikelihood_difference"] == 0.0 and len(arc["documents"]) == 2
    assert {d["doc_id"] for d in arc["documents"]} == {0, 1} and all(
        d["paired_by"] == "prompt" for d in arc["documents"]
    )


def test_a_2023_generation_file_pairs_too(details_run: Path, tmp_path: Path):
    rows = _leaderboard_rows(details_run)
    details_dir, results_dir = leaderboard_copy(tmp_path, MODEL, {"arc": rows["arc"]}, {})
    run = read_run(details_run)
    arc = next(t for t in run.results.tasks if t.key == "arc")
    documents = logged_documents(details_run, "arc_challenge", arc.metric.filter)
    assert documents
    (path,) = details_dir.rglob("details_*.parquet")
    write_rows(path, [row_2023(d, o) for d, o in zip(rows["arc"], documents, strict=True)])
    as_json = json.loads(_compare(details_run, details_dir, results_dir, "--format", "json").output)
    (task,) = as_json["details"]["tasks"]
    assert (task["paired"], task["prompts_identical"], task["max_loglikelihood_difference"]) == (2, 2, 0.0)


def test_a_changed_prompt_is_found_and_named(details_run: Path, tmp_path: Path):
    rows = _leaderboard_rows(details_run)
    changed = rows["arc"][1]
    at = changed.full_prompt.index("\nAnswer:")  # in the first exemplar
    rows["arc"][1] = replace(changed, full_prompt=changed.full_prompt[:at] + " " + changed.full_prompt[at:])
    details_dir, results_dir = leaderboard_copy(tmp_path, MODEL, rows, {})
    result = _compare(details_run, details_dir, results_dir)
    assert "|               1/2 |" in result.output
    assert f"arc_challenge doc 1: the prompt differs at character {at}:" in result.output
    as_json = json.loads(_compare(details_run, details_dir, results_dir, "--format", "json").output)
    arc = next(t for t in as_json["details"]["tasks"] if t["key"] == "arc")
    (differs,) = [d for d in arc["documents"] if not d["prompt_identical"]]
    assert differs["paired_by"] == "question" and differs["prompt_difference"]["at"] == at


def test_a_flipped_document_counts_for_mcnemar(details_run: Path, tmp_path: Path):
    rows = _leaderboard_rows(details_run)
    flipped = rows["winogrande"][0]
    theirs = 1.0 - flipped.metrics["acc"]
    rows["winogrande"][0] = replace(flipped, metrics={"acc": theirs})
    details_dir, results_dir = leaderboard_copy(tmp_path, MODEL, rows, {})
    as_json = json.loads(_compare(details_run, details_dir, results_dir, "--format", "json").output)
    wino = next(t for t in as_json["details"]["tasks"] if t["key"] == "winogrande")
    worse, better = (1, 0) if theirs == 1.0 else (0, 1)
    assert (wino["right_there_wrong_here"], wino["wrong_there_right_here"], wino["mcnemar_p"]) == (worse, better, 1.0)
    (flip,) = [d for d in wino["documents"] if d["flip"]]
    assert flip["doc_id"] == 0 and flip["score_theirs"] == theirs


def test_a_test_run_latest_points_at_is_caught(details_run: Path, tmp_path: Path):
    rows = _leaderboard_rows(details_run)
    details_dir, results_dir = leaderboard_copy(tmp_path, MODEL, rows, {})
    # a later test run of one row that `latest` points at, whose results the leaderboard did not publish (its
    # document scored the other way, so that its number cannot be the published one)
    debug = "2024-02-01T00-00-00.000001"
    task = layout.task_name("arc")
    first = rows["arc"][0]
    test_row = replace(first, metrics={name: 1.0 - value for name, value in first.metrics.items()})
    write_2024(details_dir / debug / layout.details_file_name(task, debug), [test_row])
    config = {
        layout.split_name(TIMESTAMP): [f"**/{layout.details_file_name(task, TIMESTAMP)}"],
        layout.split_name(debug): [f"**/{layout.details_file_name(task, debug)}"],
        "latest": [f"**/{layout.details_file_name(task, debug)}"],
    }
    (details_dir / "README.md").write_text(card({layout.config_name(task): config}))
    result = _compare(details_run, details_dir, results_dir)
    assert f"note: {task}: latest points at {debug}" in result.output
    assert "| AI2 Reasoning Challenge (25-Shot) |      2 |" in result.output
    # read anyway (no published run in the card): the details' number is not the results file's
    (details_dir / "README.md").write_text(card({layout.config_name(task): {"latest": config["latest"]}}))
    shutil.rmtree(details_dir / TIMESTAMP)
    result = _compare(details_run, details_dir, results_dir)
    assert "| AI2 Reasoning Challenge (25-Shot) |      1 |                    0/1 |" in result.output
    assert "not the evaluation the leaderboard published (a test run?)" in result.output
    assert result.output.split("leaderboard's details:")[1].count("| NO ") == 1


def test_a_run_without_samples_is_one_line(details_run: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(details_run, run)
    for samples in (run / "lm_eval").glob("samples_*.jsonl"):
        samples.unlink()
    result = _compare(run, tmp_path / "nowhere", tmp_path / "nowhere")
    assert result.exit_code == 2
    assert "kept no samples of arc_challenge: run it again with --log-samples" in result.output


def test_export_round_trip_and_layout(details_run: Path, tmp_path: Path):
    exported = tmp_path / "exported"
    result = runner.invoke(app, ["details", "export", str(details_run), str(exported)])
    assert result.exit_code == 0, result.output
    files = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file())
    (results_json,) = [f for f in files if f.endswith(".json")]
    timestamp = layout.results_timestamp(results_json)
    assert timestamp is not None
    assert files == sorted(
        ["README.md", results_json, f"results_{timestamp}.parquet"]
        + [f"{timestamp}/{layout.details_file_name(layout.task_name(k), timestamp)}" for k in TASKS]
    )
    index = layout.index_from_configs(layout.card_configs((exported / "README.md").read_text()))
    assert index.latest == {layout.task_name(k): timestamp for k in TASKS}
    import pyarrow.parquet as pq

    arc = pq.read_schema(exported / timestamp / layout.details_file_name(layout.task_name("arc"), timestamp))
    assert arc.names == list(layout.DETAIL_COLUMNS)
    # what reads the leaderboard's details reads these: datasets, by the card's configs and their `latest` split
    from datasets import load_dataset

    rows = load_dataset(str(exported), layout.config_name(layout.task_name("arc")), split="latest")
    assert rows.num_rows == 2 and set(rows[0]["metrics"]) == {"acc", "acc_norm"}
    results = load_dataset(str(exported), "results", split="latest")
    assert results.column_names == ["config_general", "results", "versions"]
    published = tmp_path / "published" / MODEL
    published.mkdir(parents=True)
    shutil.copy(exported / results_json, published)
    result = _compare(details_run, exported, tmp_path / "published", "--format", "json")
    assert result.exit_code == 0, result.output
    for task in json.loads(result.output)["details"]["tasks"]:
        assert (
            task["paired"] == task["prompts_identical"] == 2 and task["unpaired_theirs"] == task["unpaired_ours"] == 0
        )
        assert task["right_there_wrong_here"] == task["wrong_there_right_here"] == 0
        assert task["max_loglikelihood_difference"] in (0.0, None) and task["answers_differ"] in (0, None)
        assert task["details_score"] == task["published_score"]
    again = runner.invoke(app, ["details", "export", str(details_run), str(exported)])
    assert again.exit_code == 2 and "already exists" in again.output


# --------------------------------------------------------------------------------------- the Hub


def _evalsuite(args: list[str], endpoint: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_TOKEN": "hf_fake", **env}
    if "HF_HUB_OFFLINE" not in env:
        environment.pop("HF_HUB_OFFLINE", None)
    evalsuite = str(Path(sys.executable).parent / "evalsuite")
    return subprocess.run([evalsuite, *args], capture_output=True, text=True, env=environment, timeout=300)


@pytest.mark.subprocess
def test_pushed_details_are_read_from_the_hub_then_offline_from_the_cache(details_run: Path, tmp_path: Path):
    from fake_hub import FakeHub

    from evalsuite.archive.hub import RESULTS_REPO

    exported = tmp_path / "exported"
    assert runner.invoke(app, ["details", "export", str(details_run), str(exported)]).exit_code == 0
    (results_json,) = exported.glob("results_*.json")
    hub = FakeHub()
    hub.publish_dataset(RESULTS_REPO, {f"{MODEL}/{results_json.name}": results_json.read_bytes()})
    repo = layout.details_repo(MODEL)
    home = tmp_path / "hf-home"
    compare = ["compare", f"leaderboard:{MODEL}", str(details_run), "--allow-partial", "--details"]
    with hub.serving():
        pushed = _evalsuite(["details", "push", str(exported), repo], hub.endpoint, home)
        assert pushed.returncode == 0, pushed.stderr
        (commit,) = hub.datasets[repo].commits
        assert len(commit["files"]) == len(list(p for p in exported.rglob("*") if p.is_file()))
        online = _evalsuite(compare, hub.endpoint, home)
        assert online.returncode == 0, online.stderr
        assert f"leaderboard's details: {repo}" in online.stdout
        downloads = [r.path for r in hub.requests if r.method == "GET" and f"/datasets/{repo}/resolve/" in r.path]
        assert len(downloads) == 1 + len(TASKS)  # the card, then the chosen files only
        offline = _evalsuite(compare, hub.endpoint, home, HF_HUB_OFFLINE="1")
        assert offline.returncode == 0, offline.stderr
        assert offline.stdout == online.stdout
    cold = _evalsuite(compare, hub.endpoint, tmp_path / "empty-home", HF_HUB_OFFLINE="1")
    assert cold.returncode == 2
    assert cold.stderr.strip().count("\n") == 0 and "is not in the Hugging Face cache" in cold.stderr


def test_export_of_a_damaged_samples_file_or_under_a_file_is_one_line(tmp_path: Path):
    """A truncated samples file was a JSONDecodeError (82 lines); a folder under a regular file, 62 lines."""
    run = tmp_path / "run"
    shutil.copytree(SAKURA, run)
    (run / "lm_eval").mkdir()
    sample = {"doc_id": 0, "doc": {}, "arguments": [["Q: ?", " A"]], "filtered_resps": [[-1.0, True]], "filter": "none"}
    samples = run / "lm_eval" / "samples_h6_arc.jsonl"
    samples.write_text(json.dumps(sample) + "\n" + json.dumps(sample)[:40])  # killed while writing its last line
    exported = tmp_path / "exported"
    damaged = runner.invoke(app, ["details", "export", str(run), str(exported)])
    assert damaged.exit_code == 2
    assert damaged.stderr.startswith(f"error: {samples}: line 2 is not a sample as lm-eval writes them "
                                     "(JSONDecodeError: Expecting value: line 1 column 41")  # fmt: skip
    assert damaged.stderr.endswith("; the file is damaged: run the task again with --log-samples\n")
    assert len(damaged.stderr.splitlines()) == 1 and not exported.exists()
    (afile := tmp_path / "afile").write_text("kept\n")
    under = runner.invoke(app, ["details", "export", str(run), str(afile / "exported")])
    assert under.exit_code == 2
    assert under.stderr == f"error: {afile / 'exported'}: {afile} is not a folder; give a new folder under one\n"
    assert afile.read_text() == "kept\n"

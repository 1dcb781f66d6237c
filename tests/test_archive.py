"""The archived Open LLM Leaderboard as a source (evalsuite/archive): its contents table, which row stands for a
model, and its results files merged as its Space merged them. Fixtures are real rows (tests/fixtures/archive/
SOURCES.md); the contract tests pin the formats' names evalsuite reads."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import FIXTURES

from evalsuite.archive import (
    PRECISION_ORDER,
    TASK_KEYS,
    ArchiveError,
    ContentsTable,
    published_result,
    read_contents,
    read_results_files,
)
from evalsuite.archive.contents import REQUIRED_COLUMNS, SCORE_COLUMNS
from evalsuite.suite import load_suite

ARCHIVE = FIXTURES / "archive"
CONTENTS = ARCHIVE / "contents.csv"
RESULTS = ARCHIVE / "results"
YI = "HenryJJ/Instruct_Yi-6B_Dolly15K"
MISTRAL = "HenryJJ/Instruct_Mistral-7B-v0.1_Dolly15K"


@pytest.fixture(scope="module")
def contents() -> ContentsTable:
    return read_contents(CONTENTS)


def _files(model: str) -> list[Path]:
    return sorted((RESULTS / model).glob("results_*.json"))


# ------------------------------------------------------------------------------------------- contract


def test_contract_the_contents_table_has_the_columns_evalsuite_reads():
    """The copy's header (the Hub table's names) holds every column evalsuite reads; the six score columns are
    the suite's columns, so a renamed column on either side fails here."""
    header = pd.read_csv(CONTENTS, nrows=0).columns.tolist()
    assert set(REQUIRED_COLUMNS) <= set(header)
    assert list(SCORE_COLUMNS) == [t.column for t in load_suite().tasks]


def test_contract_the_results_files_hold_the_keys_and_metrics_evalsuite_reads():
    """Each real results file holds every key of TASK_KEYS (MMLU: 57 subjects) with the metric the leaderboard
    showed and its stderr, and config_general names the commit and dtype."""
    assert set(TASK_KEYS) == {t.key for t in load_suite().tasks}
    for model in (YI, MISTRAL):
        (path,) = _files(model)
        document = json.loads(path.read_text())
        assert {"model_sha", "model_dtype"} <= set(document["config_general"])
        results = document["results"]
        for key, (results_key, metric) in TASK_KEYS.items():
            rows = (
                [v for k, v in results.items() if k.startswith(results_key)]
                if key == "mmlu"
                else [results[results_key]]
            )
            assert len(rows) == (57 if key == "mmlu" else 1), key
            assert all(metric in row and f"{metric}_stderr" in row for row in rows), key


# ------------------------------------------------------------------------------------------ contents


def test_contents_from_csv_and_parquet_are_the_same_rows(tmp_path: Path, contents: ContentsTable):
    parquet = tmp_path / "train-00000-of-00001.parquet"
    pd.read_csv(CONTENTS, dtype={"Model sha": str}).to_parquet(parquet)
    assert read_contents(parquet).rows == contents.rows
    assert len(contents.rows) == 24


@pytest.mark.parametrize(
    "wanted,precision,average,others",
    [
        # a later float16 row (72.70, 2024-01-01) loses to the bfloat16 one: full precision in bfloat16 first
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "bfloat16", 72.62, ("float16",)),
        ("mistralai/Mixtral-8x7B-v0.1", "bfloat16", 68.42, ("float16", "4bit")),
        ("tiiuae/falcon-180B", "8bit", 67.85, ("4bit",)),  # no full-precision row: 8bit before 4bit
        ("01-ai/Yi-34B-Chat", "bfloat16", 65.32, ("float16",)),
        ("upstage/SOLAR-10.7B-Instruct-v1.0", "float16", 74.20, ()),
        # ORG/NAME:PRECISION picks a row
        ("mistralai/Mixtral-8x7B-Instruct-v0.1:float16", "float16", 72.70, ("bfloat16",)),
        ("tiiuae/falcon-180B:4bit", "4bit", 65.46, ("8bit",)),
        ("mistralai/mixtral-8x7b-v0.1:4BIT", "4bit", 65.81, ("bfloat16", "float16")),  # case-insensitive
    ],
)
def test_the_row_that_stands_for_a_model(contents: ContentsTable, wanted, precision, average, others):
    chosen = contents.select(wanted)
    assert (chosen.precision, chosen.average, chosen.others) == (precision, average, others)
    assert chosen.label.endswith(f"({precision})") == bool(others)


def test_among_rows_of_one_precision_the_latest_counts(contents: ContentsTable):
    """The copy holds no re-run in one precision, so this one is derived: the real SOLAR row again, dated a day
    later under another commit (the scores unchanged). The later one is chosen, and no precision is named."""
    (row,) = [r for r in contents.rows if r.model == "upstage/SOLAR-10.7B-Instruct-v1.0"]
    assert row.date is not None
    from dataclasses import replace
    from datetime import timedelta

    rerun = replace(row, date=row.date + timedelta(days=1), sha="f" * 40)
    for rows in ((row, rerun), (rerun, row)):
        chosen = ContentsTable(rows, "derived").select(row.model)
        assert chosen.sha == "f" * 40 and chosen.others == () and chosen.label == row.model


def test_precision_order_is_the_issues(contents: ContentsTable):
    assert PRECISION_ORDER == ("bfloat16", "float16", "8bit", "4bit", "GPTQ")


def test_a_model_the_archive_does_not_hold_is_one_line_naming_close_ones(contents: ContentsTable):
    with pytest.raises(ArchiveError) as missing:
        contents.select("someone/Mixtral-8x7B-v0.1")
    message = str(missing.value)
    assert message.startswith("someone/Mixtral-8x7B-v0.1 is not in the Open LLM Leaderboard's archive")
    assert "close names: mistralai/Mixtral-8x7B-v0.1" in message and "\n" not in message


def test_a_precision_it_lacks_names_those_it_holds(contents: ContentsTable):
    with pytest.raises(
        ArchiveError, match=r"holds tiiuae/falcon-180B in 8bit, 4bit, not in float16; give tiiuae/falcon-180B:8bit"
    ):
        contents.select("tiiuae/falcon-180B:float16")


def test_a_file_that_is_not_the_contents_table(tmp_path: Path):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ArchiveError, match="not the leaderboard's contents table .no column 'fullname'"):
        read_contents(other)
    with pytest.raises(ArchiveError, match="published_contents .*nope.csv: no such file"):
        read_contents(tmp_path / "nope.csv")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(ArchiveError, match="not a parquet or CSV table"):
        read_contents(broken)


def test_an_impossible_score_is_refused(tmp_path: Path):
    frame = pd.read_csv(CONTENTS, dtype={"Model sha": str})
    frame.loc[3, "GSM8K"] = 163.46  # a fraction x 100 twice
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    with pytest.raises(ArchiveError, match="row 4: GSM8K is 163.46, not a score in %"):
        read_contents(bad)


# ------------------------------------------------------------------------------------- results files


@pytest.mark.parametrize("model", [YI, MISTRAL])
def test_results_files_give_the_published_columns(contents: ContentsTable, model: str):
    """Computed as the leaderboard's Space computed its columns (x 100, MMLU the plain mean of 57 subjects,
    the average the sum of six / 6), each results file gives its contents row to the published 2 decimals."""
    result = read_results_files(_files(model), model)
    row = contents.select(model)
    suite = load_suite()
    assert {s.column: round(100 * result.tasks[s.key].value, 2) for s in suite.tasks} == row.scores
    assert round(100 * sum(t.value for t in result.tasks.values()) / 6, 2) == row.average
    assert (result.sha, result.precision) == (row.sha, row.precision)
    assert len(result.mmlu_subjects) == 57 and result.max_samples is None
    mmlu = result.tasks["mmlu"]
    assert mmlu.stderr is not None and 0 < mmlu.stderr < min(s.stderr or 1 for s in result.mmlu_subjects.values())


def test_several_files_merge_oldest_to_newest(tmp_path: Path):
    """Derived from the two real files: Yi's file, then a newer file of Yi holding only Mistral's ARC entry.
    The newer file's ARC replaces the older one's; the other tasks stay the older file's."""
    folder = tmp_path / YI
    folder.mkdir(parents=True)
    (yi_file,) = _files(YI)
    shutil.copy(yi_file, folder / yi_file.name)
    (mistral_file,) = _files(MISTRAL)
    mistral = json.loads(mistral_file.read_text())
    yi = json.loads(yi_file.read_text())
    newer = {"config_general": yi["config_general"],
             "results": {"harness|arc:challenge|25": mistral["results"]["harness|arc:challenge|25"]}}  # fmt: skip
    (folder / "results_2024-02-01T00-00-00.000000.json").write_text(json.dumps(newer))
    merged = published_result(YI, tmp_path)
    alone = read_results_files([yi_file], YI)
    assert merged.tasks["arc"].value == mistral["results"]["harness|arc:challenge|25"]["acc_norm"]
    assert {k: v for k, v in merged.tasks.items() if k != "arc"} == {k: v for k, v in alone.tasks.items() if k != "arc"}
    assert merged.files == (yi_file.name, "results_2024-02-01T00-00-00.000000.json")


def test_files_of_another_dtype_are_another_evaluation(tmp_path: Path):
    """Derived: Yi's file again as a bfloat16 evaluation with Mistral's results. Full precision in bfloat16
    stands for the model by default; `:float16` picks the other."""
    (yi_file,) = _files(YI)
    (mistral_file,) = _files(MISTRAL)
    bf16 = json.loads(mistral_file.read_text())
    bf16["config_general"]["model_dtype"] = "torch.bfloat16"
    other = tmp_path / "results_2023-12-01T00-00-00.000000.json"
    other.write_text(json.dumps(bf16))
    default = read_results_files([yi_file, other], YI)
    assert default.precision == "bfloat16" and default.files == (other.name,)
    assert read_results_files([yi_file, other], YI, "float16").files == (yi_file.name,)
    with pytest.raises(ArchiveError, match="no results file of its 8bit evaluation .they hold bfloat16, float16"):
        read_results_files([yi_file, other], YI, "8bit")


def test_a_nan_truthfulqa_counts_as_zero_and_a_stale_mmlu_is_skipped(tmp_path: Path):
    """As the leaderboard's Space read them (derived from Yi's file)."""
    (yi_file,) = _files(YI)
    document = json.loads(yi_file.read_text())
    document["results"]["harness|truthfulqa:mc|0"]["mc2"] = math.nan
    document["versions"] = {"harness|hendrycksTest-abstract_algebra|5": 0}
    path = tmp_path / yi_file.name
    path.write_text(json.dumps(document))  # json writes NaN, as Python's json in the leaderboard's files did
    result = read_results_files([path], YI)
    assert result.tasks["truthfulqa"].value == 0.0
    assert "mmlu" not in result.tasks


def test_results_file_errors_are_one_line(tmp_path: Path):
    with pytest.raises(ArchiveError, match="published_results .*nope: no such directory"):
        published_result(YI, tmp_path / "nope")
    with pytest.raises(ArchiveError, match="someone/else: no results_.*json under"):
        published_result("someone/else", RESULTS)
    broken = tmp_path / "results_2024-01-01T00-00-00.json"
    broken.write_text("{")
    with pytest.raises(ArchiveError, match="not a results file of the leaderboard .JSONDecodeError"):
        read_results_files([broken], YI)
    (yi_file,) = _files(YI)
    document = json.loads(yi_file.read_text())
    del document["results"]["harness|hendrycksTest-anatomy|5"]
    broken.write_text(json.dumps(document))
    with pytest.raises(ArchiveError, match="MMLU has 56 subjects, not 57"):
        read_results_files([broken], YI)

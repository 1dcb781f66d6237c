"""The Hub's newer results format, `.eval_results/*.yaml`: rendered with huggingface_hub's own EvalResultEntry,
read back with its parse_eval_result_entries, and written beside a README without touching what is not ours.

The run is the Sakura fixture (the leaderboard's published numbers, tests/fixtures/results/README.md). The
benchmark lookup against the Hub (eval.yaml) is tested on the loopback Hub in test_eval_results_hub.py; here,
`card update --eval-results` takes the spec's mapping (`from_hub` replaced by `from_spec`, or by all six
mapped datasets taken as registered, to exercise the file edits with six entries).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURES, SAKURA
from golden import check_golden
from huggingface_hub import parse_eval_result_entries
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.errors import CardError
from evalsuite.publish import benchmarks, eval_results
from evalsuite.publish.benchmarks import Benchmark, Benchmarks, Origin, task_in_eval_yaml
from evalsuite.results import percent, read_results
from evalsuite.suite import load_suite

SUITE = load_suite()
RESULTS = read_results(SAKURA)
OWNED = {s.hub_benchmark.dataset_id for s in SUITE.tasks if s.hub_benchmark}
FILE = ".eval_results/h6-leaderboard-v1.yaml"
runner = CliRunner()


def all_six() -> Benchmarks:
    """Every task's mapped benchmark, as if the Hub had registered all six (the spec's task ids)."""
    found = Benchmarks()
    for spec in SUITE.tasks:
        assert spec.hub_benchmark is not None
        found.found[spec.key] = Benchmark(spec.key, spec.hub_benchmark.task_id, spec.hub_benchmark, Origin.HUB)
    return found


def _parsed(text: str):
    return parse_eval_result_entries(yaml.safe_load(text))


def test_render_round_trips_through_huggingface_hub_with_the_runs_values():
    result = runner.invoke(app, ["card", "render", str(SAKURA), "--format", "eval-results"])
    assert result.exit_code == 0, result.output
    (entry,) = _parsed(result.stdout)  # offline: only GSM8K is known to be a registered benchmark
    assert (entry.dataset_id, entry.task_id, entry.value) == ("openai/gsm8k", "gsm8k", 65.2)
    assert entry.value == percent(RESULTS.task("gsm8k").value)
    assert entry.date == "2024-01-01T00:00:00Z" and entry.source_url is None
    assert entry.notes == (
        "Open LLM Leaderboard v1 protocol, 5-shot, exact_match (leaderboard-v1), lm-eval 0.4.13, evalsuite 0.1.0"
    )
    left_out = result.stderr.strip().splitlines()
    assert len(left_out) == 1 and "cais/mmlu" in left_out[0] and "eval.yaml on the Hub" in left_out[0]


def test_golden_eval_results(update_golden):
    args = ["--source-name", "Eval logs", "--source-url", "https://huggingface.co/datasets/me/logs"]
    result = runner.invoke(app, ["card", "render", str(SAKURA), "--format", "eval-results", *args])
    assert result.exit_code == 0, result.output
    check_golden("sakura.eval-results.yaml", result.stdout, update_golden)
    (entry,) = _parsed(result.stdout)
    assert (entry.source_url, entry.source_name) == ("https://huggingface.co/datasets/me/logs", "Eval logs")


def test_all_six_entries_carry_the_runs_values_and_setup():
    text = eval_results.render(eval_results.entries(RESULTS, SUITE, all_six()))
    parsed = _parsed(text)
    assert [(e.dataset_id, e.task_id) for e in parsed] == [
        ("allenai/ai2_arc", "arc_challenge"), ("Rowan/hellaswag", "hellaswag"), ("cais/mmlu", "mmlu"),
        ("truthfulqa/truthful_qa", "truthfulqa_mc2"), ("allenai/winogrande", "winogrande"), ("openai/gsm8k", "gsm8k"),
    ]  # fmt: skip
    assert [e.value for e in parsed] == [70.99, 88.42, 66.33, 71.79, 83.66, 65.2]
    assert [e.notes.split(", ")[1:3] for e in parsed] == [
        ["25-shot", "acc_norm"], ["10-shot", "acc_norm"], ["5-shot", "acc"], ["0-shot", "mc2"], ["5-shot", "acc"],
        ["5-shot", "exact_match (leaderboard-v1)"],  # GSM8K: cards call it acc; the notes say what was computed
    ]  # fmt: skip


def test_partial_and_not_comparable_runs_are_refused_unless_allowed_and_then_named_in_notes():
    partial = FIXTURES / "results" / "other-models" / "local__tiny" / "20240105T000000Z-0000"
    refused = runner.invoke(app, ["card", "render", str(partial), "--format", "eval-results"])
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "--allow-partial" in refused.stderr
    schema_1 = FIXTURES / "results-schema-v1" / SAKURA.parent.name / SAKURA.name  # protocol lm-eval
    refused = runner.invoke(app, ["card", "render", str(schema_1), "--format", "eval-results"])
    assert refused.exit_code == 1 and "--allow-not-comparable" in refused.stderr
    allowed = runner.invoke(
        app, ["card", "render", str(schema_1), "--format", "eval-results", "--allow-not-comparable"]
    )
    (entry,) = _parsed(allowed.stdout)
    assert entry.notes.startswith("lm-eval 0.4 protocol (not the Open LLM Leaderboard's requests), 5-shot")
    assert "not the leaderboard's requests: protocol lm-eval" in entry.notes
    run = read_results(partial)
    notes = [e.notes for e in eval_results.entries(run, SUITE, all_six())]
    assert notes and all("partial: " in n and " documents" in n for n in notes)


def test_an_invalid_results_file_is_one_line(tmp_path: Path):
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps({"schema_version": 2, "run_id": "x"}))
    result = runner.invoke(app, ["card", "render", str(bad), "--format", "eval-results"])
    assert result.exit_code != 0 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")


# ------------------------------------------------------------------------------------ the file, edited


OTHER = """\
# hand-written: our own GSM8K variant lives elsewhere; this is another benchmark
- dataset:
    id: cais/hle
    task_id: default   # the only task
  value: 20.9
  notes: "no-tools"
"""


def _ours(found: Benchmarks | None = None):
    return eval_results.entries(RESULTS, SUITE, found or all_six())


def test_an_existing_file_keeps_every_byte_that_is_not_ours_and_a_second_update_changes_nothing():
    old_gsm8k = "- dataset:\n    id: openai/gsm8k\n    task_id: gsm8k\n  value: 1.0\n"
    existing = OTHER + old_gsm8k + "# trailing comment\n"
    new = eval_results.updated_file(existing, _ours(), OWNED, set())
    assert new.startswith(OTHER)  # the other entry and its comments, as written
    assert "value: 1.0" not in new and "# trailing comment\n" in new
    parsed = _parsed(new)
    assert [e.dataset_id for e in parsed] == ["cais/hle", "openai/gsm8k", "allenai/ai2_arc", "Rowan/hellaswag",
                                              "cais/mmlu", "truthfulqa/truthful_qa", "allenai/winogrande"]  # fmt: skip
    assert eval_results.updated_file(new, _ours(), OWNED, set()) == new


def test_entries_of_datasets_the_hub_does_not_list_are_removed_and_others_of_ours_stay():
    first = eval_results.updated_file(OTHER, _ours(), OWNED, set())
    only_gsm8k = Benchmarks(found={"gsm8k": all_six().found["gsm8k"]})
    # MMLU's dataset lost its eval.yaml; ARC is only missing from this run's benchmarks (kept as it was)
    new = eval_results.updated_file(first, _ours(only_gsm8k), OWNED, {"cais/mmlu"})
    ids = [e.dataset_id for e in _parsed(new)]
    assert "cais/mmlu" not in ids and "allenai/ai2_arc" in ids and ids[0] == "cais/hle"


def test_crlf_files_stay_crlf():
    existing = OTHER.replace("\n", "\r\n")
    new = eval_results.updated_file(existing, _ours(), OWNED, set())
    assert new.startswith(existing) and "\n" not in new.replace("\r\n", "")


@pytest.mark.parametrize(
    "existing, message",
    [
        ("[{dataset: {id: openai/gsm8k, task_id: gsm8k}, value: 1}]\n", "block list"),
        ("dataset: {id: openai/gsm8k}\n", "not a YAML list"),
        ("- dataset: [unclosed\n", "not valid YAML"),
        ("- value: 1\n", "cannot read"),
        (
            "- dataset: {id: openai/gsm8k, task_id: a}\n  value: 1\n- dataset: {id: openai/gsm8k, task_id: b}\n"
            "  value: 2\n",
            "two entries for openai/gsm8k",
        ),
    ],
)
def test_a_file_evalsuite_cannot_edit_safely_is_refused(existing: str, message: str):
    with pytest.raises(CardError, match=message):
        eval_results.updated_file(existing, _ours(), OWNED, set())


# --------------------------------------------------------------------------- card update --eval-results


@pytest.fixture
def spec_lookup(monkeypatch: pytest.MonkeyPatch):
    """`card update` with the spec's mapping instead of the Hub's eval.yaml (no network here)."""
    monkeypatch.setattr(benchmarks, "from_hub", benchmarks.from_spec)


def _update(readme: Path, *extra: str):
    return runner.invoke(app, ["card", "update", str(readme), "--results", str(SAKURA), "--eval-results", *extra])


def test_update_writes_the_file_beside_the_readme_idempotently_and_check_sees_a_stale_one(spec_lookup, tmp_path):
    readme = tmp_path / "README.md"
    folder = tmp_path / ".eval_results"
    folder.mkdir()
    (folder / "mine.yaml").write_text(OTHER)  # another file in the folder: never touched
    first = _update(readme)
    assert first.exit_code == 0, first.output
    written = (tmp_path / FILE).read_text()
    assert written == runner.invoke(app, ["card", "render", str(SAKURA), "--format", "eval-results"]).stdout
    assert (folder / "mine.yaml").read_text() == OTHER and sorted(p.name for p in folder.iterdir()) == [
        "h6-leaderboard-v1.yaml", "mine.yaml"]  # fmt: skip
    before = readme.read_bytes()
    again = _update(readme)
    assert again.exit_code == 0 and "already up to date" in again.stderr
    assert readme.read_bytes() == before and (tmp_path / FILE).read_text() == written
    assert _update(readme, "--check").exit_code == 0
    (tmp_path / FILE).write_text(written.replace("65.2", "60.0"))
    stale = _update(readme, "--check")
    assert stale.exit_code == 1 and f"{tmp_path / FILE} is out of date" in stale.stderr
    assert "--eval-results" in stale.stderr
    diff = _update(readme, "--dry-run")
    assert diff.exit_code == 0 and f"--- a/{FILE}" in diff.stdout and "-  value: 60.0" in diff.stdout
    assert "+  value: 65.2" in diff.stdout and (tmp_path / FILE).read_text() != written  # dry run: unchanged


def test_bad_inputs_are_one_line_and_nothing_is_written(spec_lookup, tmp_path: Path):
    readme = tmp_path / "README.md"
    partial = FIXTURES / "results" / "other-models" / "local__tiny" / "20240105T000000Z-0000"
    for args in (
        ["--results", str(partial), "--eval-results"],  # partial
        ["--peers", "upstage/SOLAR-10.7B-Instruct-v1.0", "--eval-results"],  # no run
    ):
        result = runner.invoke(app, ["card", "update", str(readme), *args])
        assert result.exit_code == 1, result.output
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    (tmp_path / ".eval_results").mkdir()
    (tmp_path / FILE).write_text("- dataset: [unclosed\n")
    result = _update(readme)
    assert result.exit_code == 1 and "not valid YAML" in result.stderr
    assert not readme.exists() and (tmp_path / FILE).read_text() == "- dataset: [unclosed\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == [".eval_results", "h6-leaderboard-v1.yaml"]


def test_no_registered_benchmark_writes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    none = Benchmarks(not_benchmarks=set(OWNED), notes=["(the Hub lists none of the six)"])
    monkeypatch.setattr(benchmarks, "from_hub", lambda suite: none)
    readme = tmp_path / "README.md"
    result = _update(readme)
    assert result.exit_code == 1 and "none of its tasks has a benchmark registered on the Hub" in result.stderr
    assert not readme.exists() and not (tmp_path / ".eval_results").exists()


# ----------------------------------------------------------------------------------- eval.yaml's tasks


def _eval_yaml(*tasks: tuple[str, str, str]) -> str:
    """In the shape of hub-docs docs/hub/eval-results.md's example: name, description, framework, tasks."""
    listed = "".join(f"  - id: {i}\n    config: {c}\n    split: {s}\n" for i, c, s in tasks)
    return f"name: A benchmark\ndescription: Scores in percent.\nevaluation_framework: lm-eval\ntasks:\n{listed}"


@pytest.mark.parametrize(
    "text, expected",
    [
        (_eval_yaml(("gsm8k", "main", "test"), ("gsm8k_cot", "main", "test")), "gsm8k"),  # the spec's id
        (_eval_yaml(("default", "main", "test"), ("socratic", "socratic", "test")), "default"),  # config + split
        (_eval_yaml(("only", "other", "train")), "only"),  # the only task
        (_eval_yaml(("a", "main", "test"), ("b", "main", "test")), None),  # two on our data: not guessed
        ("name: x\n", None),
        ("tasks: [unclosed\n", None),
    ],
)
def test_the_task_id_is_taken_from_the_benchmarks_eval_yaml(text: str, expected: str | None):
    spec = SUITE.task("gsm8k")
    assert spec.hub_benchmark is not None
    task_id, why = task_in_eval_yaml(spec, spec.hub_benchmark, text)
    assert task_id == expected
    assert bool(why) == (expected is None)


def test_a_hub_that_is_down_is_asked_once_then_the_cache_and_the_spec_answer(monkeypatch: pytest.MonkeyPatch):
    import httpx2 as httpx  # what huggingface_hub 2.4 builds its errors on
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError

    calls: list[tuple[str, bool]] = []

    def download(repo_id: str, filename: str, repo_type: str, local_files_only: bool) -> str:
        calls.append((repo_id, local_files_only))
        response = httpx.Response(503, request=httpx.Request("HEAD", "http://hub/..."))
        raise HfHubHTTPError("Server error '503 Service Unavailable' for url 'http://hub/...'", response=response)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    found = benchmarks.from_hub(SUITE)
    assert [only for _, only in calls] == [False, True, True, True, True, True]  # asked once, then cache only
    assert list(found.found) == ["gsm8k"] and found.found["gsm8k"].origin is Origin.SPEC
    assert "(HfHubHTTPError: Server error '503 Service Unavailable'" in found.notes[0]
    assert "using tasks/suite.yaml's benchmarks (unchecked)" in found.notes[0]

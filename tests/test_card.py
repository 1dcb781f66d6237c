"""Model cards: rendering (golden files), round trips through huggingface_hub, in-place README updates."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURES, SAKURA
from golden import check_golden
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard import REGEX_YAML_BLOCK
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.errors import CardError
from evalsuite.publish.card import END_MARKER, START_MARKER, read_readme, update_readme
from evalsuite.publish.model_index import CardSource, render_model_index
from evalsuite.results import SCHEMA_VERSION, read_results
from evalsuite.suite import load_suite

SUITE = load_suite()
RESULTS = read_results(SAKURA)
LEADERBOARD_SOURCE = CardSource.open_llm_leaderboard("kyujinpy/Sakura-SOLAR-Instruct")
runner = CliRunner()


def test_sakura_solar_renders_its_published_average():
    result = runner.invoke(app, ["card", "render", str(SAKURA), "--format", "markdown"])
    assert result.exit_code == 0
    assert "|Avg.|74.40|" in result.stdout
    assert "|GSM8k (5-shot)|65.20|" in result.stdout


def test_golden_markdown(update_golden):
    result = runner.invoke(app, ["card", "render", str(SAKURA), "--format", "markdown"])
    check_golden("sakura.card.md", result.stdout, update_golden)


def test_golden_model_index_in_the_bots_form(update_golden):
    args = ["--source-name", LEADERBOARD_SOURCE.name, "--source-url", LEADERBOARD_SOURCE.url]
    result = runner.invoke(app, ["card", "render", str(SAKURA), "--format", "model-index", *args])
    assert result.exit_code == 0, result.output
    check_golden("sakura.model-index.yaml", result.stdout, update_golden)


def test_model_index_round_trips_through_huggingface_hub():
    text = render_model_index(RESULTS, SUITE, source=LEADERBOARD_SOURCE)
    data = ModelCardData(**yaml.safe_load(text))
    name, parsed = data.model_name, data.eval_results
    assert name == "kyujinpy/Sakura-SOLAR-Instruct"
    got = {(r.dataset_type, r.metric_type): (r.metric_value, r.dataset_args) for r in parsed}
    assert got == {
        ("ai2_arc", "acc_norm"): (70.99, {"num_few_shot": 25}),
        ("hellaswag", "acc_norm"): (88.42, {"num_few_shot": 10}),
        ("cais/mmlu", "acc"): (66.33, {"num_few_shot": 5}),
        ("truthful_qa", "mc2"): (71.79, {"num_few_shot": 0}),
        ("winogrande", "acc"): (83.66, {"num_few_shot": 5}),
        ("gsm8k", "acc"): (65.2, {"num_few_shot": 5}),
    }
    assert all(r.source_name == "Open LLM Leaderboard" for r in parsed)
    # six datasets, six model-index results: none collapsed by huggingface_hub's grouping rule
    assert len(yaml.safe_load(text)["model-index"][0]["results"]) == 6


@pytest.mark.parametrize("fixture", ["existing_model_index.md", "no_front_matter.md", "crlf.md", None])
def test_golden_readme_updates(fixture, update_golden):
    old = read_readme(FIXTURES / "cards" / fixture) if fixture else ""
    new = update_readme(old, RESULTS, SUITE)
    check_golden(f"cards/{fixture or 'new_readme.md'}", new, update_golden)
    assert update_readme(new, RESULTS, SUITE) == new, "a second update must change nothing"
    card = ModelCard(new)
    values = {r.dataset_type: r.metric_value for r in card.data.eval_results}
    assert values["ai2_arc"] == 70.99 and values["gsm8k"] == 65.2


def test_existing_card_keeps_what_it_owns():
    old = read_readme(FIXTURES / "cards" / "existing_model_index.md")
    new = update_readme(old, RESULTS, SUITE)
    assert "# a comment the card keeps\ntags: [solar, merge]\n" in new
    assert new.endswith("<!-- evalsuite:end -->\n\nMore prose after the section.\n")
    assert "old table" not in new
    results = ModelCard(new).data.eval_results
    assert [(r.dataset_type, r.metric_value) for r in results if r.dataset_type == "my/bench"] == [("my/bench", 12.5)]
    assert [r.metric_value for r in results if r.dataset_type == "ai2_arc"] == [70.99]  # replaced, not duplicated


def test_crlf_stays_crlf():
    new = update_readme(read_readme(FIXTURES / "cards" / "crlf.md"), RESULTS, SUITE)
    assert "\n" not in new.replace("\r\n", "")


# --- property: whatever else a README holds survives an update byte for byte

_text = st.text(
    # no U+FEFF: at the start of a README it is a byte-order mark, which the `bom` flag covers
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\x00\x85\u2028\u2029\ufeff"), max_size=200
)
_safe_key = st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True).filter(lambda k: k != "model")
_front = st.dictionaries(
    _safe_key,
    st.one_of(st.integers(), st.text(st.characters(whitelist_categories=("L", "N")), max_size=20)),
    max_size=5,
)


def _body_without_markers(text: str) -> str:
    for token in (START_MARKER, END_MARKER, "<!--", "```", "~~~"):
        text = text.replace(token, "")
    return text


_FRONT_STYLES = ["mapping", "empty-braces", "comments-only"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=_text, after=_text, front=_front, crlf=st.booleans(), has_front=st.booleans(), other=st.booleans(),
    bom=st.booleans(), closer_blanks=st.sampled_from(["", " ", " \t "]), style=st.sampled_from(_FRONT_STYLES),
    one_crlf_line=st.booleans(),
)  # fmt: skip
def test_update_preserves_everything_it_does_not_own(
    before, after, front, crlf, has_front, other, bom, closer_blanks, style, one_crlf_line
):
    before, after = _body_without_markers(before), _body_without_markers(after)
    body = f"{before}\n{START_MARKER}\nstale\n{END_MARKER}\n{after}"
    metadata = dict(front) if has_front and style == "mapping" else {}
    if other and has_front and style == "mapping":
        metadata["model-index"] = [{"name": "someone/else", "results": [
            {"task": {"type": "text-generation"}, "dataset": {"name": "X", "type": "x/y"},
             "metrics": [{"type": "acc", "value": 1.5}]}]}]  # fmt: skip
    front_text = {
        "mapping": yaml.safe_dump(metadata, sort_keys=False) if metadata else "",
        "empty-braces": "# For reference on model card metadata, see the spec\n{}\n",  # huggingface_hub's template
        "comments-only": "# {{ card_data }}\n",
    }[style]
    text = (f"---\n{front_text}---{closer_blanks}\n" if has_front else "") + body
    assume(has_front or not re.match(r"\s*---", text))  # a body that starts like front matter is front matter
    if crlf:
        text = text.replace("\n", "\r\n")
    elif one_crlf_line and has_front:
        text = text.replace("---\n", "---\r\n", 1)  # the opening fence alone ends in CRLF
    text = ("\ufeff" if bom else "") + text
    nl = "\r\n" if crlf else "\n"
    new = update_readme(text, RESULTS, SUITE)
    assert new.startswith("\ufeff") == bom
    # body outside the markers: unchanged bytes
    assert new.endswith(f"{END_MARKER}\n{after}".replace("\n", nl))
    assert (before + "\n").replace("\n", nl) + START_MARKER in new
    # front matter: as huggingface_hub reads it, every other key unchanged, other model-index entries kept
    card = ModelCard(new.removeprefix("\ufeff"))
    parsed = card.data.to_dict()
    assert {k: v for k, v in parsed.items() if k not in ("model-index", "model_name", "eval_results")} == {
        k: v for k, v in metadata.items() if k != "model-index"
    }
    assert len(card.data.eval_results) == 6 + (1 if other and has_front and style == "mapping" else 0)
    raw = yaml.safe_load(REGEX_YAML_BLOCK.search(new.removeprefix("\ufeff")).group(2))
    names = [e["name"] for e in raw["model-index"]]
    assert names == (["someone/else"] if other and has_front and style == "mapping" else []) + [
        "kyujinpy/Sakura-SOLAR-Instruct"
    ]
    if has_front:  # the comments and the closing fence as written
        assert f"---{closer_blanks}{nl}" in new
        for line in front_text.splitlines():
            if line.startswith("#"):
                assert line in new
    if crlf:
        assert "\n" not in new.replace("\r\n", "")
    assert update_readme(new, RESULTS, SUITE) == new


# --- the command


def test_update_check_and_dry_run(tmp_path: Path):
    readme = tmp_path / "README.md"
    shutil.copy(FIXTURES / "cards" / "existing_model_index.md", readme)
    before = readme.read_bytes()
    check = runner.invoke(app, ["card", "update", str(readme), "--results", str(SAKURA), "--check"])
    assert check.exit_code == 1 and "is out of date" in check.stderr
    dry = runner.invoke(app, ["card", "update", str(readme), "--results", str(SAKURA), "--dry-run"])
    assert dry.exit_code == 0 and "+|Avg.|74.40|" in dry.stdout and "-old table" in dry.stdout
    assert readme.read_bytes() == before
    first = runner.invoke(app, ["card", "update", str(readme), "--results", str(SAKURA)])
    assert first.exit_code == 0 and readme.read_bytes() != before
    after_first = readme.read_bytes()
    second = runner.invoke(app, ["card", "update", str(readme), "--results", str(SAKURA)])
    assert second.exit_code == 0 and "already up to date" in second.stderr
    assert readme.read_bytes() == after_first
    assert runner.invoke(app, ["card", "update", str(readme), "--results", str(SAKURA), "--check"]).exit_code == 0


class RecordingHub:
    """Stands in for the Hub calls a push makes (HfApi.model_info, hf_hub_download of the README at that
    revision, HfApi.create_commit): serves `readme` as the Hub's README and records what would be uploaded, one
    dict per file. The real calls against a loopback Hub: test_faults.py and test_eval_results_hub.py."""

    def __init__(self, readme: bytes = b"", fail: Exception | None = None, folder: Path | None = None):
        self.uploads: list[dict] = []
        self.readme, self.fail, self.folder = readme, fail, folder

    def install(self, monkeypatch) -> None:
        import huggingface_hub
        from huggingface_hub import HfApi

        monkeypatch.setattr(HfApi, "create_commit", lambda api, **kwargs: self(**kwargs))
        monkeypatch.setattr(HfApi, "model_info", lambda api, repo_id, **kwargs: self.info())
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *args, **kwargs: self.download())

    def info(self):
        if self.fail is not None:
            raise self.fail
        from types import SimpleNamespace

        return SimpleNamespace(sha="0" * 40)

    def download(self) -> str:
        assert self.folder is not None
        path = self.folder / "hub-README.md"
        path.write_bytes(self.readme)
        return str(path)

    def __call__(self, *, repo_id, operations, repo_type=None, create_pr=None, parent_commit=None, **kwargs):
        for op in operations:
            self.uploads.append(
                {"bytes": op.path_or_fileobj, "path": op.path_in_repo, "repo": repo_id, "type": repo_type,
                 "pr": create_pr, "parent": parent_commit}
            )  # fmt: skip
        from huggingface_hub import CommitInfo

        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/0123",
            commit_message="m",
            commit_description="",
            oid="0123",
            pr_url=f"https://huggingface.co/{repo_id}/discussions/1" if create_pr else None,
        )


def test_push_uploads_the_exact_bytes_written_without_printing_the_token(tmp_path: Path, monkeypatch):
    readme = tmp_path / "README.md"
    # a real card with comments and the bot's layout: ModelCard(text).push_to_hub would have re-serialised it
    shutil.copy(FIXTURES / "cards" / "real" / "hub_template.md", readme)
    hub = RecordingHub(readme=readme.read_bytes(), folder=tmp_path / "hub")  # the Hub holds the same card
    (tmp_path / "hub").mkdir()
    hub.install(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    args = ["card", "update", str(readme), "--results", str(SAKURA), "--push", "me/model", "--create-pr"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [(u["repo"], u["path"], u["type"], u["pr"], u["parent"]) for u in hub.uploads] == [
        ("me/model", "README.md", "model", True, "0" * 40)
    ]
    assert hub.uploads[0]["bytes"] == readme.read_bytes()
    assert b"# Doc / guide: https://huggingface.co/docs/hub/model-cards" in hub.uploads[0]["bytes"]
    assert "pushed: https://huggingface.co/me/model/discussions/1" in result.stderr
    assert "hf_secret_token_value" not in result.output


def test_push_failure_is_one_line_and_leaves_the_local_readme_as_it_was(tmp_path: Path, monkeypatch):
    RecordingHub(fail=ConnectionError("offline\nwith details")).install(monkeypatch)
    readme = tmp_path / "R.md"
    readme.write_text("# mine\n")
    result = runner.invoke(app, ["card", "update", str(readme), "--results", str(SAKURA), "--push", "me/m"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: the Hugging Face Hub is unreachable (ConnectionError: offline); nothing was pushed, run again when "
        "it is"
    )
    assert readme.read_text() == "# mine\n"  # the local file changes only once the push has succeeded


# --- bad input: one line, exit 1, nothing written


def _refused(args: list[str], expected: str, readme: Path | None = None) -> None:
    before = readme.read_bytes() if readme and readme.exists() else None
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    if readme is not None:
        assert (readme.read_bytes() if readme.exists() else None) == before


def test_newer_schema_is_refused(tmp_path: Path):
    raw = json.loads((SAKURA / "results.json").read_text())
    raw["schema_version"] = 99
    path = tmp_path / "results.json"
    path.write_text(json.dumps(raw))
    _refused(
        ["card", "render", str(path), "--format", "markdown"],
        f"was written by a newer evalsuite (this one reads {SCHEMA_VERSION}); upgrade evalsuite",
    )


def test_broken_front_matter_is_refused(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text("---\nlicense: [unclosed\n---\n\nbody\n")
    _refused(["card", "update", str(readme), "--results", str(SAKURA)], "front matter is not valid YAML", readme)


def test_non_utf8_readme_is_refused(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_bytes("# caf\xe9\n".encode("latin-1"))
    _refused(["card", "update", str(readme), "--results", str(SAKURA)], "not UTF-8", readme)


def test_partial_run_is_refused_unless_allowed(tmp_path: Path):
    partial = FIXTURES / "results" / "other-models" / "local__tiny" / "20240105T000000Z-0000"
    readme = tmp_path / "README.md"
    _refused(["card", "update", str(readme), "--results", str(partial)], "--allow-partial", readme)
    assert not readme.exists()
    ok = runner.invoke(app, ["card", "update", str(readme), "--results", str(partial), "--allow-partial"])
    assert ok.exit_code == 0 and "**Partial run**" in readme.read_text()


def test_half_markers_are_refused():
    with pytest.raises(CardError, match="without the other"):
        update_readme(f"text\n{START_MARKER}\n", RESULTS, SUITE)


def test_card_from_a_real_run(real_run, tmp_path: Path):
    """End to end: the SmolLM2 run's results file becomes a README whose metadata carries its numbers."""
    outcome, _ = real_run
    readme = tmp_path / "README.md"
    args = ["card", "update", str(readme), "--results", str(outcome.run_dir), "--allow-partial"]
    # the sample rows make ARC, HellaSwag, Winogrande and GSM8K ask other requests than the leaderboard's
    _refused(args, "did not ask the leaderboard's requests", readme)
    result = runner.invoke(app, [*args, "--allow-not-comparable"])
    assert result.exit_code == 0, result.output
    text = readme.read_text()
    assert "|AI2 Reasoning Challenge (25-Shot) †|" in text and "|MMLU (5-Shot)|" in text
    assert "- HellaSwag (10-Shot): " in text and "- AI2 Reasoning Challenge (25-Shot): " in text
    assert "- MMLU (5-Shot):" not in text  # MMLU asked the leaderboard's requests
    card = ModelCard.load(readme)
    by_type = {r.dataset_type: r.metric_value for r in card.data.eval_results}
    for spec in SUITE.tasks:
        assert by_type[spec.card.dataset_type] == round(100 * outcome.results.task(spec.key).value, 2)
    assert card.data.model_name == "SmolLM2-135M-Instruct.Q4_1"


def test_eval_results_from_a_real_run(real_run, update_golden):
    """The SmolLM2 run's `.eval_results` entries, all six datasets taken as registered benchmarks: read back by
    huggingface_hub with the run's values; golden with the run's date and evalsuite version left out."""
    from huggingface_hub import parse_eval_result_entries
    from test_eval_results import all_six

    from evalsuite.publish import eval_results

    outcome, _ = real_run
    run = outcome.results
    text = eval_results.render(eval_results.entries(run, SUITE, all_six()))
    parsed = parse_eval_result_entries(yaml.safe_load(text))
    assert [e.value for e in parsed] == [round(100 * run.task(s.key).value, 2) for s in SUITE.tasks]
    assert all("partial: " in e.notes for e in parsed)  # the sample rows: every task partial, MMLU 57 of 14042
    assert all(e.date == run.created_at.strftime("%Y-%m-%dT%H:%M:%SZ") for e in parsed)
    stable = re.sub(r"date: '[^']+'", "date: '<the run's>'", text).replace(
        f"evalsuite {run.versions.evalsuite}", "evalsuite <version>"
    )
    check_golden("smollm2.eval-results.yaml", stable, update_golden)


def test_section_of_an_lm_eval_protocol_run_says_it_is_not_the_leaderboards_requests():
    schema_1 = FIXTURES / "results-schema-v1" / SAKURA.parent.name / SAKURA.name  # read as protocol lm-eval
    result = runner.invoke(app, ["card", "render", str(schema_1), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert (
        "asking the model lm-eval 0.4's requests (protocol lm-eval), not the Open LLM Leaderboard (v1)'s: not "
        "comparable with the leaderboard." in result.stdout
    )


def test_not_comparable_runs_are_refused_in_model_index_and_marked_in_markdown(tmp_path: Path):
    schema_1 = FIXTURES / "results-schema-v1" / SAKURA.parent.name / SAKURA.name  # every task: protocol lm-eval
    refused = runner.invoke(app, ["card", "render", str(schema_1), "--format", "model-index"])
    assert refused.exit_code == 1 and refused.stdout == ""
    assert "--allow-not-comparable" in refused.stderr
    allowed = runner.invoke(app, ["card", "render", str(schema_1), "--format", "model-index", "--allow-not-comparable"])
    assert allowed.exit_code == 0 and "value: 70.99" in allowed.stdout
    markdown = runner.invoke(app, ["card", "render", str(schema_1), "--format", "markdown"]).stdout
    assert "|GSM8k (5-shot) †|65.20|" in markdown
    assert "† Not comparable with the leaderboard, the model was not asked its requests:" in markdown
    assert markdown.count("- ") >= 6 and "protocol lm-eval: lm-eval 0.4's exemplars" in markdown

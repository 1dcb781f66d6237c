"""`card update` on real model cards (tests/fixtures/cards/real/, see SOURCES.md) and the classes derived from
them by one edit each. For every class: huggingface_hub parses the result and finds the six results with our
values; every other metadata key is unchanged; the only front-matter lines that went are lines of H6 results
the card held for this model; the body outside the managed section is unchanged byte for byte; a second run
changes nothing; `--check` passes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURES, SAKURA
from huggingface_hub import metadata_load
from huggingface_hub.repocard import REGEX_YAML_BLOCK
from typer.testing import CliRunner

from evalsuite.cli import app
from evalsuite.publish.card import END_MARKER, START_MARKER
from evalsuite.results import read_results

REAL = FIXTURES / "cards" / "real"
runner = CliRunner()
H6_TYPES = {"ai2_arc", "hellaswag", "cais/mmlu", "truthful_qa", "winogrande", "gsm8k"}
SAKURA_VALUES = {
    "ai2_arc": 70.99, "hellaswag": 88.42, "cais/mmlu": 66.33, "truthful_qa": 71.79, "winogrande": 83.66, "gsm8k": 65.2,
}  # fmt: skip


def _results_for(model_id: str, tmp_path: Path) -> Path:
    """The Sakura results fixture, as if it were a run of `model_id`."""
    data = json.loads((SAKURA / "results.json").read_text())
    data["model"]["id"] = model_id
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    return path


def _split(text: str) -> tuple[str, str]:
    """(front matter, body) as huggingface_hub cuts them."""
    text = text.removeprefix("\ufeff")
    match = REGEX_YAML_BLOCK.search(text)
    return (match.group(2), text[match.end() :]) if match else ("", text)


def _h6_result_lines(front: str) -> Counter[str]:
    """Lines of the model-index results for the six H6 datasets (found here independently of evalsuite)."""
    lines = front.splitlines()
    out: Counter[str] = Counter()
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*)- task:", lines[i])
        if not match:
            i += 1
            continue
        indent = len(match.group(1))
        j = i + 1
        while j < len(lines) and not (lines[j].strip() and len(lines[j]) - len(lines[j].lstrip()) <= indent):
            j += 1
        item = lines[i:j]
        if any(re.match(r"^\s+type: (.*)$", ln) and ln.split("type: ")[1].strip() in H6_TYPES for ln in item):
            out.update(line.rstrip("\r") for line in item)
        i = j
    return out


def _body_outside_section(body: str) -> str:
    start, end = body.find(START_MARKER), body.find(END_MARKER)
    return body if start == -1 else body[:start] + body[end + len(END_MARKER) :]


# (fixture, edit that makes the class, model id of the run, model-index entry our results must land in)
Edit = Callable[[str], str]
CLASSES: dict[str, tuple[str, Edit, str, str]] = {
    "bot entry named without the org": (
        "kyujinpy__Sakura-SOLAR-Instruct.md", lambda t: t, "kyujinpy/Sakura-SOLAR-Instruct", "Sakura-SOLAR-Instruct"),
    "folded url strings in another model's entry": (
        "Weyaxi__Seraph-7B.md", lambda t: t, "kyujinpy/Sakura-SOLAR-Instruct", "kyujinpy/Sakura-SOLAR-Instruct"),
    "v1 and v2 bots in one entry, long front matter": (
        "BEE-spoke-data__smol_llama-220M-GQA.md", lambda t: t, "BEE-spoke-data/smol_llama-220M-GQA",
        "smol_llama-220M-GQA"),
    "huggingface_hub's template: comments and {}": (
        "hub_template.md", lambda t: t, "me/new-model", "me/new-model"),
    "comment-only front matter": (
        "hub_template.md", lambda t: t.replace("\n{}\n", "\n# {{ card_data }}\n", 1), "me/new-model", "me/new-model"),
    "byte-order mark": (
        "kyujinpy__Sakura-SOLAR-Instruct.md", lambda t: "\ufeff" + t, "kyujinpy/Sakura-SOLAR-Instruct",
        "Sakura-SOLAR-Instruct"),
    "closing fence with trailing blanks": (
        "Weyaxi__Seraph-7B.md", lambda t: t.replace("- merge\n---\n", "- merge\n---  \n", 1), "Weyaxi/Seraph-7B",
        "Seraph-7B"),
    "one CRLF line among LF lines": (
        "kyujinpy__Sakura-SOLAR-Instruct.md", lambda t: t.replace("license: cc-by-nc-sa-4.0\n",
        "license: cc-by-nc-sa-4.0\r\n", 1), "kyujinpy/Sakura-SOLAR-Instruct", "Sakura-SOLAR-Instruct"),
    "CRLF everywhere": (
        "Weyaxi__Seraph-7B.md", lambda t: t.replace("\n", "\r\n"), "Weyaxi/Seraph-7B", "Seraph-7B"),
    "front matter ending with a ... line": (
        "hub_template.md", lambda t: t.replace("\n{}\n", "\nlicense: apache-2.0\n...\n", 1), "me/new-model",
        "me/new-model"),
    "quoted model-index key": (
        "kyujinpy__Sakura-SOLAR-Instruct.md", lambda t: t.replace("\nmodel-index:\n", '\n"model-index":\n', 1),
        "kyujinpy/Sakura-SOLAR-Instruct", "Sakura-SOLAR-Instruct"),
    "entry named freely, v1 results only, no source": (
        "kyujinpy__Sakura-SOLAR-Instruct.md", lambda t: re.sub(r"\n    source:\n      url: .*\n      name: .*", "",
        t.replace("- name: Sakura-SOLAR-Instruct", "- name: Sakura")), "kyujinpy/Sakura-SOLAR-Instruct", "Sakura"),
    "entry named freely, results attributed by the bot's source url": (
        "BEE-spoke-data__smol_llama-220M-GQA.md", lambda t: t.replace("- name: smol_llama-220M-GQA", "- name: smol"),
        "BEE-spoke-data/smol_llama-220M-GQA", "smol"),
    "markers inside a fenced code block are text": (
        "Weyaxi__Seraph-7B.md", lambda t: t.replace("### ChatML:\n\n```\n",
        f"### ChatML:\n\n```\n{START_MARKER}\nnot a section\n{END_MARKER}\n", 1), "Weyaxi/Seraph-7B", "Seraph-7B"),
}  # fmt: skip


@pytest.mark.parametrize("card_class", list(CLASSES))
def test_real_card_round_trips(card_class: str, tmp_path: Path):
    fixture, edit, model_id, entry_name = CLASSES[card_class]
    original = edit((REAL / fixture).read_bytes().decode("utf-8"))
    readme = tmp_path / "README.md"
    readme.write_bytes(original.encode("utf-8"))
    results = _results_for(model_id, tmp_path)
    update = ["card", "update", str(readme), "--results", str(results)]

    first = runner.invoke(app, update)
    assert first.exit_code == 0, first.output
    new = readme.read_bytes().decode("utf-8")
    assert new != original

    # huggingface_hub reads it (BOM and all, as metadata_load does), with our six values in the expected entry
    metadata = metadata_load(readme)
    assert metadata is not None
    old_metadata = yaml.safe_load(_split(original)[0]) or {}
    assert {k: v for k, v in metadata.items() if k != "model-index"} == {
        k: v for k, v in old_metadata.items() if k != "model-index"
    }
    entries = {e["name"]: e for e in metadata["model-index"]}
    ours = {
        r["dataset"]["type"]: r["metrics"][0]["value"]
        for r in entries[entry_name]["results"]
        if r["dataset"]["type"] in H6_TYPES
    }
    assert ours == SAKURA_VALUES
    assert len([r for r in entries[entry_name]["results"] if r["dataset"]["type"] in H6_TYPES]) == 6  # never twice
    for name, entry in entries.items():  # other models' entries: as they were
        if name != entry_name:
            assert entry in old_metadata["model-index"]

    # bytes: front-matter lines went only where they were this model's H6 results; body outside the section kept
    old_front, old_body = _split(original)
    new_front, new_body = _split(new)
    removed = Counter(old_front.splitlines()) - Counter(new_front.splitlines())
    old_names = [e["name"] for e in old_metadata.get("model-index") or []]
    h6_here = _h6_result_lines(old_front) if entry_name in old_names else Counter()
    h6_here["{}"] += 1  # huggingface_hub's empty mapping is the one other line that must make way
    assert not removed - h6_here, f"lines evalsuite does not own were changed: {removed - h6_here}"
    assert new.startswith("\ufeff") == original.startswith("\ufeff")
    assert _body_outside_section(new_body).startswith(_body_outside_section(old_body).rstrip("\r\n"))
    assert new_body.startswith(old_body)  # no section before: it is appended, nothing else moves
    assert new_body.count(START_MARKER) == old_body.count(START_MARKER) + 1

    # idempotent, and --check agrees
    second = runner.invoke(app, update)
    assert second.exit_code == 0 and readme.read_bytes().decode("utf-8") == new
    assert runner.invoke(app, [*update, "--check"]).exit_code == 0


def test_duplicate_markers_are_refused_and_nothing_is_written(tmp_path: Path):
    text = (REAL / "Weyaxi__Seraph-7B.md").read_text()
    text += f"\n{START_MARKER}\nnew\n{END_MARKER}\n\n{START_MARKER}\nstale\n{END_MARKER}\n"
    readme = tmp_path / "README.md"
    readme.write_text(text)
    result = runner.invoke(app, ["card", "update", str(readme), "--results", str(SAKURA)])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: README has 2 <!-- evalsuite:start --> and 2 <!-- evalsuite:end --> lines")
    assert readme.read_text() == text


def test_a_symlinked_readme_is_written_through_its_link(tmp_path: Path):
    target = tmp_path / "cards" / "README.md"
    target.parent.mkdir()
    target.write_bytes((REAL / "kyujinpy__Sakura-SOLAR-Instruct.md").read_bytes())
    link = tmp_path / "README.md"
    link.symlink_to(target)
    result = runner.invoke(app, ["card", "update", str(link), "--results", str(SAKURA)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == target
    assert START_MARKER in target.read_text()


def test_a_readme_in_a_missing_folder_is_one_line(tmp_path: Path):
    readme = tmp_path / "no-such-folder" / "README.md"
    result = runner.invoke(app, ["card", "update", str(readme), "--results", str(SAKURA)])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line == f"error: {readme}: folder {readme.parent} does not exist; create it or fix the path"
    assert not readme.parent.exists()


def test_two_entries_claiming_the_model_are_refused(tmp_path: Path):
    text = (REAL / "BEE-spoke-data__smol_llama-220M-GQA.md").read_text()
    front, body = _split(text)
    block = front[front.index("model-index:\n") + len("model-index:\n") :]
    twice = front + "\n" + block.replace("- name: smol_llama-220M-GQA", "- name: copy")
    text = text.replace(front, twice.replace("- name: smol_llama-220M-GQA", "- name: first"), 1)
    readme = tmp_path / "README.md"
    readme.write_text(text)
    results = _results_for("BEE-spoke-data/smol_llama-220M-GQA", tmp_path)
    result = runner.invoke(app, ["card", "update", str(readme), "--results", str(results)])
    assert result.exit_code == 1, result.output
    assert "pass --model-name" in result.stderr and readme.read_text() == text
    chosen = runner.invoke(app, ["card", "update", str(readme), "--results", str(results), "--model-name", "copy"])
    assert chosen.exit_code == 0, chosen.output
    first = next(e for e in (metadata_load(readme) or {})["model-index"] if e["name"] == "first")
    assert first == next(e for e in yaml.safe_load(_split(text)[0])["model-index"] if e["name"] == "first")


def test_results_fixture_is_the_sakura_run():
    assert read_results(SAKURA).model.id == "kyujinpy/Sakura-SOLAR-Instruct"

"""Model cards: model-index entries (through huggingface_hub's EvalResult) and the results section of a
README, updated in place without touching anything evalsuite does not own.

What evalsuite owns in a README:
- in the front matter, the `model-index` results of its six datasets (matched by huggingface_hub's
  unique identifier: task type, dataset type, config, split, revision) in the entry named after the model;
- in the body, the text between `<!-- evalsuite:start -->` and `<!-- evalsuite:end -->` (the results), and
  between `<!-- evalsuite:contamination:start -->` and `<!-- evalsuite:contamination:end -->` (a contamination
  check's table).
Every other byte stays as it was; the README keeps its line endings.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCardData

from evalsuite.contamination import ContaminationResults
from evalsuite.errors import CardError
from evalsuite.files import write_text_atomic
from evalsuite.readme import (
    find_section,
    indented,
    is_content,
    item_indent,
    key_block,
    lines_of,
    sequence_items,
    split_readme,
)
from evalsuite.render import percent, render
from evalsuite.results import SuiteResults
from evalsuite.suite import SuiteSpec

START_MARKER = "<!-- evalsuite:start -->"
END_MARKER = "<!-- evalsuite:end -->"
# The contamination table has a section of its own: a card may show either without the other.
CONTAMINATION_START_MARKER = "<!-- evalsuite:contamination:start -->"
CONTAMINATION_END_MARKER = "<!-- evalsuite:contamination:end -->"
TASK_TYPE = "text-generation"
TASK_NAME = "Text Generation"
LEADERBOARD_URL = "https://huggingface.co/spaces/HuggingFaceH4/open_llm_leaderboard"


@dataclass(frozen=True)
class CardSource:
    """The `source` of each model-index result (optional; the leaderboard bot wrote its own)."""

    name: str
    url: str

    @staticmethod
    def open_llm_leaderboard(model_id: str) -> CardSource:
        """The source the leaderboard bot wrote: only for numbers that came from the leaderboard itself."""
        return CardSource(name="Open LLM Leaderboard", url=f"{LEADERBOARD_URL}?query={model_id}")


def not_comparable(results: SuiteResults, suite: SuiteSpec) -> list[tuple[str, list[str]]]:
    """(display name, reasons) of each task whose requests were not the leaderboard's, in suite order."""
    return [
        (spec.display_name, t.not_comparable_reasons or ["not the leaderboard's requests"])
        for spec in suite.tasks
        if (t := results.task(spec.key)) is not None and not t.leaderboard_comparable
    ]


def check_publishable(results: SuiteResults, suite: SuiteSpec, allow_partial: bool, allow_not_comparable: bool) -> None:
    """Model-index results claim leaderboard numbers: partial runs and tasks that asked other requests need
    an explicit yes (and then the card's section says which and why)."""
    if not results.is_complete and not allow_partial:
        raise CardError(
            f"run {results.run_id} is partial ({'; '.join(results.partial_reasons)}); cards carry complete "
            "runs, pass --allow-partial to publish it anyway"
        )
    differing = not_comparable(results, suite)
    if differing and not allow_not_comparable:
        names = ", ".join(name for name, _ in differing)
        raise CardError(
            f"run {results.run_id}: {names} did not ask the leaderboard's requests ({differing[0][1][0]}); pass "
            "--allow-not-comparable to publish them anyway, marked as such"
        )


def eval_results(results: SuiteResults, suite: SuiteSpec, source: CardSource | None = None) -> list[EvalResult]:
    """One EvalResult per task that ran, in suite order, values as percentages with 2 decimals."""
    out = []
    for spec in suite.tasks:
        task = results.task(spec.key)
        if task is None:
            continue
        out.append(
            EvalResult(
                task_type=TASK_TYPE,
                task_name=TASK_NAME,
                dataset_type=spec.card.dataset_type,
                dataset_name=spec.display_name,
                dataset_config=spec.card.dataset_config,
                dataset_split=spec.card.dataset_split,
                dataset_args={"num_few_shot": task.num_fewshot},
                metric_type=spec.card.metric_type,
                metric_value=percent(task.value),
                metric_name=spec.card.metric_name,
                source_name=source.name if source else None,
                source_url=source.url if source else None,
            )
        )
    return out


def render_model_index(
    results: SuiteResults, suite: SuiteSpec, model_name: str | None = None, source: CardSource | None = None
) -> str:
    data = ModelCardData(model_name=model_name or results.model.id, eval_results=eval_results(results, suite, source))
    return data.to_yaml() + "\n"


def render_markdown(results: SuiteResults, suite: SuiteSpec) -> str:
    differing = not_comparable(results, suite)
    marked = {name for name, _ in differing}
    rows = [
        {"name": spec.display_name, "value": t.value, "not_comparable": spec.display_name in marked}
        for spec in suite.tasks
        if (t := results.task(spec.key))
    ]
    return render(
        "card_section.md.j2",
        evalsuite_version=results.versions.evalsuite,
        lm_eval_version=results.versions.lm_eval,
        dtype=results.model.dtype,
        batch_size=results.settings.batch_size,
        protocol=results.settings.protocol.value,
        partial_reasons="; ".join(results.partial_reasons),
        average=results.h6_average,
        rows=rows,
        not_comparable=[{"name": name, "reasons": "; ".join(reasons)} for name, reasons in differing],
    )


def render_contamination(results: ContaminationResults) -> str:
    """The card's contamination table, as upstage/SOLAR-10.7B-Instruct-v1.0's card shows it."""
    return render(
        "contamination_section.md.j2",
        evalsuite_version=results.versions.get("evalsuite", "?"),
        items=results.settings.items,
        neighbours=results.settings.neighbours,
        reference=results.reference.id,
        threshold=f"{results.settings.threshold:g}",
        model=results.target.id,
        tasks=results.tasks,
    )


# ------------------------------------------------------------------------------------- README update

_MODEL_INDEX = ("model-index",)


# model-index <-> EvalResult goes through ModelCardData, the conversion huggingface_hub applies when it reads
# and writes a card's metadata.


def _model_index_entry(name: str, results: list[EvalResult]) -> dict[str, Any]:
    """The model-index entry huggingface_hub writes for `results` of the model `name`."""
    (entry,) = ModelCardData(model_name=name, eval_results=results).to_dict()["model-index"]
    return entry


def _parsed_results(result: Any) -> list[EvalResult]:
    """The EvalResults huggingface_hub reads from one model-index result dict ([] for one it cannot read)."""
    try:
        metadata: dict[str, Any] = {"model-index": [{"name": "-", "results": [result]}]}  # as in a card's YAML
        data = ModelCardData(**metadata)
    except (KeyError, TypeError, ValueError, AttributeError):
        return []  # not a result huggingface_hub can read: not evalsuite's to touch
    return list(data.eval_results or [])


def _is_ours(result: Any, ours: EvalResult) -> bool:
    """Whether a model-index result dict is `ours`: same task, dataset (type, config, split, revision), metric."""
    return any(
        r.unique_identifier == ours.unique_identifier and r.metric_type == ours.metric_type
        for r in _parsed_results(result)
    )


def _result_dict(result: EvalResult) -> dict[str, Any]:
    return _model_index_entry("-", [result])["results"][0]


def _replacement(existing: dict[str, Any], ours: EvalResult) -> dict[str, Any]:
    """Our result in place of an existing one; other metrics the existing result holds beside ours are kept."""
    new = _result_dict(ours)
    metrics = existing.get("metrics") if isinstance(existing, dict) else None
    if isinstance(metrics, list) and len(metrics) > 1:
        (mine,) = new["metrics"]
        new["metrics"] = [mine if isinstance(m, dict) and m.get("type") == ours.metric_type else m for m in metrics]
    return new


def _target_entry(entries: list[Any], model_id: str, model_name: str | None, ours: list[EvalResult]) -> int | None:
    """Which model-index entry is this model's.

    With --model-name, the entry of that name. Otherwise, the first rule that finds one:
    1. the entry named after the model id, or after the repo name alone (the leaderboard bot writes
       `- name: Sakura-SOLAR-Instruct`);
    2. the entry the leaderboard bot attributed to this model (a result whose `source.url` ends in
       `?query=<model id>`);
    3. the one entry holding any of the six H6 results that is neither named after another model (`org/name`)
       nor attributed by the bot to another: a card describes its own model (and evalsuite may have
       written there before, replacing the bot's attributed results).
    Several entries at one rule: an error asking for --model-name. Entries of other models are never touched.
    """
    names = [e.get("name") if isinstance(e, dict) else None for e in entries]
    candidates = [model_name] if model_name else [model_id, model_id.rsplit("/", 1)[-1]]
    for candidate in candidates:
        hits = [i for i, name in enumerate(names) if name == candidate]
        if len(hits) > 1:
            raise CardError(f"front matter: {len(hits)} model-index entries are named {candidate!r}; keep one")
        if hits:
            return hits[0]
    if model_name:
        return None
    attributed = [i for i, e in enumerate(entries) if _attributed_to(e, model_id)]
    holding = [
        i for i, e in enumerate(entries)
        if _holds_any(e, ours) and not (isinstance(name := names[i], str) and "/" in name)
        and not any(_bot_query(r) not in (None, model_id) for r in _results_of(e))
    ]  # fmt: skip
    for found in (attributed, holding):
        if len(found) > 1:
            raise CardError(
                f"front matter: model-index entries {', '.join(repr(names[i]) for i in found)} could all be this "
                "model's; pass --model-name to say which one to update"
            )
        if found:
            return found[0]
    return None


def _results_of(entry: Any) -> list[Any]:
    results = entry.get("results") if isinstance(entry, dict) else None
    return results if isinstance(results, list) else []


def _bot_query(result: Any) -> str | None:
    """The model a leaderboard bot's result names (`source.url` ... `?query=<model id>`)."""
    source = result.get("source") if isinstance(result, dict) else None
    url = source.get("url") if isinstance(source, dict) else None
    if isinstance(url, str) and "?query=" in url:
        return url.rsplit("?query=", 1)[1]
    return None


def _attributed_to(entry: Any, model_id: str) -> bool:
    return any(_bot_query(result) == model_id for result in _results_of(entry))


def _holds_any(entry: Any, ours: list[EvalResult]) -> bool:
    return any(_is_ours(result, o) for result in _results_of(entry) for o in ours)


def _dump(value: Any) -> str:
    """YAML in the style huggingface_hub writes cards in (block style, keys in order, UTF-8 as is); the
    contract test checks it against ModelCardData.to_yaml."""
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True)


def _new_model_index(lines: list[str], nl: str, entry: dict[str, Any]) -> list[str]:
    """Front-matter lines with a new top-level model-index block: in place of an empty `{}` mapping, before a
    `...` document end, else at the end."""
    block = indented(_dump({"model-index": [entry]}), 0, nl)
    content = [i for i, line in enumerate(lines) if is_content(line)]
    if content and all(lines[i].strip() == "{}" for i in content) and len(content) == 1:
        return lines[: content[0]] + block + lines[content[0] + 1 :]
    if content and lines[content[-1]].rstrip() == "...":
        return lines[: content[-1]] + block + lines[content[-1] :]
    if lines and not lines[-1].endswith("\n"):
        lines = [*lines[:-1], lines[-1] + nl]
    return lines + block


def _updated_front_matter(
    front: str, nl: str, metadata: dict[str, Any], name: str, model_name: str | None, ours: list[EvalResult]
) -> tuple[str, dict[str, Any]]:
    """The front matter with `ours` written in, editing only the lines of results evalsuite owns, and the
    metadata it must parse to."""
    lines = lines_of(front)
    expected = copy.deepcopy(metadata)
    block = key_block(lines, _MODEL_INDEX, 0)
    existing = metadata.get("model-index")
    if block is None and "model-index" in metadata:
        raise CardError("front matter: cannot find the `model-index:` line (flow style?); write it as a block first")
    if block is None or existing in (None, []):
        entry = _model_index_entry(model_name or name, ours)
        expected["model-index"] = [entry]
        if block is None:
            return "".join(_new_model_index(lines, nl, entry)), expected
        replaced = lines[: block.key_line] + indented(_dump({"model-index": [entry]}), 0, nl) + lines[block.end :]
        return "".join(replaced), expected
    if not isinstance(existing, list):
        raise CardError("front matter: `model-index` must be a list; fix it by hand first")
    if block.inline_value:
        raise CardError("front matter: `model-index` is written inline (flow style); write it as a block list first")
    items = sequence_items(lines, block.key_line + 1, block.end)
    if len(items) != len(existing):
        raise CardError("front matter: cannot find each model-index entry on its own lines; fix its layout first")
    position = _target_entry(existing, name, model_name, ours)
    if position is None:  # a new entry after the last one
        entry = _model_index_entry(model_name or name, ours)
        expected["model-index"].append(entry)
        dash, _ = item_indent(lines[items[0][0]])
        at = items[-1][1]
        return "".join(lines[:at] + indented(_dump([entry]), dash, nl) + lines[at:]), expected

    entry_dict = existing[position]
    if not isinstance(entry_dict, dict) or not isinstance(entry_dict.get("results"), list):
        raise CardError(f"front matter: model-index entry {entry_dict!r:.40} has no results list; fix it by hand")
    first, last = items[position]
    dash, key_col = item_indent(lines[first])
    results_block = key_block(lines, ("results",), key_col, dash=dash, start=first, stop=last)
    if results_block is None or results_block.inline_value:
        raise CardError("front matter: write the model-index entry's `results` as a block list first")
    result_items = sequence_items(lines, results_block.key_line + 1, results_block.end)
    results: list[Any] = entry_dict["results"]
    if len(result_items) != len(results):
        raise CardError("front matter: cannot find each model-index result on its own lines; fix its layout first")
    new_results = list(results)
    replace: dict[int, dict[str, Any]] = {}
    append: list[dict[str, Any]] = []
    for result in ours:
        hits = [i for i, r in enumerate(results) if _is_ours(r, result)]
        for i in hits:
            replace[i] = new_results[i] = _replacement(results[i], result)
        if not hits:
            append.append(_result_dict(result))
    expected["model-index"][position]["results"] = new_results + append
    result_dash = item_indent(lines[result_items[0][0]])[0] if result_items else key_col
    out = list(lines)
    if append:
        at = result_items[-1][1] if result_items else results_block.key_line + 1
        out[at:at] = indented(_dump(append), result_dash, nl)
    for i in sorted(replace, reverse=True):  # back to front, so earlier spans stay where they are
        a, b = result_items[i]
        out[a:b] = indented(_dump([replace[i]]), result_dash, nl)
    return "".join(out), expected


def update_readme(
    text: str,
    results: SuiteResults,
    suite: SuiteSpec,
    model_name: str | None = None,
    source: CardSource | None = None,
) -> str:
    """The README with evalsuite's model-index results and section brought up to date. Pure.

    Only the model-index results evalsuite writes (in this model's entry) and the text between the markers
    change; every other byte, comment and newline stays. The new front matter is parsed again and must mean
    the old metadata plus these results, or nothing is written.
    """
    readme = split_readme(text)
    nl = readme.newline
    front = readme.front_matter or ""
    metadata = _parse_front_matter(front)
    ours = eval_results(results, suite, source)
    new_front, expected = _updated_front_matter(front, nl, metadata, results.model.id, model_name, ours)
    if _parse_front_matter(new_front) != expected:
        raise CardError(
            "front matter: could not write the results without changing other YAML (unusual layout); "
            "write the model-index by hand or simplify its layout"
        )

    body = _with_section(readme.body, nl, START_MARKER, END_MARKER, render_markdown(results, suite))
    return readme.with_body(body).with_front_matter(new_front).text()


def update_contamination(text: str, contamination: ContaminationResults) -> str:
    """The README with its contamination section brought up to date (added at the end if missing). Pure;
    the front matter and every byte outside the section stay (model-index has no place for this test)."""
    readme = split_readme(text)
    body = _with_section(
        readme.body, readme.newline, CONTAMINATION_START_MARKER, CONTAMINATION_END_MARKER,
        render_contamination(contamination),
    )  # fmt: skip
    return readme.with_body(body).text()


def _with_section(body: str, nl: str, start_marker: str, end_marker: str, content: str) -> str:
    """`body` with the text between the markers replaced by `content`, or the section appended."""
    section_text = (start_marker + "\n" + content + end_marker).replace("\n", nl)
    section = find_section(body, start_marker, end_marker)
    if section is not None:
        return body[: section.start] + section_text + body[section.end :]
    if body and not body.endswith("\n"):
        body += nl
    return body + (nl if body else "") + section_text + nl


def _parse_front_matter(front: str) -> dict[str, Any]:
    try:
        metadata = yaml.safe_load(front) if front.strip() else {}
    except yaml.YAMLError as e:
        raise CardError(f"front matter is not valid YAML ({str(e).splitlines()[0]}); fix it first") from e
    if metadata is None:  # only comments
        return {}
    if not isinstance(metadata, dict):
        raise CardError("front matter is not a YAML mapping; fix it first")
    return metadata


def read_readme(path: Path) -> str:
    """The README's text ("" for a README still to be created). Its folder must exist: a missing folder is
    more often a typo than a wish for a new one."""
    target = path.resolve()  # through a symlink, to the file it points at
    if not target.parent.is_dir():
        raise CardError(f"{path}: folder {target.parent} does not exist; create it or fix the path")
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        return ""
    except OSError as e:
        raise CardError(f"{path}: cannot read ({e.strerror})") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CardError(f"{path}: not UTF-8 (byte {e.start}); convert it to UTF-8 first") from e


def write_readme(path: Path, text: str) -> None:
    """Replace the README atomically, keeping its permissions; a symlinked README is written through its link
    (the link stays a link)."""
    write_text_atomic(path.resolve(), text)


def diff(old: str, new: str, path: Path) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path.name}", f"b/{path.name}"
        )
    )


def push_readme(path: Path, repo_id: str, create_pr: bool) -> str:
    """Upload the README file, byte for byte as it is on disk, to the Hub model repo; returns the commit or PR URL.

    (ModelCard.push_to_hub would serialise its parsed metadata again: comments dropped, lists reflowed.)
    Token from HF_TOKEN or the huggingface_hub login, never printed.
    """
    from huggingface_hub import HfApi

    data = path.resolve().read_bytes()
    try:
        commit = HfApi().upload_file(
            path_or_fileobj=data,
            path_in_repo="README.md",
            repo_id=repo_id,
            repo_type="model",
            commit_message="Update evaluation results (evalsuite card update)",
            create_pr=create_pr,
        )
    except Exception as e:  # network, auth, validation: one line, never the token
        raise CardError(
            f"push to {repo_id} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    return str(commit.pr_url or commit.commit_url)

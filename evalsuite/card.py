"""Model cards: model-index entries (through huggingface_hub's EvalResult) and the results section of a
README, updated in place without touching anything evalsuite does not own.

What evalsuite owns in a README:
- in the front matter, the `model-index` results of its six datasets (matched by huggingface_hub's
  unique identifier: task type, dataset type, config, split, revision) in the entry named after the model;
- in the body, the text between `<!-- evalsuite:start -->` and `<!-- evalsuite:end -->`.
Every other byte stays as it was; the README keeps its line endings.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCardData
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results
from huggingface_hub.utils import yaml_dump

from evalsuite.errors import CardError
from evalsuite.files import write_text_atomic
from evalsuite.render import render
from evalsuite.results import SuiteResults
from evalsuite.suite import SuiteSpec

START_MARKER = "<!-- evalsuite:start -->"
END_MARKER = "<!-- evalsuite:end -->"
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


def check_publishable(results: SuiteResults, allow_partial: bool) -> None:
    if results.status != "complete" and not allow_partial:
        raise CardError(
            f"run {results.run_id} is partial ({'; '.join(results.partial_reasons)}); cards carry complete "
            "runs, pass --allow-partial to publish it anyway"
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
                metric_value=round(100 * task.value, 2),
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
    rows = [{"name": spec.display_name, "value": t.value} for spec in suite.tasks if (t := results.task(spec.key))]
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
    )


# ------------------------------------------------------------------------------------- README update


@dataclass(frozen=True)
class _Readme:
    newline: str
    front_matter: str | None  # the YAML between the `---` lines, with its own newlines
    body: str


def _split(text: str) -> _Readme:
    newline = "\r\n" if "\r\n" in text else "\n"
    opener = f"---{newline}"
    if text.startswith(opener):
        closer = f"{newline}---{newline}"
        end = text.find(closer, len(opener) - len(newline))
        if end == -1 and text.endswith(f"{newline}---"):
            end = len(text) - len(newline) - 3
        if end != -1:
            front = text[len(opener) : end + len(newline)]
            body = text[end + len(closer) :]
            return _Readme(newline, front, body)
    return _Readme(newline, None, text)


def _model_index_span(front: str) -> tuple[int, int] | None:
    """Character span of the top-level `model-index:` block in the front matter, if any.

    The block runs to the next top-level key; blank and column-0 comment lines after its last content
    line are left outside it.
    """
    offset = 0
    start = end = None
    for line in front.splitlines(keepends=True):
        if start is None:
            if line.startswith("model-index:"):
                start, end = offset, offset + len(line)
        elif line.strip() and not line.startswith("#"):
            if not line[0].isspace() and not line.startswith("-"):
                break
            end = offset + len(line)
        offset += len(line)
    return (start, end) if start is not None and end is not None else None


def _merge_model_index(existing: Any, name: str, ours: list[EvalResult]) -> list[dict[str, Any]]:
    entries = list(existing or [])
    if not isinstance(existing, (list, type(None))):
        raise CardError("front matter: `model-index` must be a list; fix it by hand first")
    position = next((i for i, e in enumerate(entries) if isinstance(e, dict) and e.get("name") == name), None)
    merged: list[EvalResult] = []
    if position is not None:
        try:
            _, merged = model_index_to_eval_results([entries[position]])
        except (KeyError, TypeError, ValueError) as e:
            raise CardError(f"front matter: model-index entry {name!r} is malformed ({e}); fix it by hand") from e
    for result in ours:
        same = next(
            (i for i, r in enumerate(merged) if r.unique_identifier == result.unique_identifier
             and r.metric_type == result.metric_type),
            None,
        )  # fmt: skip
        if same is None:
            merged.append(result)
        else:
            merged[same] = result
    entry = eval_results_to_model_index(name, merged)[0]
    if position is None:
        entries.append(entry)
    else:
        entries[position] = entry
    return entries


def update_readme(
    text: str,
    results: SuiteResults,
    suite: SuiteSpec,
    model_name: str | None = None,
    source: CardSource | None = None,
) -> str:
    """The README with evalsuite's model-index results and section brought up to date. Pure."""
    readme = _split(text)
    nl = readme.newline
    name = model_name or results.model.id

    front = readme.front_matter or ""
    try:
        metadata = yaml.safe_load(front) if front.strip() else {}
    except yaml.YAMLError as e:
        raise CardError(f"front matter is not valid YAML ({str(e).splitlines()[0]}); fix it first") from e
    if not isinstance(metadata, dict):
        raise CardError("front matter is not a YAML mapping; fix it first")
    entries = _merge_model_index(metadata.get("model-index"), name, eval_results(results, suite, source))
    block = yaml_dump({"model-index": entries}, sort_keys=False).replace("\n", nl)
    span = _model_index_span(front)
    if span is None:
        if front and not front.endswith(nl):
            front += nl
        front += block
    else:
        front = front[: span[0]] + block + front[span[1] :]

    section = (START_MARKER + "\n" + render_markdown(results, suite) + END_MARKER).replace("\n", nl)
    body = readme.body
    start, end = body.find(START_MARKER), body.find(END_MARKER)
    if (start == -1) != (end == -1) or end < start:
        raise CardError(f"README has {START_MARKER} or {END_MARKER} without the other; fix the markers first")
    if start == -1:
        if body and not body.endswith(nl):
            body += nl
        body += (nl if body else "") + section + nl
    else:
        body = body[:start] + section + body[end + len(END_MARKER) :]
    return f"---{nl}{front}---{nl}" + ("" if readme.front_matter is not None else nl) + body


def read_readme(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""  # a new README
    except OSError as e:
        raise CardError(f"{path}: cannot read ({e.strerror})") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CardError(f"{path}: not UTF-8 (byte {e.start}); convert it to UTF-8 first") from e


def write_readme(path: Path, text: str) -> None:
    """Replace the README atomically, keeping its permissions."""
    write_text_atomic(path, text)


def diff(old: str, new: str, path: Path) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path.name}", f"b/{path.name}"
        )
    )


def push_readme(text: str, repo_id: str, create_pr: bool) -> str:
    """Upload the README to the Hub (token from HF_TOKEN or the huggingface_hub login); returns the URL."""
    from huggingface_hub import ModelCard

    try:
        return str(ModelCard(text).push_to_hub(repo_id, create_pr=create_pr))
    except Exception as e:  # network, auth, validation: one line, never the token
        raise CardError(
            f"push to {repo_id} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e

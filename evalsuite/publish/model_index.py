"""model-index: a run's results as the front matter's `model-index` entries the Hub reads (the form the
leaderboard's bot wrote), through huggingface_hub's own EvalResult and ModelCardData, and written into an
existing front matter by editing only the lines of the results evalsuite owns.

What evalsuite owns there: the `model-index` results of its six datasets (matched by huggingface_hub's unique
identifier: task type, dataset type, config, split, revision) in the entry named after the model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCardData

from evalsuite.archive import PublishedEvaluation
from evalsuite.errors import CardError, OptionError, param
from evalsuite.publish.readme import indented, is_content, item_indent, key_block, lines_of, sequence_items
from evalsuite.results import SuiteResults, percent
from evalsuite.settings import Precision
from evalsuite.suite import SuiteSpec, TaskSpec

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


def eval_results(results: SuiteResults, suite: SuiteSpec, source: CardSource | None = None) -> list[EvalResult]:
    """One EvalResult per task that ran, in suite order, values as percentages with 2 decimals; the metric's
    name says the precision where it is not 16-bit."""
    scores = {t.key: (percent(t.value), t.num_fewshot) for t in results.tasks}
    precision = results.model.precision
    return _eval_results(scores, suite, source, precision if precision.named_on_cards else None)


def published_eval_results(evaluation: PublishedEvaluation, suite: SuiteSpec) -> list[EvalResult]:
    """The leaderboard's published numbers for a model as its bot wrote them: each task's score as published,
    the suite's shots, the leaderboard as the source; the metric's name says the row's precision where it is
    not 16-bit (an 8bit, 4bit or GPTQ evaluation)."""
    scores = {s.key: (evaluation.scores[s.column], s.num_fewshot) for s in suite.tasks if s.column in evaluation.scores}
    precision = _known_precision(evaluation.precision)
    source = CardSource.open_llm_leaderboard(evaluation.model)
    return _eval_results(scores, suite, source, precision if precision and precision.named_on_cards else None)


def _known_precision(text: str) -> Precision | None:
    """An archive row's precision, None where it holds none evalsuite knows (the archive's `?`)."""
    try:
        return Precision.parse(text)
    except OptionError:
        return None


def _eval_results(
    scores: dict[str, tuple[float, int]], suite: SuiteSpec, source: CardSource | None, precision: Precision | None
) -> list[EvalResult]:
    """suite key -> (value in %, shots) as EvalResults, in suite order. model-index has no field for how the
    model was loaded, so a precision to name goes into the metric's display name, which the Hub shows beside
    the value: `normalized accuracy (4bit)`; `mc2 (4bit)` for TruthfulQA, whose metric the bot left unnamed."""
    out = []
    for spec in suite.tasks:
        if spec.key not in scores:
            continue
        value, shots = scores[spec.key]
        out.append(
            EvalResult(
                task_type=TASK_TYPE,
                task_name=TASK_NAME,
                dataset_type=spec.card.dataset_type,
                dataset_name=spec.display_name,
                dataset_config=spec.card.dataset_config,
                dataset_split=spec.card.dataset_split,
                dataset_args={"num_few_shot": shots},
                metric_type=spec.card.metric_type,
                metric_value=value,
                metric_name=_metric_name(spec, precision),
                source_name=source.name if source else None,
                source_url=source.url if source else None,
            )
        )
    return out


def _metric_name(spec: TaskSpec, precision: Precision | None) -> str | None:
    if precision is None:
        return spec.card.metric_name
    return f"{spec.card.metric_name or spec.card.metric_type} ({precision})"


def render_model_index(
    results: SuiteResults, suite: SuiteSpec, model_name: str | None = None, source: CardSource | None = None
) -> str:
    data = ModelCardData(model_name=model_name or results.model.id, eval_results=eval_results(results, suite, source))
    return data.to_yaml() + "\n"


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

    With `model_name`, the entry of that name. Otherwise, the first rule that finds one:
    1. the entry named after the model id, or after the repo name alone (the leaderboard bot writes
       `- name: Sakura-SOLAR-Instruct`);
    2. the entry the leaderboard bot attributed to this model (a result whose `source.url` ends in
       `?query=<model id>`);
    3. the one entry holding any of the six H6 results that is neither named after another model (`org/name`)
       nor attributed by the bot to another: a card describes its own model (and evalsuite may have
       written there before, replacing the bot's attributed results).
    Several entries at one rule: an error asking for `model_name`. Entries of other models are never touched.
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
                f"model's; pass {param('model_name')} to say which one to update"
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


def updated_front_matter(
    front: str,
    nl: str,
    metadata: dict[str, Any],
    name: str,
    model_name: str | None,
    ours: list[EvalResult],
    new_entry_name: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """The front matter with `ours` written in, editing only the lines of results evalsuite owns, and the
    metadata it must parse to. A new model-index entry is named `model_name`, else `new_entry_name`, else
    the model id `name`."""
    lines = lines_of(front)
    new_name = model_name or new_entry_name or name
    expected = copy.deepcopy(metadata)
    block = key_block(lines, _MODEL_INDEX, 0)
    existing = metadata.get("model-index")
    if block is None and "model-index" in metadata:
        raise CardError("front matter: cannot find the `model-index:` line (flow style?); write it as a block first")
    if block is None or existing in (None, []):
        entry = _model_index_entry(new_name, ours)
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
        entry = _model_index_entry(new_name, ours)
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


def parse_front_matter(front: str) -> dict[str, Any]:
    try:
        metadata = yaml.safe_load(front) if front.strip() else {}
    except yaml.YAMLError as e:
        raise CardError(f"front matter is not valid YAML ({str(e).splitlines()[0]}); fix it first") from e
    if metadata is None:  # only comments
        return {}
    if not isinstance(metadata, dict):
        raise CardError("front matter is not a YAML mapping; fix it first")
    return metadata

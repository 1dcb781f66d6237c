"""The Hub's newer results format: `.eval_results/<file>.yaml` in the model repo, a YAML list of entries
`{dataset: {id, task_id}, value, date, source?, notes}`, built with huggingface_hub's own EvalResultEntry and
eval_result_entries_to_yaml.

The Hub shows these on the model page and feeds them into each benchmark dataset's leaderboard; README
model-index is its legacy format (still shown). A dataset's eval.yaml decides what `value` means (there is no
metric field), so each entry's `notes` names the setup: protocol, shots, metric, versions, and any way the
run differs from the leaderboard's.

What evalsuite owns: one file per protocol (`h6-leaderboard-v1.yaml`, `h6-lm-eval.yaml`: variants of a
benchmark go in separate files), and in it the entries whose dataset is one of the suite's six. Entries of
other datasets in that file, and every other file in the folder, stay as they were, byte for byte.
"""

from __future__ import annotations

import copy
from datetime import UTC
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResultEntry, constants, eval_result_entries_to_yaml, parse_eval_result_entries

from evalsuite.errors import CardError
from evalsuite.publish.benchmarks import Benchmarks
from evalsuite.publish.card import not_comparable, read_text_or_empty
from evalsuite.publish.model_index import CardSource
from evalsuite.publish.readme import indented, is_content, lines_of, sequence_items
from evalsuite.results import SuiteResults
from evalsuite.suite import MetricKey, Protocol, SuiteSpec

FOLDER = constants.EVAL_RESULTS_FOLDER  # ".eval_results"
PROTOCOL_NOTES = {
    Protocol.LEADERBOARD_V1: "Open LLM Leaderboard v1 protocol",
    Protocol.LM_EVAL: "lm-eval 0.4 protocol (not the Open LLM Leaderboard's requests)",
}


def file_name(results: SuiteResults) -> str:
    """The file evalsuite writes for this run's protocol, relative to the repo root."""
    return f"{FOLDER}/h6-{results.settings.protocol.value}.yaml"


def entries(
    results: SuiteResults, suite: SuiteSpec, benchmarks: Benchmarks, source: CardSource | None = None
) -> list[EvalResultEntry]:
    """One entry per task that ran and whose benchmark is known, in suite order."""
    differing = dict(not_comparable(results, suite))
    date = results.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = []
    for spec in suite.tasks:
        task = results.task(spec.key)
        benchmark = benchmarks.for_task(spec.key)
        if task is None or benchmark is None:
            continue
        notes = [
            PROTOCOL_NOTES[results.settings.protocol],
            f"{task.num_fewshot}-shot",
            _metric_note(spec.card.metric_type, task.metric),
            f"lm-eval {results.versions.lm_eval}",
            f"evalsuite {results.versions.evalsuite}",
        ]
        if results.model.precision.named_on_cards:
            notes.append(f"precision {results.model.precision}")
        if results.model.base_model is not None:
            notes.append(f"{results.model.weight_type.value.lower()} over {results.model.base_model}")
        if task.documents != task.full_documents:
            notes.append(f"partial: {task.documents} of {task.full_documents} documents")
        if spec.display_name in differing:
            notes.append(f"not the leaderboard's requests: {'; '.join(differing[spec.display_name])}")
        out.append(
            EvalResultEntry(
                dataset_id=benchmark.dataset_id,
                task_id=benchmark.task_id,
                value=benchmark.value(task.value),
                date=date,
                source_url=source.url if source else None,
                source_name=source.name if source else None,
                notes=", ".join(notes),
            )
        )
    return out


def _metric_note(card_metric: str, computed: MetricKey) -> str:
    """The card's name for the metric (acc_norm, mc2, ...), or, where lm-eval scored it after a filter
    (GSM8K: exact match of the extracted answer, which model cards call acc), lm-eval's: "exact_match
    (leaderboard-v1)", as the run's table shows it."""
    return card_metric if computed.filter == "none" else computed.display


def render(items: list[EvalResultEntry]) -> str:
    """The YAML of a `.eval_results` file holding `items`."""
    return _dump(eval_result_entries_to_yaml(items))


def updated_file(existing: str, ours: list[EvalResultEntry], owned: set[str], dropped: set[str]) -> str:
    """The file's text with `ours` written in, editing only the entries evalsuite owns. Pure.

    `owned`: the dataset ids whose entries are evalsuite's (the suite's six). Each of ours replaces the entry
    of its dataset in place, or is appended; an owned entry of a dataset in `dropped` (the Hub holds no
    eval.yaml for it: an entry there would not be valid) is removed; other owned entries (a task this run did
    not have) stay. Every other line stays as written; the result must parse to exactly what was intended.
    """
    parsed = _parse(existing)
    lines = lines_of(existing)
    nl = "\r\n" if existing.count("\r\n") * 2 > existing.count("\n") else "\n"
    spans = sequence_items(lines, 0, len(lines), where=f"{FOLDER} file")
    if len(spans) != len(parsed):
        raise CardError(f"{FOLDER} file: cannot find each entry on its own lines; fix its layout first")
    new_by_dataset = {e.dataset_id: e for e in ours}
    positions: dict[str, int] = {}
    for i, item in enumerate(parsed):
        dataset = _dataset_id(item)
        if dataset in owned:
            if dataset in positions:
                raise CardError(f"{FOLDER} file holds two entries for {dataset}; keep one and run again")
            positions[dataset] = i
    expected = copy.deepcopy(parsed)
    out = list(lines)
    # back to front, so earlier spans stay where they are
    for dataset, i in sorted(positions.items(), key=lambda kv: kv[1], reverse=True):
        a, b = spans[i]
        if dataset in new_by_dataset:
            entry = eval_result_entries_to_yaml([new_by_dataset[dataset]])
            out[a:b] = indented(_dump(entry), 0, nl)
            expected[i] = entry[0]
        elif dataset in dropped:
            del out[a:b]
            expected[i] = None
    expected = [e for e in expected if e is not None]
    appended = [e for e in ours if e.dataset_id not in positions]
    if appended:
        if out and not out[-1].endswith("\n"):
            out[-1] += nl
        out += indented(render(appended), 0, nl)
        expected += eval_result_entries_to_yaml(appended)
    text = "".join(out)
    if _parse(text) != expected:
        raise CardError(
            f"{FOLDER} file: could not write the entries without changing others (unusual layout); "
            "fix its layout or move other entries to a file of their own"
        )
    return text


def read_file(path: Path) -> str:
    """A `.eval_results` file's text ("" for one still to be written)."""
    return read_text_or_empty(path)


def _parse(text: str) -> list[Any]:
    """A `.eval_results` file's entries ([] for an empty or comment-only file); each must parse as
    huggingface_hub reads an entry."""
    try:
        data = yaml.safe_load(text) if any(is_content(line) for line in lines_of(text)) else []
    except yaml.YAMLError as e:
        raise CardError(f"{FOLDER} file is not valid YAML ({str(e).splitlines()[0]}); fix it first") from e
    if data is None:
        return []
    if not isinstance(data, list):
        raise CardError(f"{FOLDER} file is not a YAML list of entries; fix it first")
    try:
        parse_eval_result_entries(data)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise CardError(f"{FOLDER} file holds an entry huggingface_hub cannot read ({e!r}); fix it first") from e
    return data


def _dataset_id(item: Any) -> str | None:
    dataset = item.get("dataset") if isinstance(item, dict) else None
    return dataset.get("id") if isinstance(dataset, dict) else None


def _dump(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=10_000)

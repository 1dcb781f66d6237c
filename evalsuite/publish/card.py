"""Model cards: a README's results section and contamination section rendered from a run or a check, and the
README brought up to date in place (with the model-index results, evalsuite/publish/model_index.py), touching
nothing evalsuite does not own.

What evalsuite owns in a README: its model-index results (model_index.py), and in the body the text between
`<!-- evalsuite:start -->` and `<!-- evalsuite:end -->` (the results) and between
`<!-- evalsuite:contamination:start -->` and `<!-- evalsuite:contamination:end -->` (a contamination check's
table), `<!-- evalsuite:peers:start -->` ... (the compact table beside the leaderboard's published peers) and
`<!-- evalsuite:leaderboard:start -->` ... (the leaderboard's own published numbers, as its bot wrote them).
Every other byte stays as it was; the README keeps its line endings.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING

from evalsuite.archive import PublishedEvaluation
from evalsuite.errors import CardError, param
from evalsuite.publish.model_index import (
    LEADERBOARD_URL,
    CardSource,
    eval_results,
    parse_front_matter,
    published_eval_results,
    updated_front_matter,
)
from evalsuite.publish.readme import Readme, find_section, split_readme
from evalsuite.publish.render import render
from evalsuite.results import ContaminationResults, SuiteResults
from evalsuite.suite import SuiteSpec

if TYPE_CHECKING:
    from huggingface_hub import EvalResult

START_MARKER = "<!-- evalsuite:start -->"
END_MARKER = "<!-- evalsuite:end -->"
# The contamination table has a section of its own: a card may show either without the other.
CONTAMINATION_START_MARKER = "<!-- evalsuite:contamination:start -->"
CONTAMINATION_END_MARKER = "<!-- evalsuite:contamination:end -->"
# The compact table of this model beside the leaderboard's published peers.
PEERS_START_MARKER = "<!-- evalsuite:peers:start -->"
PEERS_END_MARKER = "<!-- evalsuite:peers:end -->"
# The leaderboard's published numbers for this model, as its bot's pull requests wrote them.
LEADERBOARD_START_MARKER = "<!-- evalsuite:leaderboard:start -->"
LEADERBOARD_END_MARKER = "<!-- evalsuite:leaderboard:end -->"
# The heading of the section the leaderboard's bot added to cards (without markers): a card holding it has it.
BOT_SECTION_HEADING = "# [Open LLM Leaderboard Evaluation Results]"
DETAILS_URL = "https://huggingface.co/datasets/open-llm-leaderboard/details_{org}__{name}"


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
            f"runs, pass {param('allow_partial')} to publish it anyway"
        )
    differing = not_comparable(results, suite)
    if differing and not allow_not_comparable:
        names = ", ".join(name for name, _ in differing)
        raise CardError(
            f"run {results.run_id}: {names} did not ask the leaderboard's requests ({differing[0][1][0]}); pass "
            f"{param('allow_not_comparable')} to publish them anyway, marked as such"
        )


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
        dtype=results.model.loaded_as,
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
        evalsuite_version=results.versions.evalsuite,
        items=results.settings.items,
        neighbours=results.settings.neighbours,
        reference=results.reference.id,
        threshold=f"{results.settings.threshold:g}",
        model=results.target.id,
        tasks=results.tasks,
    )


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
    new_front = _with_model_index(readme, eval_results(results, suite, source), results.model.id, model_name)
    body = _with_section(readme.body, readme.newline, START_MARKER, END_MARKER, render_markdown(results, suite))
    return readme.with_body(body).with_front_matter(new_front).text()


def _with_model_index(
    readme: Readme, ours: list[EvalResult], model_id: str, model_name: str | None, repo_name: str | None = None
) -> str:
    """The README's front matter with `ours` as the model's model-index results, re-parsed and checked to mean
    the old metadata plus these results (else one CardError, nothing written)."""
    front = readme.front_matter or ""
    new_front, expected = updated_front_matter(
        front, readme.newline, parse_front_matter(front), model_id, model_name, ours, repo_name
    )
    if parse_front_matter(new_front) != expected:
        raise CardError(
            "front matter: could not write the results without changing other YAML (unusual layout); "
            "write the model-index by hand or simplify its layout"
        )
    return new_front


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


def read_readme(path: Path) -> str:
    """The README's text ("" for a README still to be created). Its folder must exist: a missing folder is
    more often a typo than a wish for a new one."""
    target = resolved(path)  # through a symlink, to the file it points at
    if not target.parent.is_dir():
        raise CardError(f"{path}: folder {target.parent} does not exist; create it or fix the path")
    return read_text_or_empty(path)


def resolved(path: Path) -> Path:
    """The file a path names, through its symlinks; a symlink loop is one CardError."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as e:  # RuntimeError: Python 3.11's "Symlink loop"; OSError ELOOP from 3.13
        raise CardError(f"{path}: a symlink loop; point it at a file") from e


def read_text_or_empty(path: Path) -> str:
    """A file's UTF-8 text, read through a symlink ("" for a file still to be written); one line otherwise."""
    try:
        data = resolved(path).read_bytes()
    except FileNotFoundError:
        return ""
    except OSError as e:
        raise CardError(f"{path}: cannot read ({e.strerror})") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CardError(f"{path}: not UTF-8 (byte {e.start}); convert it to UTF-8 first") from e


def diff(old: str, new: str, path: Path, label: str | None = None) -> str:
    """A unified diff, its file named `label` (default: the file's name)."""
    name = label or path.name
    return "".join(
        difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{name}", f"b/{name}")
    )


def update_peers(text: str, table: str) -> str:
    """The README with its peers table (leaderboard.render_compact) brought up to date. Pure; the front matter
    and every byte outside the section stay."""
    readme = split_readme(text)
    body = _with_section(readme.body, readme.newline, PEERS_START_MARKER, PEERS_END_MARKER, table)
    return readme.with_body(body).text()


def render_published(evaluation: PublishedEvaluation, suite: SuiteSpec) -> str:
    """The `|Metric|Value|` section the leaderboard's bot put in cards, from its published row."""
    org, _, name = evaluation.model.partition("/")
    names = ["Avg.", *(s.display_name for s in suite.tasks)]
    values = [evaluation.average, *(evaluation.scores[s.column] for s in suite.tasks)]
    width = max(len(n) for n in names)
    rows = [f"|{n.ljust(width)}|{v:5.2f}|" for n, v in zip(names, values, strict=True)]
    return render(
        "leaderboard_section.md.j2",
        leaderboard_url=LEADERBOARD_URL,
        details_url=DETAILS_URL.format(org=org, name=name),
        header=f"|{_centred('Metric', width)}|Value|",
        rule=f"|{'-' * width}|----:|",
        rows=rows,
    )


def update_from_leaderboard(
    text: str, evaluation: PublishedEvaluation, suite: SuiteSpec, model_name: str | None = None
) -> str:
    """The README with the leaderboard's published numbers for its model, as the leaderboard's bot wrote them:
    model-index results with the leaderboard as their source (a new entry named after the repo alone, as the
    bot named it) and the `|Metric|Value|` section, unless the card already has the bot's own. Pure."""
    readme = split_readme(text)
    nl = readme.newline
    repo_name = evaluation.model.rsplit("/", 1)[-1]
    new_front = _with_model_index(
        readme, published_eval_results(evaluation, suite), evaluation.model, model_name, repo_name
    )
    body = readme.body
    ours_already = find_section(body, LEADERBOARD_START_MARKER, LEADERBOARD_END_MARKER) is not None
    if ours_already or BOT_SECTION_HEADING not in body:  # the bot's own section stays as the bot wrote it
        body = _with_section(
            body, nl, LEADERBOARD_START_MARKER, LEADERBOARD_END_MARKER, render_published(evaluation, suite)
        )
    return readme.with_body(body).with_front_matter(new_front).text()


def _centred(text: str, width: int) -> str:
    """Centred as the bot's tables centre a header: the odd space on the right (str.center puts it left)."""
    left = (width - len(text)) // 2
    return " " * left + text + " " * (width - len(text) - left)

"""`card update` as a library: what to change in a model card, decided before anything is written.

    request = CardUpdateRequest(readme=Path("README.md"), results=Path("results/org__model"))
    update = plan_card_update(request, read_card_inputs(request))   # every file's old and new text
    for line in update.notes: print(line)
    write_card_update(update)                                        # or show update.diff(), or check update.stale

`read_card_inputs` reads what the update draws on (the README, the run, the check, the leaderboard's archive,
the Hub's benchmark registrations); `plan_card_update` is pure: from the request and those inputs it returns
each file's old and new text and the lines to tell the user, or raises one error that says what to fix.
Nothing is written until `write_card_update`, so `--check` and `--dry-run` show exactly what it would do.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evalsuite.archive import LeaderboardModel, PublishedEvaluation
from evalsuite.errors import CardError, OptionError, param
from evalsuite.files import FileChanged, missing_folders, remove_empty_folders, replace_if_unchanged
from evalsuite.publish import eval_results
from evalsuite.publish import leaderboard as board
from evalsuite.publish.benchmarks import Benchmarks
from evalsuite.publish.card import (
    check_publishable,
    diff,
    read_readme,
    resolved,
    update_contamination,
    update_from_leaderboard,
    update_peers,
    update_readme,
)
from evalsuite.publish.model_index import CardSource
from evalsuite.results import ContaminationResults, Run, is_contamination, read_contamination, read_run
from evalsuite.suite import SuiteSpec, load_suite

README_IN_REPO = "README.md"


@dataclass(frozen=True)
class CardUpdateRequest:
    """What to write into the README (at least one of results, contamination, peers, from_leaderboard)."""

    readme: Path  # created if missing; its folder must exist
    results: Path | None = None  # a results.json, a run folder, or a model's folder (its newest complete run)
    contamination: Path | None = None  # a check's folder or contamination.json
    peers: Sequence[LeaderboardModel] = ()  # the leaderboard's published rows beside the run
    from_leaderboard: LeaderboardModel | None = None  # the leaderboard's own numbers for the model, as its bot
    published_contents: Path | None = None  # a local copy of the leaderboard's contents table
    eval_results: bool = False  # also the Hub's `.eval_results/h6-<protocol>.yaml` beside the README
    allow_partial: bool = False
    allow_not_comparable: bool = False
    model_name: str | None = None  # the model-index entry's name
    source: CardSource | None = None  # each model-index result's source

    def check(self) -> None:
        """Options that do not go together, or that would do nothing: one OptionError each."""
        if self.results is None and self.contamination is None and not self.peers and self.from_leaderboard is None:
            raise OptionError(
                f"give {param('results')} RUN, {param('contamination')} CHECK, {param('peers')} MODELS or "
                f"{param('from_leaderboard')} MODEL"
            )
        if self.results is not None and self.from_leaderboard is not None:
            raise OptionError(
                f"{param('results')} and {param('from_leaderboard')} both write the card's model-index results; "
                "give one"
            )
        if self.from_leaderboard is not None and self.source is not None:
            raise OptionError(
                f"{param('from_leaderboard')}'s source is the leaderboard; leave out "
                f"{param('source_name')}/{param('source_url')}"
            )
        if self.eval_results and self.results is None:
            raise OptionError(f"{param('eval_results')} writes a run's results; give {param('results')} RUN")
        if self.published_contents is not None and not self.peers and self.from_leaderboard is None:
            raise OptionError(
                f"{param('published_contents')} is the table peers come from; give {param('peers')} or "
                f"{param('from_leaderboard')} too"
            )
        if self.results is None and (self.allow_partial or self.allow_not_comparable):
            given = "allow_partial" if self.allow_partial else "allow_not_comparable"
            raise OptionError(f"{param(given)} goes with {param('results')} RUN; it publishes a run")
        if self.results is None and self.from_leaderboard is None and (self.model_name or self.source):
            given = "model_name" if self.model_name else "source_name"
            raise OptionError(
                f"{param(given)} names model-index results, which {param('results')} or "
                f"{param('from_leaderboard')} write; give one of them"
            )

    def command(self) -> str:
        """The `evalsuite card update` command that makes this update (what `--check` tells to run on a stale
        card): the README and every option that changes what is written, as given. Each option is named with
        `errors.param`: `errors.in_terms(command, term)` writes them, the CLI as its flags (`--model-name`)."""
        given: list[tuple[str, object]] = [
            ("results", self.results),
            ("contamination", self.contamination),
            ("peers", ",".join(str(p) for p in self.peers)),
            ("from_leaderboard", self.from_leaderboard),
            ("published_contents", self.published_contents),
            ("eval_results", self.eval_results),
            ("allow_partial", self.allow_partial),
            ("allow_not_comparable", self.allow_not_comparable),
            ("model_name", self.model_name),
            ("source_name", self.source.name if self.source else None),
            ("source_url", self.source.url if self.source else None),
        ]
        words = ["evalsuite", "card", "update", shlex.quote(str(self.readme))]
        for name, value in given:
            if value is True:
                words.append(param(name))
            elif value:
                words += [param(name), shlex.quote(str(value))]
        return " ".join(words)


@dataclass(frozen=True)
class CardInputs:
    """What a card update reads, read once (`read_card_inputs`)."""

    suite: SuiteSpec
    readme_text: str
    readme_existed: bool = True
    run: Run | None = None
    contamination: ContaminationResults | None = None
    peers: tuple[PublishedEvaluation, ...] = ()
    published: PublishedEvaluation | None = None  # the --from-leaderboard row
    benchmarks: Benchmarks | None = None  # with eval_results: which datasets are Hub benchmarks
    eval_results_text: str = ""  # the `.eval_results` file as it is ("" when missing)
    eval_results_existed: bool = False


@dataclass(frozen=True)
class FileUpdate:
    """One file of the card: where it is here and in the Hub repo, its text now and after the update."""

    path: Path
    in_repo: str
    old: str
    new: str
    existed: bool = True  # False: the file is to be created (`old` is "")

    @property
    def changed(self) -> bool:
        return self.old != self.new


@dataclass(frozen=True)
class CardUpdate:
    """Every file's old and new text (the README first) and the lines to tell the user before anything else."""

    files: tuple[FileUpdate, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def stale(self) -> list[FileUpdate]:
        """The files the update would change (none: the card is up to date)."""
        return [f for f in self.files if f.changed]

    def diff(self) -> str:
        """A unified diff of every file that would change (`--dry-run`)."""
        return "".join(diff(f.old, f.new, f.path, label=f.in_repo) for f in self.files)


def read_card_inputs(request: CardUpdateRequest, suite: SuiteSpec | None = None) -> CardInputs:
    """Read what the update draws on, checking the request first (nothing is read for a request that cannot
    work): the README, the run, the check, the leaderboard's rows, and, for `eval_results`, the Hub's benchmark
    registrations (huggingface_hub, cached; the spec's record where the Hub cannot be reached) and the
    `.eval_results` file already there."""
    request.check()
    suite = suite or load_suite()
    readme_text = read_readme(request.readme)
    readme_existed = resolved(request.readme).exists()
    run = read_run(request.results, newest_complete=True) if request.results is not None else None
    if run is not None:  # a run that may not go on a card is refused before the archive or the Hub is asked
        check_publishable(run.results, suite, request.allow_partial, request.allow_not_comparable)
    contamination = None
    if request.contamination is not None:
        if not is_contamination(request.contamination):
            raise CardError(
                f"{param('contamination')} {request.contamination}: not a contamination check's folder or file"
            )
        contamination = read_contamination(request.contamination)
    peers: tuple[PublishedEvaluation, ...] = ()
    published = None
    if request.peers or request.from_leaderboard is not None:
        from evalsuite.archive import load_contents

        contents = load_contents(request.published_contents)
        peers = tuple(contents.select(peer) for peer in request.peers)
        published = contents.select(request.from_leaderboard) if request.from_leaderboard is not None else None
    benchmarks, existing, existed = None, "", False
    if request.eval_results and run is not None:
        from evalsuite.publish.benchmarks import from_hub

        benchmarks = from_hub(suite)
        local = request.readme.parent / eval_results.file_name(run.results)
        existing, existed = eval_results.read_file(local), resolved(local).exists()
    return CardInputs(
        suite, readme_text, readme_existed, run, contamination, peers, published, benchmarks, existing, existed
    )


def plan_card_update(request: CardUpdateRequest, inputs: CardInputs) -> CardUpdate:
    """Every file's old and new text, and the lines to print; writes nothing, reads nothing. A run that may not
    be published as asked, or files of two models, is one CardError."""
    request.check()
    suite, run, contamination = inputs.suite, inputs.run, inputs.contamination
    notes: list[str] = [run.chosen] if run is not None and run.chosen else []
    if run is not None:
        check_publishable(run.results, suite, request.allow_partial, request.allow_not_comparable)
    if run is not None and contamination is not None and run.results.model.id != contamination.target.id:
        raise CardError(
            f"{param('results')} is a run of {run.results.model.id} but {param('contamination')} checked "
            f"{contamination.target.id}; give files of the same model"
        )
    new = inputs.readme_text
    if run is not None:
        new = update_readme(new, run.results, suite, request.model_name, request.source)
    if contamination is not None:
        new = update_contamination(new, contamination)
    if inputs.published is not None:
        new = update_from_leaderboard(new, inputs.published, suite, request.model_name)
    if inputs.peers:
        measured = [run.results] if run is not None else []
        new = update_peers(new, board.render_compact(board.ranked_rows(measured, suite, peers=inputs.peers)))
    files = [FileUpdate(request.readme, README_IN_REPO, inputs.readme_text, new, inputs.readme_existed)]
    if request.eval_results and run is not None and inputs.benchmarks is not None:
        found = inputs.benchmarks
        notes += found.notes
        items = eval_results.entries(run.results, suite, found, request.source)
        if not items:
            raise CardError(
                f"run {run.results.run_id}: none of its tasks has a benchmark registered on the Hub, so there is "
                f"no .eval_results entry to write; leave out {param('eval_results')}"
            )
        in_repo = eval_results.file_name(run.results)
        owned = {s.hub_benchmark.dataset_id for s in suite.tasks if s.hub_benchmark}
        updated = eval_results.updated_file(inputs.eval_results_text, items, owned, found.not_benchmarks)
        local = request.readme.parent / in_repo
        files.append(FileUpdate(local, in_repo, inputs.eval_results_text, updated, inputs.eval_results_existed))
    return CardUpdate(tuple(files), tuple(notes))


def write_card_update(update: CardUpdate, request: CardUpdateRequest | None = None) -> list[str]:
    """Write the files that change, each atomically and only if it still holds the text the update was planned
    on (the `.eval_results` file first, its folder made if need be); say what happened to each, in order
    (`wrote X`, `updated README.md`, `... already up to date`).

    A file someone changed meanwhile is never overwritten: with `request`, the update is planned again once on
    the new text and written; otherwise, or if it changes again, one CardError. A file that cannot be written
    (a full disk, a read-only folder or file, a symlink loop) is one CardError, and a file written before it in
    this update is put back as it was."""
    try:
        return _write(update)
    except FileChanged as changed:
        if request is None:
            raise CardError(f"{changed}: changed while evalsuite was updating it; nothing was written") from changed
        again = plan_card_update(request, read_card_inputs(request))
        try:
            said = _write(again)
        except FileChanged as twice:
            raise CardError(
                f"{twice}: changed twice while evalsuite was updating it; nothing was written, run again"
            ) from twice
        return [f"{changed} changed while evalsuite was updating it: updated again on its new text", *said]


def _write(update: CardUpdate) -> list[str]:
    said: list[str] = []
    done: list[FileUpdate] = []
    for file in (*update.files[1:], update.files[0]):
        if not file.changed:
            said.append(f"{file.path} already up to date")
            continue
        try:
            _replace(file, file.new)
        except BaseException:
            for written in reversed(done):  # put back what this update wrote before
                try:
                    _replace(replace_file(written, old=written.new), written.old)
                except (OSError, CardError, FileChanged):
                    pass
            raise
        done.append(file)
        said.append(f"updated {file.path}" if file.in_repo == README_IN_REPO else f"wrote {file.path}")
    return said


def replace_file(file: FileUpdate, old: str) -> FileUpdate:
    return FileUpdate(file.path, file.in_repo, old, file.new, existed=True)


def _replace(file: FileUpdate, text: str) -> None:
    """`text` over the file if it still holds what the update read (FileChanged if not); one CardError if it
    cannot be written."""
    target = resolved(file.path)
    made = missing_folders(target.parent) if file.in_repo != README_IN_REPO else []
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_if_unchanged(target, file.old.encode("utf-8") if file.existed else None, text)
    except OSError as e:
        remove_empty_folders(made)
        raise CardError(f"{file.path}: cannot write ({e.strerror or e}); nothing was changed") from e
    except FileChanged:
        remove_empty_folders(made)
        raise

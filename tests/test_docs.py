"""The README and docs/ stay true: the command reference is what the CLI says, every `evalsuite` command line
shown parses against the CLI, every file, folder and link they name exists, and the README's Documentation list
links every page of docs/."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from conftest import REPO
from make_docs import COMMANDS, commands_reference
from test_workflow import _parse

from evalsuite.results import CONTAMINATION_SCHEMA_VERSION, SCHEMA_VERSION

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
# a path into the repository, as the docs name files: `evalsuite/engine/runner.py`, `tests/test_parity.py`
REPO_PATH = re.compile(r"`((?:evalsuite|tests|bench|tools|docs|tasks|templates)/[\w./-]*)`")


def _page_id(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_the_command_reference_is_what_the_cli_says():
    assert COMMANDS.read_text(encoding="utf-8") == commands_reference(), (
        "docs/commands.md is stale: run `make docs` (python tools/make_docs.py) and commit it"
    )


def test_the_readme_is_short():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200, "the reference belongs in docs/"


def test_every_docs_page_is_in_the_readmes_documentation_list():
    text = README.read_text(encoding="utf-8")
    section = text.partition("\n## Documentation\n")[2].partition("\n## ")[0]
    assert section, "README.md has no `## Documentation` section"
    targets = re.findall(r"\]\(([^)\s]+)\)", section)
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in targets}
    unlinked = [_page_id(page) for page in DOCS if page.resolve() not in linked]
    assert not unlinked, f"README.md's Documentation list does not link {unlinked}: add them there"


def _command_lines(text: str) -> list[str]:
    """`evalsuite ...` lines of the fenced code blocks (a shell prompt's `$ ` dropped)."""
    lines = []
    for block in FENCE.findall(text):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("evalsuite ") and "[OPTIONS]" not in line:  # commands.md's usage lines
                lines.append(line)
    return lines


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_command_shown_parses(page: Path):
    for line in _command_lines(page.read_text(encoding="utf-8")):
        words = shlex.split(line.split("#")[0])
        ctx = _parse(words[1:])  # raises on an unknown command or option, a missing argument, a bad choice
        assert ctx.command is not None, line


def test_the_pages_show_commands():
    shown = {line.split()[1] for page in PAGES for line in _command_lines(page.read_text(encoding="utf-8"))}
    assert {"run", "card", "compare", "leaderboard", "contamination"} <= shown


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_file_named_exists(page: Path):
    text = page.read_text(encoding="utf-8")
    missing = [p for p in REPO_PATH.findall(text) if not any(c in p for c in "<*…") and not (REPO / p).exists()]
    assert not missing, f"{_page_id(page)} names files that do not exist: {missing}"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_link_resolves(page: Path):
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", linked.read_text(encoding="utf-8"), re.M)
            if anchor not in {_anchor(h) for h in headings}:
                broken.append(target)
    assert not broken, f"{_page_id(page)} links to what does not exist: {broken}"


def test_the_docs_name_the_current_schema_files():
    text = "\n".join(page.read_text(encoding="utf-8") for page in PAGES)
    for current in (f"evalsuite/schema/results.v{SCHEMA_VERSION}.json",
                    f"evalsuite/schema/contamination.v{CONTAMINATION_SCHEMA_VERSION}.json"):  # fmt: skip
        assert current in text
    stale = [f"results.v{v}.json" for v in range(1, SCHEMA_VERSION) if f"> evalsuite/schema/results.v{v}.json" in text]
    assert not stale, f"the docs say to regenerate an old schema file: {stale}"

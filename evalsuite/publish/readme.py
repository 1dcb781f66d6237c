"""The text of a model card README: where its front matter is, where its managed section is, and line-level
edits of YAML block structure that leave every other byte as it was.

Front matter is found by the Hub's rule (`FRONT_MATTER`, the rule huggingface_hub's ModelCard reads cards by;
tests/test_dependency_contract.py checks both cut sample cards at the same byte), so a byte-order mark, a
closing `--- ` with trailing spaces or mixed line endings never hide it. Edits work on
lines: a YAML block sequence is split into its items by indentation, and only the items evalsuite owns are
replaced; the caller re-parses the result and checks that it means what was intended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from evalsuite.errors import CardError

BOM = "\ufeff"
# A card's front matter: an opening `---` line at the very start (blank space before it allowed), the
# shortest YAML text after it, then a closing `---` line that may end in spaces or tabs (or the file).
# Groups: opener, YAML, closer (with the newline before it).
FRONT_MATTER = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(?:\r\n|\n|$))")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class Readme:
    """A README cut into the parts evalsuite edits separately; `text()` puts them back together."""

    bom: str  # "\ufeff" or ""
    opener: str  # everything up to and including the opening `---` line ("" without front matter)
    front_matter: str | None  # the YAML between the fences, as written
    closer: str  # the closing fence line as written (`\n---  \n`)
    body: str
    newline: str  # the newline evalsuite writes into this file: the one most of its lines end with

    def text(self) -> str:
        return self.bom + self.opener + (self.front_matter or "") + self.closer + self.body

    def with_front_matter(self, front: str) -> Readme:
        if self.front_matter is not None:
            return Readme(self.bom, self.opener, front, self.closer, self.body, self.newline)
        nl = self.newline
        return Readme(self.bom, f"---{nl}", front, f"---{nl}", nl + self.body, nl)

    def with_body(self, body: str) -> Readme:
        return Readme(self.bom, self.opener, self.front_matter, self.closer, body, self.newline)


def split_readme(text: str) -> Readme:
    bom = BOM if text.startswith(BOM) else ""
    text = text[len(bom) :]
    newline = _dominant_newline(text)
    match = FRONT_MATTER.search(text)
    if match is None:
        return Readme(bom, "", None, "", text, newline)
    # the newline before the closing `---` belongs to the YAML's last line
    nl_before_closer = re.match(r"\r\n|\r|\n", match.group(3))
    assert nl_before_closer is not None
    cut = nl_before_closer.end()
    front, closer = match.group(2) + match.group(3)[:cut], match.group(3)[cut:]
    return Readme(bom, match.group(1), front, closer, text[match.end() :], newline)


def _dominant_newline(text: str) -> str:
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf >= text.count("\n") - crlf else "\n"


# ------------------------------------------------------------------------------------------ YAML lines


def lines_of(text: str) -> list[str]:
    """Lines with their newlines (only `\\n` ends a line, unlike str.splitlines)."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_item_start(line: str, indent: int) -> bool:
    return (
        indent_of(line) == indent
        and line[indent:].startswith("-")
        and line[indent + 1 : indent + 2] in (" ", "\r", "\n", "")
    )


@dataclass(frozen=True)
class KeyBlock:
    """A mapping key's lines: [key_line, end), `end` just after its last content line."""

    key_line: int
    end: int
    inline_value: str  # what follows `key:` on its own line, comments stripped ("" for a block value)


def key_block(
    lines: list[str],
    names: tuple[str, ...],
    indent: int,
    dash: int | None = None,
    start: int = 0,
    stop: int | None = None,
) -> KeyBlock | None:
    """The block of the key spelled as one of `names` (plain or quoted) at column `indent`, in lines[start:stop].

    `dash`: the column of the dash when the key may also sit on a sequence item's first line (`- results:`).
    Its value runs while lines are deeper than the key, or are sequence items at the key's own column.
    """
    stop = len(lines) if stop is None else stop
    spellings = "|".join(re.escape(n) for name in names for n in (name, f'"{name}"', f"'{name}'"))
    prefix = " " * indent
    if dash is not None:
        prefix = f"(?:{prefix}|{' ' * dash}-{' ' * (indent - dash - 1)})"
    pattern = re.compile(rf"^{prefix}(?:{spellings})[ \t]*:(?:[ \t]+(.*?))?[ \t]*\r?\n?$")
    for i in range(start, stop):
        line = lines[i]
        match = pattern.match(line)
        if not match:
            continue
        value = (match.group(1) or "").strip()
        if value.startswith("#"):
            value = ""
        end = i + 1
        for j in range(i + 1, stop):
            if not is_content(lines[j]):
                continue
            deeper = indent_of(lines[j]) > indent
            if not (deeper or _is_item_start(lines[j], indent)):
                break
            end = j + 1
        return KeyBlock(i, end, value)
    return None


def sequence_items(
    lines: list[str], start: int, stop: int, where: str = "front matter: under model-index"
) -> list[tuple[int, int]]:
    """[start, end) line spans of the items of the block sequence in lines[start:stop].

    An item runs from its `-` line to its last content line; comments and blank lines between items stay
    outside every item. `where` names the YAML in errors.
    """
    content = [i for i in range(start, stop) if is_content(lines[i])]
    if not content:
        return []
    indent = indent_of(lines[content[0]])
    if not _is_item_start(lines[content[0]], indent):
        raise CardError(f"{where}: expected a YAML block list (`- ...`); fix it by hand")
    items: list[list[int]] = []
    for i in content:
        if _is_item_start(lines[i], indent):
            items.append([i, i + 1])
        elif indent_of(lines[i]) > indent:
            items[-1][1] = i + 1
        else:
            raise CardError(f"{where}: unexpected indentation in line {i + 1} of the YAML; fix it by hand")
    return [(a, b) for a, b in items]


def item_indent(line: str) -> tuple[int, int]:
    """(column of the dash, column of the item's first key) of a sequence item's first line."""
    match = re.match(r"( *)-( +)", line)
    if match is None:
        return indent_of(line), indent_of(line) + 2
    return len(match.group(1)), match.end()


def indented(block: str, indent: int, newline: str) -> list[str]:
    """`block` (a YAML dump with `\\n` newlines) shifted right by `indent`, as lines ending in `newline`."""
    return [" " * indent + line + newline for line in block.rstrip("\n").split("\n")]


# ------------------------------------------------------------------------------- the managed section


@dataclass(frozen=True)
class Section:
    start: int  # offset of the start marker
    end: int  # offset just after the end marker


def find_section(body: str, start_marker: str, end_marker: str) -> Section | None:
    """The managed section: a start and an end marker, each alone on its line, outside fenced code blocks.

    Markers inside code fences are text, not markers. More than one of either, or one without the other,
    is an error: evalsuite will not guess which section is current.
    """
    starts: list[int] = []
    ends: list[int] = []
    fence: str | None = None
    offset = 0
    for line in lines_of(body):
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                fence = None
        elif line.strip() == start_marker:
            starts.append(offset + line.index(start_marker))
        elif line.strip() == end_marker:
            ends.append(offset + line.index(end_marker) + len(end_marker))
        offset += len(line)
    if len(starts) > 1 or len(ends) > 1:
        raise CardError(
            f"README has {len(starts)} {start_marker} and {len(ends)} {end_marker} lines; keep one pair "
            "(delete the stale section) and run again"
        )
    if len(starts) != len(ends) or (starts and ends[0] < starts[0]):
        raise CardError(f"README has {start_marker} or {end_marker} without the other; fix the markers first")
    return Section(starts[0], ends[0]) if starts else None

"""Just enough Markdown for the docs tests: fenced code blocks, headings, table rows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: The repository's root.
ROOT = Path(__file__).resolve().parent.parent.parent

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_HEADING = re.compile(r"^(?P<level>#{1,6})\s+(?P<title>.+?)\s*(?:\{[^}]*\})?\s*$")


@dataclass(frozen=True)
class Block:
    """A fenced code block."""

    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def first_line(self) -> str:
        return next((line.strip() for line in self.code.splitlines() if line.strip()), "")


def _dedent(line: str, indent: str) -> str:
    return line[len(indent) :] if line.startswith(indent) else line.lstrip()


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of ``path``, including those nested in lists and admonitions."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        indent, fence = match["indent"], match["fence"]
        info = match["info"].strip()
        lang = info.split()[0].lower() if info else ""
        body: list[str] = []
        end = index + 1
        while end < len(lines):
            stripped = lines[end].strip()
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                break
            body.append(_dedent(lines[end], indent))
            end += 1
        else:
            raise AssertionError(f"{path.relative_to(ROOT)}:{index + 1}: unclosed code block")
        blocks.append(Block(path, index + 1, lang, "\n".join(body) + "\n"))
        index = end + 1
    return blocks


def _code_lines(path: Path) -> set[int]:
    """Indexes (0-based) of the lines of ``path`` that belong to fenced code blocks."""
    inside: set[int] = set()
    for block in code_blocks(path):
        inside.update(range(block.line - 1, block.line + len(block.code.splitlines()) + 1))
    return inside


def sections(path: Path, level: int) -> dict[str, str]:
    """Headings of ``level`` (2 for ``##``) mapped to the text up to the next heading of that
    level or above. Titles lose their backticks and any ``{ #id }`` attribute."""
    code = _code_lines(path)
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        match = None if number in code else _HEADING.match(line)
        if match and len(match["level"]) == level:
            title = match["title"].replace("`", "").strip()
            assert title not in found, f"{path.relative_to(ROOT)}: heading {title!r} twice"
            current = found[title] = []
        elif match and len(match["level"]) < level:
            current = None
        elif current is not None:
            current.append(line)
    return {title: "\n".join(text) for title, text in found.items()}


def headings(path: Path, level: int) -> list[str]:
    """Titles of the headings of ``level`` (backticks and ``{ #id }`` removed)."""
    return list(sections(path, level))


def table_cell(text: str, row: str) -> str:
    """The second cell of the table row whose first cell is ``row``."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] == row:
            return cells[1]
    raise AssertionError(f"no table row {row!r}")


def first_cells(text: str) -> list[str]:
    """The first cell of every table row of ``text`` (header and separator rows included)."""
    return [
        line.strip().strip("|").split("|")[0].strip()
        for line in text.splitlines()
        if line.strip().startswith("|")
    ]

"""Turning a stream of headings and text blocks into :class:`Section` objects.

Every structured parser (Markdown, HTML, DOCX) walks its own tree and reports what it sees
here, so that heading paths, paragraph separation and whitespace clean-up are the same for
all formats.
"""

from __future__ import annotations

import re
import unicodedata

from chatledger.rag.parse_types import DocumentRejected, Reason, Section

# C0/C1 control characters other than tab and newline carry no text and can hide content.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC, ``\\n`` line ends, no control characters, no trailing spaces, at most one blank line."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text.replace("\f", "\n\n"))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip("\n")


def collapse_spaces(text: str) -> str:
    """One line of flowing text: every whitespace run becomes one space."""
    return " ".join(text.split())


class SectionBuilder:
    """Collects blocks under the current heading path; a heading closes the open section.

    Blocks are separated by a blank line, except consecutive *line* blocks (list items, table
    rows) which are kept on adjacent lines. ``max_chars`` bounds the text collected so that an
    expanding input cannot grow without limit.
    """

    def __init__(self, *, max_chars: int) -> None:
        self._max_chars = max_chars
        self._total = 0
        self._stack: list[tuple[int, str]] = []
        self._blocks: list[list[str]] = []  # each block is a list of lines, joined at the end
        self._last_was_line = False
        self._sections: list[Section] = []
        self.first_heading: str | None = None

    def heading(self, level: int, text: str) -> None:
        text = collapse_spaces(text)
        if not text:
            return
        self._close()
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, text))
        if self.first_heading is None:
            self.first_heading = text

    def block(self, text: str, *, line: bool = False) -> None:
        text = normalize_text(text)
        if not text:
            return
        self._total += len(text) + 2
        if self._total > self._max_chars:
            raise DocumentRejected(
                Reason.TOO_LARGE,
                f"the document's text is longer than {self._max_chars} characters",
                details={"max_text_chars": self._max_chars},
            )
        if line and self._last_was_line and self._blocks:
            self._blocks[-1].append(text)
        else:
            self._blocks.append([text])
        self._last_was_line = line

    def end_lines(self) -> None:
        """The next line block starts a new paragraph (e.g. a table after a list)."""
        self._last_was_line = False

    def sections(self) -> list[Section]:
        self._close()
        return self._sections

    def _close(self) -> None:
        if self._blocks:
            path = tuple(text for _, text in self._stack)
            text = "\n\n".join("\n".join(lines) for lines in self._blocks)
            self._sections.append(Section(text=text, heading_path=path))
        self._blocks = []
        self._last_was_line = False

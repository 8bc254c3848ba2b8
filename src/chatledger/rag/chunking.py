"""Splitting a parsed document into overlapping chunks for the index.

Sizes are in **characters** (Unicode code points), not tokens: characters are exact,
deterministic and language-neutral, where a token count depends on a model's tokenizer.
For English, one token is about four characters, so the default of 1,200 characters is about
300 tokens.

A chunk never crosses a section, so it keeps one heading path and one page. Within a section
each chunk is at most ``size`` characters and ends at the best boundary in the second half of
its window: a blank line, else a sentence end, else a line break, else a space, else (one
unbroken word longer than half the window) exactly at ``size``. The next chunk starts at
most ``overlap`` characters before the previous end, moved forward to a sentence start in
the first half of that span, else to the first word start. Chunks carry no leading or
trailing whitespace, so ``doc.text[chunk.char_start:chunk.char_end] == chunk.text`` and
everything between two chunks is whitespace. The same document and settings always give
the same chunks.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from chatledger.errors import InvalidInput
from chatledger.rag.parse_types import SECTION_SEPARATOR, ParsedDocument

DEFAULT_CHUNK_SIZE = 1200
DEFAULT_CHUNK_OVERLAP = 200

_SENTENCE_END = re.compile(r"[.!?…][\"')\]»”’]*(?=\s)|[。！？]")
_SENTENCE_START = re.compile(r"(?:[.!?…][\"')\]»”’]*\s+|[。！？]\s*|\n\s*)(?=\S)")
_WORD_START = re.compile(r"(?<!\S)\S")
_NON_SPACE = re.compile(r"\S")


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str
    heading_path: tuple[str, ...]
    page: int | None
    sha256: str  # hex digest of text.encode("utf-8")
    char_start: int  # offsets into ParsedDocument.text
    char_end: int


def _validate(size: int, overlap: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidInput("chunk size must be a positive integer", details={"size": size})
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise InvalidInput(
            "chunk overlap must be a non-negative integer", details={"overlap": overlap}
        )
    if overlap >= size:
        raise InvalidInput(
            "chunk overlap must be smaller than the chunk size",
            details={"size": size, "overlap": overlap},
        )


def _break_at(text: str, start: int, size: int, low: int) -> int:
    """End (exclusive) of the chunk starting at ``start``, at the best boundary in
    [low, start + size]; whitespace may precede it."""
    limit = start + size
    if limit >= len(text):
        return len(text)
    paragraph = text.rfind("\n\n", low, limit + 2)
    if paragraph >= 0:
        return paragraph
    sentence = -1
    for match in _SENTENCE_END.finditer(text, low, limit + 1):
        if match.end() <= limit:
            sentence = match.end()
    if sentence >= 0:
        return sentence
    # After sentence ends: PDF text is hard-wrapped, so a line break is often mid-sentence.
    line = text.rfind("\n", low, limit + 1)
    if line >= 0:
        return line
    space = max(text.rfind(" ", low, limit + 1), text.rfind("\t", low, limit + 1))
    return space if space >= 0 else limit


def _next_start(text: str, start: int, end: int, overlap: int) -> int:
    """Where the chunk after [start, end) begins: inside the overlap, on a boundary."""
    if overlap == 0:
        return end
    target = max(end - overlap, start + 1)
    # A sentence start is worth giving up at most half of the overlap for.
    sentence_limit = min(end, target + overlap // 2)
    for match in _SENTENCE_START.finditer(text, max(start, target - 4), sentence_limit):
        if match.end() >= target:
            return match.end()
    word = _WORD_START.search(text, target, end)
    return word.start() if word else target


def _split(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) spans of the chunks of one section's text."""
    spans: list[tuple[int, int]] = []
    fresh = _NON_SPACE.search(text)  # the first character that no chunk holds yet
    start = fresh.start() if fresh else 0
    while fresh is not None:
        first_new = fresh.start()
        if first_new >= start + size:  # the overlap would leave no room for new text
            start = first_new
        # Every chunk must take in new text, and not only a small part of its window.
        low = max(start + max(1, size // 2), first_new + 1)
        end = _break_at(text, start, size, low)
        while text[end - 1].isspace():  # stops at first_new at the latest
            end -= 1
        spans.append((start, end))
        fresh = _NON_SPACE.search(text, end)
        if fresh is not None:
            following = _NON_SPACE.search(text, _next_start(text, start, end, overlap))
            start = following.start() if following else fresh.start()
    return spans


def chunk_document(
    doc: ParsedDocument,
    size: int = DEFAULT_CHUNK_SIZE,
    overlap: int = DEFAULT_CHUNK_OVERLAP,
) -> list[Chunk]:
    """Split ``doc`` into chunks of at most ``size`` characters overlapping by up to
    ``overlap`` characters (see the module docstring for the exact rules)."""
    _validate(size, overlap)
    chunks: list[Chunk] = []
    base = 0
    for section in doc.sections:
        for start, end in _split(section.text, size, overlap):
            piece = section.text[start:end]
            chunks.append(
                Chunk(
                    index=len(chunks),
                    text=piece,
                    heading_path=section.heading_path,
                    page=section.page,
                    sha256=hashlib.sha256(piece.encode("utf-8")).hexdigest(),
                    char_start=base + start,
                    char_end=base + end,
                )
            )
        base += len(section.text) + len(SECTION_SEPARATOR)
    return chunks

"""Value types shared by the document parsers: limits, results and the one rejection error.

Kept apart from :mod:`chatledger.rag.parsing` so that the sandboxed worker process can import
them without importing the whole parser façade.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from chatledger.errors import InvalidInput

MiB = 1024 * 1024

# Sections are joined with this separator in ParsedDocument.text; chunk offsets index into it.
SECTION_SEPARATOR = "\n\n"


class DocumentFormat(StrEnum):
    PDF = "pdf"
    DOCX = "docx"
    HTML = "html"
    MARKDOWN = "markdown"
    TEXT = "text"


class Reason(StrEnum):
    """Stable codes for :class:`DocumentRejected`: tests, scripts and the API match on them."""

    EMPTY = "empty"
    TOO_LARGE = "too_large"
    TOO_MANY_PAGES = "too_many_pages"
    UNSUPPORTED_TYPE = "unsupported_type"
    TYPE_MISMATCH = "type_mismatch"
    BAD_ENCODING = "bad_encoding"
    MALFORMED = "malformed"
    ENCRYPTED_PDF = "encrypted_pdf"
    ZIP_BOMB = "zip_bomb"
    XML_ENTITY_EXPANSION = "xml_entity_expansion"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    WORKER_FAILED = "worker_failed"


class DocumentRejected(InvalidInput):
    """An uploaded document was refused; ``reason`` says why in a stable code.

    The status is 422 like any invalid input, except ``too_large`` which is a 413.
    """

    code = "document_rejected"

    def __init__(
        self, reason: Reason, message: str, *, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details={**(details or {}), "reason": reason.value})
        self.reason = reason
        if reason is Reason.TOO_LARGE:
            self.status = 413


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Bounds on what one document may cost to parse.

    PDF and DOCX, and any other file larger than ``max_inprocess_bytes``, are parsed in a
    worker process that is killed after ``timeout_seconds`` (wall clock, start-up included)
    and cannot map more than ``max_memory_bytes``; small text, Markdown and HTML files are
    parsed in-process (cheap, and bounded by their size). The zip limits are checked before
    python-docx opens an archive.
    """

    max_bytes: int = 25 * MiB
    # Pathological HTML or Markdown costs BeautifulSoup or markdown-it up to ~30 s per MiB, so
    # only files this small are worth sparing the worker's ~0.3 s start-up (worst case ~1 s).
    max_inprocess_bytes: int = 32 * 1024
    max_text_chars: int = 10_000_000
    max_pages: int = 2_000
    timeout_seconds: float = 30.0
    max_memory_bytes: int = 1024 * MiB
    max_uncompressed_bytes: int = 256 * MiB
    max_zip_members: int = 2_000
    max_compression_ratio: float = 100.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InvalidInput(
                    f"parse limit {f.name} must be a positive number",
                    details={f.name: value},
                )

    def to_dict(self) -> dict[str, int | float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ParseLimits:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


DEFAULT_LIMITS = ParseLimits()


@dataclass(frozen=True, slots=True)
class Section:
    """A run of text under one heading path (and, for PDF, on one page, 1-based)."""

    text: str
    heading_path: tuple[str, ...] = ()
    page: int | None = None


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    title: str
    format: DocumentFormat
    page_count: int | None
    sections: list[Section] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The whole text; :class:`~chatledger.rag.chunking.Chunk` offsets index into it."""
        return SECTION_SEPARATOR.join(s.text for s in self.sections)

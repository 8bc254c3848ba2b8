"""Document parsing: the one entry point, :func:`parse_document`.

Formats: PDF (pypdf), DOCX (python-docx), HTML (BeautifulSoup + lxml), Markdown
(markdown-it-py) and plain text. The format comes from the content and the name (see
:mod:`chatledger.rag.parse_detect`). PDF, DOCX and large files are parsed in a sandboxed,
killable worker process (:mod:`chatledger.rag.safe_worker`); small text, Markdown and HTML
files in-process. Every refusal is a :class:`DocumentRejected` with a stable ``reason``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from chatledger.rag.parse_detect import detect_format
from chatledger.rag.parse_html import parse_html
from chatledger.rag.parse_markdown import parse_markdown
from chatledger.rag.parse_text import parse_text, title_from_filename
from chatledger.rag.parse_types import (
    DEFAULT_LIMITS,
    DocumentFormat,
    DocumentRejected,
    ParsedDocument,
    ParseLimits,
    Reason,
    Section,
)
from chatledger.rag.safe_worker import parse_isolated

__all__ = [
    "DEFAULT_LIMITS",
    "DocumentFormat",
    "DocumentRejected",
    "ParseLimits",
    "ParsedDocument",
    "Reason",
    "Section",
    "parse_document",
]

_IN_PROCESS: dict[DocumentFormat, Callable[[bytes, ParseLimits], ParsedDocument]] = {
    DocumentFormat.HTML: parse_html,
    DocumentFormat.MARKDOWN: parse_markdown,
    DocumentFormat.TEXT: parse_text,
}


def parse_document(
    data: bytes,
    filename: str,
    content_type: str | None,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> ParsedDocument:
    """Parse an uploaded document into titled, sectioned text, or raise DocumentRejected."""
    if not data:
        raise DocumentRejected(Reason.EMPTY, "the file is empty")
    if len(data) > limits.max_bytes:
        raise DocumentRejected(
            Reason.TOO_LARGE,
            f"the file is larger than {limits.max_bytes} bytes",
            details={"max_bytes": limits.max_bytes},
        )
    fmt = detect_format(data, filename, content_type)
    in_process = _IN_PROCESS.get(fmt)
    if in_process is not None and len(data) <= limits.max_inprocess_bytes:
        doc = in_process(data, limits)
    else:
        doc = parse_isolated(data, fmt, limits)

    if not any(section.text.strip() for section in doc.sections):
        hint = " (a scanned PDF? there is no OCR)" if fmt is DocumentFormat.PDF else ""
        raise DocumentRejected(Reason.EMPTY, f"the document contains no text{hint}")
    if sum(len(section.text) for section in doc.sections) > limits.max_text_chars:
        raise DocumentRejected(
            Reason.TOO_LARGE, f"the document's text is longer than {limits.max_text_chars} chars"
        )
    if not doc.title:
        doc = dataclasses.replace(doc, title=title_from_filename(filename))
    return doc

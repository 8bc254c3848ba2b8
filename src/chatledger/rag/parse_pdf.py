"""PDF parsing with pypdf. Runs inside the sandboxed worker (see ``safe_worker``).

One section per page, split further where an outline (bookmark) entry's title is found in
the page text, so that heading paths come from the PDF's own outline. Scanned pages without a
text layer yield nothing: there is no OCR.
"""

from __future__ import annotations

import io
import re
from typing import Any

from chatledger.rag.parse_sections import collapse_spaces, normalize_text
from chatledger.rag.parse_types import (
    DocumentFormat,
    DocumentRejected,
    ParsedDocument,
    ParseLimits,
    Reason,
    Section,
)

_TITLE_MAX = 120
_PLACEHOLDER_TITLES = {"", "untitled", "(anonymous)"}


def _count_pages(reader: Any, max_pages: int) -> int:
    """Walk the page tree ourselves before pypdf flattens it: a cycle or a node reached twice
    (a tree of shared /Kids can hold 2**40 pages in a few hundred bytes) is refused, and the
    walk stops as soon as ``max_pages`` is passed."""
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

    stack: list[Any] = [reader.trailer["/Root"].get_object()["/Pages"]]
    seen: set[tuple[int, int]] = set()
    pages = 0
    while stack:
        ref = stack.pop()
        if isinstance(ref, IndirectObject):
            key = (ref.idnum, ref.generation)
            if key in seen:
                raise DocumentRejected(
                    Reason.MALFORMED, "the PDF page tree has a cycle or a shared node"
                )
            seen.add(key)
            ref = ref.get_object()
        if not isinstance(ref, DictionaryObject):
            raise DocumentRejected(Reason.MALFORMED, "the PDF page tree has a non-dictionary node")
        kids = ref.get("/Kids")
        if kids is not None or ref.get("/Type") == "/Pages":
            kids = kids.get_object() if kids is not None else ArrayObject()
            if not isinstance(kids, ArrayObject):
                raise DocumentRejected(Reason.MALFORMED, "the PDF page tree has bad /Kids")
            stack.extend(reversed(kids))
        else:
            pages += 1
            if pages > max_pages:
                raise DocumentRejected(
                    Reason.TOO_MANY_PAGES,
                    f"the PDF has more than {max_pages} pages",
                    details={"max_pages": max_pages},
                )
    return pages


def _outline(reader: Any) -> list[tuple[int, tuple[str, ...]]]:
    """(0-based page, heading path) for each bookmark, in document order."""
    found: list[tuple[int, tuple[str, ...]]] = []

    def walk(items: list[Any], parents: tuple[str, ...]) -> None:
        last: tuple[str, ...] | None = None
        for item in items:
            if isinstance(item, list):
                walk(item, last or parents)  # a nested list holds the children of `last`
                continue
            title = collapse_spaces(str(getattr(item, "title", "") or ""))
            last = (*parents, title) if title else None
            page = reader.get_destination_page_number(item) if last else None
            if last and page is not None and page >= 0:
                found.append((page, last))

    try:
        walk(reader.outline, ())
    except Exception:  # a broken outline costs the heading paths, not the document
        return []
    found.sort(key=lambda entry: entry[0])  # stable: keeps outline order within a page
    return found


def _split_page(
    text: str, headings: list[tuple[str, ...]], current: tuple[str, ...]
) -> tuple[list[tuple[str, tuple[str, ...]]], tuple[str, ...]]:
    """Cut a page's text where each heading's title appears (the title itself is dropped,
    it is in the heading path). A title not found switches the path at the last cut."""
    parts: list[tuple[str, tuple[str, ...]]] = []
    start = cut = 0
    for path in headings:
        pattern = r"\s+".join(re.escape(word) for word in path[-1].split())
        match = re.compile(pattern).search(text, cut) if pattern else None
        if match:
            parts.append((text[start : match.start()], current))
            start = cut = match.end()
        else:
            parts.append((text[start:cut], current))
            start = cut
        current = path
    parts.append((text[start:], current))
    return parts, current


def parse_pdf(data: bytes, limits: ParseLimits) -> ParsedDocument:
    from pypdf import PdfReader  # imported late: only the worker process pays for it
    from pypdf.errors import FileNotDecryptedError, LimitReachedError

    try:
        return _parse(PdfReader(io.BytesIO(data), strict=False), limits)
    except FileNotDecryptedError:
        raise DocumentRejected(Reason.ENCRYPTED_PDF, "the PDF is encrypted") from None
    except LimitReachedError as exc:
        raise DocumentRejected(
            Reason.TOO_LARGE, f"the PDF exceeds a safety limit of the reader: {exc}"
        ) from None


def _parse(reader: Any, limits: ParseLimits) -> ParsedDocument:
    if reader.is_encrypted:
        # Owner-password-only files (empty user password) open in any viewer: accept them.
        try:
            opened = reader.decrypt("")
        except Exception:
            opened = 0
        if not opened:
            raise DocumentRejected(
                Reason.ENCRYPTED_PDF,
                "the PDF is password-protected; upload an unprotected copy",
            )
    page_count = _count_pages(reader, limits.max_pages)
    outline = _outline(reader)
    headings_by_page: dict[int, list[tuple[str, ...]]] = {}
    for page_no, path in outline:
        headings_by_page.setdefault(page_no, []).append(path)
    sections: list[Section] = []
    total = 0
    current: tuple[str, ...] = ()
    first_line = ""
    for index, page in enumerate(reader.pages):
        if index >= page_count:  # pypdf must not find more pages than the checked walk did
            raise DocumentRejected(Reason.MALFORMED, "the PDF page tree is inconsistent")
        text = normalize_text(page.extract_text() or "")
        total += len(text)
        if total > limits.max_text_chars:
            raise DocumentRejected(
                Reason.TOO_LARGE, f"the PDF's text is longer than {limits.max_text_chars} chars"
            )
        if not first_line and text:
            first_line = text.split("\n", 1)[0].strip()
        parts, current = _split_page(text, headings_by_page.get(index, []), current)
        for part, path in parts:
            part = part.strip()
            if part:
                sections.append(Section(text=part, heading_path=path, page=index + 1))

    meta_title = collapse_spaces(str(getattr(reader.metadata, "title", None) or ""))
    if meta_title.lower() in _PLACEHOLDER_TITLES:
        meta_title = ""
    line_title = first_line if len(first_line) <= _TITLE_MAX else ""
    outline_title = outline[0][1][0] if outline else ""
    return ParsedDocument(
        title=meta_title or outline_title or line_title,
        format=DocumentFormat.PDF,
        page_count=page_count,
        sections=sections,
    )

"""DOCX parsing with python-docx. Runs inside the sandboxed worker (see ``safe_worker``).

The archive is vetted by :mod:`chatledger.rag.safety` before python-docx opens it. Body
paragraphs and tables are read in document order; "Heading N" styles give the heading path
and "Title" the title. Headers, footers, footnotes, comments and text boxes are not read.
"""

from __future__ import annotations

import io
import re
import zipfile

from chatledger.rag.parse_sections import SectionBuilder, collapse_spaces
from chatledger.rag.parse_types import (
    DocumentFormat,
    DocumentRejected,
    ParsedDocument,
    ParseLimits,
    Reason,
)
from chatledger.rag.safety import check_declared_members, check_xml_part, check_zip_archive

_HEADING_STYLE = re.compile(r"heading\s*([1-9])", re.IGNORECASE)
_MAIN_PART = "word/document.xml"


def _vet_archive(data: bytes, limits: ParseLimits) -> None:
    check_declared_members(data, limits)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise DocumentRejected(
            Reason.MALFORMED, f"the DOCX is not a valid zip archive: {exc}"
        ) from None
    with archive:
        check_zip_archive(archive, limits)
        if _MAIN_PART not in archive.namelist():
            raise DocumentRejected(
                Reason.UNSUPPORTED_TYPE, "the zip archive is not a Word (DOCX) document"
            )
        for info in archive.infolist():
            check_xml_part(archive, info)


def parse_docx(data: bytes, limits: ParseLimits) -> ParsedDocument:
    _vet_archive(data, limits)

    import docx  # imported late: only the worker process pays for it
    from docx.oxml.ns import qn
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
    except (KeyError, ValueError) as exc:
        raise DocumentRejected(Reason.MALFORMED, f"the DOCX could not be opened: {exc}") from None

    builder = SectionBuilder(max_chars=limits.max_text_chars)
    title = collapse_spaces(document.core_properties.title or "")
    paragraph_tag, table_tag = qn("w:p"), qn("w:tbl")
    for element in document.element.body.iterchildren():
        if element.tag == paragraph_tag:
            paragraph = Paragraph(element, document)
            style = paragraph.style.name if paragraph.style is not None else ""
            text = paragraph.text
            heading = _HEADING_STYLE.fullmatch(style or "")
            if style == "Title":
                title = title or collapse_spaces(text)
            elif heading:
                builder.heading(int(heading.group(1)), text)
            elif (style or "").startswith("List") and text.strip():
                builder.block("- " + collapse_spaces(text), line=True)
            else:
                builder.block(text)
        elif element.tag == table_tag:
            builder.end_lines()
            for row in Table(element, document).rows:
                cells: list[str] = []
                seen: set[int] = set()
                for cell in row.cells:
                    # A merged cell is returned once per grid column it spans.
                    if id(cell._tc) not in seen:
                        seen.add(id(cell._tc))
                        cells.append(collapse_spaces(cell.text))
                if any(cells):
                    builder.block(" | ".join(cells), line=True)
            builder.end_lines()
    return ParsedDocument(
        title=title or (builder.first_heading or ""),
        format=DocumentFormat.DOCX,
        page_count=None,
        sections=builder.sections(),
    )

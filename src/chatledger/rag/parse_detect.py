"""Deciding a document's format from its bytes, its file name and its declared content type.

The bytes decide between the binary formats (PDF, DOCX) and everything else; the extension
(or, when there is none, the content type) decides between HTML, Markdown and plain text,
which bytes alone cannot tell apart. A mismatch that matters is refused: a file that claims
to be a PDF or DOCX but is not, a PDF or zip posing as text, a known binary type under any
name. Unknown extensions are refused rather than guessed.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from chatledger.rag.parse_types import DocumentFormat, DocumentRejected, Reason

_EXTENSIONS = {
    ".pdf": DocumentFormat.PDF,
    ".docx": DocumentFormat.DOCX,
    ".html": DocumentFormat.HTML,
    ".htm": DocumentFormat.HTML,
    ".xhtml": DocumentFormat.HTML,
    ".md": DocumentFormat.MARKDOWN,
    ".markdown": DocumentFormat.MARKDOWN,
    ".txt": DocumentFormat.TEXT,
    ".text": DocumentFormat.TEXT,
}
_CONTENT_TYPES = {
    "application/pdf": DocumentFormat.PDF,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (
        DocumentFormat.DOCX
    ),
    "text/html": DocumentFormat.HTML,
    "application/xhtml+xml": DocumentFormat.HTML,
    "text/markdown": DocumentFormat.MARKDOWN,
    "text/x-markdown": DocumentFormat.MARKDOWN,
    "text/plain": DocumentFormat.TEXT,
}
_BINARY = frozenset({DocumentFormat.PDF, DocumentFormat.DOCX})
# Signatures of common binary files that are never documents we parse. Only signatures with
# non-text bytes are listed, so that no text file can be mistaken for one (except "MZ", which
# is checked together with the NUL bytes every DOS header has).
_FOREIGN_MAGIC = (
    (b"\x7fELF", "an ELF executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xfe\xed\xfa", "a Mach-O executable"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office (OLE2) file"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"\x00asm", "a WebAssembly module"),
)


def _sniff(
    data: bytes, declared: DocumentFormat | None
) -> tuple[DocumentFormat | None, str | None]:
    """(binary format found, description of a foreign binary) from the first bytes."""
    header_at = data.find(b"%PDF-", 0, 1024)
    # PDF readers accept junk before the header; a text file may merely mention one.
    if header_at == 0 or (header_at > 0 and declared in (None, DocumentFormat.PDF)):
        return DocumentFormat.PDF, None
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return DocumentFormat.DOCX, None  # the worker checks that the zip holds a Word file
    if data.startswith(b"MZ") and b"\x00" in data[:64]:
        return None, "a Windows executable"
    for magic, description in _FOREIGN_MAGIC:
        if data.startswith(magic):
            return None, description
    return None, None


def _declared(filename: str, content_type: str | None) -> DocumentFormat | None:
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if suffix:
        declared = _EXTENSIONS.get(suffix)
        if declared is None:
            raise DocumentRejected(
                Reason.UNSUPPORTED_TYPE,
                f"files of type {suffix!r} are not supported (PDF, DOCX, HTML, Markdown, text)",
                details={"extension": suffix},
            )
        return declared
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return _CONTENT_TYPES.get(media_type)  # generic types (octet-stream) decide nothing


def _looks_like_html(data: bytes) -> bool:
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html"))


def detect_format(data: bytes, filename: str, content_type: str | None) -> DocumentFormat:
    declared = _declared(filename, content_type)
    found, foreign = _sniff(data, declared)
    if foreign:
        reason = Reason.TYPE_MISMATCH if declared else Reason.UNSUPPORTED_TYPE
        claim = f"claims to be {declared.value} but " if declared else ""
        raise DocumentRejected(reason, f"the file {claim}looks like {foreign}")
    if found:
        if declared is not None and declared is not found:
            raise DocumentRejected(
                Reason.TYPE_MISMATCH,
                f"the file claims to be {declared.value} but its content is {found.value}",
                details={"declared": declared.value, "content": found.value},
            )
        return found
    if declared in _BINARY:
        raise DocumentRejected(
            Reason.TYPE_MISMATCH,
            f"the file claims to be {declared.value} but its content is not",
            details={"declared": declared.value},
        )
    if declared:
        return declared
    return DocumentFormat.HTML if _looks_like_html(data) else DocumentFormat.TEXT

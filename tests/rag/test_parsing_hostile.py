"""Hostile documents are refused with the right reason, within a bounded time.

Every file is built here (nothing is downloaded): an encrypted PDF from pypdf's writer,
page-tree loops and bombs written by hand, zip bombs from zipfile, billion-laughs and
external-entity documents as text.
"""

from __future__ import annotations

import io
import time
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from chatledger.rag.parse_sections import SectionBuilder
from chatledger.rag.parse_types import DocumentFormat
from chatledger.rag.parsing import DocumentRejected, ParseLimits, Reason, parse_document
from chatledger.rag.safe_worker import _decode_reply

# Tight enough to keep the suite fast, loose enough for a loaded CI machine.
LIMITS = ParseLimits(timeout_seconds=10.0, max_memory_bytes=512 * 1024 * 1024)
FONT = b"<< /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>"


@contextmanager
def within(seconds: float) -> Iterator[None]:
    start = time.monotonic()
    yield
    assert time.monotonic() - start < seconds


def rejected(
    data: bytes, filename: str, limits: ParseLimits = LIMITS, *, bound: float = 8.0
) -> DocumentRejected:
    with within(bound), pytest.raises(DocumentRejected) as caught:
        parse_document(data, filename, None, limits)
    return caught.value


# ----------------------------------------------------------------------------------- PDF


def pdf_from_objects(objects: list[bytes]) -> bytes:
    """A PDF with a correct cross-reference table; object 1 is the catalog."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def pdf_with_content(content: bytes) -> bytes:
    """One page whose content stream is ``content`` (Flate-compressed)."""
    stream = zlib.compress(content, 9)
    return pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
            + FONT
            + b" /Contents 4 0 R >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream),
        ]
    )


def test_encrypted_pdf() -> None:
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=io.BytesIO(pdf_with_content(b"BT /F1 12 Tf (hi) Tj ET")))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    assert rejected(out.getvalue(), "locked.pdf").reason is Reason.ENCRYPTED_PDF


def test_circular_page_tree() -> None:
    data = pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Pages /Kids [2 0 R] /Parent 2 0 R /Count 1 >>",
        ]
    )
    error = rejected(data, "loop.pdf")
    assert error.reason is Reason.MALFORMED
    assert "page tree" in error.message


def test_page_tree_bomb_of_shared_kids() -> None:
    """40 levels of /Kids [n n]: 2**40 pages from a few kilobytes."""
    levels = 40
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for level in range(levels):
        kid = level + 3
        objects.append(b"<< /Type /Pages /Kids [%d 0 R %d 0 R] /Count %d >>" % (kid, kid, 2**40))
    objects.append(b"<< /Type /Page /MediaBox [0 0 10 10] >>")
    assert rejected(pdf_from_objects(objects), "bomb.pdf").reason is Reason.MALFORMED


def test_too_many_pages() -> None:
    pages = 30
    kids = b" ".join(b"%d 0 R" % (3 + i) for i in range(pages))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    objects.append(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages))
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>"] * pages
    limits = ParseLimits(max_pages=10, timeout_seconds=10.0)
    assert rejected(pdf_from_objects(objects), "long.pdf", limits).reason is (Reason.TOO_MANY_PAGES)


def test_slow_pdf_is_killed_at_the_timeout() -> None:
    """30 MB of text operators (30 kB compressed) keep pypdf busy for many seconds."""
    data = pdf_with_content(b"BT /F1 1 Tf ET\n" * 2_000_000)
    limits = ParseLimits(timeout_seconds=1.0)
    error = rejected(data, "slow.pdf", limits, bound=1.0 + 2.0)
    assert error.reason is Reason.TIMEOUT


def test_memory_hungry_pdf_hits_the_address_space_limit() -> None:
    """A 60 MB string in a 60 kB file: the worker runs out of its address space, not ours."""
    data = pdf_with_content(b"BT /F1 12 Tf (" + b"a" * 60_000_000 + b") Tj ET")
    limits = ParseLimits(max_memory_bytes=150 * 1024 * 1024, timeout_seconds=10.0)
    assert rejected(data, "hungry.pdf", limits).reason is Reason.MEMORY_LIMIT


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"%PDF-1.7\n" + bytes(range(256)) * 20, id="garbage"),
        pytest.param(pdf_with_content(b"BT (x) Tj ET")[:-120], id="truncated"),
    ],
)
def test_malformed_pdf(data: bytes) -> None:
    assert rejected(data, "bad.pdf").reason is Reason.MALFORMED


# ---------------------------------------------------------------------------------- DOCX


def minimal_docx(document_xml: bytes, extra: dict[str, bytes] | None = None) -> bytes:
    """The smallest package python-docx opens, with ``document_xml`` as the main part."""
    content_types = (
        b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/'
        b'2006/content-types"><Default Extension="rels" ContentType="application/vnd.'
        b'openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType='
        b'"application/xml"/><Override PartName="/word/document.xml" ContentType="application'
        b'/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
    )
    rels = (
        b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/'
        b'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
        b'openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
        b'Target="word/document.xml"/></Relationships>'
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", content_types)
        archive.writestr("_rels/.rels", rels)
        archive.writestr("word/document.xml", document_xml)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return out.getvalue()


W = b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def body(text: bytes) -> bytes:
    return b"<w:document %s><w:body><w:p><w:r><w:t>%s</w:t></w:r></w:p></w:body></w:document>" % (
        W,
        text,
    )


def test_minimal_docx_parses() -> None:
    """The builder itself is sound, so the refusals below are about what was added."""
    doc = parse_document(minimal_docx(body(b"Hello from Word")), "ok.docx", None, LIMITS)
    assert doc.text == "Hello from Word"


BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        b' <!ENTITY lol%d "%s">\n' % (i, (b"&lol%s;" % (b"" if i == 1 else b"%d" % (i - 1))) * 10)
        for i in range(1, 10)
    )
    + b"]>\n"
)


def test_docx_billion_laughs() -> None:
    data = minimal_docx(BILLION_LAUGHS + body(b"&lol9;"))
    error = rejected(data, "laughs.docx")
    assert error.reason is Reason.XML_ENTITY_EXPANSION
    assert error.details["member"] == "word/document.xml"


def test_docx_external_entity_never_reads_the_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    xxe = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "%s">]>' % secret.as_uri().encode()
    error = rejected(minimal_docx(xxe + body(b"&x;")), "xxe.docx")
    assert error.reason is Reason.XML_ENTITY_EXPANSION
    assert "TOP-SECRET" not in error.diagnostics()


def test_docx_dtd_in_a_secondary_part_is_refused() -> None:
    extra = {"word/styles.xml": BILLION_LAUGHS + b"<w:styles %s/>" % W}
    data = minimal_docx(body(b"fine"), extra)
    assert rejected(data, "styles.docx").reason is Reason.XML_ENTITY_EXPANSION


def test_docx_zip_bomb_by_compression_ratio() -> None:
    data = minimal_docx(body(b"x"), {"word/media/image1.png": b"\0" * 20_000_000})
    assert len(data) < 100_000
    error = rejected(data, "bomb.docx")
    assert error.reason is Reason.ZIP_BOMB
    assert "image1.png" in error.message


def test_docx_zip_bomb_by_total_size() -> None:
    incompressible = bytes(range(256)) * 8192  # 2 MiB that deflate cannot shrink much
    data = minimal_docx(body(b"x"), {"word/media/big.bin": incompressible})
    limits = ParseLimits(max_uncompressed_bytes=1024 * 1024, timeout_seconds=10.0)
    assert rejected(data, "big.docx", limits).reason is Reason.ZIP_BOMB


def test_docx_zip_bomb_by_member_count() -> None:
    extra = {f"word/media/{i}.txt": b"" for i in range(3000)}
    assert rejected(minimal_docx(body(b"x"), extra), "many.docx").reason is Reason.ZIP_BOMB


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"PK\x03\x04" + bytes(range(256)) * 4, id="not-a-zip"),
        pytest.param(minimal_docx(b"<w:document><unclosed>"), id="bad-xml"),
    ],
)
def test_malformed_docx(data: bytes) -> None:
    assert rejected(data, "bad.docx").reason is Reason.MALFORMED


# ------------------------------------------------------------------ HTML, Markdown, text


@pytest.mark.parametrize("filename", ["laughs.html", "laughs.md"])
def test_markup_billion_laughs(filename: str) -> None:
    data = BILLION_LAUGHS + b"<html><body><p>&lol9;</p></body></html>"
    assert rejected(data, filename, bound=2.0).reason is Reason.XML_ENTITY_EXPANSION


def test_html_external_entity(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    data = b'<!DOCTYPE html [<!ENTITY x SYSTEM "%s">]><p>&x;</p>' % secret.as_uri().encode()
    assert rejected(data, "xxe.html", bound=2.0).reason is Reason.XML_ENTITY_EXPANSION


def test_html_parser_itself_expands_no_entities(tmp_path: Path) -> None:
    """Defence in depth: even past the declaration check, lxml's HTML parser leaves declared
    entities alone and reads no files."""
    from chatledger.rag.parse_html import html_into

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    markup = (
        BILLION_LAUGHS.decode()
        + f'<!DOCTYPE p [<!ENTITY x SYSTEM "{secret.as_uri()}">]><p>&lol9; &x;</p>'
    )
    builder = SectionBuilder(max_chars=10_000)
    with within(2.0):
        html_into(markup, builder)
    text = "\n".join(s.text for s in builder.sections())
    assert "TOP-SECRET" not in text
    assert "lollol" not in text


def test_deeply_nested_html_does_not_exhaust_the_stack() -> None:
    """Nesting far beyond Python's recursion limit, walked in-process."""
    data = b"<div>" * 5_000 + b"deep text" + b"</div>" * 5_000
    with within(4.0):
        doc = parse_document(data, "deep.html", None, ParseLimits(max_inprocess_bytes=10**6))
    assert doc.text == "deep text"


def test_pathological_markup_is_bounded_by_the_worker_timeout() -> None:
    """A 3 MB run of unclosed brackets costs markdown-it minutes: the worker is killed."""
    limits = ParseLimits(timeout_seconds=1.0)
    error = rejected(b"[" * 3_000_000, "brackets.md", limits, bound=1.0 + 2.0)
    assert error.reason is Reason.TIMEOUT


# ------------------------------------------------------------------- the worker's reply


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", Reason.WORKER_FAILED),
        (b"not json", Reason.WORKER_FAILED),
        (b"[1, 2]", Reason.WORKER_FAILED),
        (b'{"ok": false, "reason": "timeout", "message": "m"}', Reason.TIMEOUT),
        (b'{"ok": false, "reason": "no_such_reason", "message": "m"}', Reason.WORKER_FAILED),
        (b'{"ok": true, "title": "t", "page_count": null, "sections": [["x", "ab", 1]]}', None),
        (b'{"ok": true, "title": 1, "page_count": null, "sections": []}', None),
    ],
)
def test_worker_reply_is_not_trusted(raw: bytes, reason: Reason | None) -> None:
    with pytest.raises(DocumentRejected) as caught:
        _decode_reply(raw, DocumentFormat.PDF)
    assert caught.value.reason is (reason or Reason.WORKER_FAILED)

"""Parsing of every supported format: the demo knowledge base and small generated files."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from chatledger.errors import ChatLedgerError, InvalidInput
from chatledger.rag.parse_detect import detect_format
from chatledger.rag.parsing import (
    DocumentFormat,
    DocumentRejected,
    ParsedDocument,
    ParseLimits,
    Reason,
    parse_document,
)

DEMO = Path(__file__).resolve().parents[2] / "src" / "chatledger" / "demo_data"


def _manifest() -> list[dict[str, object]]:
    documents = json.loads((DEMO / "manifest.json").read_text())["documents"]
    assert isinstance(documents, list)
    return documents


@pytest.fixture(scope="module")
def demo_docs() -> dict[str, ParsedDocument]:
    """Every demo document parsed once (two at a time: the worker processes use the CPUs)."""
    names = [str(entry["file"]) for entry in _manifest()]

    def parse(name: str) -> ParsedDocument:
        return parse_document((DEMO / name).read_bytes(), name, None)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(names, pool.map(parse, names), strict=True))


def _reason(data: bytes, filename: str, limits: ParseLimits | None = None) -> Reason:
    with pytest.raises(DocumentRejected) as caught:
        parse_document(data, filename, None, limits or ParseLimits())
    return caught.value.reason


# ----------------------------------------------------------------------------- demo data


def test_demo_folder_matches_its_manifest() -> None:
    entries = _manifest()
    listed = {str(entry["file"]) for entry in entries}
    on_disk = {p.name for p in DEMO.iterdir() if p.suffix != ".json" and p.name != "__pycache__"}
    assert listed == on_disk
    for entry in entries:
        data = (DEMO / str(entry["file"])).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    formats = [entry["format"] for entry in entries]
    assert len(entries) >= 20
    assert formats.count("pdf") >= 3 and formats.count("docx") >= 3
    assert {"markdown", "text", "html"} <= set(formats)
    assert sum(p.stat().st_size for p in DEMO.iterdir() if p.is_file()) < 300 * 1024


def test_every_demo_document_parses(demo_docs: dict[str, ParsedDocument]) -> None:
    for entry in _manifest():
        doc = demo_docs[str(entry["file"])]
        assert doc.title == entry["title"]
        assert doc.format.value == entry["format"]
        assert doc.sections and all(s.text.strip() for s in doc.sections)
        if doc.format is DocumentFormat.PDF:
            assert doc.page_count == 1
            assert all(s.page == 1 for s in doc.sections)
        else:
            assert doc.page_count is None
            assert all(s.page is None for s in doc.sections)


def test_demo_headings_are_kept(demo_docs: dict[str, ParsedDocument]) -> None:
    paths = {s.heading_path for s in demo_docs["plans-and-pricing.md"].sections}
    assert ("Plans and pricing", "Business plans", "Enterprise") in paths
    paths = {s.heading_path for s in demo_docs["refund-policy.pdf"].sections}  # PDF outline
    assert ("Refund policy", "Kestrel Box hardware") in paths
    paths = {s.heading_path for s in demo_docs["team-administration.docx"].sections}
    assert ("Seats and billing",) in paths
    paths = {s.heading_path for s in demo_docs["sharing-links.html"].sections}
    assert ("Sharing files with links", "Download limits") in paths


def test_demo_html_drops_scripts_navigation_and_hidden_text(
    demo_docs: dict[str, ParsedDocument],
) -> None:
    security = demo_docs["account-security.html"].text
    assert "querySelectorAll" not in security and "font-family" not in security
    assert "Help centre ›" not in security  # the <nav> breadcrumb
    assert "Internal note" not in demo_docs["hardware-shipping.html"].text  # hidden


def test_demo_questions_point_at_passages_that_exist(
    demo_docs: dict[str, ParsedDocument],
) -> None:
    questions = json.loads((DEMO / "questions.json").read_text())["questions"]
    assert len(questions) >= 15
    assert any(q["answerable"] for q in questions)
    assert any(not q["answerable"] for q in questions)
    for q in questions:
        if not q["answerable"]:
            assert q["sources"] == [] and q["expect"] == []
            continue
        texts = " ".join(demo_docs[source].text for source in q["sources"])
        for phrase in q["expect"]:
            assert phrase in texts, (q["id"], phrase)


# ----------------------------------------------------------------------------------- PDF


def _pdf(chapters: list[tuple[str, list[str]]], *, outline: bool = True) -> bytes:
    """A PDF with one page per chapter; headings become outline entries when asked."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4, invariant=1)
    pdf.setTitle("Generated handbook")
    for number, (heading, lines) in enumerate(chapters):
        if outline:
            pdf.bookmarkPage(f"c{number}")
            pdf.addOutlineEntry(heading, f"c{number}", level=0)
        text = pdf.beginText(72, 770)
        text.textLine(heading)
        for line in lines:
            text.textLine(line)
        pdf.drawText(text)
        pdf.showPage()
    pdf.save()
    return out.getvalue()


def test_pdf_pages_and_outline_headings() -> None:
    data = _pdf(
        [
            ("Getting started", ["Install the app.", "Sign in."]),
            ("Billing", ["Invoices are monthly."]),
            ("Support", ["Write to us."]),
        ]
    )
    doc = parse_document(data, "handbook.pdf", "application/pdf")
    assert doc.format is DocumentFormat.PDF
    assert doc.title == "Generated handbook"
    assert doc.page_count == 3
    assert [(s.page, s.heading_path) for s in doc.sections] == [
        (1, ("Getting started",)),
        (2, ("Billing",)),
        (3, ("Support",)),
    ]
    assert doc.sections[1].text == "Invoices are monthly."  # the heading is in the path


def test_pdf_without_outline_has_one_section_per_page() -> None:
    doc = parse_document(_pdf([("One", ["a"]), ("Two", ["b"])], outline=False), "x.pdf", None)
    assert [(s.page, s.heading_path, s.text) for s in doc.sections] == [
        (1, (), "One\na"),
        (2, (), "Two\nb"),
    ]


def test_pdf_with_owner_password_only_is_readable() -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(_pdf([("Readable", ["by anyone"])]))).pages:
        writer.add_page(page)
    writer.encrypt(user_password="", owner_password="owner-secret", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    doc = parse_document(out.getvalue(), "locked.pdf", None)
    assert "by anyone" in doc.text


# ---------------------------------------------------------------------------------- DOCX


def test_docx_headings_lists_and_tables() -> None:
    import docx

    document = docx.Document()
    document.add_heading("Employee handbook", level=0)
    document.add_paragraph("Welcome aboard.")
    document.add_heading("Leave", level=1)
    document.add_heading("Holidays", level=2)
    document.add_paragraph("You get 25 days.")
    document.add_paragraph("Ask your manager", style="List Bullet")
    document.add_paragraph("Book it in the calendar", style="List Bullet")
    table = document.add_table(rows=2, cols=3)
    table.rows[0].cells[0].merge(table.rows[0].cells[1]).text = "Merged"
    table.rows[0].cells[2].text = "C"
    for cell, text in zip(table.rows[1].cells, ["1", "2", "3"], strict=True):
        cell.text = text
    document.add_heading("Expenses", level=1)
    document.add_paragraph("Keep receipts.")
    out = io.BytesIO()
    document.save(out)

    doc = parse_document(out.getvalue(), "handbook.docx", None)
    assert doc.format is DocumentFormat.DOCX
    assert doc.title == "Employee handbook"
    assert [(s.heading_path, s.text) for s in doc.sections] == [
        ((), "Welcome aboard."),
        (
            ("Leave", "Holidays"),
            "You get 25 days.\n\n- Ask your manager\n- Book it in the calendar\n\n"
            "Merged | C\n1 | 2 | 3",
        ),
        (("Expenses",), "Keep receipts."),
    ]


def test_zip_that_is_not_a_word_document_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    assert _reason(out.getvalue(), "sheet.docx") is Reason.UNSUPPORTED_TYPE


# ---------------------------------------------------------------------------------- HTML


def test_html_structure() -> None:
    html = b"""<!DOCTYPE html><html><head><title>Guide &amp; FAQ</title>
    <style>p { color: red }</style></head><body>
    <nav>Home | Docs</nav>
    <h1>Guide</h1><p>First   line<br>second line</p>
    <div style="display: none">invisible</div><p hidden>also hidden</p>
    <h2>Steps</h2><ol start="3"><li>Open</li><li><p>Click</p></li></ol>
    <ul><li>Apple</li></ul>
    <h3>Deeper</h3><table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>
    <h2>Other</h2><pre>code   kept
  as is</pre><script>var secret = 1;</script><!-- a comment -->
    </body></html>"""
    doc = parse_document(html, "guide.html", None)
    assert doc.title == "Guide & FAQ"
    assert [(s.heading_path, s.text) for s in doc.sections] == [
        (("Guide",), "First line\nsecond line"),
        (("Guide", "Steps"), "3. Open\n4. Click\n\n- Apple"),
        (("Guide", "Steps", "Deeper"), "k | v\na | 1"),
        (("Guide", "Other"), "code   kept\n  as is"),
    ]


def test_html_title_falls_back_to_first_heading_then_file_name() -> None:
    assert parse_document(b"<h2>Only heading</h2><p>x</p>", "a.html", None).title == (
        "Only heading"
    )
    assert parse_document(b"<p>No heading</p>", "refund_policy-v2.html", None).title == (
        "refund policy v2"
    )


def test_html_declared_charset_is_honoured() -> None:
    body = "<p>Café crème à 3 €</p>"
    declared = f'<meta charset="windows-1252">{body}'.encode("cp1252")
    assert parse_document(declared, "a.html", None).text == "Café crème à 3 €"
    latin1 = f'<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">{body}'
    assert parse_document(latin1.encode("cp1252"), "a.html", None).text == "Café crème à 3 €"
    assert _reason(body.encode("cp1252"), "a.html") is Reason.BAD_ENCODING  # undeclared


# ------------------------------------------------------------------------------ Markdown


def test_markdown_structure() -> None:
    markdown = b"""Intro before any heading.

Main title
==========

Some *emphasis*, `code`, a [link](https://example.com) and ![a diagram](d.png).
A soft line break.

## Install

1. Download
2. Run

```
$ install --all
```

### Options

| flag | meaning |
|------|---------|
| -a   | all     |

<h2>Raw HTML heading</h2>
<p>raw html paragraph</p>

## Last
> quoted text
"""
    doc = parse_document(markdown, "readme.md", None)
    assert doc.format is DocumentFormat.MARKDOWN
    assert doc.title == "Main title"
    assert [(s.heading_path, s.text) for s in doc.sections] == [
        ((), "Intro before any heading."),
        (
            ("Main title",),
            "Some emphasis, code, a link and a diagram. A soft line break.",
        ),
        (("Main title", "Install"), "1. Download\n2. Run\n\n$ install --all"),
        (("Main title", "Install", "Options"), "flag | meaning\n-a | all"),
        (("Main title", "Raw HTML heading"), "raw html paragraph"),
        (("Main title", "Last"), "quoted text"),
    ]


def test_large_markup_is_parsed_in_the_worker_with_the_same_result() -> None:
    markdown = b"# Big\n\n" + b"A sentence of *filler* text.\n\n" * 200
    in_worker = parse_document(markdown, "big.md", None, ParseLimits(max_inprocess_bytes=1024))
    in_process = parse_document(markdown, "big.md", None, ParseLimits(max_inprocess_bytes=10**6))
    assert in_worker == in_process
    assert in_worker.sections[0].text.startswith("A sentence of filler text.")


# ---------------------------------------------------------------------------------- text


@pytest.mark.parametrize(
    "codec", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"]
)
def test_text_encodings(codec: str) -> None:
    """BOMs are honoured; UTF-16 without a BOM (-le, -be) is recognised by its zero bytes."""
    doc = parse_document("Titel\nÄrger über Öl — 50 €".encode(codec), "notes.txt", "text/plain")
    assert doc.format is DocumentFormat.TEXT
    assert doc.title == "Titel"
    assert doc.text == "Titel\nÄrger über Öl — 50 €"


def test_text_in_a_legacy_encoding_is_refused_clearly() -> None:
    with pytest.raises(DocumentRejected) as caught:
        parse_document("Ärger".encode("latin-1"), "notes.txt", None)
    assert caught.value.reason is Reason.BAD_ENCODING
    assert "UTF-8" in caught.value.message
    assert caught.value.details["offset"] == 0


def test_text_is_normalized() -> None:
    raw = b"First line\r\nsecond\tline   \r\n\r\n\r\n\r\nthird\x07 line\x0c end\r\n"
    doc = parse_document(raw, "notes.txt", None)
    assert doc.text == "First line\nsecond\tline\n\nthird line\n\n end"
    long_first_line = b"x" * 200 + b"\nbody"
    assert parse_document(long_first_line, "my_notes.txt", None).title == "my notes"


def test_binary_with_valid_utf8_is_refused() -> None:
    assert _reason(b"abc\x00def", "a.txt") is Reason.UNSUPPORTED_TYPE


# ------------------------------------------------------------------------ type detection

_PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
_EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 48
_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
_ZIP = b"PK\x03\x04\x14\x00\x00\x00"


@pytest.mark.parametrize(
    ("data", "filename", "content_type", "expected"),
    [
        pytest.param(*case, id=f"{case[1]}-{case[2]}-{getattr(case[3], 'value', case[3])}")
        for case in [
            (_PDF, "a.pdf", None, DocumentFormat.PDF),
            (_PDF, "upload", "application/octet-stream", DocumentFormat.PDF),
            (b"junk before\n" + _PDF, "a.pdf", None, DocumentFormat.PDF),
            (_ZIP, "a.docx", None, DocumentFormat.DOCX),
            (b"<p>x</p>", "a.HTM", None, DocumentFormat.HTML),
            (b"# x", "README", "text/markdown; charset=utf-8", DocumentFormat.MARKDOWN),
            (b"# x", "notes.md", "text/plain", DocumentFormat.MARKDOWN),  # extension wins
            (b"  <!DOCTYPE html><p>x", "upload", None, DocumentFormat.HTML),
            (b"plain words", "upload", None, DocumentFormat.TEXT),
            (b"About the %PDF- header", "pdf.md", None, DocumentFormat.MARKDOWN),
            (_EXE, "invoice.pdf", None, Reason.TYPE_MISMATCH),
            (_EXE, "invoice", None, Reason.UNSUPPORTED_TYPE),
            (_PNG, "notes.md", None, Reason.TYPE_MISMATCH),
            (b"just text", "report.pdf", None, Reason.TYPE_MISMATCH),
            (b"just text", "report.docx", None, Reason.TYPE_MISMATCH),
            (b"just text", "report", "application/pdf", Reason.TYPE_MISMATCH),
            (_PDF, "notes.txt", None, Reason.TYPE_MISMATCH),
            (_PDF, "report.docx", None, Reason.TYPE_MISMATCH),
            (_ZIP, "report.pdf", None, Reason.TYPE_MISMATCH),
            (_ZIP, "sheet.xlsx", None, Reason.UNSUPPORTED_TYPE),
            (b"text", "tool.exe", None, Reason.UNSUPPORTED_TYPE),
        ]
    ],
)
def test_format_detection(
    data: bytes, filename: str, content_type: str | None, expected: DocumentFormat | Reason
) -> None:
    if isinstance(expected, DocumentFormat):
        assert detect_format(data, filename, content_type) is expected
    else:
        with pytest.raises(DocumentRejected) as caught:
            detect_format(data, filename, content_type)
        assert caught.value.reason is expected


def test_renamed_executable_is_refused_end_to_end() -> None:
    assert _reason(_EXE + b"\x00" * 1000, "invoice.pdf") is Reason.TYPE_MISMATCH


# --------------------------------------------------------------------- limits and errors


def test_empty_documents_are_refused() -> None:
    assert _reason(b"", "a.txt") is Reason.EMPTY
    assert _reason(b" \n\t\n", "a.txt") is Reason.EMPTY
    assert _reason(b"<script>only()</script>", "a.html") is Reason.EMPTY
    assert _reason(_pdf([]), "blank.pdf") is Reason.EMPTY


def test_size_limits() -> None:
    with pytest.raises(DocumentRejected) as caught:
        parse_document(b"x" * 101, "a.txt", None, ParseLimits(max_bytes=100))
    assert caught.value.reason is Reason.TOO_LARGE
    assert caught.value.status == 413
    assert _reason(b"word " * 100, "a.txt", ParseLimits(max_text_chars=50)) is Reason.TOO_LARGE
    many = b"\n\n".join(b"<p>para %d</p>" % i for i in range(100))
    assert _reason(many, "a.html", ParseLimits(max_text_chars=300)) is Reason.TOO_LARGE


def test_rejection_is_an_invalid_input_with_a_stable_reason() -> None:
    with pytest.raises(DocumentRejected) as caught:
        parse_document(b"", "a.txt", None)
    error = caught.value
    assert isinstance(error, InvalidInput) and isinstance(error, ChatLedgerError)
    assert error.status == 422
    assert error.to_dict() == {
        "code": "document_rejected",
        "message": "the file is empty",
        "details": {"reason": "empty"},
    }


@pytest.mark.parametrize("field", ["max_bytes", "timeout_seconds", "max_compression_ratio"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(InvalidInput):
        ParseLimits(**{field: 0})

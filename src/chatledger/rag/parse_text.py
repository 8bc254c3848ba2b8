"""Decoding text uploads, and plain-text documents.

Encodings are never guessed from statistics: a byte-order mark, a UTF-16 pattern of zero
bytes, or a charset the document declares (HTML) decides; otherwise the bytes must be valid
UTF-8 or the upload is refused. A wrong guess would silently put mojibake into the index and
into answers quoted months later.
"""

from __future__ import annotations

import codecs
import contextlib
from pathlib import PurePosixPath

from chatledger.rag.parse_sections import normalize_text
from chatledger.rag.parse_types import (
    DocumentFormat,
    DocumentRejected,
    ParsedDocument,
    ParseLimits,
    Reason,
    Section,
)

# UTF-32 first: its little-endian mark starts with the UTF-16 one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_TITLE_MAX = 120


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text of mostly Latin script has a zero byte in every other position."""
    sample = data[:4096]
    if len(sample) < 4 or len(sample) % 2:
        return None
    half = len(sample) // 2
    zeros_even = sample[0::2].count(0)
    zeros_odd = sample[1::2].count(0)
    if zeros_odd >= 0.4 * half and zeros_even <= 0.1 * half:
        return "utf-16-le"
    if zeros_even >= 0.4 * half and zeros_odd <= 0.1 * half:
        return "utf-16-be"
    return None


def sniff_encoding(data: bytes) -> tuple[str, int] | None:
    """(codec, bytes to skip) when a BOM or the UTF-16 pattern tells the encoding."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return codec, len(bom)
    codec16 = _utf16_without_bom(data)
    return (codec16, 0) if codec16 else None


def decode_text(data: bytes, *, declared: str | None = None) -> str:
    """Decode strictly: BOM, then UTF-16 pattern, then ``declared`` charset, then UTF-8."""
    sniffed = sniff_encoding(data)
    if sniffed:
        codec, skip = sniffed
    else:
        codec, skip = "utf-8", 0
        if declared:
            with contextlib.suppress(LookupError):  # an unknown charset: UTF-8 or refuse
                codec = codecs.lookup(declared).name
    try:
        text = data[skip:].decode(codec)
    except UnicodeDecodeError as exc:
        raise DocumentRejected(
            Reason.BAD_ENCODING,
            f"the file is not valid {codec} text (byte {exc.start}); save it as UTF-8",
            details={"encoding": codec, "offset": exc.start},
        ) from None
    if "\x00" in text:
        raise DocumentRejected(
            Reason.UNSUPPORTED_TYPE, "the file contains NUL characters: binary data, not text"
        )
    return text


def title_from_filename(filename: str) -> str:
    stem = PurePosixPath(filename.replace("\\", "/")).stem
    return " ".join(stem.replace("_", " ").replace("-", " ").split()) or "Untitled"


def parse_text(data: bytes, limits: ParseLimits) -> ParsedDocument:
    """Plain text is one section; its title is the first line when that is short."""
    text = normalize_text(decode_text(data))
    if len(text) > limits.max_text_chars:
        raise DocumentRejected(
            Reason.TOO_LARGE, f"the text is longer than {limits.max_text_chars} characters"
        )
    first_line = text.split("\n", 1)[0].strip()
    title = first_line if len(first_line) <= _TITLE_MAX else ""
    sections = [Section(text=text)] if text else []
    return ParsedDocument(
        title=title, format=DocumentFormat.TEXT, page_count=None, sections=sections
    )

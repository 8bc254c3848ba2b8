"""Checks that refuse hostile containers before a real parser touches them.

* Zip bombs: python-docx inflates every part of a DOCX into memory, so the archive's member
  count, total uncompressed size and per-member compression ratio are checked first, from the
  central directory. ``zipfile`` never returns more bytes than a member's declared size, so
  the declared sizes are a true upper bound.
* XML entity attacks (billion laughs, external entities): no OOXML part ever needs a DTD, so
  any part that declares one is refused, by defusedxml with ``forbid_dtd``. The check stops
  at the root element, so it costs a few bytes per part, not a second parse. (python-docx's
  own lxml parser does not resolve entities either; this is the first line, not the only.)
* HTML and Markdown are read by HTML parsers that do not expand declared entities, but a
  document that declares any is refused anyway: it has no honest reason to.
"""

from __future__ import annotations

import re
import struct
import zipfile
from typing import NoReturn
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from chatledger.rag.parse_types import DocumentRejected, ParseLimits, Reason

# Members smaller than this may compress extremely well (runs of spaces) without harm.
_RATIO_FLOOR = 1024 * 1024
_XML_READ = 64 * 1024
_EOCD = b"PK\x05\x06"
_ENTITY_DECL = re.compile(r"<!ENTITY|<!DOCTYPE[^>\[]*\[", re.IGNORECASE)


def _bomb(message: str, **details: object) -> NoReturn:
    raise DocumentRejected(Reason.ZIP_BOMB, message, details=dict(details))


def check_declared_members(data: bytes, limits: ParseLimits) -> None:
    """Refuse an archive whose end record announces too many members, before ``zipfile``
    allocates an object for each of them."""
    end = data.rfind(_EOCD, max(0, len(data) - 65_557))
    if end < 0 or end + 22 > len(data):
        return  # zipfile will report the archive as malformed
    (total,) = struct.unpack_from("<H", data, end + 10)
    if total != 0xFFFF and total > limits.max_zip_members:
        _bomb(f"the archive has {total} members", members=total)


def check_zip_archive(archive: zipfile.ZipFile, limits: ParseLimits) -> None:
    infos = archive.infolist()
    if len(infos) > limits.max_zip_members:
        _bomb(f"the archive has {len(infos)} members", members=len(infos))
    total = 0
    for info in infos:
        total += info.file_size
        if total > limits.max_uncompressed_bytes:
            _bomb(
                f"the archive expands to more than {limits.max_uncompressed_bytes} bytes",
                max_uncompressed_bytes=limits.max_uncompressed_bytes,
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_FLOOR and ratio > limits.max_compression_ratio:
            _bomb(
                f"member {info.filename!r} is compressed {ratio:.0f}:1",
                member=info.filename,
                ratio=round(ratio),
            )


class _RootReached(Exception):
    pass


class _StopAtRoot:
    """Parser target: a DTD can only come before the root element, so stop there."""

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        raise _RootReached

    def end(self, tag: str) -> None:
        pass

    def data(self, data: str) -> None:
        pass

    def close(self) -> None:
        pass


def check_xml_part(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Refuse a part with a DTD. Parts that are not XML (images) are left to the real parser."""
    parser = DefusedXMLParser(
        target=_StopAtRoot(), forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_XML_READ):
                parser.feed(chunk)
            parser.close()
    except _RootReached:
        return
    except DefusedXmlException:
        raise DocumentRejected(
            Reason.XML_ENTITY_EXPANSION,
            f"XML part {info.filename!r} declares a DTD (entity expansion or external entity)",
            details={"member": info.filename},
        ) from None
    except ParseError:
        if info.filename.lower().endswith((".xml", ".rels")):
            raise DocumentRejected(
                Reason.MALFORMED, f"XML part {info.filename!r} is not well-formed"
            ) from None


def reject_entity_declarations(text: str) -> None:
    """For HTML and Markdown: refuse documents that declare entities or an internal DTD."""
    if _ENTITY_DECL.search(text):
        raise DocumentRejected(
            Reason.XML_ENTITY_EXPANSION,
            "the document declares XML entities (entity expansion or external entity)",
        )

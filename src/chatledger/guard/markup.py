"""Text a human reader never sees but a model does: comments, hidden elements, attributes.

Indirect injections planted in web pages and documents favour places that render as
nothing (HTML comments, ``display:none``, zero-size fonts, ``alt``/``title`` attributes,
Markdown comments). We pull those segments out so the rules can scan them on their own
and weigh a hit there higher: an instruction nobody was meant to see is worse.

Regular expressions rather than a parser: this runs on every message and chunk, must not
fail on broken markup, and only needs the text, not the tree.
"""

from __future__ import annotations

import html
import re

_MAX_SEGMENTS = 16
_MAX_SEGMENT_CHARS = 4000
_MIN_SEGMENT_CHARS = 8

_COMMENT_RE = re.compile(r"<!--(.*?)(?:-->|$)", re.DOTALL)
_HIDDEN_STYLE = (
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?:\.0+)?(?:px|pt|em|%)?\s*(?:;|$)"
    r"|opacity\s*:\s*0(?:\.0+)?\s*(?:;|$)|color\s*:\s*(?:white|#fff(?:fff)?|transparent)\b"
    r"|(?:height|width)\s*:\s*0(?:px)?\s*(?:;|$)|clip\s*:\s*rect\(\s*0"
)
_HIDDEN_ELEMENT_RE = re.compile(
    r"<([a-z][a-z0-9]*)\b[^>]*?(?:\sstyle\s*=\s*[\"'][^\"']*?(?:" + _HIDDEN_STYLE + r")[^\"']*[\"']"
    r"|\shidden(?=[\s>=/])|\saria-hidden\s*=\s*[\"']?true)[^>]*>(.*?)</\1\s*>",
    re.IGNORECASE | re.DOTALL,
)
_ATTRIBUTE_RE = re.compile(
    r"\s(?:alt|title|aria-label|aria-description|data-[\w-]+|content|placeholder|summary)"
    r"\s*=\s*(\"[^\"]*\"|'[^']*')",
    re.IGNORECASE,
)
_MD_COMMENT_RE = re.compile(
    r"^\s*\[(?://|comment|_)\]:\s*(?:#|<>)\s*(?:\((.*?)\)|\"(.*?)\")\s*$", re.MULTILINE
)
_MD_IMAGE_RE = re.compile(r"!\[([^\]]{8,})\]\(")
_TAG_RE = re.compile(r"<[^>]{0,500}>")


def has_markup(text: str) -> bool:
    return "<" in text or "](" in text or "]:" in text


def _clean(fragment: str) -> str:
    return " ".join(html.unescape(_TAG_RE.sub(" ", fragment)).split())


def hidden_segments(text: str) -> list[str]:
    """Return the invisible text segments of ``text`` (empty for plain text)."""
    if not has_markup(text):
        return []
    found: list[str] = []

    def add(fragment: str | None) -> None:
        if fragment is None or len(found) >= _MAX_SEGMENTS:
            return
        cleaned = _clean(fragment[:_MAX_SEGMENT_CHARS])
        if len(cleaned) >= _MIN_SEGMENT_CHARS:
            found.append(cleaned)

    if "<!--" in text:
        for m in _COMMENT_RE.finditer(text):
            add(m.group(1))
    if "<" in text:
        for m in _HIDDEN_ELEMENT_RE.finditer(text):
            add(m.group(2))
        for m in _ATTRIBUTE_RE.finditer(text):
            add(m.group(1)[1:-1])
    if "]:" in text:
        for m in _MD_COMMENT_RE.finditer(text):
            add(m.group(1) if m.group(1) is not None else m.group(2))
    if "![" in text:
        for m in _MD_IMAGE_RE.finditer(text):
            add(m.group(1))
    return found

"""HTML parsing with BeautifulSoup on lxml's HTML parser, in-process.

Scripts, styles, embedded objects, navigation menus and hidden elements are dropped (hidden
text is a favourite place for prompt injections); h1-h6 give the heading path; block elements
give paragraphs; list items and table rows stay on adjacent lines. lxml's HTML parser neither
loads DTDs nor expands declared entities, and documents that declare entities are refused
before parsing.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup
from bs4.element import (
    NavigableString,
    PageElement,
    PreformattedString,
    Script,
    Stylesheet,
    Tag,
    TemplateString,
)

from chatledger.rag.parse_sections import SectionBuilder, collapse_spaces
from chatledger.rag.parse_text import decode_text
from chatledger.rag.parse_types import DocumentFormat, ParsedDocument, ParseLimits
from chatledger.rag.safety import reject_entity_declarations

# Navigation menus are boilerplate on every page of a site, never an answer.
_DROP = frozenset(
    {
        *("script", "style", "noscript", "template", "iframe", "object", "embed", "svg"),
        *("canvas", "nav", "head"),
    }
)
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_BLOCKS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "body", "caption", "dd", "details"),
        *("dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form"),
        *("header", "hr", "html", "li", "main", "nav", "ol", "p", "section", "summary"),
        *("table", "tbody", "tfoot", "thead", "tr", "ul"),
    }
)
_LISTS = frozenset({"ul", "ol", "dl", "table"})
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9._:-]+)", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_CELL_LEAD = re.compile(r"^\|\s*")
_WHITESPACE = re.compile(r"\s+")
# As browsers do: a declared Latin-1 means windows-1252, and a declared UTF-16/32 in a file
# without their byte pattern (which decode_text detects first) is a mistake for UTF-8.
_CHARSET_ALIASES: dict[str, str | None] = {
    **{name: "cp1252" for name in ("iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii")},
    **{name: None for name in ("utf-16", "utf-16le", "utf-16be", "utf-32", "utf-32le")},
}


def _is_text(node: PageElement) -> bool:
    """Visible character data: not comments, doctypes, CDATA or script/style strings."""
    return isinstance(node, NavigableString) and not isinstance(
        node, PreformattedString | Script | Stylesheet | TemplateString
    )


def _list_start(tag: Tag) -> int:
    """The number before the first item of an <ol> (its ``start`` attribute minus one)."""
    start = tag.get("start")
    return int(start) - 1 if isinstance(start, str) and start.strip().isdigit() else 0


def _is_hidden(tag: Tag) -> bool:
    style = tag.get("style")
    return tag.has_attr("hidden") or (isinstance(style, str) and bool(_HIDDEN_STYLE.search(style)))


class _Walker:
    """Iterative (not recursive) walk, so deep nesting cannot exhaust the stack."""

    def __init__(self, builder: SectionBuilder) -> None:
        self._builder = builder
        self._buffer: list[str] = []
        self._prefix = ""
        self._line = False
        self._lists: list[int | None] = []  # per open list: last item number, None if unordered

    def walk(self, root: Tag) -> None:
        stack: list[tuple[PageElement, bool]] = [(root, False)]
        while stack:
            node, leaving = stack.pop()
            if leaving:
                self._leave(node)
            elif _is_text(node):
                # Source line breaks are just spaces in HTML; only <br> breaks a line.
                self._buffer.append(_WHITESPACE.sub(" ", str(node)))
            elif isinstance(node, Tag) and self._enter(node):
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(node.contents))

    def _enter(self, tag: Tag) -> bool:
        """Handle an opening tag; True when its children are to be walked."""
        name = tag.name
        if name in _DROP or _is_hidden(tag):
            return False
        if name in _HEADINGS:
            self._flush()
            self._builder.heading(_HEADINGS[name], tag.get_text(" "))
            return False
        if name == "pre":
            self._flush()
            self._builder.block(tag.get_text())
            return False
        if name == "br":
            self._buffer.append("\n")
        elif name in ("td", "th"):
            self._buffer.append(" | ")
        elif name in _BLOCKS:
            self._flush()
            if name in ("ul", "ol"):
                self._lists.append(_list_start(tag) if name == "ol" else None)
            elif name == "li":
                self._prefix, self._line = self._item_marker(), True
            elif name == "tr":
                self._line = True
        return True

    def _item_marker(self) -> str:
        number = self._lists[-1] if self._lists else None
        if number is None:
            return "- "
        self._lists[-1] = number + 1
        return f"{number + 1}. "

    def _leave(self, tag: PageElement) -> None:
        name = tag.name if isinstance(tag, Tag) else ""
        if name in _BLOCKS:
            self._flush()
        if name in ("li", "tr"):
            self._prefix, self._line = "", False
        elif name in _LISTS:
            self._builder.end_lines()
            if name in ("ul", "ol") and self._lists:
                self._lists.pop()

    def _flush(self) -> None:
        lines = (
            _CELL_LEAD.sub("", collapse_spaces(line)) for line in "".join(self._buffer).split("\n")
        )
        self._buffer = []
        text = "\n".join(line for line in lines if line)
        if text:
            self._builder.block(self._prefix + text, line=self._line)
            self._prefix = ""

    def finish(self) -> None:
        self._flush()


def html_into(markup: str, builder: SectionBuilder) -> str:
    """Walk ``markup`` into ``builder``; return the <title> text ("" when there is none)."""
    markup = _XML_DECLARATION.sub("", markup, count=1)
    if "<" not in markup:  # no tags at all: BeautifulSoup would only warn about it
        builder.block(markup)
        return ""
    soup = BeautifulSoup(markup, "lxml")
    title_tag = (soup.head or soup).find("title")
    title = collapse_spaces(title_tag.get_text(" ")) if title_tag else ""
    root = soup.body or soup
    walker = _Walker(builder)
    walker.walk(root)
    walker.finish()
    return title


def parse_html(data: bytes, limits: ParseLimits) -> ParsedDocument:
    declared = _META_CHARSET.search(data[:4096])
    charset = declared.group(1).decode("ascii").lower() if declared else None
    if charset in _CHARSET_ALIASES:
        charset = _CHARSET_ALIASES[charset]
    text = decode_text(data, declared=charset)
    reject_entity_declarations(text)
    builder = SectionBuilder(max_chars=limits.max_text_chars)
    title = html_into(text, builder)
    sections = builder.sections()
    return ParsedDocument(
        title=title or (builder.first_heading or ""),
        format=DocumentFormat.HTML,
        page_count=None,
        sections=sections,
    )

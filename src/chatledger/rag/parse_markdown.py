"""Markdown parsing with markdown-it-py (CommonMark plus tables), in-process.

The token stream gives the heading structure directly; inline markup is reduced to its text
(link text kept, URLs dropped, image alt text kept). Raw HTML blocks go through the HTML
walker, so an ``<h2>`` written as HTML counts as a heading too.
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.token import Token

from chatledger.rag.parse_html import html_into
from chatledger.rag.parse_sections import SectionBuilder
from chatledger.rag.parse_text import decode_text
from chatledger.rag.parse_types import DocumentFormat, ParsedDocument, ParseLimits
from chatledger.rag.safety import reject_entity_declarations

# CommonMark caps nesting (maxNesting), which bounds the parser on hostile input.
_MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])
_LIST_CLOSE = frozenset({"bullet_list_close", "ordered_list_close"})


def _inline_text(token: Token) -> str:
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline", "image"):  # an image's content is its alt
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")  # source line wrapping, not a line break
        elif child.type == "hardbreak":
            parts.append("\n")
    return "".join(parts)


def _walk(tokens: list[Token], builder: SectionBuilder) -> None:
    lists: list[int | None] = []  # per open list: last item number, None if unordered
    prefix = ""
    cells: list[str] = []
    previous = ""
    level = 1
    for token in tokens:
        kind = token.type
        if kind == "heading_open":
            level = int(token.tag[1:])
        elif kind == "inline" and previous == "heading_open":
            builder.heading(level, _inline_text(token))
        elif kind == "inline" and previous in ("th_open", "td_open"):
            cells.append(" ".join(_inline_text(token).split()))
        elif kind == "inline":
            builder.block(prefix + _inline_text(token), line=bool(lists))
            prefix = ""
        elif kind == "bullet_list_open":
            lists.append(None)
        elif kind == "ordered_list_open":
            start = token.attrGet("start")
            lists.append(int(start) - 1 if isinstance(start, int | str) else 0)
        elif kind in _LIST_CLOSE:
            lists.pop()
            if not lists:
                builder.end_lines()
        elif kind == "list_item_open":
            number = lists[-1] if lists else None
            if number is None:
                prefix = "- "
            else:
                lists[-1] = number + 1
                prefix = f"{number + 1}. "
        elif kind in ("fence", "code_block"):
            builder.block(token.content)
        elif kind == "html_block":
            html_into(token.content, builder)
        elif kind == "tr_open":
            cells = []
        elif kind == "tr_close" and any(cells):
            builder.block(" | ".join(cells), line=True)
        elif kind in ("table_open", "table_close"):
            builder.end_lines()
        previous = kind


def parse_markdown(data: bytes, limits: ParseLimits) -> ParsedDocument:
    text = decode_text(data)
    reject_entity_declarations(text)
    builder = SectionBuilder(max_chars=limits.max_text_chars)
    tokens = _MARKDOWN.parse(text)
    _walk(tokens, builder)
    h1 = next(
        (
            _inline_text(tokens[i + 1])
            for i, token in enumerate(tokens[:-1])
            if token.type == "heading_open" and token.tag == "h1"
        ),
        "",
    )
    return ParsedDocument(
        title=" ".join(h1.split()) or (builder.first_heading or ""),
        format=DocumentFormat.MARKDOWN,
        page_count=None,
        sections=builder.sections(),
    )

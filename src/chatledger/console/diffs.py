"""Before/after diffs as the console shows them: changed settings as rows, and long texts
(system prompts, blocked replies) as a line diff."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import orjson

from chatledger.chatbots.config import diff as config_diff

_TEXT_LIMIT = 60  # strings longer than this, or with line breaks, get a line diff


@dataclass
class Change:
    path: str
    before: Any
    after: Any
    lines: list[tuple[str, str]] = field(default_factory=list)
    """For long texts: ``(kind, line)`` with kind ``same``, ``add`` or ``del``."""

    @property
    def before_text(self) -> str:
        return show(self.before)

    @property
    def after_text(self) -> str:
        return show(self.after)


def show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def text_lines(before: str, after: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        tag, text = line[:2], line[2:]
        if tag == "  ":
            out.append(("same", text))
        elif tag == "+ ":
            out.append(("add", text))
        elif tag == "- ":
            out.append(("del", text))
    return out


def _is_long(value: Any) -> bool:
    return isinstance(value, str) and (len(value) > _TEXT_LIMIT or "\n" in value)


def changes(before: Any, after: Any) -> list[Change]:
    """Changed leaves between two JSON values (objects are compared leaf by leaf)."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        if before == after:
            return []
        item = Change("value", before, after)
        if _is_long(before) or _is_long(after):
            item.lines = text_lines(str(before or ""), str(after or ""))
        return [item]
    out = []
    for row in config_diff(before, after):
        item = Change(str(row["path"]), row["before"], row["after"])
        if _is_long(item.before) or _is_long(item.after):
            item.lines = text_lines(str(item.before or ""), str(item.after or ""))
        out.append(item)
    return out


def before_after(attributes: dict[str, Any], payload: dict[str, Any] | None) -> list[Change] | None:
    """The before/after of an event (payload first, then attributes), or None if it has none."""
    for source in (payload or {}, attributes):
        if "before" in source and "after" in source:
            old, new = source["before"], source["after"]
            if isinstance(old, dict) or isinstance(new, dict):
                return changes(old or {}, new or {})
            return changes(old, new)
    return None

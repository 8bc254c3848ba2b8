"""Cursor pagination: opaque cursors, a bounded limit, ``{"items", "next_cursor"}``."""

from __future__ import annotations

import base64
from typing import Any

from chatledger.errors import InvalidInput

MAX_LIMIT = 200


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("invalid cursor") from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def page(items: list[dict[str, Any]], limit: int, key: str = "id") -> dict[str, Any]:
    next_cursor = encode_cursor(str(items[-1][key])) if len(items) == limit else None
    return {"items": items, "next_cursor": next_cursor}

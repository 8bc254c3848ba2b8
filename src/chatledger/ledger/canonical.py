"""RFC 8785 (JCS) canonical JSON: the only input to hashing.

``rfc8785`` is the reference encoder, but it is pure Python (~20,000 objects/s). orjson with
sorted keys yields the same bytes for the subset of JSON that has no floats, no integers
beyond +/-2**53 and no object keys outside the Basic Multilingual Plane (RFC 8785 sorts keys
by UTF-16 code units, orjson by code points; the two orders agree inside the BMP). We take
the fast path only when a cheap structural check proves the value is in that subset, and fall
back to ``rfc8785`` otherwise. A property test keeps the two paths byte-identical.
"""

from __future__ import annotations

from typing import Any

import orjson
import rfc8785

from chatledger.errors import InvalidInput

_MAX_SAFE_INT = 2**53 - 1
_MAX_DEPTH = 64


def fast_path_ok(value: Any, depth: int = 0) -> bool:
    """True when ``value`` is in the subset where orjson's output equals RFC 8785's."""
    if depth > _MAX_DEPTH:
        raise InvalidInput("JSON value is nested too deeply", details={"max_depth": _MAX_DEPTH})
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-_MAX_SAFE_INT <= value <= _MAX_SAFE_INT)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidInput("JSON object keys must be strings")
            if not key.isascii() and any(ord(ch) > 0xFFFF for ch in key):
                return False
            if not fast_path_ok(item, depth + 1):
                return False
        return True
    if kind is list or kind is tuple:
        return all(fast_path_ok(item, depth + 1) for item in value)
    return False


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as RFC 8785 canonical JSON bytes.

    Raises :class:`InvalidInput` for values JSON cannot represent canonically: NaN and
    infinities, integers beyond +/-2**53, lone surrogates, non-string keys, other types.
    """
    return canonical_json_checked(value)[0]


def canonical_json_checked(value: Any) -> tuple[bytes, bool]:
    """The canonical bytes, and whether the fast path produced them (so callers embedding
    ``value`` in a larger object know that object can take it too)."""
    if fast_path_ok(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS), True
        except TypeError as exc:  # lone surrogates and the like
            raise InvalidInput(f"value is not valid JSON text: {exc}") from exc
    try:
        return rfc8785.dumps(value), False
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidInput(f"value cannot be canonicalised (RFC 8785): {exc}") from exc


def parse_json(data: bytes | str) -> Any:
    """Parse JSON strictly (invalid UTF-8 and lone surrogates are errors)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"invalid JSON: {exc}") from exc

"""RFC 8785 (JCS) canonical JSON: the only input to hashing.

``rfc8785`` is the reference encoder, but it is pure Python (~20,000 objects/s). orjson with
sorted keys yields the same bytes for the subset of JSON that has no integers beyond
+/-2**53, no object keys outside the Basic Multilingual Plane (RFC 8785 sorts keys by UTF-16
code units, orjson by code points; the two orders agree inside the BMP) and only "ordinary"
floats. Both encoders print a float as its shortest round-trip digits; they differ only in
notation: RFC 8785 (ECMAScript's Number.toString) writes integral values without a fraction
(``1`` against orjson's ``1.0``, ``0`` for ``-0.0``) and plain decimals down to 1e-6 where
orjson switches to an exponent below 1e-4. So a finite, non-integral float with 1e-4 <= |x|
< 1e16 (relevance scores, latencies, costs) prints identically, and an integral float is
the same number as the integer it equals (``0.0`` and ``0`` both print ``0``). We take the
fast path only when a cheap structural check proves the value is in that subset, and fall
back to ``rfc8785`` otherwise. Property tests keep the two paths byte-identical.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson
import rfc8785

from chatledger.errors import InvalidInput

_MAX_SAFE_INT = 2**53 - 1
_FLOAT_FAST_MIN = 1e-4
_FLOAT_FAST_MAX = 1e16
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
    if kind is float:
        magnitude = abs(value)  # NaN and the infinities fail the range test
        return bool(_FLOAT_FAST_MIN <= magnitude < _FLOAT_FAST_MAX and value != int(value))
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
    return canonical_json_checked(value).bytes


class Canonical(NamedTuple):
    bytes: bytes
    fast: bool
    """Whether orjson produced the bytes from ``value``: an object embedding ``value`` can
    then take the fast path too."""
    value: Any
    """The value encoded: the input, or a copy with integral floats as integers."""


def canonical_json_checked(value: Any) -> Canonical:
    """The canonical bytes, with how they were made (see :class:`Canonical`)."""
    if fast_path_ok(value):
        return Canonical(_orjson(value), True, value)
    # RFC 8785 prints an integral float as an integer (1.0 as 1, -0.0 as 0): the same
    # number, so the copy with integers encodes to the same bytes, and often on the fast path.
    as_ints = _integral_floats_as_ints(value)
    if as_ints is not value and fast_path_ok(as_ints):
        return Canonical(_orjson(as_ints), True, as_ints)
    try:
        return Canonical(rfc8785.dumps(value), False, value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidInput(f"value cannot be canonicalised (RFC 8785): {exc}") from exc


def _orjson(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:  # lone surrogates and the like
        raise InvalidInput(f"value is not valid JSON text: {exc}") from exc


def _integral_floats_as_ints(value: Any, depth: int = 0) -> Any:
    """``value`` with every integral float within +/-2**53 as an int; ``value`` itself (the
    same object) when there is none."""
    kind = type(value)
    if kind is float:
        if value.is_integer() and abs(value) <= _MAX_SAFE_INT:
            return int(value)
        return value
    if depth > _MAX_DEPTH:
        return value  # fast_path_ok refuses it
    if kind is dict:
        changed = {k: _integral_floats_as_ints(v, depth + 1) for k, v in value.items()}
        if any(changed[k] is not v for k, v in value.items()):
            return changed
        return value
    if kind is list or kind is tuple:
        items = [_integral_floats_as_ints(v, depth + 1) for v in value]
        if any(a is not b for a, b in zip(items, value, strict=True)):
            return items
        return value
    return value


def parse_json(data: bytes | str) -> Any:
    """Parse JSON strictly (invalid UTF-8 and lone surrogates are errors)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"invalid JSON: {exc}") from exc

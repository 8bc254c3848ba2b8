"""Secrets never enter the ledger: API keys, passwords and tokens are redacted first.

Two nets: values under keys whose *name* says they hold a secret are replaced whole, and
secret-looking substrings of any string (bearer tokens, well-known API key shapes, JWTs,
PEM private keys, ``password=...`` pairs) are replaced in place.
"""

from __future__ import annotations

import functools
import re
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_KEY_RE = re.compile(
    r"(?i)^(?:.*[_-])?(password|passwd|secret|token|api[_-]?key|apikey|authorization|cookie|"
    r"private[_-]?key|access[_-]?key|client[_-]?secret|session[_-]?id|credentials?)$"
)
_SECRET_VALUE_RE = re.compile(
    r"(?P<bearer>(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]{12,})"
    r"|(?P<pem>-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----)"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
    r"|(?P<apikey>\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}|\bcl[ks]_[A-Za-z0-9]{8,}_[A-Za-z0-9_-]{16,}"
    r"|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{30,}|\bxox[abpr]-[A-Za-z0-9-]{10,})"
    r"|(?P<pair>(?i:password|passwd|pwd|secret|api[_-]?key|token)\s*[=:]\s*[^\s,;&\"']{4,})"
)

# Every match of the pattern above *starts* with one of these, once case-folded. Finding
# them with plain substring search (memchr-fast) and trying the pattern only where one
# starts keeps text off the slow regex: words such as "passage", "basic" or "token" are
# everyday chat text, and a full scan of a 4 KB prompt costs about a millisecond.
_TRIGGERS = (
    "bearer",
    "basic",
    "-----begin",
    "eyj",
    "sk-",
    "pk-",
    "rk-",
    "clk_",
    "cls_",
    "akia",
    "gh",
    "xox",
    "pass",
    "pwd",
    "secret",
    "api",
    "token",
)
_SHORTEST_SECRET = 8
"""No match is shorter: ``pwd=`` and four characters."""
# Case-insensitive matching in ``re`` also lets U+0131 (dotless i) stand for "i"; casefold
# leaves it as is, so the prefilter maps it (one character for one: positions still agree).
_DOTLESS_I = str.maketrans({"\u0131": "i"})


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    return _SECRET_KEY_RE.match(key) is not None


def _label(match: re.Match[str]) -> str:
    return f"[REDACTED:{match.lastgroup}]"


def _trigger_starts(folded: str) -> list[int]:
    """Where a trigger begins in the case-folded text, in order, without repeats."""
    starts: set[int] = set()
    for trigger in _TRIGGERS:
        at = folded.find(trigger)
        while at != -1:
            starts.add(at)
            at = folded.find(trigger, at + 1)
    return sorted(starts)


def _redact_text(text: str) -> str:
    """``_SECRET_VALUE_RE.sub`` with the same result, trying the pattern only at triggers."""
    if len(text) < _SHORTEST_SECRET:
        return text
    if text.isascii():  # (a constant-time flag in CPython) ASCII folds as lower() does
        folded = text.lower()
    else:
        folded = text.casefold()
        if "\u0131" in folded:
            folded = folded.translate(_DOTLESS_I)
    # Plain containment tests first: no trigger at all is by far the common case.
    for trigger in _TRIGGERS:
        if trigger in folded:
            break
    else:
        return text
    if len(folded) != len(text):  # a character folded to several: positions do not map
        return _SECRET_VALUE_RE.sub(_label, text)
    # Every match starts at a trigger, so trying only those positions, left to right and
    # skipping past each match, finds exactly the matches ``sub`` would.
    parts: list[str] = []
    done = 0
    for start in _trigger_starts(folded):
        if start < done:
            continue
        found = _SECRET_VALUE_RE.match(text, start)
        if found is not None:
            parts += (text[done:start], _label(found))
            done = found.end()
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def redact(value: Any) -> Any:
    """``value`` with secrets replaced: a copy where something changed, else ``value`` itself."""
    kind = type(value)
    if kind is str:
        return _redact_text(value)
    if kind is dict:
        out: dict[Any, Any] = {}
        changed = False
        for key, item in value.items():
            if isinstance(key, str) and _secret_key(key) and item not in (None, ""):
                clean: Any = REDACTED
            elif type(item) is str:
                clean = _redact_text(item) if len(item) >= _SHORTEST_SECRET else item
            elif item is None or type(item) in _SCALARS:
                clean = item
            else:
                clean = redact(item)
            changed = changed or clean is not item
            out[key] = clean
        return out if changed else value
    if kind is list or kind is tuple:
        items = [redact(item) for item in value]
        if kind is tuple or any(a is not b for a, b in zip(items, value, strict=True)):
            return items
        return value
    # Subclasses (StrEnum values, OrderedDict, ...) take the slower, general route.
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, dict):
        return redact(dict(value))
    if isinstance(value, list | tuple):
        return redact(list(value))
    return value


_SCALARS = (int, float, bool)

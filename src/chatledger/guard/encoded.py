"""Decode the encodings attackers use to slip instructions past keyword filters.

Base64, hex, binary octets, percent- and HTML-entity escapes, Morse code, variation
selector smuggling, and Caesar/ROT-n or reversed text. Each candidate is decoded and kept
only when the result reads as text, so hashes, identifiers and random tokens cost a
failed decode and nothing more. The decoded text is then scanned by the same rules.

Caesar shifts and reversal have no visible marker; instead of trying 25 shifts of every
text we look for the shifted or reversed forms of a few words that nearly every injection
contains ("instructions", "ignore", ...) with one precompiled regular expression, and
decode the text only when two of them agree on the same shift.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

_MAX_CANDIDATES = 8
_MAX_CANDIDATE_CHARS = 8000
_MIN_DECODED_CHARS = 6

# Patterns start with a character class so the regex engine can skip ahead quickly; word
# boundaries are checked on each hit instead (see _bounded).
_BASE64_RE = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
# unseparated hex is also a base64 candidate and is tried as hex there
_HEX_RE = re.compile(r"[0-9A-Fa-f]{2}(?:[ :,-][0-9A-Fa-f]{2}){7,}")
_HEX_ONLY_RE = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_HEX_ESCAPE_RE = re.compile(r"(?:\\x|0x)[0-9A-Fa-f]{2}(?:[ ,]?(?:\\x|0x)[0-9A-Fa-f]{2}){5,}")
_BINARY_RE = re.compile(r"[01]{8}(?:[ ,]?[01]{8}){3,}")
_PERCENT_RE = re.compile(r"[\w.~+-]*%[0-9A-Fa-f]{2}(?:[\w.~+-]*%[0-9A-Fa-f]{2}){2,}[\w.~+-]*")
_ENTITY_RE = re.compile(r"(?:&#(?:x[0-9A-Fa-f]{1,6}|[0-9]{1,7});){6,}")
_MORSE_RE = re.compile(r"[.-]{1,7}(?:(?: / | {1,3}|/)[.-]{1,7}){5,}")
_VARIATION_RE = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]{6,}")

_MORSE = {
    ".-": "a", "-...": "b", "-.-.": "c", "-..": "d", ".": "e", "..-.": "f", "--.": "g",
    "....": "h", "..": "i", ".---": "j", "-.-": "k", ".-..": "l", "--": "m", "-.": "n",
    "---": "o", ".--.": "p", "--.-": "q", ".-.": "r", "...": "s", "-": "t", "..-": "u",
    "...-": "v", ".--": "w", "-..-": "x", "-.--": "y", "--..": "z", "-----": "0",
    ".----": "1", "..---": "2", "...--": "3", "....-": "4", ".....": "5", "-....": "6",
    "--...": "7", "---..": "8", "----.": "9", "..--..": "?", ".-.-.-": ".", "--..--": ",",
}  # fmt: skip

# Words nearly every written injection contains; their shifted/reversed forms are what we
# look for. Only words of 6+ letters: shorter ones collide with real words too often.
# Lookup is by dictionary on the text's long words, one pass, no per-shift regex.
_KEYWORDS = ("ignore", "instructions", "previous", "password", "disregard", "system", "prompt")
_PRINTABLE = frozenset(string.printable) | frozenset("\u00a0")


def _shift(word: str, k: int) -> str:
    return "".join(chr((ord(c) - 97 + k) % 26 + 97) for c in word)


def _build_shift_index() -> dict[str, tuple[str, int]]:
    index: dict[str, tuple[str, int]] = {}
    for word in _KEYWORDS:
        for k in range(1, 26):
            index[_shift(word, k)] = ("shift", k)
        index[word[::-1]] = ("reverse", 0)
    return index


_SHIFTED_INDEX = _build_shift_index()
_SHIFTED_KEYS = frozenset(_SHIFTED_INDEX)


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded segment: the encoding's name and the readable text it hid."""

    encoding: str
    text: str


def _readable(data: bytes | str) -> str | None:
    """Return the decoded text if it looks like language, else None."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    else:
        text = data
    text = text.strip()
    if len(text) < _MIN_DECODED_CHARS:
        return None
    ascii_chars = sum(1 for c in text if c in _PRINTABLE)
    letters = sum(1 for c in text if c.isalpha())
    if text.isascii():
        if ascii_chars < 0.97 * len(text) or letters < 0.5 * len(text):
            return None
    elif letters < 0.4 * len(text) or any(not c.isprintable() and not c.isspace() for c in text):
        return None
    if " " not in text and len(text) > 24:
        return None  # one long "word": an identifier, not a hidden sentence
    return text


def _b64(candidate: str) -> str | None:
    core = candidate.rstrip("=")
    if len(core) % 4 == 1:
        return None
    if candidate.isalpha() and (candidate.islower() or candidate.isupper()):
        return None  # one long single-case word ("internationalization"), not base64
    padded = core + "=" * (-len(core) % 4)
    try:
        if "-" in core or "_" in core:
            raw = base64.urlsafe_b64decode(padded)
        else:
            raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _readable(raw)


def _hex(candidate: str) -> str | None:
    digits = re.sub(r"[^0-9A-Fa-f]", "", candidate.replace("0x", "").replace("\\x", ""))
    if len(digits) % 2:
        return None
    try:
        return _readable(bytes.fromhex(digits))
    except ValueError:
        return None


def _binary(candidate: str) -> str | None:
    bits = re.sub(r"[^01]", "", candidate)
    usable = len(bits) - len(bits) % 8
    raw = bytes(int(bits[i : i + 8], 2) for i in range(0, usable, 8))
    return _readable(raw)


def _morse(candidate: str) -> str | None:
    words = re.split(r"\s*/\s*|\s{3,}", candidate.strip())
    out = []
    for word in words:
        letters = [_MORSE.get(sym) for sym in word.split()]
        if any(letter is None for letter in letters):
            return None
        out.append("".join(letter or "" for letter in letters))
    return _readable(" ".join(out))


def _variation_selectors(run: str) -> str | None:
    raw = bytearray()
    for c in run:
        cp = ord(c)
        raw.append(cp - 0xFE00 if cp <= 0xFE0F else cp - 0xE0100 + 16)
    return _readable(bytes(raw))


def _unshift(text: str, k: int) -> str:
    table = str.maketrans(
        string.ascii_lowercase + string.ascii_uppercase,
        "".join(_shift(c, -k) for c in string.ascii_lowercase)
        + "".join(_shift(c, -k).upper() for c in string.ascii_lowercase),
    )
    return text.translate(table)


_LONG_WORD_RE = re.compile(r"[a-z]{6,}")


def _shifted_or_reversed(text: str, lowered: str) -> list[Decoded]:
    votes: dict[tuple[str, int], set[str]] = {}
    for word in _SHIFTED_KEYS.intersection(_LONG_WORD_RE.findall(lowered)):
        votes.setdefault(_SHIFTED_INDEX[word], set()).add(word)
    found = []
    for (kind, k), words in votes.items():
        # two different keywords on the same shift, or one long one (≥ 8 letters)
        if len(words) < 2 and max(len(w) for w in words) < 8:
            continue
        if kind == "reverse":
            found.append(Decoded("reversed", text[::-1]))
        else:
            found.append(Decoded(f"rot{k}", _unshift(text, k)))
    return found


def _bounded(text: str, start: int, end: int, alphabet: str) -> bool:
    """True if the hit is not a fragment of a longer run of the same alphabet."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return before not in alphabet and after not in alphabet


_B64_ALPHABET = string.ascii_letters + string.digits + "+/=_-"
_HEX_ALPHABET = string.ascii_letters + string.digits


def decode_segments(text: str, lowered: str | None = None) -> list[Decoded]:
    """Find encoded segments in ``text`` and return those that decode to readable text.

    ``lowered`` is ``text.lower()`` if the caller has it already.
    """
    found: list[Decoded] = []
    seen: set[str] = set()

    def scan(
        pattern: re.Pattern[str],
        name: str,
        decoder: Callable[[str], str | None],
        alphabet: str = "",
    ) -> None:
        for m in pattern.finditer(text):
            if len(found) >= _MAX_CANDIDATES:
                return
            if alphabet and not _bounded(text, m.start(), m.end(), alphabet):
                continue
            candidate = m.group(0)[:_MAX_CANDIDATE_CHARS]
            encoding = name
            if name == "base64" and _HEX_ONLY_RE.fullmatch(candidate):
                encoding, decoded = "hex", _hex(candidate)  # unseparated hex looks like base64
            else:
                decoded = decoder(candidate)
            if decoded is not None and decoded not in seen:
                seen.add(decoded)
                found.append(Decoded(encoding, decoded))

    # base64 and plain hex need one 16+ character token: a cheap test skips most texts
    if max(map(len, text.split()), default=0) >= 16:
        scan(_BASE64_RE, "base64", _b64, _B64_ALPHABET)
    scan(_HEX_RE, "hex", _hex, _HEX_ALPHABET)
    if "\\x" in text or "0x" in text:
        scan(_HEX_ESCAPE_RE, "hex", _hex)
    if "0000" in text or "0110" in text or "0100" in text:
        scan(_BINARY_RE, "binary", _binary, "01")
    if "%" in text:
        scan(_PERCENT_RE, "percent", lambda c: _readable(unquote(c)))
    if "&#" in text:
        scan(_ENTITY_RE, "html_entities", lambda c: _readable(html.unescape(c)))
    if ".-" in text or "-." in text:
        scan(_MORSE_RE, "morse", _morse, string.ascii_letters + string.digits + ".-")
    if not text.isascii():
        scan(_VARIATION_RE, "variation_selectors", _variation_selectors)
    for decoded in _shifted_or_reversed(text, text.lower() if lowered is None else lowered):
        if len(found) < _MAX_CANDIDATES:
            found.append(decoded)
    return found

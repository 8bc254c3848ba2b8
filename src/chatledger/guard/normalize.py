"""Text normalisation: undo the cheap disguises before any rule looks at the text.

Attackers hide instructions from keyword filters with invisible characters, look-alike
letters from other scripts, fullwidth or mathematical letter forms and leetspeak. We fold
all of that back to plain text, and because benign text rarely needs such tricks, their
presence is reported as evidence in its own right (layer ``normalization``).

Folding is deliberately conservative: a word is mapped from Cyrillic/Greek to Latin only
when it mixes scripts (or the whole text is mostly Latin), so genuine Russian or Greek text
is left intact for the multilingual rules.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from chatledger.guard.verdict import Match, excerpt

# Zero-width and other invisible format characters. Soft hyphens and LRM/RLM are removed
# without counting: PDFs and right-to-left text carry them legitimately.
_INVISIBLE_COUNTED = (
    "\u200b\u200c\u2060\u2061\u2062\u2063\u2064\u180e\u034f\u115f\u1160\u3164\uffa0"
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_INVISIBLE_SILENT = "\u00ad\u200e\u200f\ufe00-\ufe0f"  # soft hyphen, LRM/RLM, variation selectors
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE_COUNTED}]")
_SILENT_RE = re.compile(f"[{_INVISIBLE_SILENT}]")
# A zero-width joiner between two letters (not inside an emoji sequence) hides word breaks.
_ZWJ_IN_WORD_RE = re.compile(r"(?<=\w)\u200d(?=\w)")
_BOM_RE = re.compile("\ufeff")
# Combining marks stacked on plain Latin letters ("i̇g̈n̈ore", "zalgo" text) survive NFKC and
# split words for the rules; accented letters of real languages are precomposed by NFKC.
_COMBINING_ON_LATIN_RE = re.compile("(?<=[A-Za-z])[\u0300-\u036f\u1ab0-\u1aff\u20d0-\u20ff]+")

# Unicode "tag" characters (U+E0020..U+E007E) mirror ASCII and render as nothing: a known
# way to smuggle a whole instruction inside an innocent-looking string.
_TAGS_RE = re.compile("[\U000e0000-\U000e007f]+")

# Look-alike letters from Cyrillic, Greek and a few Latin extensions, mapped to ASCII.
_CONFUSABLES: dict[str, str] = {
    # Cyrillic lower case
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
    "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ү": "y", "һ": "h", "ӏ": "l", "ɡ": "g",
    # Cyrillic upper case
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "Х": "X", "У": "Y", "Ѕ": "S", "І": "I", "Ј": "J", "Ԁ": "D",
    # Greek
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "ι": "i", "κ": "k", "υ": "u", "ε": "e",
    "τ": "t", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K",
    "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Latin small capitals and dotless letters that NFKC keeps
    "ı": "i", "ɑ": "a", "ɩ": "i", "ʏ": "y", "ɴ": "n", "ʀ": "r", "ᴀ": "a", "ᴇ": "e",
    "ᴏ": "o", "ᴛ": "t", "ꜱ": "s", "ᴜ": "u", "ᴍ": "m", "ᴋ": "k", "ᴄ": "c", "ᴅ": "d",
}  # fmt: skip
_CONFUSABLE_CHARS = frozenset(_CONFUSABLES)
_CONFUSABLE_TABLE = str.maketrans(_CONFUSABLES)
_WORD_RE = re.compile(r"[^\W\d_]+")
_LATIN_RE = re.compile(r"[A-Za-z]")
_NON_LATIN_LETTER_RE = re.compile(r"[^\W\d_A-Za-z]")

# Leetspeak: digits and symbols standing in for letters inside a word ("1gn0r3").
# Only tokens of 3+ characters that mix letters with the mapped digits are touched; tokens
# holding digits that rarely stand for letters (2, 6, 8, 9) are left alone: "C17H19NO3".
# A letter next to a leet digit is the cheap hint; the whole token is then examined.
_LEET_HINT_RE = re.compile(r"[013457@$](?:(?=[A-Za-z])|(?<=[A-Za-z][013457@$]))")
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@$")
_LEET_TABLE = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                             "@": "a", "$": "s"})  # fmt: skip
_LEET_BLOCKERS = frozenset("2689")
# A number followed by a unit ("10am", "3rd", "250mg") or a name followed by a number
# ("rot13", "ipv4", "win10") is not leetspeak.
_NAME_WITH_NUMBER_RE = re.compile(r"[A-Za-z]{2,}\d+")
_NUMBER_WITH_UNIT_RE = re.compile(
    r"\d+(?:st|nd|rd|th|am|pm|[kmµ]?[glm]|kb|mb|gb|tb|px|pt|em|s|h|hrs?|min|x|k|d|y|yrs?|mo)"
)


@dataclass(frozen=True, slots=True)
class Normalized:
    """Folded text for the rules, hidden text found on the way, and disguise signals."""

    text: str
    smuggled: tuple[str, ...]
    signals: tuple[Match, ...]


def _decode_tags(run: str) -> str:
    return "".join(chr(ord(c) - 0xE0000) for c in run if 0xE0020 <= ord(c) <= 0xE007E)


def _fold_confusables(text: str) -> tuple[str, int]:
    """Map look-alike letters to ASCII in words that mix scripts; return (text, words mixed)."""
    latin = len(_LATIN_RE.findall(text))
    mostly_latin = latin > len(_NON_LATIN_LETTER_RE.findall(text))
    mixed = 0

    def repl(m: re.Match[str]) -> str:
        nonlocal mixed
        word = m.group(0)
        has_confusable = any(c in _CONFUSABLE_CHARS for c in word)
        if not has_confusable:
            return word
        # A word mixing Latin with look-alikes, or a whole look-alike word inside Latin
        # prose, is a disguise; a genuine Cyrillic or Greek word is left alone.
        if _LATIN_RE.search(word) is not None or (
            mostly_latin and len(word) > 1 and all(c in _CONFUSABLE_CHARS for c in word)
        ):
            mixed += 1
            return word.translate(_CONFUSABLE_TABLE)
        return word

    return _WORD_RE.sub(repl, text), mixed


def _fold_leet(text: str) -> tuple[str, int]:
    pieces: list[str] = []
    cursor = 0
    folded = 0
    for m in _LEET_HINT_RE.finditer(text):
        if m.start() < cursor:
            continue  # inside a token already handled
        start, end = m.start(), m.end()
        while start > 0 and text[start - 1] in _TOKEN_CHARS:
            start -= 1
        while end < len(text) and text[end] in _TOKEN_CHARS:
            end += 1
        token = text[start:end]
        keep = (
            len(token) < 3
            or any(c in _LEET_BLOCKERS for c in token)
            or _NUMBER_WITH_UNIT_RE.fullmatch(token) is not None
            or _NAME_WITH_NUMBER_RE.fullmatch(token) is not None
            # "name@example.com" is an address, not leetspeak
            or ("@" in token and text[end : end + 1] == ".")
        )
        pieces.append(text[cursor:start])
        pieces.append(token if keep else token.translate(_LEET_TABLE))
        folded += 0 if keep else 1
        cursor = end
    if not pieces:
        return text, 0
    pieces.append(text[cursor:])
    return "".join(pieces), folded


def normalize(text: str) -> Normalized:
    """Fold ``text`` for rule matching and report the disguises that were undone."""
    signals: list[Match] = []
    smuggled: list[str] = []

    if text.isascii():
        folded, leet = _fold_leet(text)
        if leet >= 2:
            signals.append(Match("normalization.leetspeak", "normalization", 0.15, f"{leet} words"))
        return Normalized(folded, (), tuple(signals))

    tag_runs = _TAGS_RE.findall(text)
    if tag_runs:
        decoded = " ".join(d for d in (_decode_tags(r) for r in tag_runs) if d.strip())
        if decoded:
            smuggled.append(decoded)
            signals.append(
                Match("normalization.unicode_tags", "normalization", 0.6, excerpt(decoded))
            )
        text = _TAGS_RE.sub("", text)

    counted = len(_INVISIBLE_RE.findall(text))
    if "\u200d" in text:
        counted += len(_ZWJ_IN_WORD_RE.findall(text))
    # a byte-order mark opening the text is normal; anywhere else it hides a word break
    counted += max(text.count("\ufeff") - text.startswith("\ufeff"), 0)
    if counted:
        text = _INVISIBLE_RE.sub("", text)
        text = _ZWJ_IN_WORD_RE.sub("", text)
        weight = 0.4 if counted >= 3 else 0.25
        signals.append(
            Match("normalization.invisible_chars", "normalization", weight, f"{counted} hidden")
        )
    text = _BOM_RE.sub("", _SILENT_RE.sub("", text))

    text = unicodedata.normalize("NFKC", text)
    marks = _COMBINING_ON_LATIN_RE.findall(text)
    if marks:
        text = _COMBINING_ON_LATIN_RE.sub("", text)
        if sum(map(len, marks)) >= 3:
            signals.append(
                Match("normalization.combining_marks", "normalization", 0.3, f"{len(marks)} marks")
            )

    if not _CONFUSABLE_CHARS.isdisjoint(text):
        text, mixed = _fold_confusables(text)
        if mixed:
            weight = 0.45 if mixed >= 2 else 0.3
            signals.append(
                Match("normalization.mixed_script", "normalization", weight, f"{mixed} words")
            )

    text, leet = _fold_leet(text)
    if leet >= 2:
        signals.append(Match("normalization.leetspeak", "normalization", 0.15, f"{leet} words"))
    return Normalized(text, tuple(smuggled), tuple(signals))

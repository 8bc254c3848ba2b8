"""Shape-of-the-message signals that no single regular expression captures.

Repeated-token floods, fake dialogue transcripts (few-shot and many-shot priming), batteries
of questions that bury the real one, a chatty preamble with a sudden pivot, and pig-latin
style scrambling. All are weak on their own and meant to combine with the rules.
"""

from __future__ import annotations

import re
from collections import Counter

from chatledger.guard.verdict import Match, Source, excerpt

_ALPHA_WORD_RE = re.compile(r"[a-z]+")
_SENTENCE_END_RE = re.compile(r"[.!?。！？](?:\s|$)")
_STOPWORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "is",
        "it",
        "that",
        "for",
        "on",
        "with",
        "as",
        "be",
        "are",
        "was",
        "i",
        "you",
        "this",
        "what",
        "q",
        "how",
        "do",
        "does",
        "can",
        "my",
        "me",
        "we",
        "our",
        "your",
        "at",
        "by",
        "from",
        "not",
        "no",
    ]
)
_ROLE_RE = re.compile(r"(user|human|assistant|ai|system|bot)[ \t]*:")
_PIVOT_RE = re.compile(
    r"(?:[.!?]\s+|,\s*)(?:oh,? and|by the way|btw|anyway|anyways|speaking of|on another note"
    r"|unrelated,|changing the subject|hablando de|parlando di|à propos|übrigens|por cierto"
    r"|a propósito|a proposito|falando de|кстати)\b",
)
_MAX_TOKENS = 3000


def _repeated_token(lowered: str, source: Source) -> Match | None:
    tokens = lowered[: _MAX_TOKENS * 8].split()
    if source == "user":
        min_count, min_ratio, weight = 8, 0.1, 0.5
    else:
        # documents hold tables of repeated numbers, codes and markup; count words only
        tokens = [t for t in tokens if len(t) >= 3 and t.isalpha()]
        min_count, min_ratio, weight = 12, 0.2, 0.3
    if len(tokens) < min_count:
        return None
    counts = Counter(tokens)
    if max(counts.values()) < max(min_count, min_ratio * len(tokens)):
        return None
    for token, count in counts.most_common(8):
        if count < min_count or count < min_ratio * len(tokens):
            break
        if token not in _STOPWORDS:
            return Match("structure.repeated_token", "rules", weight, f"{token!r} x{count}")
    return None


def _fake_dialogue(text: str, lowered: str, source: Source) -> Match | None:
    questions = text.count("Q:") + text.count("Q :")
    if questions >= 2 and ("A:" in text or "A :" in text):
        # FAQ pages are written this way: weak for documents
        weight = 0.5 if source == "user" else 0.1
        return Match("structure.fake_dialogue", "rules", weight, f"{questions} Q/A turns")
    roles = set()
    for m in _ROLE_RE.finditer(lowered):
        # a role label counts only at the start of a line
        line_start = lowered.rfind("\n", 0, m.start()) + 1
        if not lowered[line_start : m.start()].strip():
            roles.add(m.group(1))
    if len(roles) >= 2:
        weight = 0.55 if source == "user" else 0.45
        return Match("structure.fake_roles", "rules", weight, ", ".join(sorted(roles)))
    return None


def _question_overload(text: str) -> Match | None:
    questions = text.count("?") + text.count("？")
    if questions >= 6:
        return Match("structure.question_overload", "rules", 0.5, f"{questions} questions")
    if questions >= 4:
        return Match("structure.question_overload", "rules", 0.4, f"{questions} questions")
    return None


def _topic_pivot(text: str, lowered: str) -> Match | None:
    m = _PIVOT_RE.search(lowered, 60)
    if m is None:
        return None
    # Burying the real request under a long, chatty preamble is the "overload" technique:
    # the longer the preamble, the stronger the signal.
    preamble = lowered[: m.start() + 1]
    long_preamble = len(preamble) >= 100 and len(_SENTENCE_END_RE.findall(preamble)) >= 2
    weight = 0.5 if long_preamble else 0.35
    return Match("structure.topic_pivot", "rules", weight, excerpt(text, m.start(), m.end() + 40))


def _pig_latin(lowered: str) -> Match | None:
    if lowered.count("ay ") + lowered.count("ay?") + lowered.count("ay.") < 3:
        return None
    words = _ALPHA_WORD_RE.findall(lowered[:2000])
    if len(words) < 4:
        return None
    ay = sum(1 for w in words if len(w) > 3 and w.endswith("ay"))
    if ay >= 4 and ay >= 0.6 * len(words):
        return Match("structure.pig_latin", "rules", 0.5, f"{ay}/{len(words)} words")
    return None


def structural_signals(text: str, lowered: str, source: Source) -> list[Match]:
    """Return the structural matches for ``text`` (``lowered`` is ``text.lower()``)."""
    found = [
        _repeated_token(lowered, source),
        _fake_dialogue(text, lowered, source),
        _pig_latin(lowered),
    ]
    if source == "user":
        found.append(_question_overload(text))
        found.append(_topic_pivot(text, lowered))
    return [m for m in found if m is not None]

"""Running the rules: find each rule's needles once, search only near them.

Python's regular expressions cost about the same per character whatever the pattern, so
80 rules over a 2 KB document chunk would take milliseconds. Almost all of that is spent
where a rule cannot match. We index the text once (which needles occur, and where), skip
every rule none of whose needles occurs, and run the others only in windows around their
needles' occurrences. ``Pattern.search(text, pos, endpos)`` keeps look-behind, ``^`` and
``\\b`` semantics at the window edges, so results are those of a full scan.
"""

from __future__ import annotations

import re

from chatledger.guard.rules import RULES, Rule
from chatledger.guard.verdict import Layer, Match, Source, excerpt

_CONTEXT_WINDOW = 160  # how far around a hit a rule's ``context`` regex may match
_MAX_WINDOWS = 24  # past this many needle hits, one full scan is cheaper than windows
_WORD_RE = re.compile(r"[A-Za-z]+")


class NeedleIndex:
    """Where the rules' needles occur in one text, shared by all rules scanning it.

    Checking ~400 needles with ``in`` would cost more than all the regexes together. So a
    needle that starts like a word is first checked by its 3-letter head against the heads
    of the text's words (a set lookup), and only then confirmed with ``in`` and located
    with ``str.find``, each at most once per text. Word needles are written to start a
    word in every match; the tests check the windowed search against full scans.
    """

    __slots__ = ("_contains", "_positions", "haystack", "heads")

    def __init__(self, haystack: str) -> None:
        self.haystack = haystack
        self.heads = frozenset(w[:3] for w in set(_WORD_RE.findall(haystack)))
        self._contains: dict[str, bool] = {}
        self._positions: dict[str, list[int]] = {}

    def windows(self, rule: Rule) -> list[tuple[int, int]]:
        """Merged search windows around the rule's needles; empty if none occurs."""
        haystack, heads, contains = self.haystack, self.heads, self._contains
        present = []
        for needle, head in rule.words:
            if head in heads:
                found = contains.get(needle)
                if found is None:
                    found = contains[needle] = needle in haystack
                if found:
                    present.append(needle)
        for needle in rule.raws:
            found = contains.get(needle)
            if found is None:
                found = contains[needle] = needle in haystack
            if found:
                present.append(needle)
        if not present:
            return []
        hits: list[int] = []
        for needle in present:
            hits.extend(self._locate(needle))
        size = len(haystack)
        if len(hits) > _MAX_WINDOWS:
            return [(0, size)]
        hits.sort()
        back, forward = rule.back, rule.forward
        merged: list[tuple[int, int]] = []
        for at in hits:
            start, end = max(0, at - back), min(size, at + forward)
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    def _locate(self, needle: str) -> list[int]:
        found = self._positions.get(needle)
        if found is None:
            found = []
            at = self.haystack.find(needle)
            while at != -1 and len(found) <= _MAX_WINDOWS:
                found.append(at)
                at = self.haystack.find(needle, at + 1)
            self._positions[needle] = found
        return found


def _search(rule: Rule, index: NeedleIndex) -> re.Match[str] | None:
    haystack = index.haystack
    if rule.requires and not any(r in haystack for r in rule.requires):
        return None
    if not rule.needles:
        return rule.pattern.search(haystack)
    for start, end in index.windows(rule):
        m = rule.pattern.search(haystack, start, end)
        if m is not None:
            return m
    return None


def search(rule: Rule, haystack: str) -> re.Match[str] | None:
    """The rule's first match in ``haystack`` (lower-cased unless the rule is case-sensitive)."""
    return _search(rule, NeedleIndex(haystack))


def evaluate(
    text: str,
    source: Source,
    *,
    lowered: str | None = None,
    rules: tuple[Rule, ...] = RULES,
    layer: Layer = "rules",
    boost: float = 0.0,
) -> list[Match]:
    """Run every applicable rule on ``text``; return one :class:`Match` per rule that fired."""
    low = text.lower() if lowered is None else lowered
    lowered_index = NeedleIndex(low)
    exact_index: NeedleIndex | None = None
    heads = lowered_index.heads
    user = source == "user"
    matches: list[Match] = []
    for r in rules:
        weight = r.user if user else r.document
        if weight <= 0.0:
            continue
        if r.case_sensitive:
            if exact_index is None:
                exact_index = NeedleIndex(text)
            index = exact_index
        else:
            # no word needle's head in the text and no other needles: nothing to look for
            if r.needles and not r.raws and r.heads.isdisjoint(heads):
                continue
            index = lowered_index
        haystack = index.haystack
        m = _search(r, index)
        if m is None:
            continue
        if r.context is not None:
            window = haystack[max(0, m.start() - _CONTEXT_WINDOW) : m.end() + _CONTEXT_WINDOW]
            if r.context.search(window) is None:
                continue
        matches.append(
            Match(
                rule_id=r.id,
                layer=layer,
                weight=min(0.99, round(weight + boost, 4)),
                # lower() can change lengths (rare); then quote the lowered text
                excerpt=excerpt(text if len(text) == len(low) else haystack, m.start(), m.end()),
            )
        )
    return matches

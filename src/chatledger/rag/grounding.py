"""Groundedness: how much of an answer the retrieved passages support.

Method ``overlap-v1`` (deterministic, no model; recorded with each score so a later method
can coexist with it in the ledger):

1. Citation markers written after a sentence's final punctuation ("... days. [1]") are moved
   before it, then the answer is split into sentences; each sentence keeps the passage
   numbers it cites. Sentences made only of stop words and pleasantries ("Sure!", "Hope
   this helps!") claim nothing and are skipped.
2. A sentence's support by a passage is the share of the sentence's content terms (stemmed,
   stop words removed) found in the passage, averaged with the share of its term bigrams
   found there (rewarding wording taken from the passage, not just shared vocabulary).
   With fewer than two terms, the unigram share alone.
3. A sentence that cites valid passages is scored against those passages only, so a
   citation pointing at the wrong passage shows up as low support. One citing only numbers
   that name no passage scores 0. An uncited sentence is scored against its best passage
   (and counted in ``uncited_sentences``).
4. The answer's score is the mean of sentence scores weighted by their number of content
   terms; an answer that claims nothing (or the "I don't know" answer) scores 1.0.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from chatledger.rag.prompting import citation_numbers, parse_citations, strip_citations
from chatledger.rag.providers import ContextPassage
from chatledger.rag.tokens import content_terms, split_sentences

METHOD = "overlap-v1"
SUPPORTED_THRESHOLD = 0.5  # a sentence at or above this counts as supported
# Stemmed words of conversational padding: a sentence holding only these claims nothing.
PLEASANTRIES = frozenset(
    {"sure", "certainly", "absolutely", "course", "hope", "help", "glad", "happy", "great"}
    | {"thank", "thanks", "welcome", "question", "anyth", "else", "feel", "free", "ask"}
    | {"let", "know", "hello", "hi", "okay", "ok"}
)

# "... 14 days. [1][2]" -> "... 14 days [1][2]." so the marker stays with its sentence.
_TRAILING_MARKERS = re.compile(r"([.!?]+)((?:\s*\[[\d\s,;\-–]+\](?!\())+)")


@dataclass(frozen=True, slots=True)
class SentenceSupport:
    sentence: str
    score: float
    cited: tuple[int, ...]  # passage numbers this sentence cites (valid or not)
    best_passage: int | None  # the passage that supports it best, if any supports it


@dataclass(frozen=True, slots=True)
class Groundedness:
    score: float
    sentences: tuple[SentenceSupport, ...]
    supported_sentences: int
    uncited_sentences: int
    cited_chunk_ids: tuple[str, ...]
    invalid_citations: tuple[int, ...]
    method: str = METHOD


def _bigrams(terms: Sequence[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(terms))


@dataclass(frozen=True, slots=True)
class _PassageTerms:
    number: int
    unigrams: frozenset[str]
    bigrams: frozenset[tuple[str, str]]


def _support(terms: list[str], passage: _PassageTerms) -> float:
    unigrams = set(terms)
    share = len(unigrams & passage.unigrams) / len(unigrams)
    bigrams = _bigrams(terms)
    if not bigrams:
        return share
    return (share + len(bigrams & passage.bigrams) / len(bigrams)) / 2


def assess(
    answer: str, passages: Sequence[ContextPassage], *, unanswered: bool = False
) -> Groundedness:
    """Score ``answer`` against the passages it was given (see the module docstring)."""
    citations = parse_citations(answer, passages)
    if unanswered:
        return Groundedness(1.0, (), 0, 0, citations.chunk_ids, citations.invalid)
    indexed = [
        _PassageTerms(p.number, frozenset(terms), frozenset(_bigrams(terms)))
        for p in passages
        for terms in [content_terms(p.text)]
    ]
    by_number = {p.number: p for p in indexed}
    results: list[SentenceSupport] = []
    weights: list[int] = []
    uncited = 0
    for sentence in split_sentences(_TRAILING_MARKERS.sub(r"\2\1", answer)):
        cited = tuple(dict.fromkeys(citation_numbers(sentence)))
        plain = strip_citations(sentence)
        terms = content_terms(plain)
        if not set(terms) - PLEASANTRIES:
            continue
        if cited:
            candidates = [by_number[n] for n in cited if n in by_number]
        else:
            candidates = indexed
            uncited += 1
        scored = [(_support(terms, p), p.number) for p in candidates]
        best_score, best = max(scored, key=lambda s: (s[0], -s[1]), default=(0.0, None))
        results.append(
            SentenceSupport(plain, round(best_score, 4), cited, best if best_score else None)
        )
        weights.append(len(terms))
    if not results:
        score = 1.0
    else:
        score = sum(w * r.score for w, r in zip(weights, results, strict=True)) / sum(weights)
    return Groundedness(
        score=round(score, 4),
        sentences=tuple(results),
        supported_sentences=sum(r.score >= SUPPORTED_THRESHOLD for r in results),
        uncited_sentences=uncited,
        cited_chunk_ids=citations.chunk_ids,
        invalid_citations=citations.invalid,
    )

"""The built-in offline responder: a cited, extractive answer with no model server.

It answers from the retrieved passages only, by quoting the sentences most relevant to the
question and citing each as ``[n]`` (the passage numbers of the prompt). When no passage
reaches ``min_score``, or no sentence shares a word with the question, it gives the fixed
:data:`UNANSWERED_TEXT` and flags the completion ``unanswered=True``, so the platform
records an unanswered question instead of guessing.

Sentence choice is deterministic: a sentence's relevance is the share of the question's
content terms it contains (question filler such as "how long does it take" aside), plus a
small bonus from its passage's retrieval score; rank and position break ties. The best
sentence is always taken; further ones only if they bring question terms not yet covered,
are at least half as relevant, and are not near-duplicates: concise beats exhaustive.
The chosen sentences are shown in retrieval order, then document order.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass

from chatledger.rag.providers import (
    Completion,
    CompletionRequest,
    ContextPassage,
    StreamDone,
    StreamEvent,
    TextDelta,
)
from chatledger.rag.tokens import (
    content_terms,
    estimate_chat_tokens,
    estimate_tokens,
    split_sentences,
    term_set,
)

UNANSWERED_TEXT = "I don't know. The available documents do not answer this question."

DEFAULT_MIN_SCORE = 0.2
DEFAULT_MAX_SENTENCES = 3
_MAX_SENTENCE_WORDS = 80  # longer "sentences" are unsplit tables or lists: poor quotes
_NEAR_DUPLICATE = 0.8  # Jaccard similarity of term sets above which a sentence repeats one
# Words that shape a question rather than name its subject ("how long does it take").
QUESTION_FILLER = frozenset(
    {"long", "much", "many", "take", "get", "got", "need", "want", "know", "tell", "please"}
    | {"like", "way", "thing", "someth", "anyth", "possible", "able", "ok", "okay", "hi", "hello"}
)
_LIST_MARKER = re.compile(r"^(?:#{1,6}|[-*•]|\d{1,3}[.)])\s+")
_FINAL_PUNCT = re.compile(r"^(.*?)([.!?]+[\"'”’)\]]*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class _Candidate:
    passage: ContextPassage
    rank: int  # position of the passage in retrieval order
    position: int  # position of the sentence in its passage
    text: str
    terms: frozenset[str]
    relevance: float


def _cite(sentence: str, number: int) -> str:
    """'Refunds take 14 days.' -> 'Refunds take 14 days [1].'"""
    match = _FINAL_PUNCT.match(sentence)
    if match:
        return f"{match.group(1).rstrip()} [{number}]{match.group(2)}"
    return f"{sentence} [{number}]."


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


class OfflineResponder:
    """A :class:`~chatledger.rag.providers.Provider` that needs no model server."""

    name = "offline"

    def __init__(
        self,
        *,
        min_score: float = DEFAULT_MIN_SCORE,
        max_sentences: int = DEFAULT_MAX_SENTENCES,
        model: str = "extractive-v1",
    ) -> None:
        self.min_score = min_score
        self.max_sentences = max(1, max_sentences)
        self.model = model

    def __repr__(self) -> str:
        return f"OfflineResponder(min_score={self.min_score}, model={self.model!r})"

    def close(self) -> None:
        """Nothing to release; present to satisfy the Provider protocol."""

    def compose(self, question: str, passages: Sequence[ContextPassage]) -> tuple[str, bool]:
        """The answer text and whether it is the "I don't know" answer."""
        relevant = [p for p in passages if p.score >= self.min_score]
        wanted = (term_set(question) - QUESTION_FILLER) or term_set(question)
        if not relevant or not wanted:
            return UNANSWERED_TEXT, True
        candidates = self._candidates(relevant, wanted)
        if not candidates:
            return UNANSWERED_TEXT, True
        chosen = self._choose(candidates, wanted)
        chosen.sort(key=lambda c: (c.rank, c.position))
        return " ".join(_cite(c.text, c.passage.number) for c in chosen), False

    def _candidates(
        self, passages: Sequence[ContextPassage], wanted: frozenset[str]
    ) -> list[_Candidate]:
        found: list[_Candidate] = []
        for rank, passage in enumerate(passages):
            for position, raw in enumerate(split_sentences(passage.text)):
                text = _LIST_MARKER.sub("", raw).strip()
                if not text or raw.startswith("#") or len(text.split()) > _MAX_SENTENCE_WORDS:
                    continue
                terms = frozenset(content_terms(text))
                coverage = len(terms & wanted) / len(wanted)
                if coverage == 0:
                    continue
                relevance = coverage + 0.1 * passage.score
                found.append(_Candidate(passage, rank, position, text, terms, relevance))
        found.sort(key=lambda c: (-c.relevance, c.rank, c.position))
        return found

    def _choose(self, ranked: list[_Candidate], wanted: frozenset[str]) -> list[_Candidate]:
        best = ranked[0]
        chosen = [best]
        covered = best.terms & wanted
        for cand in ranked[1:]:
            if len(chosen) == self.max_sentences:
                break
            if any(_jaccard(cand.terms, c.terms) >= _NEAR_DUPLICATE for c in chosen):
                continue
            adds_terms = bool((cand.terms & wanted) - covered)
            if adds_terms and cand.relevance >= 0.5 * best.relevance:
                chosen.append(cand)
                covered |= cand.terms & wanted
        return chosen

    def complete(self, request: CompletionRequest) -> Completion:
        started = time.perf_counter()
        question = request.question or next(
            (m.content for m in reversed(request.messages) if m.role == "user"), ""
        )
        text, unanswered = self.compose(question, request.passages)
        if request.messages:
            input_tokens = estimate_chat_tokens(m.content for m in request.messages)
        else:
            input_tokens = estimate_chat_tokens([question, *(p.text for p in request.passages)])
        return Completion(
            text=text,
            provider=self.name,
            model=self.model,
            input_tokens=input_tokens,
            output_tokens=estimate_tokens(text),
            usage_source="estimated",
            finish_reason="stop",
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            unanswered=unanswered,
        )

    def stream(self, request: CompletionRequest) -> Generator[StreamEvent, None, None]:
        """The same answer as :meth:`complete`, delivered word by word."""
        completion = self.complete(request)
        for piece in re.findall(r"\S+\s*", completion.text):
            yield TextDelta(piece)
        yield StreamDone(completion)

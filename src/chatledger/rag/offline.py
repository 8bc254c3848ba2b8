"""The built-in offline responder: a cited, extractive answer with no model server.

It answers from the retrieved passages only, by quoting the sentences most relevant to the
question and citing each as ``[n]`` (the passage numbers of the prompt). When no passage
reaches ``min_score``, or no sentence shares a word with the question, it gives the fixed
:data:`UNANSWERED_TEXT` and flags the completion ``unanswered=True``, so the platform
records an unanswered question instead of guessing.

Headings are context, not answers. A chunk keeps its heading path (``passage.heading``), and
plain-text documents carry theirs inline: a short line standing alone between blank lines,
without a final full stop (``Resetting your password``), or a Markdown ``#`` line. Such a line
is never quoted when its passage has body text; instead it tells what the sentences under it
are about. A sentence that only repeats the question's own words ("Turn on two-factor
authentication.") answers nothing and is quoted only when nothing else matches.

Sentence choice is deterministic: a sentence must share a content term with the question
(question filler such as "how long does it take" aside); its relevance is the share of the
question's terms found in it or in the headings it stands under, a small bonus when such a
heading asks the question the same way ("How to reset your password" for "How do I reset my
password?"), and a small bonus from its passage's retrieval score; its own share of the
terms, rank and position break ties. The best sentence is always taken; further ones only if
they bring question terms not yet covered, are at least half as relevant, and are not
near-duplicates: concise beats exhaustive. When the best sentence is a step of a numbered
list, or owes part of its relevance to its heading, the sentences that follow it in its
section complete the answer (up to ``max_sentences``): a procedure is quoted as its steps.
The chosen sentences are shown in retrieval order, then document order.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace

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
    words,
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
_ORDERED_ITEM = re.compile(r"^\d{1,3}[.)]\s+")
_BARE_MARKER = re.compile(r"^(?:[-*•]|\d{1,3}[.)])$")
_MARKDOWN_HEADING = re.compile(r"^\s*#{1,6}\s+")
_FINAL_PUNCT = re.compile(r"^(.*?)([.!?]+[\"'”’)\]]*)$", re.DOTALL)
# A line that ends a sentence or leads into what follows is prose, not a heading.
_PROSE_END = re.compile(r"[.!?:;,…][\"'”’)\]]*$")
_HEADING_MAX_WORDS = 12
# Interrogatives a heading may share with a question ("How to ..." for "How do I ...").
_INTERROGATIVES = frozenset({"how", "what", "why", "when", "where", "who", "which"})
_HEADING_WEIGHT = 0.5  # a question term found only in a sentence's headings
_ASKS_WEIGHT = 0.5  # per share of the question's terms in a heading that asks it alike


@dataclass(frozen=True, slots=True)
class _Sentence:
    """A sentence of a passage with the headings it stands under."""

    position: int  # position of the sentence in its passage
    section: int  # the section of the passage (split at inline headings) it belongs to
    raw: str  # as split, list marker included
    text: str  # list marker removed
    heading: str  # the inline heading above it ("" if none)
    is_heading: bool  # the sentence is itself a heading line


@dataclass(frozen=True, slots=True)
class _Candidate:
    passage: ContextPassage
    rank: int  # position of the passage in retrieval order
    position: int  # position of the sentence in its passage
    text: str
    terms: frozenset[str]  # the sentence's own content terms
    relevance: float
    own: float  # share of the question's terms in the sentence itself
    section: int
    step: bool  # an item of a numbered list
    via_heading: bool  # its heading supplies question terms the sentence lacks


def _cite(sentence: str, number: int) -> str:
    """'Refunds take 14 days.' -> 'Refunds take 14 days [1].'"""
    match = _FINAL_PUNCT.match(sentence)
    if match:
        return f"{match.group(1).rstrip()} [{number}]{match.group(2)}"
    return f"{sentence} [{number}]."


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _is_heading_line(lines: Sequence[str], i: int) -> bool:
    """A Markdown heading, or a short line standing alone between blank lines (or the ends
    of the passage) that starts with a capital and does not end like a sentence."""
    line = lines[i].strip()
    if not line:
        return False
    if _MARKDOWN_HEADING.match(line):
        return True
    alone = (i == 0 or not lines[i - 1].strip()) and (
        i + 1 == len(lines) or not lines[i + 1].strip()
    )
    if not alone or _LIST_MARKER.match(line) or "|" in line or _PROSE_END.search(line):
        return False
    if len(line.split()) > _HEADING_MAX_WORDS:
        return False
    first = next((ch for ch in line if ch.isalpha()), "")
    return first.isupper()


def _sentences(text: str) -> list[_Sentence]:
    """The passage's sentences in order, its inline headings marked and attached."""
    lines = text.split("\n")
    sections: list[tuple[str, str, list[str]]] = [("", "", [])]  # line, heading, body
    for i, line in enumerate(lines):
        if _is_heading_line(lines, i):
            sections.append((line.strip(), _MARKDOWN_HEADING.sub("", line).strip(), []))
        else:
            sections[-1][2].append(line)
    out: list[_Sentence] = []
    for number, (line, heading, body) in enumerate(sections):
        if heading:
            out.append(_Sentence(len(out), number, line, heading, "", True))
        marker = ""
        for raw in split_sentences("\n".join(body)):
            if _BARE_MARKER.match(raw):  # "2." split from its item: it belongs to the next
                marker = raw + " "
                continue
            raw, marker = marker + raw, ""
            text = _LIST_MARKER.sub("", raw).strip()
            if text:
                out.append(_Sentence(len(out), number, raw, text, heading, False))
    return out


def _asks_alike(question: str, heading: str) -> bool:
    """The heading starts with the question's interrogative ("How to ..." / "How do I ...")."""
    asked, head = words(question)[:1], words(heading)[:1]
    return bool(asked) and asked == head and asked[0] in _INTERROGATIVES


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
        parsed = [(p, _sentences(p.text)) for p in relevant]
        candidates = self._candidates(question, parsed, wanted)
        if not candidates:
            return UNANSWERED_TEXT, True
        chosen = self._choose(candidates, wanted)
        self._complete_section(chosen, parsed)
        chosen.sort(key=lambda c: (c.rank, c.position))
        return " ".join(_cite(c.text, c.passage.number) for c in chosen), False

    def _candidates(
        self,
        question: str,
        parsed: Sequence[tuple[ContextPassage, list[_Sentence]]],
        wanted: frozenset[str],
    ) -> list[_Candidate]:
        asked = term_set(question)
        answers: list[_Candidate] = []  # body sentences that say more than the question
        labels: list[_Candidate] = []  # headings, and sentences that only echo the question
        for rank, (passage, sentences) in enumerate(parsed):
            has_body = any(not s.is_heading for s in sentences)
            path = frozenset(content_terms(passage.heading))
            for sentence in sentences:
                text = sentence.text
                if sentence.is_heading and (has_body or _MARKDOWN_HEADING.match(sentence.raw)):
                    continue
                if len(text.split()) > _MAX_SENTENCE_WORDS:
                    continue
                terms = frozenset(content_terms(text))
                own = len(terms & wanted) / len(wanted)
                if own == 0:
                    continue
                heading = sentence.heading or passage.heading.rsplit(">", 1)[-1].strip()
                context = path | frozenset(content_terms(sentence.heading))
                coverage = len((terms | context) & wanted) / len(wanted)
                # Terms found only in a heading count half: the sentence is about them, but
                # does not say them; a heading that asks the question counts more.
                relevance = own + _HEADING_WEIGHT * (coverage - own) + 0.1 * passage.score
                if heading and _asks_alike(question, heading):
                    relevance += _ASKS_WEIGHT * len(context & wanted) / len(wanted)
                cand = _Candidate(
                    passage,
                    rank,
                    sentence.position,
                    text,
                    terms,
                    relevance,
                    own,
                    sentence.section,
                    bool(_ORDERED_ITEM.match(sentence.raw)),
                    coverage > own,
                )
                echo = terms <= asked
                (labels if sentence.is_heading or echo else answers).append(cand)
        found = answers or labels
        found.sort(key=lambda c: (-c.relevance, -c.own, c.rank, c.position))
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

    def _complete_section(
        self,
        chosen: list[_Candidate],
        parsed: Sequence[tuple[ContextPassage, list[_Sentence]]],
    ) -> None:
        """A step of a procedure, or a sentence that answers through its heading, is followed
        by the rest of its section, as far as ``max_sentences`` allows."""
        best = chosen[0]
        if not (best.step or best.via_heading):
            return
        taken = {(c.rank, c.position) for c in chosen}
        for sentence in parsed[best.rank][1][best.position + 1 :]:
            if len(chosen) >= self.max_sentences or sentence.section != best.section:
                break
            if sentence.is_heading or len(sentence.text.split()) > _MAX_SENTENCE_WORDS:
                continue
            if (best.rank, sentence.position) in taken:
                continue
            terms = frozenset(content_terms(sentence.text))
            if any(_jaccard(terms, c.terms) >= _NEAR_DUPLICATE for c in chosen):
                continue
            chosen.append(
                replace(
                    best,
                    position=sentence.position,
                    text=sentence.text,
                    terms=terms,
                    step=bool(_ORDERED_ITEM.match(sentence.raw)),
                )
            )

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

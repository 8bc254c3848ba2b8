"""The offline responder: cited extractive answers, and "I don't know" when it must."""

from __future__ import annotations

import sqlite3

from chatledger.rag import grounding
from chatledger.rag.index import SqliteIndex
from chatledger.rag.offline import UNANSWERED_TEXT, OfflineResponder
from chatledger.rag.prompting import build_request, parse_citations
from chatledger.rag.providers import (
    CompletionRequest,
    ContextPassage,
    StreamDone,
    TextDelta,
)
from chatledger.rag.tokens import estimate_tokens

BOT = "bot-1"  # the chatbot of the `shop` fixture
RESPONDER = OfflineResponder()


def ask(conn: sqlite3.Connection, question: str) -> tuple[CompletionRequest, str, bool]:
    hits = SqliteIndex().search(conn, BOT, question, 4)
    request = build_request(system_prompt="You help shoppers.", hits=hits, question=question)
    completion = RESPONDER.complete(request)
    return request, completion.text, completion.unanswered


def test_answers_with_a_cited_sentence_from_the_best_passage(shop: sqlite3.Connection) -> None:
    request, text, unanswered = ask(shop, "How long do refunds take?")
    assert not unanswered
    assert text.startswith("Refunds are issued within 14 days of receiving the returned item [1]")
    citations = parse_citations(text, request.passages)
    assert citations.chunk_ids[0] == "returns-0"
    assert citations.invalid == ()


def test_combines_passages_for_a_two_part_question(shop: sqlite3.Connection) -> None:
    request, text, _ = ask(shop, "What does express shipping cost, and how do I reset my password?")
    assert parse_citations(text, request.passages).chunk_ids == ("shipping-0", "accounts-0")
    assert text == (
        "Express shipping costs 9 euros and arrives the next business day [1]. "
        "To reset your password, open the login page and choose 'Forgot password' [2]."
    )


def test_prefers_a_concise_answer(shop: sqlite3.Connection) -> None:
    # "how long ... take" is question filler: the refund sentence alone answers it.
    _, text, _ = ask(shop, "How long do refunds take?")
    assert text == "Refunds are issued within 14 days of receiving the returned item [1]."


def test_its_answers_are_fully_grounded(shop: sqlite3.Connection) -> None:
    for question in ("How long do refunds take?", "Is there a warranty on espresso machines?"):
        request, text, _ = ask(shop, question)
        assert grounding.assess(text, request.passages).score == 1.0


def test_says_it_does_not_know_without_relevant_passages(shop: sqlite3.Connection) -> None:
    request, text, unanswered = ask(shop, "What is the capital of Mongolia?")
    assert request.passages == ()
    assert (text, unanswered) == (UNANSWERED_TEXT, True)


def test_weak_passages_are_not_used() -> None:
    weak = ContextPassage(1, "c1", "d", 1, "Refunds take 14 days.", score=0.05)
    request = CompletionRequest(messages=(), question="How long do refunds take?", passages=(weak,))
    completion = OfflineResponder(min_score=0.2).complete(request)
    assert completion.unanswered
    assert completion.text == UNANSWERED_TEXT
    assert OfflineResponder(min_score=0.0).complete(request).text == "Refunds take 14 days [1]."


def test_no_shared_word_means_no_answer() -> None:
    passage = ContextPassage(1, "c1", "d", 1, "Shipping is free.", score=0.9)
    request = CompletionRequest(messages=(), question="refund duration?", passages=(passage,))
    assert RESPONDER.complete(request).unanswered


def test_completion_metadata_is_estimated_usage(shop: sqlite3.Connection) -> None:
    hits = SqliteIndex().search(shop, BOT, "warranty", 3)
    request = build_request(system_prompt="", hits=hits, question="warranty?")
    completion = RESPONDER.complete(request)
    assert completion.provider == "offline"
    assert completion.model == "extractive-v1"
    assert completion.usage_source == "estimated"
    assert completion.output_tokens == estimate_tokens(completion.text)
    assert completion.input_tokens > completion.output_tokens
    assert completion.finish_reason == "stop"


def test_question_falls_back_to_the_last_user_message(shop: sqlite3.Connection) -> None:
    hits = SqliteIndex().search(shop, BOT, "warranty", 3)
    request = build_request(system_prompt="", hits=hits, question="What is the warranty?")
    bare = CompletionRequest(messages=request.messages, passages=request.passages)
    # The last user message holds the context too; the answer must still cite the warranty.
    assert "[1]" in RESPONDER.complete(bare).text


def test_stream_delivers_the_same_answer(shop: sqlite3.Connection) -> None:
    request, text, _ = ask(shop, "How long do refunds take?")
    events = list(RESPONDER.stream(request))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == text
    assert isinstance(events[-1], StreamDone)
    assert events[-1].completion.text == text


def test_answers_are_deterministic(shop: sqlite3.Connection) -> None:
    assert ask(shop, "international customs fees") == ask(shop, "international customs fees")


def test_long_list_passages_and_duplicates() -> None:
    text = (
        "# Fees\n"
        "- Express shipping costs 9 euros.\n"
        "- Express shipping costs 9 euros.\n"
        "- Standard shipping is free."
    )
    passage = ContextPassage(1, "c1", "d", 1, text, score=0.9)
    request = CompletionRequest(messages=(), question="express shipping cost", passages=(passage,))
    answer = RESPONDER.complete(request).text
    assert answer.startswith("Express shipping costs 9 euros [1].")
    assert answer.count("Express shipping costs 9 euros") == 1
    assert "#" not in answer
    assert "- " not in answer

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


# A plain-text article keeps its headings inline (chunks keep them, see rag/chunking.py).
RESET_ARTICLE = """Resetting your password

If you have forgotten your Kestrel Vault password, you can set a new one yourself in a few
minutes.

How to reset your password

1. On the sign-in page, select "Forgot password?".
2. Enter the email address of your account. We send you an email with a reset link.
3. Open the link and choose a new password. The link can be used once and is valid for
   60 minutes. If it has expired, simply request a new one.

What happens after a reset"""
VAULT = """Your Private Vault passphrase

The Private Vault folder is end-to-end encrypted with its own passphrase. Resetting your
account password does not change or reset the vault passphrase."""


def test_a_title_line_is_context_not_the_answer() -> None:
    passages = (
        ContextPassage(1, "c1", "d1", 1, RESET_ARTICLE, score=0.91),
        ContextPassage(2, "c2", "d1", 1, VAULT, score=0.77),
    )
    request = CompletionRequest(
        messages=(), question="How do I reset my password?", passages=passages
    )
    completion = RESPONDER.complete(request)
    assert not completion.unanswered
    # Not the title ("Resetting your password [1].") nor the vault sentence that happens to
    # hold both words: the steps under the heading that asks the question.
    assert completion.text == (
        'On the sign-in page, select "Forgot password?" [1]. '
        "Enter the email address of your account [1]. "
        "We send you an email with a reset link [1]."
    )
    assert grounding.assess(completion.text, passages).score == 1.0


def test_headings_are_never_quoted_when_the_passage_has_body_text() -> None:
    for question in ("What happens after a reset?", "resetting password", "reset"):
        request = CompletionRequest(
            messages=(),
            question=question,
            passages=(ContextPassage(1, "c1", "d1", 1, RESET_ARTICLE, score=0.9),),
        )
        text = RESPONDER.complete(request).text
        for heading in ("Resetting your password [", "How to reset your password [", "reset ["):
            assert heading not in text, (question, text)
    # A passage that is nothing but a heading may still be quoted.
    alone = ContextPassage(1, "c1", "d1", 1, "Express shipping costs", score=0.9)
    request = CompletionRequest(messages=(), question="express shipping", passages=(alone,))
    assert RESPONDER.complete(request).text == "Express shipping costs [1]."


def test_a_sentence_that_only_echoes_the_question_is_not_the_answer() -> None:
    steps = (
        "1. Use a unique password of at least 12 characters.\n"
        "2. Turn on two-factor authentication.\n"
        "3. Review your devices and sessions regularly."
    )
    how = (
        "1. Go to Settings → Security → Two-factor authentication and select Turn on.\n"
        "2. Choose a method and follow the instructions. For an authenticator app, scan the "
        "QR code.\n"
        "3. Save your recovery codes."
    )
    passages = (
        ContextPassage(1, "c1", "d1", 1, steps, "Account security > Recommended steps", None, 0.83),
        ContextPassage(
            2, "c2", "d2", 1, how, "Two-factor authentication > Turning on 2FA", None, 0.8
        ),
    )
    question = "How do I turn on two-factor authentication?"
    request = CompletionRequest(messages=(), question=question, passages=passages)
    text = RESPONDER.complete(request).text
    # The procedure, step by step, rather than "Turn on two-factor authentication [1]."
    assert text == (
        "Go to Settings → Security → Two-factor authentication and select Turn on [2]. "
        "Choose a method and follow the instructions [2]. "
        "For an authenticator app, scan the QR code [2]."
    )

"""Words, stems, sentences and the deterministic token estimator."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chatledger.rag.tokens import (
    content_terms,
    estimate_chat_tokens,
    estimate_tokens,
    split_sentences,
    stem,
    term_set,
    words,
)


def test_words_are_normalised() -> None:
    assert words("Ｒｅｆｕｎｄ policy_v2, CAFÉ!") == ["refund", "policy", "v2", "café"]


def test_light_stemming_meets_inflections() -> None:
    pairs = [
        ("refunds", "refund"),
        ("policies", "policy"),
        ("processing", "process"),
        ("processed", "process"),
        ("running", "run"),
        ("boxes", "box"),
        ("houses", "house"),
        ("classes", "class"),
    ]
    assert [stem(a) for a, _ in pairs] == [b for _, b in pairs]
    assert stem("this") == "this"
    assert stem("bus") == "bus"
    assert stem("is") == "is"


def test_content_terms_drop_stop_words() -> None:
    assert content_terms("How long do the refunds take?") == ["long", "refund", "take"]
    assert term_set("the who") == frozenset({"the", "who"})


def test_sentence_splitting() -> None:
    text = (
        "# Refunds\nRefunds take 14 days. Dr. Smith approved it, e.g. in March. "
        'J. Doe agrees! "Quoted" start. Prices in 3.5 euros.\n\n- one\n- two'
    )
    assert split_sentences(text) == [
        "# Refunds",
        "Refunds take 14 days.",
        "Dr. Smith approved it, e.g. in March.",
        "J. Doe agrees!",
        '"Quoted" start.',
        "Prices in 3.5 euros.",
        "- one",
        "- two",
    ]


def test_token_estimates() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("hello world") == 2
    assert estimate_tokens("Hello, world!") == 4
    assert estimate_tokens("internationalisation") == 4  # 20 letters / 6, rounded up
    assert estimate_tokens("1234567") == 3  # digit groups of 3
    assert estimate_tokens("東京都") == 3
    assert estimate_tokens("🙂") == 1
    assert estimate_chat_tokens(["hello world"]) == 3 + 2 + 4


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_estimates_are_deterministic_and_additive_over_whitespace(a: str, b: str) -> None:
    assert estimate_tokens(a) == estimate_tokens(a)
    assert estimate_tokens(f"{a} {b}") == estimate_tokens(a) + estimate_tokens(b)

"""Groundedness scores: supported, unsupported, mis-cited and invented citations."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chatledger.rag.grounding import METHOD, assess
from chatledger.rag.providers import ContextPassage

PASSAGES = (
    ContextPassage(
        1, "returns-0", "returns", 1, "Refunds are issued within 14 days of receiving the item."
    ),
    ContextPassage(2, "shipping-0", "shipping", 1, "Express shipping costs 9 euros per order."),
)


def test_an_extractive_cited_answer_is_fully_grounded() -> None:
    result = assess("Refunds are issued within 14 days of receiving the item [1].", PASSAGES)
    assert result.score == 1.0
    assert result.cited_chunk_ids == ("returns-0",)
    assert result.supported_sentences == 1
    assert result.uncited_sentences == 0
    assert result.method == METHOD
    assert result.sentences[0].best_passage == 1


def test_paraphrase_scores_between_copy_and_invention() -> None:
    copy = assess("Refunds are issued within 14 days [1].", PASSAGES).score
    paraphrase = assess("You get your refund in 14 days [1].", PASSAGES).score
    invention = assess("Refunds are paid in bitcoin on the moon [1].", PASSAGES).score
    assert copy == 1.0
    assert invention < paraphrase < copy


def test_unsupported_sentences_lower_the_score() -> None:
    answer = (
        "Express shipping costs 9 euros [2]. "
        "Our founder invented the espresso machine in Milan in 1884 [2]."
    )
    result = assess(answer, PASSAGES)
    assert result.sentences[0].score == 1.0
    assert result.sentences[1].score < 0.2
    assert 0.2 < result.score < 0.6
    assert result.supported_sentences == 1


def test_a_wrong_citation_is_scored_against_the_cited_passage() -> None:
    right = assess("Express shipping costs 9 euros [2].", PASSAGES)
    wrong = assess("Express shipping costs 9 euros [1].", PASSAGES)
    assert right.score == 1.0
    assert wrong.score < 0.3
    assert wrong.cited_chunk_ids == ("returns-0",)


def test_an_invented_citation_number_scores_zero_and_is_reported() -> None:
    result = assess("Express shipping costs 9 euros [7].", PASSAGES)
    assert result.score == 0.0
    assert result.invalid_citations == (7,)
    assert result.cited_chunk_ids == ()


def test_uncited_sentences_are_scored_against_the_best_passage_and_counted() -> None:
    result = assess("Express shipping costs 9 euros.", PASSAGES)
    assert result.score == 1.0
    assert result.uncited_sentences == 1
    assert result.sentences[0].best_passage == 2


def test_markers_after_the_full_stop_stay_with_their_sentence() -> None:
    answer = "Refunds are issued within 14 days. [1] Express shipping costs 9 euros. [2]"
    result = assess(answer, PASSAGES)
    assert [s.cited for s in result.sentences] == [(1,), (2,)]
    assert result.score == 1.0
    assert result.cited_chunk_ids == ("returns-0", "shipping-0")


def test_sentences_that_claim_nothing_are_skipped() -> None:
    result = assess("Sure! Express shipping costs 9 euros [2]. Hope this helps!", PASSAGES)
    assert [s.sentence for s in result.sentences] == ["Express shipping costs 9 euros."]
    assert result.score == 1.0


def test_weighting_by_sentence_length() -> None:
    answer = "Refunds are issued within 14 days of receiving the item [1]. Pigs fly [1]."
    result = assess(answer, PASSAGES)
    # 7 supported terms (refund issu within 14 day receiv item) vs 2 unsupported (pig fly)
    assert result.score == round(7 / 9, 4)


def test_unanswered_and_empty_answers() -> None:
    assert assess("I don't know.", PASSAGES, unanswered=True).score == 1.0
    assert assess("", PASSAGES).score == 1.0
    assert assess("Pigs fly.", ()).score == 0.0


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gets_a_bounded_score(answer: str) -> None:
    result = assess(answer, PASSAGES)
    assert 0.0 <= result.score <= 1.0
    assert all(0.0 <= s.score <= 1.0 for s in result.sentences)

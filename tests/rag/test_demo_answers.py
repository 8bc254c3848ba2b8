"""The demo workspace: its document count is the real one on every start, and the README's
tour questions get a real, cited, extractive answer from the offline responder (not an
article's title)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatledger.config import Settings
from chatledger.demo import demo_documents, ensure_demo
from chatledger.identity.principal import system_principal
from chatledger.platform import Platform
from chatledger.rag.offline import UNANSWERED_TEXT


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    platform = Platform.open(Settings.load(tmp_path_factory.mktemp("demo") / "data"))
    try:
        yield platform
    finally:
        platform.close()


def test_a_restart_counts_the_documents_there_are_now(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path / "data")
    platform = Platform.open(settings)
    try:
        first = ensure_demo(platform)
        assert first.documents == len(demo_documents()) == 20
        operator = system_principal(first.workspace_id)
        upload = platform.documents.upload(
            operator, first.chatbot_id, "new-article.md", b"# New\n\nA new article.\n", None
        )
        assert ensure_demo(platform).documents == 21
    finally:
        platform.close()
    platform = Platform.open(Settings.load(tmp_path / "data"))  # a restart
    try:
        again = ensure_demo(platform)
        assert again.documents == 21
        assert (again.chatbot_id, again.api_key) == (first.chatbot_id, first.api_key)
        platform.documents.delete(system_principal(again.workspace_id), upload.to_json()["id"])
        platform.documents.delete(
            system_principal(again.workspace_id),
            platform.documents.list_documents(
                system_principal(again.workspace_id), again.chatbot_id
            )[0]["id"],
        )
        assert ensure_demo(platform).documents == 19
    finally:
        platform.close()


TOUR = {
    "How do I reset my password?": ['select "Forgot password?"', "reset link"],
    "How do I turn on two-factor authentication?": ["Settings → Security"],
}


@pytest.mark.parametrize("question", sorted(TOUR))
def test_tour_questions_get_a_real_cited_answer(demo: Platform, question: str) -> None:
    info = ensure_demo(demo)
    operator = system_principal(info.workspace_id)
    conv = demo.chat.start(operator, info.chatbot_id, visitor_id="visitor-1")
    answer = demo.chat.send(operator, conv.id, question).answer
    text = answer["text"]
    assert not answer["unanswered"] and text != UNANSWERED_TEXT
    for phrase in TOUR[question]:
        assert phrase in text, text
    # several sentences, each cited, none of them a bare heading
    sentences = re.split(r"(?<=\]\.)\s+", text)
    assert len(sentences) >= 2, text
    assert all(re.search(r"\[\d+\]\.$", s) and len(s.split()) >= 5 for s in sentences), text
    cited = [s for s in answer["sources"] if s["cited"]]
    assert cited and answer["groundedness"] == 1.0
    for heading in ("Resetting your password [", "Turn on two-factor authentication ["):
        assert heading not in text


def test_a_question_the_documents_do_not_answer_is_still_unanswered(demo: Platform) -> None:
    info = ensure_demo(demo)
    operator = system_principal(info.workspace_id)
    conv = demo.chat.start(operator, info.chatbot_id, visitor_id="visitor-2")
    answer = demo.chat.send(operator, conv.id, "Do you offer a student discount?").answer
    assert answer["unanswered"] and answer["text"] == UNANSWERED_TEXT

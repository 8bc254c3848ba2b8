"""Conversation lifecycle at the service level: idle abandonment, model 'I don't know'."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatledger.chat.service import looks_unanswered
from chatledger.config import Settings
from chatledger.events import Actor
from chatledger.identity.principal import Principal, system_principal
from chatledger.platform import Platform


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    p = Platform.open(Settings.load(tmp_path / "data"))
    yield p
    p.close()


@pytest.fixture
def operator(platform: Platform) -> Principal:
    return system_principal(platform.identity.create_workspace("W", Actor("system", "tests")))


def test_idle_conversations_are_abandoned_by_the_system(
    platform: Platform, operator: Principal
) -> None:
    bot = platform.chatbots.create(operator, "Bot", {"idle_timeout_minutes": 10})
    idle = platform.chat.start(operator, bot.id, visitor_id="v1")
    fresh = platform.chat.start(operator, bot.id, visitor_id="v2")
    resolved = platform.chat.start(operator, bot.id, visitor_id="v3")
    platform.chat.update(operator, resolved.id, {"resolution": "resolved"})
    later = datetime.now(UTC) + timedelta(minutes=11)
    # `fresh` was active "just now" from the job's point of view: move it forward
    platform.ledger.transact(
        lambda ctx: (
            ctx.txn.execute(
                "UPDATE conversations SET last_activity_at = ? WHERE id = ?",
                ((later - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), fresh.id),
            ),
            [],
        )
    )
    assert platform.chat.abandon_idle(now=later) == 1
    assert platform.chat.get(operator, idle.id).resolution == "abandoned"
    assert platform.chat.get(operator, idle.id).ended_at is not None
    assert platform.chat.get(operator, fresh.id).resolution == "open"
    assert platform.chat.get(operator, resolved.id).resolution == "resolved"
    ledger = platform.ledger
    events = [
        e
        for e in ledger.entries(0, ledger.size())
        if e.attributes.get("conversation_id") == idle.id
    ]
    resolution = next(e for e in events if e.action == "conversation.resolution")
    assert resolution.actor == {"type": "system", "id": "chatledger"}
    assert resolution.attributes["reason"] == "idle_timeout"
    assert resolution.attributes["set_by"] == "system"
    assert any(e.action == "conversation.end" for e in events)
    assert platform.chat.abandon_idle(now=later) == 0  # idempotent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I don't know; the help centre does not say.", True),
        ("The sources do not cover shipping to Mars.", True),
        ("Refunds take 14 days [1].", False),
    ],
)
def test_model_answers_that_do_not_know_are_unanswered(text: str, expected: bool) -> None:
    assert looks_unanswered(text) is expected

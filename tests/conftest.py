"""Shared fixtures: a real ledger on a temporary SQLite file."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chatledger.config import Settings
from chatledger.events import Actor, Entity, Event
from chatledger.ledger.service import Ledger
from chatledger.runtime import open_ledger

LedgerFactory = Callable[..., Ledger]


def sample_event(i: int, *, subject: str | None = None, size: int = 0) -> Event:
    payload: dict[str, Any] = {"text": f"message number {i}"}
    if size:
        payload["filler"] = "x" * size
    return Event(
        "message.user",
        Actor("anonymous", f"visitor-{i % 7}"),
        Entity("message", f"m{i}"),
        subject=subject,
        attributes={"chatbot_id": "bot-1", "conversation_id": f"c{i % 5}", "n": i},
        payload=payload,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def make_ledger(data_dir: Path) -> Iterator[LedgerFactory]:
    opened: list[Ledger] = []

    def factory(**overrides: Any) -> Ledger:
        settings = Settings.load(data_dir)
        for key, value in overrides.items():
            setattr(settings, key, value)
        ledger = open_ledger(settings)
        opened.append(ledger)
        return ledger

    yield factory
    for ledger in opened:
        with contextlib.suppress(Exception):  # already closed by the test
            ledger.close()


@pytest.fixture
def ledger(make_ledger: LedgerFactory) -> Ledger:
    return make_ledger()

"""Fixtures for the retrieval, provider, offline-responder and groundedness tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from chatledger.rag.index import IndexChunk, SqliteIndex

try:  # tests/rag as a package (tests.rag.fake_openai) or as a rootdir-inserted folder
    from .fake_openai import FakeOpenAI
except ImportError:
    from fake_openai import FakeOpenAI  # type: ignore[no-redef, import-not-found, unused-ignore]

BOT = "bot-1"

# A small corpus about an online shop, one chunk per paragraph (document_id, heading, text).
CORPUS: tuple[tuple[str, str, str], ...] = (
    (
        "returns",
        "Refunds",
        "Refunds are issued within 14 days of receiving the returned item. "
        "The refund goes back to the original payment method.",
    ),
    (
        "returns",
        "Return window",
        "You can return most items within 30 days of delivery. "
        "Items must be unused and in their original packaging.",
    ),
    (
        "shipping",
        "Shipping costs",
        "Standard shipping is free for orders over 50 euros. "
        "Express shipping costs 9 euros and arrives the next business day.",
    ),
    (
        "shipping",
        "International delivery",
        "We ship to most countries in Europe. International orders take 5 to 10 business "
        "days and customs fees are paid by the customer.",
    ),
    (
        "warranty",
        "Warranty",
        "All espresso machines carry a two-year warranty covering manufacturing defects. "
        "The warranty does not cover damage from descaling neglect.",
    ),
    (
        "accounts",
        "Passwords",
        "To reset your password, open the login page and choose 'Forgot password'. "
        "A reset link is emailed to you and expires after one hour.",
    ),
)


def corpus_chunks() -> dict[str, list[IndexChunk]]:
    """CORPUS grouped by document, with stable chunk ids ``<document>-<n>``."""
    grouped: dict[str, list[IndexChunk]] = {}
    for doc, heading, text in CORPUS:
        chunks = grouped.setdefault(doc, [])
        chunks.append(IndexChunk(f"{doc}-{len(chunks)}", text, heading, None, f"sha-{doc}"))
    return grouped


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    SqliteIndex().create_schema(connection)
    yield connection
    connection.close()


@pytest.fixture
def shop(conn: sqlite3.Connection) -> sqlite3.Connection:
    """An index holding CORPUS for chatbot BOT (committed)."""
    index = SqliteIndex()
    for doc, chunks in corpus_chunks().items():
        index.add_chunks(conn, BOT, doc, 1, chunks)
    conn.commit()
    return conn


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.close()

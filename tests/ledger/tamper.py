"""Edits made the way an attacker with file access would: in the SQLite file, around triggers."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from chatledger.ledger import merkle


@contextmanager
def raw_database(path: Path) -> Iterator[sqlite3.Connection]:
    """Open the database file directly and drop every trigger that protects the ledger."""
    conn = sqlite3.connect(path, isolation_level=None)
    triggers = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
    conn.execute("BEGIN")
    for name in triggers:
        conn.execute(f'DROP TRIGGER "{name}"')
    try:
        yield conn
        conn.execute("COMMIT")
    finally:
        conn.close()


def body_of(conn: sqlite3.Connection, seq: int) -> dict[str, object]:
    row = conn.execute("SELECT body FROM ledger_entries WHERE seq = ?", (seq,)).fetchone()
    value: dict[str, object] = orjson.loads(row[0])
    return value


def canonical(value: dict[str, object]) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def leaf_of(conn: sqlite3.Connection, seq: int) -> bytes:
    row = conn.execute("SELECT leaf_hash FROM ledger_entries WHERE seq = ?", (seq,)).fetchone()
    return bytes(row[0])


def rewrite_body(conn: sqlite3.Connection, seq: int, body: bytes, *, update_hash: bool) -> None:
    if update_hash:
        conn.execute(
            "UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE seq = ?",
            (body, merkle.leaf_hash(body), seq),
        )
    else:
        conn.execute("UPDATE ledger_entries SET body = ? WHERE seq = ?", (body, seq))


def rewrite_history(conn: sqlite3.Connection, size: int, changed: int) -> None:
    """Every entry re-hashed and re-linked consistently around a change of entry ``changed``
    (its outcome), and the stored tree nodes dropped: what only MACs and signatures catch."""
    prev = "0" * 64
    for seq in range(size):
        body = body_of(conn, seq)
        if seq == changed:
            body["outcome"] = "failure"
            conn.execute("UPDATE ledger_entries SET outcome = 'failure' WHERE seq = ?", (seq,))
        body["prev"] = prev
        raw = canonical(body)
        rewrite_body(conn, seq, raw, update_hash=True)
        prev = merkle.leaf_hash(raw).hex()
    conn.execute("DELETE FROM ledger_nodes")

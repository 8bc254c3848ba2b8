"""SQLite schema, as numbered migrations; each applies with its record in one transaction.

The SQL lives here (:data:`MIGRATIONS`, extended by other domains with :func:`register`);
Alembic runs it, one revision per version (see :mod:`chatledger.store.migrations`).

The ledger tables refuse UPDATE and DELETE through triggers. Payload rows may be deleted
only after an erasure record names them, and subject keys may only be destroyed (their
wrapped key set to NULL once); everything else about them is as append-only as the ledger.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from chatledger.store.migrations import up_to_date
from chatledger.store.platform_schema import PLATFORM_V1


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str | Callable[[sqlite3.Connection], None]


def _append_only(table: str) -> str:
    return f"""
CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, 'ledger tables are append-only: UPDATE on {table} refused'); END;
CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, 'ledger tables are append-only: DELETE on {table} refused'); END;
"""


LEDGER_V1 = (
    """
CREATE TABLE ledger_entries (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    category TEXT NOT NULL,
    action TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    subject TEXT,
    chatbot_id TEXT,
    conversation_id TEXT,
    body BLOB NOT NULL,
    leaf_hash BLOB NOT NULL,
    mac BLOB NOT NULL
);
CREATE INDEX ledger_entries_entity ON ledger_entries (entity_type, entity_id);
CREATE INDEX ledger_entries_subject ON ledger_entries (subject) WHERE subject IS NOT NULL;
CREATE INDEX ledger_entries_conversation ON ledger_entries (conversation_id)
    WHERE conversation_id IS NOT NULL;
CREATE INDEX ledger_entries_chatbot ON ledger_entries (chatbot_id, seq)
    WHERE chatbot_id IS NOT NULL;
CREATE TABLE ledger_nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE ledger_checkpoints (
    size INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE ledger_payloads (
    seq INTEGER PRIMARY KEY,
    key_ref TEXT NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL
);
CREATE INDEX ledger_payloads_key ON ledger_payloads (key_ref);
CREATE TABLE ledger_payload_erasures (
    seq INTEGER PRIMARY KEY,
    erasure_seq INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE subject_keys (
    key_ref TEXT PRIMARY KEY,
    subject_ref TEXT NOT NULL,
    wrapped BLOB,
    created_at TEXT NOT NULL,
    erased_at TEXT,
    erasure_seq INTEGER
);
CREATE INDEX subject_keys_subject ON subject_keys (subject_ref);
"""
    + _append_only("ledger_entries")
    + _append_only("ledger_nodes")
    + _append_only("ledger_checkpoints")
    + _append_only("ledger_payload_erasures")
    + """
CREATE TRIGGER ledger_payloads_no_update BEFORE UPDATE ON ledger_payloads
BEGIN SELECT RAISE(ABORT, 'ledger tables are append-only: UPDATE on ledger_payloads refused'); END;
CREATE TRIGGER ledger_payloads_delete_only_erased BEFORE DELETE ON ledger_payloads
WHEN NOT EXISTS (SELECT 1 FROM ledger_payload_erasures e WHERE e.seq = OLD.seq)
BEGIN SELECT RAISE(ABORT, 'a payload may be deleted only by a recorded erasure'); END;
CREATE TRIGGER subject_keys_destroy_only BEFORE UPDATE ON subject_keys
WHEN OLD.wrapped IS NULL OR NEW.wrapped IS NOT NULL OR NEW.key_ref IS NOT OLD.key_ref
     OR NEW.subject_ref IS NOT OLD.subject_ref OR NEW.created_at IS NOT OLD.created_at
     OR NEW.erased_at IS NULL OR NEW.erasure_seq IS NULL
BEGIN SELECT RAISE(ABORT, 'a subject key can only be destroyed, once'); END;
CREATE TRIGGER subject_keys_no_delete BEFORE DELETE ON subject_keys
BEGIN SELECT RAISE(ABORT, 'subject keys are destroyed, not deleted'); END;
"""
)


def _retrieval_index(conn: sqlite3.Connection) -> None:
    from chatledger.rag.index import SqliteIndex

    SqliteIndex().create_schema(conn)


def _domain(module: str) -> Callable[[sqlite3.Connection], None]:
    """A migration whose statements live in ``chatledger.store.<module>.SQLITE_SCHEMA``."""

    def apply(conn: sqlite3.Connection) -> None:
        import importlib

        script = importlib.import_module(f"chatledger.store.{module}").SQLITE_SCHEMA
        for statement in _split(script):
            conn.execute(statement)

    return apply


# Every payload row is sealed under its entry's subject key, so a subject's payloads are found
# through ledger_entries' subject index; an index on the random key_ref cost a quarter of the
# writer's insert time. (Only erasure needs that lookup.)
LEAN_PAYLOADS = "DROP INDEX IF EXISTS ledger_payloads_key;"


MIGRATIONS: list[Migration] = [
    Migration(1, "ledger", LEDGER_V1),
    Migration(2, "platform", PLATFORM_V1),
    Migration(3, "retrieval index", _retrieval_index),
    Migration(10, "audit", _domain("schema_audit")),
    Migration(11, "privacy", _domain("schema_privacy")),
    Migration(12, "integrations", _domain("schema_integrations")),
    Migration(13, "lean payload index", LEAN_PAYLOADS),
]


def register(migration: Migration) -> None:
    """Add a migration of another domain (chatbots, identity, ...) in version order."""
    if any(m.version == migration.version for m in MIGRATIONS):
        raise ValueError(f"migration {migration.version} is already registered")
    MIGRATIONS.append(migration)
    MIGRATIONS.sort(key=lambda m: m.version)


def apply_migrations(conn: sqlite3.Connection) -> list[int]:
    """Bring the schema to Alembic's head; return the versions applied.

    Each migration applies with its ``schema_migrations`` row and the move of
    ``alembic_version`` in one transaction (see :mod:`chatledger.store.migrations`). When
    nothing is due this costs one query and imports nothing. ``conn`` is idle; migrations run
    under the file's process lock (the one the store's writers take), so processes starting
    on one file at once migrate it once.
    """
    if _up_to_date(conn):
        return []
    with _process_lock(conn):
        from chatledger.store.migrations.runner import upgrade

        return upgrade(conn, "sqlite")


def _up_to_date(conn: sqlite3.Connection) -> bool:
    try:
        row = conn.execute(
            "SELECT (SELECT group_concat(version_num, ' ') FROM alembic_version), "
            "(SELECT group_concat(version, ' ') FROM schema_migrations)"
        ).fetchone()
    except sqlite3.OperationalError:  # no such table: fresh, or migrated by the old runner
        return False
    revisions = (row[0] or "").split()
    recorded = [int(v) for v in (row[1] or "").split()]
    return up_to_date(revisions, recorded, (m.version for m in MIGRATIONS))


@contextmanager
def _process_lock(conn: sqlite3.Connection) -> Iterator[None]:
    """The store's ``<file>.writelock`` (fcntl), held while migrating; none in memory."""
    row = conn.execute("SELECT file FROM pragma_database_list WHERE name = 'main'").fetchone()
    if not row or not row[0]:
        yield
        return
    fd = os.open(f"{row[0]}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def pending(conn: sqlite3.Connection) -> list[Migration]:
    """Migrations not yet applied (not recorded in ``schema_migrations``)."""
    done = applied_versions(conn)
    return [m for m in MIGRATIONS if m.version not in done]


def applied_versions(conn: sqlite3.Connection) -> set[int]:
    """Versions recorded in ``schema_migrations`` (empty before the first migration)."""
    try:
        return {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}
    except sqlite3.OperationalError:
        if conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone():
            raise
        return set()


def apply_one(conn: sqlite3.Connection, migration: Migration) -> None:
    """Apply one migration and record it, in the caller's transaction (a revision's)."""
    if callable(migration.sql):
        migration.sql(conn)
    else:
        for statement in _split(migration.sql):
            conn.execute(statement)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    conn.execute(
        "INSERT INTO schema_migrations VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ'))",
        (migration.version, migration.name),
    )


def _split(script: str) -> list[str]:
    """Split a script into statements, keeping trigger bodies (BEGIN ... END;) whole."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if not line.strip():
            continue
        current.append(line)
        candidate = "\n".join(current)
        if sqlite3.complete_statement(candidate):
            statements.append(candidate)
            current = []
    if current:
        statements.append("\n".join(current))
    return statements

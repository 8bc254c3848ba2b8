"""SQLite tables of the privacy domain (retention policies, legal holds), applied as migration
11 (see sqlite_schema.py).

Both tables are projections: every change to them commits with its ledger event
(``retention.update``, ``privacy.hold_placed``, ``privacy.hold_released``), so they can be
rebuilt from the ledger. Statements are in the common subset of SQLite and PostgreSQL.
"""

from __future__ import annotations

SQLITE_SCHEMA = """
CREATE TABLE retention_policies (
    scope TEXT NOT NULL,
    rule TEXT NOT NULL,
    days INTEGER,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (scope, rule)
);
CREATE TABLE legal_holds (
    id TEXT PRIMARY KEY,
    workspace_id TEXT,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    reference TEXT,
    placed_at TEXT NOT NULL,
    placed_by TEXT NOT NULL,
    placed_seq INTEGER NOT NULL,
    released_at TEXT,
    released_by TEXT,
    released_seq INTEGER,
    release_reason TEXT
);
CREATE INDEX legal_holds_scope ON legal_holds (scope_type, scope_id);
CREATE INDEX legal_holds_placed ON legal_holds (placed_at, id);
"""
"""``retention_policies.scope`` is ``*`` (every chatbot) or a chatbot id; ``days`` NULL keeps
forever. ``legal_holds.scope_type`` is ``conversation``, ``subject`` or ``chatbot``; for a
subject the ``scope_id`` is the keyed pseudonym (``subj_...``), never the raw id."""

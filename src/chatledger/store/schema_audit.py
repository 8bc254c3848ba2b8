"""SQLite tables of the audit domain (search, text index, SIEM forwarding), applied as one
numbered migration (see sqlite_schema.py) and, for databases created before it, ensured by
:func:`chatledger.audit.textindex.ensure_schema` on first use (every statement is idempotent).

- Indexes on ``ledger_entries`` for search filters (time, action, actor, non-success
  outcomes; a category is searched through the actions it holds). Indexes are not rows: they
  add nothing to the record and change nothing in it; the append-only triggers still guard
  every row. Each costs the write path a little, so there are only these four.
- ``audit_text``: an FTS5 index of message, answer and feedback text, keyed by the entry's seq.
  It is a derived copy of payload plaintext: erased content leaves it at the next catch-up
  (see audit/textindex.py), and compaction then purges its tokens from the index segments.
- ``audit_facets``: actor role and security severity per seq, for fast role/severity filters.
- ``audit_index_state``: how far the indexer has followed the ledger.
- ``audit_forwarder_cursors``: per SIEM forwarder, the last seq the receiver accepted.
"""

from __future__ import annotations

SQLITE_SCHEMA = """
CREATE INDEX IF NOT EXISTS audit_entries_ts ON ledger_entries (ts);
CREATE INDEX IF NOT EXISTS audit_entries_action ON ledger_entries (action);
CREATE INDEX IF NOT EXISTS audit_entries_actor ON ledger_entries (actor_id);
CREATE INDEX IF NOT EXISTS audit_entries_outcome ON ledger_entries (outcome)
    WHERE outcome != 'success';
CREATE INDEX IF NOT EXISTS audit_erasures_by_erasure ON ledger_payload_erasures (erasure_seq);
CREATE INDEX IF NOT EXISTS audit_keys_by_erasure ON subject_keys (erasure_seq)
    WHERE erasure_seq IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS audit_text USING fts5(
    body, tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS audit_facets (
    seq INTEGER PRIMARY KEY,
    role TEXT,
    severity TEXT
);
CREATE INDEX IF NOT EXISTS audit_facets_role ON audit_facets (role) WHERE role IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_facets_severity ON audit_facets (severity)
    WHERE severity IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit_index_state (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_forwarder_cursors (
    name TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_error_at TEXT
);
"""

SCHEMA_OBJECTS = (
    "audit_entries_ts",
    "audit_entries_action",
    "audit_entries_actor",
    "audit_entries_outcome",
    "audit_erasures_by_erasure",
    "audit_keys_by_erasure",
    "audit_text",
    "audit_facets",
    "audit_facets_role",
    "audit_facets_severity",
    "audit_index_state",
    "audit_forwarder_cursors",
)
"""Names the schema creates, to tell cheaply (by reading sqlite_master) whether it is there."""

"""PostgreSQL tables of the audit domain: migration 10, the counterpart of
:mod:`chatledger.store.schema_audit` (SQLite's FTS5 index), listed in
:data:`chatledger.store.postgres_schema.MIGRATIONS`.

- Indexes on ``ledger_entries`` for the search filters (time, action, actor, non-success
  outcomes), each with ``seq`` as trailing column as SQLite's rowid is, and one on
  ``ledger_payload_erasures (erasure_seq)`` for the erasure sweep (``subject_keys`` has its
  own since migration 1). Indexes are not rows: the append-only triggers still guard every
  row. On a large existing ledger they take a while to build and appends wait meanwhile; a
  DBA may build them beforehand under the same names (on the partitioned tables of
  migration 14, per partition: PostgreSQL has no ``CREATE INDEX CONCURRENTLY`` on a
  partitioned parent).
- ``audit_text``: the plaintext of message, answer and feedback entries that are not erased,
  keyed by seq, with its ``tsvector`` (maintained by the indexer, see
  audit/pg_textindex.py) under a GIN index. Derived data: erasure deletes its rows, and
  autovacuum is told to vacuum it after any deletion (threshold 0).
- ``audit_facets``: actor role and security severity per seq.
- ``audit_index_state``: how far the indexer has followed the ledger (rows created here).
- ``audit_forwarder_cursors``: per SIEM forwarder, the last seq the receiver accepted.

The application role must write and delete these rows (indexing, erasure, cursors), and only
these: the migration grants DML on the four tables to every role that may already append to
the ledger (a database set up with ``setup-roles`` and upgraded with ``migrate`` as the owner),
and ``setup-roles`` grants it as for every table of the owner's that is not a ledger table.
"""

from __future__ import annotations

from psycopg import sql

from chatledger.store.postgres_schema import Conn

TABLES = ("audit_text", "audit_facets", "audit_index_state", "audit_forwarder_cursors")
"""The audit domain's own tables: derived data and cursors, DML for the application role."""

SCHEMA = """
CREATE INDEX IF NOT EXISTS audit_entries_ts ON ledger_entries (ts, seq);
CREATE INDEX IF NOT EXISTS audit_entries_action ON ledger_entries (action, seq);
CREATE INDEX IF NOT EXISTS audit_entries_actor ON ledger_entries (actor_id, seq);
CREATE INDEX IF NOT EXISTS audit_entries_outcome ON ledger_entries (outcome, seq)
    WHERE outcome <> 'success';
CREATE INDEX IF NOT EXISTS audit_erasures_by_erasure ON ledger_payload_erasures (erasure_seq);
CREATE TABLE audit_text (
    seq bigint PRIMARY KEY,
    body text NOT NULL,
    tsv tsvector NOT NULL
) WITH (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0);
CREATE INDEX audit_text_tsv ON audit_text USING gin (tsv);
CREATE TABLE audit_facets (
    seq bigint PRIMARY KEY,
    role text,
    severity text
);
CREATE INDEX audit_facets_role ON audit_facets (role, seq) WHERE role IS NOT NULL;
CREATE INDEX audit_facets_severity ON audit_facets (severity, seq) WHERE severity IS NOT NULL;
CREATE TABLE audit_index_state (
    name text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO audit_index_state (name, value)
    VALUES ('text_next_seq', 0), ('erasure_next_seq', 0), ('compact_pending', 0);
CREATE TABLE audit_forwarder_cursors (
    name text PRIMARY KEY,
    last_seq bigint NOT NULL,
    delivered bigint NOT NULL DEFAULT 0,
    updated_at text NOT NULL,
    failures bigint NOT NULL DEFAULT 0,
    last_error text,
    last_error_at text
);
"""

# Roles other than the owner that may append to the ledger: the application roles.
_APPENDERS = """
SELECT DISTINCT pg_get_userbyid(a.grantee)
FROM pg_class c, aclexplode(c.relacl) AS a
WHERE c.oid = 'ledger_entries'::regclass AND a.privilege_type = 'INSERT'
  AND a.grantee <> c.relowner AND a.grantee <> 0
ORDER BY 1
"""


def apply(conn: Conn) -> None:
    conn.execute(SCHEMA.encode())
    for (role,) in conn.execute(_APPENDERS).fetchall():
        for table in TABLES:
            conn.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(
                    sql.Identifier(table), sql.Identifier(role)
                )
            )

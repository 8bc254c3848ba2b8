"""Migration 10: the audit search index (SQLite: indexes, FTS5 text index, facets, cursors).
A no-op on PostgreSQL unless a PostgreSQL migration 10 is registered.

The SQL is version 10 of ``sqlite_schema.MIGRATIONS`` / ``postgres_schema.MIGRATIONS``.
"""

from __future__ import annotations

from chatledger.store.migrations.runner import apply_version

revision = "0010"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_version(10)


def downgrade() -> None:
    raise NotImplementedError("the schema moves forward only")

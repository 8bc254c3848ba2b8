"""Migration 3: the retrieval index (SQLite FTS5; PostgreSQL a tsvector column with a GIN index).

The SQL is version 3 of ``sqlite_schema.MIGRATIONS`` / ``postgres_schema.MIGRATIONS``.
"""

from __future__ import annotations

from chatledger.store.migrations.runner import apply_version

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_version(3)


def downgrade() -> None:
    raise NotImplementedError("the schema moves forward only")

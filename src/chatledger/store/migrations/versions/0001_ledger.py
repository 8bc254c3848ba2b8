"""Migration 1: the ledger's tables and their append-only triggers (on PostgreSQL also the
two SECURITY DEFINER erasure functions).

The SQL is version 1 of ``sqlite_schema.MIGRATIONS`` / ``postgres_schema.MIGRATIONS``.
"""

from __future__ import annotations

from chatledger.store.migrations.runner import apply_version

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_version(1)


def downgrade() -> None:
    raise NotImplementedError("the schema moves forward only")

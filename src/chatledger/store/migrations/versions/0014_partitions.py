"""Migration 14: ``ledger_entries`` and ``ledger_payloads`` range-partitioned by seq, with the
``ledger_partitions`` catalogue (PostgreSQL; see :mod:`chatledger.store.pg_partitions`).
A no-op on SQLite, which has no migration 14.

The SQL is version 14 of ``postgres_schema.MIGRATIONS``.
"""

from __future__ import annotations

from chatledger.store.migrations.runner import apply_version

revision = "0014"
down_revision: str | None = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_version(14)


def downgrade() -> None:
    raise NotImplementedError("the schema moves forward only")

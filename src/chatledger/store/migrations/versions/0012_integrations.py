"""Migration 12: integrations.

The SQL is version 12 of ``sqlite_schema.MIGRATIONS`` / ``postgres_schema.MIGRATIONS``.
"""

from __future__ import annotations

from chatledger.store.migrations.runner import apply_version

revision = "0012"
down_revision: str | None = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_version(12)


def downgrade() -> None:
    raise NotImplementedError("the schema moves forward only")

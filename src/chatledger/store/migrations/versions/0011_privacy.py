"""Migration 11: privacy (retention policies, legal holds).

The SQL is version 11 of ``sqlite_schema.MIGRATIONS`` / ``postgres_schema.MIGRATIONS``.
"""

from __future__ import annotations

from chatledger.store.migrations.runner import apply_version

revision = "0011"
down_revision: str | None = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_version(11)


def downgrade() -> None:
    raise NotImplementedError("the schema moves forward only")

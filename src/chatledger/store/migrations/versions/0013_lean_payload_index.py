"""Migration 13: drop the index on payloads' key reference (erasure finds a subject's payloads
through the entries' subject index).

The SQL is version 13 of ``sqlite_schema.MIGRATIONS`` / ``postgres_schema.MIGRATIONS``.
"""

from __future__ import annotations

from chatledger.store.migrations.runner import apply_version

revision = "0013"
down_revision: str | None = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_version(13)


def downgrade() -> None:
    raise NotImplementedError("the schema moves forward only")

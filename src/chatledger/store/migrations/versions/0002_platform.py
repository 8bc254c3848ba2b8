"""Migration 2: the platform's own tables (workspaces, users, chatbots, documents, ...).

The SQL is version 2 of ``sqlite_schema.MIGRATIONS`` / ``postgres_schema.MIGRATIONS``.
"""

from __future__ import annotations

from chatledger.store.migrations.runner import apply_version

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_version(2)


def downgrade() -> None:
    raise NotImplementedError("the schema moves forward only")

"""The retrieval index for a store's database: FTS5 on SQLite, text search on PostgreSQL."""

from __future__ import annotations

from typing import Any

from chatledger.store.base import Store


def index_for(store: Store) -> Any:
    """A :class:`~chatledger.rag.retrieval.RetrievalIndex` for ``store``'s connections."""
    if store.dialect == "postgresql":
        from chatledger.rag.pg_index import PostgresIndex

        return PostgresIndex()
    from chatledger.rag.index import SqliteIndex

    return SqliteIndex()

"""Tables of the integrations domain (records sent by chatbots built elsewhere), applied as
migration 12 (see sqlite_schema.py). Written in the common subset of SQLite and PostgreSQL.

- ``integration_records``: every accepted record's idempotency key and the seq of the
  ledger event that recorded it, so a record retried after a timeout is stored exactly once
  (the key is scoped to the workspace of the API key that sent it). ``digest`` is a hash of
  the record as first received: the same key sent again with other content is refused.
- ``integration_conversations``: the application's own conversation id beside the ledger's
  conversation id derived from it, and the seq of the ``conversation.start`` event.

Both are projections: the keys and external ids are also inside the ledger entries
(``ingest.key``, ``gen_ai.conversation.id``), so they can be rebuilt from the ledger.
"""

from __future__ import annotations

SQLITE_SCHEMA = """
CREATE TABLE integration_records (
    workspace_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    events INTEGER NOT NULL,
    source TEXT NOT NULL,
    digest TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (workspace_id, idem_key)
);
CREATE TABLE integration_conversations (
    conversation_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    chatbot_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    start_seq INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX integration_conversations_external
    ON integration_conversations (chatbot_id, external_id);
"""

"""Tables of the platform around the ledger: workspaces, identity, chatbots, documents,
conversations. They are projections (conveniences for fast reads); the ledger plus the
content store is the record, and every change to them commits with its ledger event.

The SQL is written once, in the common subset of SQLite and PostgreSQL.
"""

from __future__ import annotations

PLATFORM_V1 = """
CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    disabled_at TEXT,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until TEXT
);
CREATE TABLE memberships (
    user_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (user_id, workspace_id)
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    last_used_at TEXT
);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    role TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE chatbots (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    config_version INTEGER NOT NULL,
    public_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted_at TEXT
);
CREATE INDEX chatbots_workspace ON chatbots (workspace_id, created_at);
CREATE TABLE chatbot_config_versions (
    chatbot_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    config TEXT NOT NULL,
    created_at TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (chatbot_id, version)
);
CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    chatbot_id TEXT NOT NULL,
    name TEXT NOT NULL,
    current_version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted_at TEXT
);
CREATE INDEX documents_chatbot ON documents (chatbot_id, name);
CREATE TABLE document_versions (
    document_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    format TEXT NOT NULL,
    title TEXT NOT NULL,
    page_count INTEGER,
    chunk_count INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (document_id, version)
);
CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    data BLOB,
    created_at TEXT NOT NULL,
    erased_at TEXT
);
CREATE TABLE chunks (
    id TEXT PRIMARY KEY,
    document_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    heading TEXT NOT NULL,
    page INTEGER,
    char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL
);
CREATE INDEX chunks_document ON chunks (document_id, version, idx);
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    chatbot_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    visitor_id TEXT,
    user_id TEXT,
    channel TEXT NOT NULL,
    started_at TEXT NOT NULL,
    last_activity_at TEXT NOT NULL,
    ended_at TEXT,
    resolution TEXT NOT NULL,
    resolution_by TEXT,
    resolution_at TEXT,
    outcome_tags TEXT NOT NULL,
    config_version INTEGER NOT NULL
);
CREATE INDEX conversations_chatbot ON conversations (chatbot_id, started_at);
CREATE INDEX conversations_idle ON conversations (resolution, last_activity_at);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL,
    seq INTEGER NOT NULL,
    reply_to TEXT,
    status TEXT NOT NULL
);
CREATE INDEX messages_conversation ON messages (conversation_id, created_at);
"""

"""The ledger's ids for an application's ids (the same derivation as the server's).

An application's conversation and message ids are its own and may collide across tenants,
so the ledger derives its ids from them: ``conv_<h(chatbot id, conversation id)>`` and
``msg_`` / ``ans_`` / ``ret_`` / ``call_<h(ledger conversation id, kind, id)>``, where ``h`` is
the first 16 hex digits of SHA-256 over the parts joined by NUL. Use these to find a
recorded conversation in replay and search.
"""

from __future__ import annotations

import hashlib


def _h(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:16]


def ledger_conversation_id(chatbot_id: str, conversation_id: str) -> str:
    """The ledger's conversation id for the application's ``conversation_id``."""
    return f"conv_{_h(chatbot_id, conversation_id)}"


def ledger_item_id(kind: str, ledger_conversation: str, item_id: str) -> str:
    """The ledger's id of a user message (``msg``), answer (``ans``), retrieval (``ret``) or
    model call (``call``), given the ledger's conversation id and the application's id."""
    return f"{kind}_{_h(ledger_conversation, kind, item_id)}"

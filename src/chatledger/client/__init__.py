"""The ChatLedger Python SDK: record a chatbot built elsewhere in a ChatLedger ledger.

Needs only ``httpx`` and the standard library (no server-side dependency is imported)::

    from chatledger.client import LedgerClient

    with LedgerClient("https://ledger.example.com", key, spool_dir="/var/lib/app") as cl:
        conv = cl.conversation("bot_123", user_id="u-42")
        question = conv.user_message("How do refunds work?")
        chunk = {"chunk_id": "c1", "document_id": "refunds.pdf", "score": 0.82,
                 "text": "Refunds are issued within 14 days."}
        conv.retrieval([chunk], message_id=question.message_id)
        answer = conv.answer("Within 14 days.", in_reply_to=question.message_id,
                             provider="openai", model="gpt-4o-mini", input_tokens=812,
                             output_tokens=31, latency_ms=640.0, finish_reason="stop")
        print(answer.result(timeout=10))  # the ledger seq, once durable

``chatledger.client.openai.instrument`` records every chat completion of an OpenAI client.
"""

from chatledger.client.core import Conversation, LedgerClient, Pending
from chatledger.client.errors import (
    BufferFull,
    ChatLedgerClientError,
    ClientClosed,
    FlushTimeout,
    RecordRejected,
)
from chatledger.client.ids import ledger_conversation_id, ledger_item_id

__all__ = [
    "BufferFull",
    "ChatLedgerClientError",
    "ClientClosed",
    "Conversation",
    "FlushTimeout",
    "LedgerClient",
    "Pending",
    "RecordRejected",
    "ledger_conversation_id",
    "ledger_item_id",
]

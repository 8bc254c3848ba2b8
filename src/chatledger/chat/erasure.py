"""Erasure reaches the chat tables: a conversation stops naming an erased subject.

Message text and the visitor's details live in the ledger's encrypted payloads, which the
erasure destroys; the ``conversations`` table keeps only the visitor or user id, and that id
is itself personal data. It is cleared in the erasure's own transaction, so the erasure
event and the cleared rows commit together. The conversation then belongs to no one: a
returning visitor with the old id cannot reopen it.
"""

from __future__ import annotations

from chatledger.ledger.service import Ledger
from chatledger.ledger.writer import WorkContext


def scrub_conversations(ctx: WorkContext, subject: str) -> int:
    """Clear ``subject`` from the conversations that name it; returns how many."""
    rows = ctx.txn.execute(
        "SELECT COUNT(*) FROM conversations WHERE visitor_id = ? OR user_id = ?",
        (subject, subject),
    )
    count = int(rows[0][0]) if rows else 0
    if count:
        ctx.txn.execute(
            "UPDATE conversations SET visitor_id = NULL WHERE visitor_id = ?", (subject,)
        )
        ctx.txn.execute("UPDATE conversations SET user_id = NULL WHERE user_id = ?", (subject,))
    return count


def install_on_ledger(ledger: Ledger) -> None:
    """Make ``ledger.erase_subject`` clear the subject from conversations (idempotent)."""
    ledger.erasure_hooks["conversations"] = scrub_conversations

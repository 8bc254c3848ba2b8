"""Retention of document content: old versions leave the content store in time.

Every document version and chunk is kept by its SHA-256 (:mod:`chatledger.documents.content`)
so that an answer's sources can be shown exactly as they were after the document changed.
The ``documents`` retention rule bounds that: a version's content may be erased once it has
been out of use for the rule's days, counted from the moment it stopped being current (the
next version's upload, or the document's deletion). A current version is never due.

What is erased is the content (``blobs.data``, set to NULL with ``erased_at``): the document,
version and chunk rows stay, and so do the ledger's events, which hold only hashes. A blob
still used by a version that is not due (the same text in another document, an unchanged
chunk in the next version) is kept. So is a blob a legal hold covers: every version of a held
chatbot's documents, and every chunk quoted by an answer in a held conversation (or in a
held subject's conversations), since that is what an investigation would ask to see.

The rule defaults to keeping content forever. Set it no shorter than the transcripts' rule
(``message``): a transcript kept longer than the chunks it quotes replays as "erased".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from chatledger.privacy.holds import ActiveHolds, Query

MAX_LISTED = 200
"""Versions named in an expiry event (its attributes stay well under the size limit); the
event commits to all of them by a digest."""


@dataclass(frozen=True)
class VersionDue:
    """A document version whose content retention erases now."""

    document_id: str
    chatbot_id: str
    version: int
    superseded_at: str
    days: int
    blobs: tuple[str, ...]
    """Digests to erase: its file and chunks, less those still used or held."""
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "chatbot_id": self.chatbot_id,
            "version": self.version,
            "superseded_at": self.superseded_at,
            "days": self.days,
            "blobs": len(self.blobs),
            "bytes": self.size,
        }


@dataclass
class DocumentExpiry:
    due: list[VersionDue] = field(default_factory=list)
    held: dict[str, int] = field(default_factory=dict)
    """Blobs past their time but kept under legal hold, by hold id."""

    def blobs(self) -> list[str]:
        return sorted({digest for v in self.due for digest in v.blobs})

    def to_json(self, *, limit: int | None = MAX_LISTED) -> dict[str, Any]:
        items = self.due if limit is None else self.due[:limit]
        return {
            "versions": len(self.due),
            "blobs": len(self.blobs()),
            "bytes": sum(v.size for v in self.due),
            "held": sum(self.held.values()),
            "held_by_hold": dict(sorted(self.held.items())),
            "items": [v.to_json() for v in items],
            "items_truncated": len(items) < len(self.due),
        }


Cutoff = Callable[[str], tuple[str, int] | None]
"""For a chatbot: (the time before which a version's content is due, the rule's days), or
None when its documents are kept forever."""


def plan_document_expiry(
    query: Query,
    cutoff: Cutoff,
    holds: ActiveHolds,
    *,
    chatbot_ids: set[str] | None = None,
) -> DocumentExpiry:
    """The versions due now (nothing is written); with ``chatbot_ids``, only theirs."""
    plan = DocumentExpiry()
    versions = _versions(query)
    due_keys: dict[tuple[str, int], tuple[str, str, int]] = {}
    for document_id, version, chatbot_id, superseded_at in versions:
        if superseded_at is None or (chatbot_ids is not None and chatbot_id not in chatbot_ids):
            continue
        rule = cutoff(chatbot_id)
        if rule is not None and superseded_at < rule[0]:
            due_keys[(document_id, version)] = (chatbot_id, superseded_at, rule[1])
    if not due_keys:
        return plan
    contents = _contents(query)
    in_use = {
        digest for key, digests in contents.items() if key not in due_keys for digest in digests
    }
    quoted = _quoted_under_hold(query, holds)
    sizes = _live_sizes(query, {d for key in due_keys for d in contents.get(key, ())})
    for (document_id, version), (chatbot_id, superseded_at, days) in sorted(due_keys.items()):
        chatbot_hold = holds.chatbots.get(chatbot_id)
        erase: list[str] = []
        for digest in sorted(contents.get((document_id, version), ())):
            if digest in in_use or digest not in sizes:
                continue  # still used by a live version, or already erased
            hold = chatbot_hold or quoted.get(digest)
            if hold is not None:
                plan.held[hold] = plan.held.get(hold, 0) + 1
                continue
            erase.append(digest)
        if erase:
            plan.due.append(
                VersionDue(
                    document_id,
                    chatbot_id,
                    version,
                    superseded_at,
                    days,
                    tuple(erase),
                    sum(sizes[d] for d in erase),
                )
            )
    return plan


def erase_blobs(execute: Query, digests: Sequence[str], erased_at: str) -> int:
    """Drop the content of these blobs (those not erased already); returns how many."""
    erased = 0
    for start in range(0, len(digests), 400):
        part = list(digests[start : start + 400])
        marks = ",".join("?" * len(part))
        present = execute(
            f"SELECT COUNT(*) FROM blobs WHERE sha256 IN ({marks}) AND data IS NOT NULL", part
        )
        erased += int(present[0][0]) if present else 0
        execute(
            f"UPDATE blobs SET data = NULL, erased_at = ? "
            f"WHERE sha256 IN ({marks}) AND data IS NOT NULL",
            [erased_at, *part],
        )
    return erased


def versions_digest(due: Iterable[VersionDue]) -> str:
    """Commits an expiry event to every version it erased, however many."""
    listing = ",".join(f"{v.document_id}:{v.version}" for v in due)
    return hashlib.sha256(listing.encode()).hexdigest()


# -- reading the content store ------------------------------------------------------------------


def _versions(query: Query) -> list[tuple[str, int, str, str | None]]:
    """(document, version, chatbot, when it stopped being current or None) of every version."""
    rows = query(
        "SELECT v.document_id, v.version, d.chatbot_id, "
        "COALESCE((SELECT n.created_at FROM document_versions n "
        "WHERE n.document_id = v.document_id AND n.version = v.version + 1), "
        "CASE WHEN v.version = d.current_version THEN d.deleted_at END) "
        "FROM document_versions v JOIN documents d ON d.id = v.document_id "
        "ORDER BY v.document_id, v.version",
        (),
    )
    return [(str(r[0]), int(r[1]), str(r[2]), None if r[3] is None else str(r[3])) for r in rows]


def _contents(query: Query) -> dict[tuple[str, int], set[str]]:
    """The blobs of each version: its file and its chunks."""
    contents: dict[tuple[str, int], set[str]] = {}
    for document_id, version, digest in query(
        "SELECT document_id, version, sha256 FROM document_versions", ()
    ):
        contents.setdefault((str(document_id), int(version)), set()).add(str(digest))
    for document_id, version, digest in query(
        "SELECT document_id, version, sha256 FROM chunks", ()
    ):
        contents.setdefault((str(document_id), int(version)), set()).add(str(digest))
    return contents


def _live_sizes(query: Query, digests: set[str]) -> dict[str, int]:
    """Size of each of these blobs whose content is still stored."""
    ordered = sorted(digests)
    sizes: dict[str, int] = {}
    for start in range(0, len(ordered), 400):
        part = ordered[start : start + 400]
        marks = ",".join("?" * len(part))
        for digest, size in query(
            f"SELECT sha256, size FROM blobs WHERE sha256 IN ({marks}) AND data IS NOT NULL",
            part,
        ):
            sizes[str(digest)] = int(size)
    return sizes


def _quoted_under_hold(query: Query, holds: ActiveHolds) -> dict[str, str]:
    """Chunk digests quoted by answers in held conversations, with the hold's id."""
    conversations = dict(holds.conversations)
    for subject_ref, hold_id in holds.subjects.items():
        for (conversation_id,) in query(
            "SELECT DISTINCT conversation_id FROM ledger_entries "
            "WHERE subject = ? AND conversation_id IS NOT NULL",
            (subject_ref,),
        ):
            conversations.setdefault(str(conversation_id), hold_id)
    quoted: dict[str, str] = {}
    for conversation_id, hold_id in sorted(conversations.items()):
        for (body,) in query(
            "SELECT body FROM ledger_entries WHERE conversation_id = ? "
            "AND action = 'message.answer'",
            (conversation_id,),
        ):
            attributes = orjson.loads(bytes(body)).get("attributes", {})
            for source in attributes.get("retrieved", []):
                digest = source.get("chunk_sha256") if isinstance(source, dict) else None
                if isinstance(digest, str):
                    quoted.setdefault(digest, hold_id)
    return quoted

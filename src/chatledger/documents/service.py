"""Uploading, versioning, listing and deleting documents, each step a ledger event.

Parsing runs before the transaction (it may take seconds, in a sandboxed worker); the
document rows, the content store, the retrieval index and the event then commit together.
A refused upload is itself an event (``document.reject``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from chatledger.chatbots.service import ChatbotService
from chatledger.documents.content import put_blobs, sha256_hex
from chatledger.errors import InvalidInput, NotFound
from chatledger.events import Entity, Event, Outcome
from chatledger.identity.principal import Principal
from chatledger.identity.roles import Permission
from chatledger.identity.service import require
from chatledger.ledger.entry import utc_timestamp
from chatledger.ledger.service import Ledger
from chatledger.ledger.writer import WorkContext
from chatledger.rag.chunking import Chunk, chunk_document
from chatledger.rag.index import IndexChunk
from chatledger.rag.index_factory import index_for
from chatledger.rag.parse_types import DEFAULT_LIMITS, DocumentRejected, ParseLimits
from chatledger.rag.parsing import parse_document

MAX_NAME = 255


@dataclass(frozen=True)
class UploadResult:
    id: str
    version: int
    chunks: int
    name: str
    sha256: str
    size: int
    format: str
    title: str
    page_count: int | None
    excluded_chunks: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def clean_name(name: str | None) -> str:
    """A display name from an uploaded file name: no paths, no control characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = "".join(ch for ch in base if ch.isprintable())
    if not base or base in {".", ".."}:
        raise InvalidInput("the file needs a name")
    return base[:MAX_NAME]


class DocumentService:
    def __init__(
        self, ledger: Ledger, chatbots: ChatbotService, limits: ParseLimits = DEFAULT_LIMITS
    ) -> None:
        self.ledger = ledger
        self.chatbots = chatbots
        self.limits = limits
        self.index = index_for(ledger.store)
        self.chunk_screen: Any = None  # set by the guard: flags injected chunks at ingestion

    def upload(
        self,
        principal: Principal,
        chatbot_id: str,
        filename: str | None,
        data: bytes,
        content_type: str | None,
    ) -> UploadResult:
        require(principal, Permission.DOCUMENT_WRITE, "chatbot", chatbot_id)
        bot = self.chatbots.get(principal, chatbot_id)
        name = clean_name(filename)
        digest = sha256_hex(data)
        try:
            parsed = parse_document(data, name, content_type, self.limits)
            chunks = chunk_document(
                parsed,
                bot.config.retrieval.chunk_size,
                min(bot.config.retrieval.chunk_overlap, bot.config.retrieval.chunk_size - 1),
            )
        except DocumentRejected as exc:
            self.ledger.append(
                Event(
                    "document.reject",
                    principal.actor,
                    Entity("document", name[:200]),
                    Outcome.FAILURE,
                    attributes={
                        "chatbot_id": chatbot_id,
                        "name": name,
                        "size": len(data),
                        "sha256": digest,
                        "content_type": content_type or "",
                        "reason": exc.reason.value,
                    },
                )
            )
            raise
        flagged = self._screen(principal, chatbot_id, chunks)

        def work(ctx: WorkContext) -> tuple[UploadResult, list[Event]]:
            txn = ctx.txn
            now = utc_timestamp()
            rows = txn.execute(
                "SELECT id, current_version FROM documents WHERE chatbot_id = ? AND name = ? "
                "AND deleted_at IS NULL",
                (chatbot_id, name),
            )
            if rows:
                document_id, version = rows[0][0], int(rows[0][1]) + 1
                txn.execute(
                    "UPDATE documents SET current_version = ?, updated_at = ? WHERE id = ?",
                    (version, now, document_id),
                )
                previous = txn.execute(
                    "SELECT sha256, chunk_count FROM document_versions WHERE document_id = ? "
                    "AND version = ?",
                    (document_id, version - 1),
                )
            else:
                document_id, version, previous = f"doc_{uuid.uuid4().hex[:12]}", 1, []
                txn.execute(
                    "INSERT INTO documents (id, chatbot_id, name, current_version, created_at, "
                    "updated_at) VALUES (?, ?, ?, 1, ?, ?)",
                    (document_id, chatbot_id, name, now, now),
                )
            put_blobs(txn, [data, *(c.text.encode() for c in chunks)])
            txn.execute(
                "INSERT INTO document_versions (document_id, version, sha256, size, content_type, "
                "format, title, page_count, chunk_count, created_at, seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    document_id,
                    version,
                    digest,
                    len(data),
                    content_type or "",
                    parsed.format.value,
                    parsed.title[:500],
                    parsed.page_count,
                    len(chunks),
                    now,
                    ctx.next_seq,
                ),
            )
            index_chunks = []
            for chunk in chunks:
                chunk_id = f"{document_id}:{version}:{chunk.index}"
                heading = " > ".join(chunk.heading_path)
                txn.execute(
                    "INSERT INTO chunks (id, document_id, version, idx, sha256, heading, page, "
                    "char_start, char_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        chunk_id,
                        document_id,
                        version,
                        chunk.index,
                        chunk.sha256,
                        heading[:1000],
                        chunk.page,
                        chunk.char_start,
                        chunk.char_end,
                    ),
                )
                if chunk.index not in flagged:
                    index_chunks.append(
                        IndexChunk(chunk_id, chunk.text, heading, chunk.page, chunk.sha256)
                    )
            self.index.add_chunks(txn.conn, chatbot_id, document_id, version, index_chunks)
            result = UploadResult(
                document_id,
                version,
                len(chunks),
                name,
                digest,
                len(data),
                parsed.format.value,
                parsed.title,
                parsed.page_count,
                len(flagged),
            )
            attributes: dict[str, Any] = {
                "chatbot_id": chatbot_id,
                "document_id": document_id,
                "version": version,
                "name": name,
                "size": len(data),
                "sha256": digest,
                "content_type": content_type or "",
                "format": parsed.format.value,
                "page_count": parsed.page_count,
                "chunk_count": len(chunks),
                "chunks_digest": sha256_hex("\n".join(c.sha256 for c in chunks).encode()),
                "excluded_chunks": sorted(flagged),
            }
            if previous:
                attributes["replaced"] = {
                    "version": version - 1,
                    "sha256": previous[0][0],
                    "chunk_count": int(previous[0][1]),
                }
            action = "document.version" if version > 1 else "document.upload"
            return result, [
                Event(
                    action, principal.actor, Entity("document", document_id), attributes=attributes
                )
            ]

        return self.ledger.transact(work)[0]

    def _screen(self, principal: Principal, chatbot_id: str, chunks: list[Chunk]) -> set[int]:
        """Indexes of chunks the guard keeps out of retrieval (indirect prompt injection)."""
        if self.chunk_screen is None:
            return set()
        flagged: set[int] = self.chunk_screen(principal, chatbot_id, chunks)
        return flagged

    def list_documents(self, principal: Principal, chatbot_id: str) -> list[dict[str, Any]]:
        require(principal, Permission.DOCUMENT_READ, "chatbot", chatbot_id)
        self.chatbots.get(principal, chatbot_id)
        rows = self.ledger.store.query(
            "SELECT d.id, d.name, d.current_version, d.created_at, d.updated_at, v.sha256, v.size, "
            "v.format, v.title, v.page_count, v.chunk_count FROM documents d "
            "JOIN document_versions v ON v.document_id = d.id AND v.version = d.current_version "
            "WHERE d.chatbot_id = ? AND d.deleted_at IS NULL ORDER BY d.name",
            (chatbot_id,),
        )
        keys = (
            "id",
            "name",
            "version",
            "created_at",
            "updated_at",
            "sha256",
            "size",
            "format",
            "title",
            "page_count",
            "chunks",
        )
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def delete(self, principal: Principal, document_id: str) -> None:
        rows = self.ledger.store.query(
            "SELECT d.chatbot_id, d.name, d.current_version, v.sha256, v.chunk_count, v.size "
            "FROM documents d JOIN document_versions v ON v.document_id = d.id "
            "AND v.version = d.current_version WHERE d.id = ? AND d.deleted_at IS NULL",
            (document_id,),
        )
        if not rows:
            raise NotFound(f"no document {document_id}")
        chatbot_id, name, version, digest, chunk_count, size = rows[0]
        require(principal, Permission.DOCUMENT_WRITE, "document", document_id)
        self.chatbots.get(principal, chatbot_id)  # same workspace, or not found

        def work(ctx: WorkContext) -> tuple[None, list[Event]]:
            ctx.txn.execute(
                "UPDATE documents SET deleted_at = ? WHERE id = ?", (utc_timestamp(), document_id)
            )
            removed = self.index.remove_document(ctx.txn.conn, document_id)
            return None, [
                Event(
                    "document.delete",
                    principal.actor,
                    Entity("document", document_id),
                    attributes={
                        "chatbot_id": chatbot_id,
                        "document_id": document_id,
                        "name": name,
                        "version": int(version),
                        "sha256": digest,
                        "size": int(size),
                        "chunk_count": int(chunk_count),
                        "chunks_removed_from_retrieval": removed,
                    },
                )
            ]

        self.ledger.transact(work)

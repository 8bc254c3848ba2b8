"""Retention of document content: superseded and deleted versions lose their content in
time; what is shared, current or under legal hold stays."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from chatledger.chat.replay import replay_conversation
from chatledger.events import Actor
from chatledger.identity.principal import system_principal
from chatledger.platform import Platform
from chatledger.privacy import holds, retention

DPO = Actor("user", "dpo", "admin")
LATER = datetime.now(UTC) + timedelta(days=31)

REFUNDS_V1 = b"# Refunds\n\nRefunds reach the card within five working days of approval.\n"
REFUNDS_V2 = b"# Refunds\n\nRefunds reach the card within three working days of approval.\n"
FILLER = b"# TOPIC\n\nQuestions about TOPIC go to the support team by email.\n"
OLD = b"# Fax orders\n\nWe no longer take orders by fax machine.\n"


class World:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        workspace = platform.identity.create_workspace("Docs", Actor("system", "tests"))
        self.principal = replace(system_principal(workspace), via="api_key")
        self.bot = platform.chatbots.create(self.principal, "Support", {"system_prompt": "Hi."}).id
        for topic in ("shipping", "accounts", "billing"):  # so that word rarity means something
            self.upload(f"{topic}.md", FILLER.replace(b"TOPIC", topic.encode()))

    def upload(self, name: str, data: bytes) -> dict[str, Any]:
        result = self.platform.documents.upload(self.principal, self.bot, name, data, None)
        return result.to_json()

    def ask(self, text: str) -> str:
        conv = self.platform.chat.start(self.principal, self.bot, visitor_id="visitor-1")
        self.platform.chat.send(self.principal, conv.id, text)
        return conv.id

    def blob(self, digest: str) -> tuple[bool, str | None]:
        """(content still stored, erased_at)."""
        rows = self.platform.ledger.store.query(
            "SELECT data IS NOT NULL, erased_at FROM blobs WHERE sha256 = ?", (digest,)
        )
        return bool(rows[0][0]), rows[0][1]

    def chunk_digests(self, document_id: str, version: int) -> list[str]:
        rows = self.platform.ledger.store.query(
            "SELECT sha256 FROM chunks WHERE document_id = ? AND version = ?",
            (document_id, version),
        )
        return [str(r[0]) for r in rows]


def test_superseded_and_deleted_versions_lose_their_content(platform: Platform) -> None:
    world = World(platform)
    first = world.upload("refunds.md", REFUNDS_V1)
    conversation = world.ask("How long do refunds take?")  # quotes version 1
    second = world.upload("refunds.md", REFUNDS_V2)
    gone = world.upload("fax.md", OLD)
    platform.documents.delete(world.principal, gone["id"])
    old_chunks = world.chunk_digests(first["id"], 1)
    assert old_chunks and all(world.blob(d)[0] for d in old_chunks)

    # Kept forever by default: nothing is due, even much later.
    assert retention.run_expiry(platform.ledger, DPO, now=LATER).documents.due == []

    retention.set_policy(platform.ledger, DPO, "documents", 30)
    assert retention.run_expiry(platform.ledger, DPO).documents.due == []  # not yet
    dry = retention.run_expiry(platform.ledger, DPO, now=LATER, dry_run=True)
    due = {(v.document_id, v.version) for v in dry.documents.due}
    assert due == {(first["id"], 1), (gone["id"], 1)}
    assert world.blob(first["sha256"])[0]  # a dry run erases nothing

    report = retention.run_expiry(platform.ledger, DPO, now=LATER)
    assert {(v.document_id, v.version) for v in report.documents.due} == due
    erased = {first["sha256"], gone["sha256"], *old_chunks}
    erased |= set(world.chunk_digests(gone["id"], 1))
    assert report.blobs_erased == len(erased)
    for digest in erased:
        stored, erased_at = world.blob(digest)
        assert not stored and erased_at
    assert world.blob(second["sha256"])[0]  # the current version keeps its content
    assert all(world.blob(d)[0] for d in world.chunk_digests(second["id"], 2))

    event = platform.ledger.read(report.event_seqs[-1]).entry
    assert event.action == "privacy.retention_expired"
    assert event.attributes["rule"] == "documents"
    assert event.attributes["document_versions"] == 2
    assert event.attributes["blobs_erased"] == len(erased)
    assert report.to_json()["documents"]["blobs_erased"] == len(erased)

    messages = replay_conversation(platform.ledger, conversation)["messages"]
    quoted = [s for m in messages if m["role"] == "assistant" for s in m["sources"]]
    assert quoted and all(s.get("erased") and s["text"] is None for s in quoted)

    again = retention.run_expiry(platform.ledger, DPO, now=LATER)
    assert again.documents.due == [] and again.blobs_erased == 0
    assert platform.ledger.verify().ok


def test_shared_and_held_content_stays(platform: Platform) -> None:
    world = World(platform)
    first = world.upload("refunds.md", REFUNDS_V1)
    world.upload("copy.md", REFUNDS_V1)  # the same bytes: every blob shared, and current
    conversation = world.ask("How long do refunds take?")
    world.upload("refunds.md", REFUNDS_V2)
    retention.set_policy(platform.ledger, DPO, "documents", 30)

    report = retention.run_expiry(platform.ledger, DPO, now=LATER, dry_run=True)
    assert report.documents.due == []  # version 1's content is still in use by copy.md

    fax = world.upload("fax.md", OLD)
    fax_conversation = world.ask("Can I order by fax?")
    world.upload("fax.md", REFUNDS_V2 + b"\nFax is gone.\n")
    fax_chunks = world.chunk_digests(fax["id"], 1)
    hold = holds.place_hold(
        platform.ledger, DPO, scope_type="conversation", target=fax_conversation, reason="claim"
    )
    report = retention.run_expiry(platform.ledger, DPO, now=LATER)
    assert report.documents.held == {hold.id: len(fax_chunks)}
    assert all(world.blob(d)[0] for d in fax_chunks)  # quoted in a held conversation
    assert not world.blob(fax["sha256"])[0]  # the file itself was not quoted: erased
    assert world.blob(first["sha256"])[0]

    bot_hold = holds.place_hold(
        platform.ledger, DPO, scope_type="chatbot", target=world.bot, reason="audit"
    )
    holds.release_hold(platform.ledger, DPO, hold.id, reason="settled")
    report = retention.run_expiry(platform.ledger, DPO, now=LATER)
    assert report.documents.due == [] and report.documents.held == {bot_hold.id: len(fax_chunks)}
    assert conversation and platform.ledger.verify().ok

"""Ledger entries: the hashed envelope, its canonical bytes and its parsed form.

An entry's canonical JSON (RFC 8785) is the Merkle leaf. It holds no personal content:
the data subject appears as a keyed pseudonym and the payload as a keyed digest.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from chatledger.errors import IntegrityError, InvalidInput
from chatledger.events import Event
from chatledger.ledger.canonical import canonical_json, canonical_json_checked, parse_json
from chatledger.privacy.payloads import PreparedPayload
from chatledger.privacy.redact import redact

ENTRY_VERSION = 1
GENESIS_PREV = "0" * 64


def utc_timestamp(moment: datetime | None = None) -> str:
    """UTC with microseconds, e.g. ``2026-11-28T14:47:19.123456Z``."""
    moment = moment or datetime.now(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """An event validated, redacted and with its payload committed, ready to sequence."""

    event: Event
    category: str
    attributes: dict[str, Any]
    subject_ref: str | None
    payload: PreparedPayload | None
    id: str
    fast: bool
    """True when the envelope can take orjson's fast path (see ledger.canonical)."""

    @classmethod
    def prepare(
        cls, event: Event, subject_ref: str | None, *, max_payload_bytes: int
    ) -> PreparedEvent:
        attributes = redact(event.attributes)
        # Canonicalise now so that a value JSON cannot represent is refused before writing;
        # remember whether the fast path applies, so the writer need not walk them again.
        attr_bytes, fast, attributes = canonical_json_checked(attributes)
        if len(attr_bytes) > max_payload_bytes:
            raise InvalidInput(
                "attributes are too large; put bulky content in the payload",
                details={"size": len(attr_bytes), "limit": max_payload_bytes},
            )
        payload = None
        if event.payload is not None:
            payload = PreparedPayload.prepare(redact(event.payload), max_payload_bytes)
        return cls(
            event=event,
            category=event.category.value,
            attributes=attributes,
            subject_ref=subject_ref,
            payload=payload,
            id=str(uuid.uuid4()),
            fast=fast,
        )

    def canonical_envelope(self, seq: int, ts: str, prev: str) -> bytes:
        """The entry's RFC 8785 bytes. Every envelope field but the attributes is a validated
        string or a safe integer, so the attributes alone decide the encoder."""
        envelope = self.envelope(seq, ts, prev)
        if self.fast:
            return orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS)
        return canonical_json(envelope)

    def envelope(self, seq: int, ts: str, prev: str) -> dict[str, Any]:
        ev = self.event
        body: dict[str, Any] = {
            "v": ENTRY_VERSION,
            "seq": seq,
            "id": self.id,
            "ts": ts,
            "category": self.category,
            "action": ev.action,
            "actor": ev.actor.to_json(),
            "entity": ev.entity.to_json(),
            "outcome": str(ev.outcome),
            "attributes": self.attributes,
            "prev": prev,
        }
        if self.subject_ref is not None:
            body["subject"] = self.subject_ref
        if self.payload is not None:
            body["payload"] = {"digest": self.payload.digest, "size": len(self.payload.body)}
        return body


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored entry, parsed."""

    seq: int
    id: str
    ts: str
    category: str
    action: str
    actor: dict[str, Any]
    entity: dict[str, Any]
    outcome: str
    attributes: dict[str, Any]
    prev: str
    subject: str | None
    payload_digest: str | None
    body: bytes

    @classmethod
    def parse(cls, body: bytes, expected_seq: int | None = None) -> Entry:
        try:
            data = parse_json(body)
            if not isinstance(data, dict) or data.get("v") != ENTRY_VERSION:
                raise ValueError("not a version 1 entry")
            payload = data.get("payload")
            entry = cls(
                seq=int(data["seq"]),
                id=str(data["id"]),
                ts=str(data["ts"]),
                category=str(data["category"]),
                action=str(data["action"]),
                actor=dict(data["actor"]),
                entity=dict(data["entity"]),
                outcome=str(data["outcome"]),
                attributes=dict(data["attributes"]),
                prev=str(data["prev"]),
                subject=data.get("subject"),
                payload_digest=payload["digest"] if isinstance(payload, dict) else None,
                body=body,
            )
        except (InvalidInput, KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(
                f"entry is not a well-formed ledger entry: {exc}",
                reason="malformed_entry",
                seq=expected_seq,
            ) from exc
        if expected_seq is not None and entry.seq != expected_seq:
            raise IntegrityError(
                f"entry at position {expected_seq} says it is seq {entry.seq}",
                reason="seq_mismatch",
                seq=expected_seq,
            )
        return entry

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = parse_json(self.body)
        return value

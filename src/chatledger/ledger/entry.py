"""Ledger entries: the hashed envelope, its canonical bytes and its parsed form.

An entry's canonical JSON (RFC 8785) is the Merkle leaf. It holds no personal content:
the data subject appears as a keyed pseudonym and the payload as a keyed digest.
"""

from __future__ import annotations

import os
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


def new_entry_id() -> str:
    """A random (version 4) UUID string; ``str(uuid.uuid4())`` costs twice as much."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """An event validated, redacted and with its payload committed, ready to sequence."""

    event: Event
    category: str
    attributes: dict[str, Any]
    subject_ref: str | None
    payload: PreparedPayload | None
    id: str
    head: bytes
    """The canonical envelope up to the members only the writer knows, open-ended: every
    key in it sorts before ``prev`` (see :meth:`canonical_envelope`)."""
    subject_member: bytes
    """``,"subject":"..."`` or nothing."""

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
        entry_id = new_entry_id()
        leading = _leading_members(event, attributes, entry_id, payload)
        # Every leading member is a validated string or safe integer but the attributes,
        # so the attributes alone decide the encoder.
        if fast:
            head = orjson.dumps(leading, option=orjson.OPT_SORT_KEYS)
        else:
            head = canonical_json(leading)
        return cls(
            event=event,
            category=leading["category"],
            attributes=attributes,
            subject_ref=subject_ref,
            payload=payload,
            id=entry_id,
            head=head[:-1],
            subject_member=b',"subject":' + orjson.dumps(subject_ref) if subject_ref else b"",
        )

    def canonical_envelope(self, seq: int, ts: str, prev: str) -> bytes:
        """The entry's RFC 8785 bytes: the prepared head, then ``prev``, ``seq``,
        ``subject``, ``ts`` and ``v`` in their sorted places. ``prev`` is hex, ``seq`` an
        integer and ``ts`` plain ASCII (:func:`utc_timestamp`): none needs escaping."""
        return b'%s,"prev":"%s","seq":%d%s,"ts":"%s","v":%d}' % (
            self.head,
            prev.encode(),
            seq,
            self.subject_member,
            ts.encode(),
            ENTRY_VERSION,
        )

    def envelope(self, seq: int, ts: str, prev: str) -> dict[str, Any]:
        """The entry as a JSON object (what :meth:`canonical_envelope` encodes)."""
        body = _leading_members(self.event, self.attributes, self.id, self.payload)
        body.update(prev=prev, seq=seq, ts=ts, v=ENTRY_VERSION)
        if self.subject_ref is not None:
            body["subject"] = self.subject_ref
        return body


def _leading_members(
    event: Event, attributes: dict[str, Any], entry_id: str, payload: PreparedPayload | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action": event.action,
        "actor": event.actor.to_json(),
        "attributes": attributes,
        "category": event.category.value,
        "entity": event.entity.to_json(),
        "id": entry_id,
        "outcome": str(event.outcome),
    }
    if payload is not None:
        body["payload"] = {"digest": payload.digest, "size": len(payload.body)}
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

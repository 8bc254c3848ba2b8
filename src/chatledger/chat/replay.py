"""Replay: a conversation rebuilt from the ledger and the content store, not from the
mutable tables. Every answer comes with its sources exactly as they were (chunk text by
hash, document name and version, score, whether it was cited), the model and token counts,
groundedness, the configuration in force, guard verdicts, feedback, resolution, outcomes,
and erased parts marked as erased with when and under which request.

The content store is not the record: each source text is checked against the SHA-256 its
answer's ledger entry committed to (``chunk_sha256``). A source carries ``integrity``:
``verified``, ``tampered`` (the stored bytes no longer hash to the recorded digest: the text is
withheld, ``text`` is null, ``stored_sha256`` says what is there now), or ``erased`` /
``missing`` (no content, marked ``erased`` as before). Tampered sources are listed in the
replay's ``tampered_sources`` and described in its ``warnings``; :func:`record_tampering`
records them as a ``ledger.tamper_detected`` security event."""

from __future__ import annotations

from typing import Any

from chatledger.documents.content import get_blobs, sha256_hex
from chatledger.errors import NotFound
from chatledger.events import Actor, Entity, Event, Outcome
from chatledger.ledger.service import Ledger, Record

TAMPER_REASON = "source_text_mismatch"


def _content(record: Record, key: str = "text") -> dict[str, Any]:
    if record.payload_status == "erased":
        return {"erased": True, "erased_at": record.erased_at, "erasure_seq": record.erasure_seq}
    if record.payload is None:
        return {}
    return {key: record.payload.get(key)}


def _seqs(ledger: Ledger, sql: str, params: tuple[Any, ...]) -> list[int]:
    return [int(r[0]) for r in ledger.store.query(sql, params)]


def replay_conversation(ledger: Ledger, conversation_id: str) -> dict[str, Any]:
    seqs = _seqs(
        ledger,
        "SELECT seq FROM ledger_entries WHERE conversation_id = ? ORDER BY seq",
        (conversation_id,),
    )
    if not seqs:
        raise NotFound(f"no conversation {conversation_id} in the ledger")
    records = [ledger.read(seq) for seq in seqs]
    out: dict[str, Any] = {
        "conversation_id": conversation_id,
        "messages": [],
        "guard_verdicts": [],
        "resolution_history": [],
        "outcomes": [],
        "feedback": [],
        "ended_at": None,
        "ledger_seqs": seqs,
        "warnings": [],
        "tampered_sources": [],
    }
    answers: dict[str, dict[str, Any]] = {}
    messages: dict[str, dict[str, Any]] = {}
    calls: dict[str, dict[str, Any]] = {}
    config_versions: set[int] = set()
    chatbot_id = ""
    for record in records:
        entry = record.entry
        attrs = entry.attributes
        base = {"seq": entry.seq, "ts": entry.ts, "actor": entry.actor}
        action = entry.action
        if action == "conversation.start":
            chatbot_id = attrs["chatbot_id"]
            config_versions.add(int(attrs["config_version"]))
            who = _content(record, "visitor_id")
            if record.payload is not None:
                who = {
                    k: record.payload.get(k) for k in ("user_id", "visitor_id", "user_agent", "ip")
                }
            out.update(
                chatbot_id=chatbot_id,
                started_at=entry.ts,
                channel=attrs.get("channel"),
                config_version=attrs["config_version"],
                started_by=entry.actor,
                identity=attrs.get("identity"),
                subject=entry.subject,
                participant=who,
            )
        elif action == "message.user":
            item = {
                **base,
                "id": attrs["message_id"],
                "role": "user",
                "outcome": entry.outcome,
                "attachments_meta": attrs.get("attachments", []),
                **_content(record),
            }
            if record.payload is not None:
                item["attachments"] = record.payload.get("attachments", [])
            if "guard" in attrs:
                item["guard"] = attrs["guard"]
            messages[item["id"]] = item
            out["messages"].append(item)
        elif action == "model.call":
            calls[attrs["message_id"]] = {
                "seq": entry.seq,
                **(
                    {"prompt": record.payload.get("messages")}
                    if record.payload
                    else _content(record)
                ),
            }
        elif action == "message.answer":
            config_versions.add(int(attrs.get("config_version", 0)))
            item = {
                **base,
                "id": attrs["message_id"],
                "role": "assistant",
                "outcome": entry.outcome,
                "in_reply_to": attrs.get("in_reply_to"),
                **_content(record),
                "provider": attrs.get("gen_ai.provider.name"),
                "model": attrs.get("gen_ai.response.model"),
                "usage": {
                    "input_tokens": attrs.get("gen_ai.usage.input_tokens"),
                    "output_tokens": attrs.get("gen_ai.usage.output_tokens"),
                    "source": attrs.get("usage_source"),
                },
                "latency_ms": attrs.get("latency_ms"),
                "finish_reason": (attrs.get("gen_ai.response.finish_reasons") or [None])[0],
                "groundedness": attrs.get("groundedness"),
                "unanswered": attrs.get("unanswered", False),
                "config_version": attrs.get("config_version"),
                "sources": [dict(s) for s in attrs.get("retrieved", [])],
                "invalid_citations": attrs.get("invalid_citations", []),
                "feedback": [],
            }
            answers[item["id"]] = item
            out["messages"].append(item)
        elif action == "message.answer_failed":
            out["messages"].append(
                {
                    **base,
                    "id": None,
                    "role": "assistant",
                    "outcome": "failure",
                    "in_reply_to": attrs.get("message_id"),
                    "error": attrs.get("reason"),
                    **_content(record, "error"),
                }
            )
        elif action == "message.feedback":
            fb = {
                **base,
                "message_id": attrs["message_id"],
                "rating": attrs["rating"],
                **_content(record, "comment"),
            }
            out["feedback"].append(fb)
            if attrs["message_id"] in answers:
                answers[attrs["message_id"]]["feedback"].append(fb)
        elif action == "conversation.resolution":
            out["resolution_history"].append(
                {
                    **base,
                    "resolution": attrs["resolution"],
                    "previous": attrs.get("previous"),
                    "set_by": attrs.get("set_by"),
                    "reason": attrs.get("reason"),
                }
            )
        elif action == "conversation.outcome":
            out["outcomes"].append(
                {
                    **base,
                    "tags": attrs["tags"],
                    "added": attrs.get("added"),
                    "removed": attrs.get("removed"),
                }
            )
        elif action == "conversation.end":
            out["ended_at"] = entry.ts
        elif entry.category == "security":
            out["guard_verdicts"].append(
                {**base, "action": action, "outcome": entry.outcome, **attrs}
            )
    for answer_id, call in calls.items():
        if answer_id in answers:
            answers[answer_id]["model_call"] = call
    out["tampered_sources"] = _fill_sources(ledger, list(answers.values()))
    out["warnings"] = [_warning(t) for t in out["tampered_sources"]]
    out["resolution"] = (
        out["resolution_history"][-1]["resolution"] if out["resolution_history"] else "open"
    )
    out["outcome_tags"] = out["outcomes"][-1]["tags"] if out["outcomes"] else []
    out["configuration"] = configurations(ledger, chatbot_id, config_versions)
    return out


def _fill_sources(ledger: Ledger, answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every source its text, checked against its recorded hash; return the tampered."""
    sources = [s for a in answers for s in a["sources"]]
    blobs = get_blobs(ledger.store, sorted({s["chunk_sha256"] for s in sources}))
    names = document_names(ledger, sorted({s["document_id"] for s in sources}))
    chunk_rows = {}
    ids = sorted({s["chunk_id"] for s in sources})
    for start in range(0, len(ids), 400):
        part = ids[start : start + 400]
        marks = ",".join("?" * len(part))
        for cid, heading, page in ledger.store.query(
            f"SELECT id, heading, page FROM chunks WHERE id IN ({marks})", part
        ):
            chunk_rows[cid] = (heading, page)
    tampered: list[dict[str, Any]] = []
    for answer in answers:
        for source in answer["sources"]:
            digest = source["chunk_sha256"]
            data = blobs.get(digest)
            source["text"] = None
            if data is None:
                source["erased"] = True
                source["integrity"] = "erased" if digest in blobs else "missing"
            elif sha256_hex(data) != digest:
                # Altered behind the ledger's back: never shown as the passage that was quoted.
                source["integrity"] = "tampered"
                source["stored_sha256"] = sha256_hex(data)
                tampered.append(
                    {
                        "answer_id": answer["id"],
                        "answer_seq": answer["seq"],
                        "chunk_id": source["chunk_id"],
                        "chunk_sha256": digest,
                        "stored_sha256": source["stored_sha256"],
                    }
                )
            else:
                source["text"] = data.decode("utf-8")
                source["integrity"] = "verified"
            source["document_name"] = names.get((source["document_id"], source["document_version"]))
            heading, page = chunk_rows.get(source["chunk_id"], ("", None))
            source["heading"], source["page"] = heading, page
    return tampered


def _warning(item: dict[str, Any]) -> str:
    return (
        f"source {item['chunk_id']} of answer {item['answer_id']} (seq {item['answer_seq']}) "
        f"was altered in the content store: its SHA-256 is {item['stored_sha256']}, not the "
        f"{item['chunk_sha256']} the ledger recorded; its text is withheld"
    )


def record_tampering(ledger: Ledger, replay: dict[str, Any], actor: Actor, via: str) -> int | None:
    """Record the tampered sources a replay found as a ``ledger.tamper_detected`` security
    event (as a failed verification records it); the event's seq, or None when all was well."""
    found = replay.get("tampered_sources") or []
    if not found:
        return None
    receipt = ledger.append(
        Event(
            "ledger.tamper_detected",
            actor,
            Entity("ledger", ledger.origin),
            Outcome.FAILURE,
            attributes={
                "ok": False,
                "tree_size": ledger.size(),
                "first_bad_seq": min(int(t["answer_seq"]) for t in found),
                "reason": TAMPER_REASON,
                "via": via,
                "chatbot_id": replay.get("chatbot_id") or None,
                "conversation_id": replay["conversation_id"],
                "sources": [
                    {k: t[k] for k in ("answer_seq", "chunk_id", "chunk_sha256", "stored_sha256")}
                    for t in found
                ],
            },
        )
    )
    return int(receipt.seq)


def document_names(ledger: Ledger, document_ids: list[str]) -> dict[tuple[str, int], str]:
    """Document name by (id, version), from the ledger's document events."""
    names: dict[tuple[str, int], str] = {}
    for start in range(0, len(document_ids), 400):
        part = document_ids[start : start + 400]
        marks = ",".join("?" * len(part))
        seqs = _seqs(
            ledger,
            "SELECT seq FROM ledger_entries WHERE entity_type = 'document' AND entity_id IN "
            f"({marks}) AND action IN ('document.upload', 'document.version') ORDER BY seq",
            tuple(part),
        )
        for entry in (ledger.entry(s) for s in seqs):
            names[(entry.attributes["document_id"], int(entry.attributes["version"]))] = str(
                entry.attributes.get("name")
            )
    return names


def configurations(ledger: Ledger, chatbot_id: str, versions: set[int]) -> list[dict[str, Any]]:
    """The chatbot configurations (by version) named in a conversation, from the ledger."""
    if not chatbot_id:
        return []
    seqs = _seqs(
        ledger,
        "SELECT seq FROM ledger_entries WHERE chatbot_id = ? AND action IN "
        "('chatbot.create', 'chatbot.update') ORDER BY seq",
        (chatbot_id,),
    )
    found = []
    for seq in seqs:
        record = ledger.read(seq)
        version = int(record.entry.attributes.get("config_version", 0))
        if version in versions:
            config = record.payload.get("after") if record.payload else None
            found.append(
                {
                    "version": version,
                    "seq": seq,
                    "ts": record.entry.ts,
                    "actor": record.entry.actor,
                    "config": config,
                    **({} if record.payload else _content(record)),
                }
            )
    return found

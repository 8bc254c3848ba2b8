"""The ingest service: records from chatbots built elsewhere become ledger events.

Integrations look like native chatbots in replay and search: the same actions
(``conversation.*``, ``message.*``, ``model.call``), the same attribute names (``chatbot_id``,
``conversation_id``, ``message_id``, ``gen_ai.*``) and the same payload shape (``{"text"}``),
and the same projection rows (``conversations``, ``messages``).

Ids. The application's ids are its own and may collide across tenants, so the ledger's ids
are derived from them: ``conv_<hash(chatbot id, application conversation id)>`` and
``msg_`` / ``ans_`` / ``ret_`` / ``call_<hash(ledger conversation id, application id)>``.
The application's ids stay in the events (``gen_ai.conversation.id``,
``external_message_id``). Data subjects are scoped the same way: ``ext:<workspace>:<user>``.

Exactly once. Every record has an idempotency key (scoped to the workspace); the key, the
seq of the event that recorded it and a digest of the record are written in the same
transaction as the event, so a batch retried after a timeout gets the same seqs back and
writes nothing twice. A whole request is one ledger transaction: it is answered only once
it is durable.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from chatledger.chatbots.service import Chatbot, ChatbotService
from chatledger.client.ids import ledger_conversation_id, ledger_item_id
from chatledger.errors import ChatLedgerError
from chatledger.events import Actor, Entity, Event, Outcome
from chatledger.identity.principal import Principal
from chatledger.identity.roles import Permission
from chatledger.identity.service import require
from chatledger.integrations.records import IngestRecord, RecordError
from chatledger.ledger.entry import utc_timestamp
from chatledger.ledger.service import Ledger
from chatledger.ledger.writer import WorkContext

log = logging.getLogger(__name__)

BUILTIN_OUTCOMES = ("conversion", "deflection", "lead_capture")
_CONV_TYPES_OPTIONAL = ("integration.span",)
_SLACK = 512  # bytes kept free under the payload limit (redaction may lengthen a value)
_IN_CHUNK = 400


def _conflict() -> RecordError:
    return RecordError("idempotency_conflict", "this key was already used for a different record")


def external_subject(workspace_id: str, person: str) -> str:
    return f"ext:{workspace_id}:{person}"


@dataclass
class RecordResult:
    key: str
    status: str  # "created", "duplicate" or "rejected"
    seq: int | None = None
    conversation_id: str | None = None
    code: str | None = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "status": self.status}
        if self.seq is not None:
            out["seq"] = self.seq
        if self.conversation_id is not None:
            out["conversation_id"] = self.conversation_id
        if self.code is not None:
            out["error"] = {"code": self.code, "message": self.message}
        return out


@dataclass
class _Conv:
    id: str
    chatbot_id: str
    subject: str
    started_at: str
    ended_at: str | None
    resolution: str
    outcome_tags: list[str]
    config_version: int
    in_db: bool
    dirty: set[str] = field(default_factory=set)
    resolution_by: str | None = None
    resolution_at: str | None = None
    last_activity_at: str | None = None


class IntegrationService:
    def __init__(self, ledger: Ledger, chatbots: ChatbotService) -> None:
        self.ledger = ledger
        self.chatbots = chatbots
        self._limit = ledger.config.max_payload_bytes - _SLACK

    # -- chatbots -------------------------------------------------------------------------

    def chatbots_of(self, principal: Principal, ids: Iterable[str]) -> dict[str, Chatbot]:
        """The chatbots among ``ids`` that exist in the principal's workspace."""
        found: dict[str, Chatbot] = {}
        for chatbot_id in set(ids):
            bot = self.chatbots.find(chatbot_id)
            if bot is not None and bot.workspace_id == principal.workspace_id:
                found[chatbot_id] = bot
        return found

    # -- ingest ---------------------------------------------------------------------------

    def ingest(
        self,
        principal: Principal,
        records: Sequence[IngestRecord],
        *,
        source: str,
        request_id: str | None = None,
    ) -> list[RecordResult]:
        """Record ``records`` in one ledger transaction; returns one result per record, in
        order, once durable. Invalid records are refused one by one (and the refusal is
        recorded as a ``request.rejected`` event in the same transaction)."""
        require(principal, Permission.CHAT, "integration", source)
        bots = self.chatbots_of(principal, (r.chatbot_id for r in records if r.chatbot_id))
        workspace = principal.workspace_id

        def work(ctx: WorkContext) -> tuple[list[RecordResult], list[Event]]:
            return _Batch(self, ctx, principal, bots, source, request_id).run(records, workspace)

        results, _ = self.ledger.transact(work)
        return results

    def record_refusal(
        self,
        action: str,
        actor: Actor,
        path: str,
        attributes: dict[str, Any],
        ip: str | None,
        outcome: Outcome = Outcome.DENIED,
    ) -> None:
        """Record a refused ingest request (malformed, oversized, wrong media type, ...)."""
        try:
            self.ledger.append(
                Event(
                    action,
                    actor,
                    Entity("http_request", f"POST {path}"[:200]),
                    outcome,
                    attributes={**attributes, "method": "POST", "path": path[:500]},
                    payload={"ip": ip} if ip else None,
                )
            )
        except ChatLedgerError:  # recording a refusal must not turn it into a 500
            log.exception("could not record a refused ingest request")


class _Batch:
    """One request's records, turned into events inside the ledger's transaction."""

    def __init__(
        self,
        service: IntegrationService,
        ctx: WorkContext,
        principal: Principal,
        bots: dict[str, Chatbot],
        source: str,
        request_id: str | None,
    ) -> None:
        self.s = service
        self.ctx = ctx
        self.principal = principal
        self.actor = principal.actor
        self.bots = bots
        self.source = source
        self.request_id = request_id
        self.events: list[Event] = []
        self.convs: dict[str, _Conv] = {}
        self.new_convs: list[tuple[_Conv, str, str, dict[str, Any], int]] = []
        self.messages: list[tuple[str, str, str, str, int, str | None, str]] = []
        self.keys: list[tuple[str, int, int, str]] = []
        self.now = utc_timestamp()
        self.limit = service._limit

    # the SQL --------------------------------------------------------------------------------

    def _existing(self, workspace: str, keys: list[str]) -> dict[str, tuple[int, str]]:
        found: dict[str, tuple[int, str]] = {}
        for start in range(0, len(keys), _IN_CHUNK):
            part = keys[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(part))
            for key, seq, digest in self.ctx.txn.execute(
                "SELECT idem_key, seq, digest FROM integration_records WHERE workspace_id = ? "
                f"AND idem_key IN ({marks})",
                (workspace, *part),
            ):
                found[str(key)] = (int(seq), str(digest))
        return found

    def _load_convs(self, ids: list[str]) -> dict[str, tuple[_Conv, int | None]]:
        found: dict[str, tuple[_Conv, int | None]] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            part = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(part))
            rows = self.ctx.txn.execute(
                "SELECT c.id, c.chatbot_id, c.visitor_id, c.user_id, c.started_at, c.ended_at, "
                "c.resolution, c.outcome_tags, c.config_version, i.start_seq "
                "FROM conversations c LEFT JOIN integration_conversations i "
                f"ON i.conversation_id = c.id WHERE c.id IN ({marks})",
                tuple(part),
            )
            for row in rows:
                cid, bot, visitor, user, started, ended, resolution, tags, version, start_seq = row
                found[str(cid)] = (
                    _Conv(
                        str(cid),
                        str(bot),
                        str(user or visitor or cid),
                        str(started),
                        ended,
                        str(resolution),
                        list(orjson.loads(tags)),
                        int(version),
                        True,
                    ),
                    int(start_seq) if start_seq is not None else None,
                )
        return found

    def _write_projections(self, workspace: str) -> None:
        txn = self.ctx.txn
        for conv, external, channel, who, start_seq in self.new_convs:
            txn.execute(
                "INSERT INTO conversations (id, chatbot_id, workspace_id, visitor_id, user_id, "
                "channel, started_at, last_activity_at, ended_at, resolution, resolution_by, "
                "resolution_at, outcome_tags, config_version) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 'open', NULL, NULL, '[]', ?)",
                (
                    conv.id,
                    conv.chatbot_id,
                    workspace,
                    who.get("visitor"),
                    who.get("user"),
                    channel,
                    conv.started_at,
                    conv.started_at,
                    conv.config_version,
                ),
            )
            txn.execute(
                "INSERT INTO integration_conversations (conversation_id, workspace_id, "
                "chatbot_id, external_id, start_seq, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (conv.id, workspace, conv.chatbot_id, external, start_seq, self.now),
            )
        for conv in self.convs.values():
            if not conv.dirty:
                continue
            txn.execute(
                "UPDATE conversations SET last_activity_at = ?, ended_at = ?, resolution = ?, "
                "resolution_by = COALESCE(?, resolution_by), "
                "resolution_at = COALESCE(?, resolution_at), outcome_tags = ? WHERE id = ?",
                (
                    conv.last_activity_at or self.now,
                    conv.ended_at,
                    conv.resolution,
                    conv.resolution_by,
                    conv.resolution_at,
                    orjson.dumps(conv.outcome_tags).decode(),
                    conv.id,
                ),
            )
        for start in range(0, len(self.messages), 100):
            part = self.messages[start : start + 100]
            marks = ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(part))
            txn.execute(
                "INSERT INTO messages (id, conversation_id, role, created_at, seq, reply_to, "
                f"status) VALUES {marks} ON CONFLICT (id) DO NOTHING",
                tuple(v for row in part for v in row),
            )
        for start in range(0, len(self.keys), 100):
            rows = self.keys[start : start + 100]
            marks = ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(rows))
            params: list[Any] = []
            for key, seq, count, digest in rows:
                params += [workspace, key, seq, count, self.source, digest, self.now]
            txn.execute(
                "INSERT INTO integration_records (workspace_id, idem_key, seq, events, source, "
                f"digest, created_at) VALUES {marks}",
                tuple(params),
            )

    # the records ----------------------------------------------------------------------------

    def run(
        self, records: Sequence[IngestRecord], workspace: str
    ) -> tuple[list[RecordResult], list[Event]]:
        keys = [r.key for r in records if r.error is None]
        existing = self._existing(workspace, keys)
        wanted = {
            ledger_conversation_id(r.chatbot_id, r.conversation)
            for r in records
            if r.error is None and r.chatbot_id in self.bots and r.conversation
        }
        loaded = self._load_convs(sorted(wanted))
        start_seqs = {cid: seq for cid, (_, seq) in loaded.items()}
        self.convs = {cid: conv for cid, (conv, _) in loaded.items()}
        results: list[RecordResult] = []
        seen: dict[str, tuple[RecordResult, str]] = {}  # key -> (result, record digest)
        for record in records:
            if record.error is not None:
                results.append(self._refused(record, record.error))
                continue
            earlier = existing.get(record.key)
            if earlier is not None:
                seq, digest = earlier
                if digest != record.digest:
                    results.append(self._refused(record, _conflict()))
                else:
                    results.append(RecordResult(record.key, "duplicate", seq, self._cid(record)))
                continue
            twin = seen.get(record.key)
            if twin is not None:
                # the same key earlier in this batch: a byte-identical repeat is a duplicate,
                # a different record is the same conflict as sending it in a later batch
                stored, digest = twin
                if digest != record.digest:
                    results.append(self._refused(record, _conflict()))
                else:
                    results.append(
                        RecordResult(record.key, "duplicate", stored.seq, stored.conversation_id)
                    )
                continue
            mark = len(self.events), len(self.new_convs)
            try:
                result = self._one(record, workspace, start_seqs)
            except RecordError as exc:
                # forget everything this record did, the conversation it started included
                del self.events[mark[0] :]
                for conv, *_ in self.new_convs[mark[1] :]:
                    self.convs.pop(conv.id, None)
                    start_seqs.pop(conv.id, None)
                del self.new_convs[mark[1] :]
                result = self._refused(record, exc)
            else:
                seen[record.key] = (result, record.digest)
            results.append(result)
        rejected = [r for r in results if r.status == "rejected"]
        if rejected:
            self.events.append(self._rejection_event(rejected, len(records)))
        self._write_projections(workspace)
        return results, self.events

    def _cid(self, record: IngestRecord) -> str | None:
        if record.chatbot_id in self.bots and record.conversation:
            return ledger_conversation_id(record.chatbot_id, record.conversation)
        return None

    def _refused(self, record: IngestRecord, error: RecordError) -> RecordResult:
        return RecordResult(record.key, "rejected", code=error.code, message=error.message)

    def _rejection_event(self, rejected: list[RecordResult], total: int) -> Event:
        return Event(
            "request.rejected",
            self.actor,
            Entity("integration", self.source),
            Outcome.DENIED,
            attributes={
                "reason": "invalid_records",
                "source": self.source,
                "rejected": len(rejected),
                "total": total,
                "errors": [
                    {"key": r.key[:200], "code": r.code, "message": (r.message or "")[:300]}
                    for r in rejected[:20]
                ],
                "request_id": self.request_id,
            },
        )

    def _seq_of_next(self) -> int:
        return self.ctx.next_seq + len(self.events)

    def _fits(self, what: str, value: dict[str, Any] | None) -> int:
        if value is None:
            return 0
        size = len(orjson.dumps(value))
        if size > self.limit:
            raise RecordError("too_large", f"the {what} is {size} bytes, over {self.limit}")
        return size

    def _payload(
        self, payload: dict[str, Any] | None, optional: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        """The payload, with optional bulky parts replaced by their digest if it is too big."""
        if payload is None:
            return None
        size = len(orjson.dumps(payload))
        if size <= self.limit:
            return payload
        trimmed = dict(payload)
        omitted = {}
        for name in optional:
            if name in trimmed and trimmed[name] is not None:
                body = orjson.dumps(trimmed.pop(name), option=orjson.OPT_SORT_KEYS)
                omitted[name] = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
                if len(orjson.dumps(trimmed)) + 300 * len(omitted) <= self.limit:
                    break
        if omitted:
            trimmed["omitted"] = omitted
        self._fits("payload", trimmed)
        return trimmed

    def _conversation(
        self, record: IngestRecord, bot: Chatbot, workspace: str, start_seqs: dict[str, int | None]
    ) -> tuple[_Conv, int | None]:
        """The record's conversation; the first record of a new one starts it."""
        assert record.conversation is not None
        cid = ledger_conversation_id(bot.id, record.conversation)
        conv = self.convs.get(cid)
        if conv is not None:
            if conv.chatbot_id != bot.id:
                raise RecordError("conflict", "the conversation belongs to another chatbot")
            return conv, start_seqs.get(cid)
        explicit = record.type == "conversation.start"
        data = record.data if explicit else {}
        who: dict[str, Any] = {}
        user_id, visitor_id = data.get("user_id"), data.get("visitor_id")
        if user_id:
            who["user"] = external_subject(workspace, user_id)
        elif visitor_id:
            who["visitor"] = external_subject(workspace, visitor_id)
        subject = who.get("user") or who.get("visitor") or cid
        started = record.occurred_at or self.now
        conv = _Conv(cid, bot.id, subject, started, None, "open", [], bot.config_version, False)
        channel = str(data.get("channel") or self.source)
        seq = self._seq_of_next()
        common = self._common(record, conv)
        if not explicit:  # the key belongs to the record that implied the start
            common.pop("ingest.key", None)
        attributes = {
            **common,
            "channel": channel,
            "config_version": bot.config_version,
            "identity": "user" if user_id else ("visitor" if visitor_id else "anonymous"),
            "implicit": not explicit,
        }
        payload: dict[str, Any] | None = None
        if explicit:
            payload = {
                "user_id": user_id,
                "visitor_id": visitor_id,
                "user_agent": data.get("user_agent"),
            }
            if data.get("metadata"):
                payload["metadata"] = data["metadata"]
        self.events.append(
            Event(
                "conversation.start",
                self.actor,
                Entity("conversation", cid),
                subject=subject,
                attributes=attributes,
                payload=payload,
            )
        )
        self.convs[cid] = conv
        start_seqs[cid] = seq
        self.new_convs.append((conv, record.conversation, channel, who, seq))
        return conv, seq

    def _common(self, record: IngestRecord, conv: _Conv | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if conv is not None:
            out["chatbot_id"] = conv.chatbot_id
            out["conversation_id"] = conv.id
            out["gen_ai.conversation.id"] = record.conversation
        elif record.chatbot_id and record.chatbot_id in self.bots:
            out["chatbot_id"] = record.chatbot_id
        out["ingest.source"] = self.source
        out["ingest.key"] = record.key
        if record.occurred_at:
            out["occurred_at"] = record.occurred_at
        if record.extra:
            out.update(record.extra)
        return out

    def _one(
        self, record: IngestRecord, workspace: str, start_seqs: dict[str, int | None]
    ) -> RecordResult:
        conv: _Conv | None = None
        bot = self.bots.get(record.chatbot_id or "")
        if record.type not in _CONV_TYPES_OPTIONAL or (bot and record.conversation):
            if bot is None:
                raise RecordError(
                    "not_found", f"no chatbot {record.chatbot_id!r} in this workspace"
                )
            if not record.conversation:
                raise RecordError("invalid_record", "conversation_id is required")
            existed = ledger_conversation_id(bot.id, record.conversation) in self.convs
            conv, start_seq = self._conversation(record, bot, workspace, start_seqs)
            if record.type == "conversation.start":
                if start_seq is None:  # a conversation the ingest did not start
                    return RecordResult(record.key, "duplicate", None, conv.id)
                self.keys.append((record.key, start_seq, 0 if existed else 1, record.digest))
                return RecordResult(
                    record.key, "duplicate" if existed else "created", start_seq, conv.id
                )
        before = len(self.events)
        seq = self._seq_of_next()
        build = getattr(self, "_" + record.type.replace(".", "_"), None)
        if build is None:
            build = self._custom
        event_seq = build(record, conv)
        seq = event_seq if event_seq is not None else seq
        if conv is not None:
            conv.last_activity_at = max(conv.last_activity_at or "", record.occurred_at or self.now)
            conv.dirty.add("activity")
        self.keys.append((record.key, seq, len(self.events) - before, record.digest))
        return RecordResult(record.key, "created", seq, conv.id if conv else None)

    def _add(
        self,
        action: str,
        record: IngestRecord,
        conv: _Conv | None,
        entity: Entity,
        attributes: dict[str, Any],
        payload: dict[str, Any] | None = None,
        outcome: Outcome = Outcome.SUCCESS,
        optional: Sequence[str] = (),
    ) -> int:
        attrs = {**self._common(record, conv), **attributes}
        self._fits("attributes", attrs)
        seq = self._seq_of_next()
        self.events.append(
            Event(
                action,
                self.actor,
                entity,
                outcome,
                subject=conv.subject if conv else None,
                attributes=attrs,
                payload=self._payload(payload, optional),
            )
        )
        return seq

    # one builder per record type ----------------------------------------------------------

    def _message_user(self, record: IngestRecord, conv: _Conv | None) -> int:
        assert conv is not None
        d = record.data
        message_id = ledger_item_id("msg", conv.id, d["message_id"])
        attachments = d["attachments"]
        seq = self._add(
            "message.user",
            record,
            conv,
            Entity("message", message_id),
            {
                "message_id": message_id,
                "external_message_id": d["message_id"],
                "length": len(d["text"]),
                "attachments": [
                    {"type": a["type"], "size": a["size"], "sha256": a["sha256"]}
                    for a in attachments
                ],
            },
            {"text": d["text"], "attachments": attachments},
        )
        created = record.occurred_at or self.now
        self.messages.append((message_id, conv.id, "user", created, seq, None, "received"))
        return seq

    def _model_attrs(self, d: dict[str, Any], operation: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        pairs = (
            ("gen_ai.operation.name", operation),
            ("gen_ai.provider.name", d.get("provider")),
            ("gen_ai.request.model", d.get("request_model")),
            ("gen_ai.response.model", d.get("response_model") or d.get("request_model")),
            ("gen_ai.usage.input_tokens", d.get("input_tokens")),
            ("gen_ai.usage.output_tokens", d.get("output_tokens")),
            ("gen_ai.response.finish_reasons", d.get("finish_reasons")),
            ("gen_ai.response.id", d.get("response_id")),
            ("latency_ms", d.get("latency_ms")),
        )
        for name, value in pairs:
            if value is not None:
                out[name] = value
        if d.get("input_tokens") is not None or d.get("output_tokens") is not None:
            out["usage_source"] = "reported"
        return out

    def _model_call(self, record: IngestRecord, conv: _Conv | None) -> int:
        assert conv is not None
        d = record.data
        call_id = ledger_item_id("call", conv.id, d["call_id"])
        answer = ledger_item_id("ans", conv.id, d["message_id"]) if d["message_id"] else None
        attrs = {
            "message_id": answer or call_id,
            "call_id": call_id,
            "external_call_id": d["call_id"],
            **self._model_attrs(d, d.get("operation") or "chat"),
        }
        if d.get("error_type") or d.get("error"):
            attrs["error.type"] = d.get("error_type") or "error"
        payload: dict[str, Any] = {}
        for name in ("messages", "output", "request", "error"):
            if d.get(name) is not None:
                payload[name] = d[name]
        if "otel" in record.data:
            payload["otel_attributes"] = record.data["otel"]
        return self._add(
            "model.call",
            record,
            conv,
            Entity("model_call", call_id),
            attrs,
            payload or None,
            Outcome.FAILURE if "error.type" in attrs else Outcome.SUCCESS,
            optional=("otel_attributes", "messages", "output"),
        )

    def _message_answer(self, record: IngestRecord, conv: _Conv | None) -> int:
        assert conv is not None
        d = record.data
        answer_id = ledger_item_id("ans", conv.id, d["message_id"])
        reply_to = ledger_item_id("msg", conv.id, d["in_reply_to"]) if d["in_reply_to"] else None
        attrs: dict[str, Any] = {
            "message_id": answer_id,
            "external_message_id": d["message_id"],
            "in_reply_to": reply_to,
            "config_version": conv.config_version,
            **self._model_attrs(d, "chat"),
            "unanswered": d["unanswered"],
            "cited": d["cited"],
        }
        if d.get("retrieval_id"):
            attrs["retrieval_id"] = ledger_item_id("ret", conv.id, d["retrieval_id"])
        if d.get("groundedness") is not None:
            attrs["groundedness"] = d["groundedness"]
            attrs["groundedness_method"] = "reported"
        seq = self._add(
            "message.answer", record, conv, Entity("message", answer_id), attrs, {"text": d["text"]}
        )
        created = record.occurred_at or self.now
        status = "unanswered" if d["unanswered"] else "answered"
        self.messages.append((answer_id, conv.id, "assistant", created, seq, reply_to, status))
        if d["unanswered"] and reply_to:
            self.events.append(
                Event(
                    "message.unanswered",
                    self.actor,
                    Entity("message", reply_to),
                    subject=conv.subject,
                    attributes={
                        **self._common(record, conv),
                        "message_id": reply_to,
                        "answer_id": answer_id,
                    },
                )
            )
        return seq

    def _message_retrieval(self, record: IngestRecord, conv: _Conv | None) -> int:
        assert conv is not None
        d = record.data
        retrieval_id = ledger_item_id("ret", conv.id, d["retrieval_id"])
        retrieved = []
        texts = []
        for chunk in d["chunks"]:
            item = {
                k: chunk[k]
                for k in (
                    "rank",
                    "chunk_id",
                    "document_id",
                    "document_version",
                    "source",
                    "score",
                    "chunk_sha256",
                )
                if chunk.get(k) is not None
            }
            if chunk.get("text") is not None:
                item["length"] = len(chunk["text"])
            retrieved.append(item)
            if chunk.get("text") is not None or chunk.get("metadata"):
                texts.append(
                    {
                        "rank": chunk["rank"],
                        "text": chunk.get("text"),
                        "metadata": chunk.get("metadata"),
                    }
                )
        attrs: dict[str, Any] = {
            "retrieval_id": retrieval_id,
            "external_retrieval_id": d["retrieval_id"],
            "gen_ai.operation.name": "retrieval",
            "retrieved": retrieved,
            "count": len(retrieved),
        }
        if d.get("message_id"):
            attrs["message_id"] = ledger_item_id("msg", conv.id, d["message_id"])
        if d.get("data_source"):
            attrs["gen_ai.data_source.id"] = d["data_source"]
        if d.get("top_k") is not None:
            attrs["gen_ai.retrieval.top_k"] = d["top_k"]
        payload: dict[str, Any] = {}
        if d.get("query") is not None:
            payload["query"] = d["query"]
        if texts:
            payload["chunks"] = texts
        if "otel" in d:
            payload["otel_attributes"] = d["otel"]
        return self._add(
            "message.retrieval",
            record,
            conv,
            Entity("retrieval", retrieval_id),
            attrs,
            payload or None,
            optional=("otel_attributes",),
        )

    def _message_feedback(self, record: IngestRecord, conv: _Conv | None) -> int:
        assert conv is not None
        d = record.data
        answer_id = ledger_item_id("ans", conv.id, d["message_id"])
        return self._add(
            "message.feedback",
            record,
            conv,
            Entity("message", answer_id),
            {
                "message_id": answer_id,
                "external_message_id": d["message_id"],
                "rating": d["rating"],
                "has_comment": bool(d["comment"]),
            },
            {"comment": d["comment"]} if d["comment"] else None,
        )

    def _conversation_resolution(self, record: IngestRecord, conv: _Conv | None) -> int:
        assert conv is not None
        d = record.data
        seq = self._add(
            "conversation.resolution",
            record,
            conv,
            Entity("conversation", conv.id),
            {
                "resolution": d["resolution"],
                "previous": conv.resolution,
                "set_by": d.get("set_by") or self.actor.type,
                "reason": d.get("reason") or "reported",
            },
        )
        conv.resolution = d["resolution"]
        conv.resolution_by = d.get("set_by") or self.actor.id
        conv.resolution_at = record.occurred_at or self.now
        conv.dirty.add("resolution")
        return seq

    def _conversation_outcome(self, record: IngestRecord, conv: _Conv | None) -> int:
        assert conv is not None
        d = record.data
        old = list(conv.outcome_tags)
        tags = list(d["tags"]) if d["replace"] else sorted(set(old) | set(d["tags"]))
        seq = self._add(
            "conversation.outcome",
            record,
            conv,
            Entity("conversation", conv.id),
            {
                "tags": tags,
                "added": sorted(set(tags) - set(old)),
                "removed": sorted(set(old) - set(tags)),
                "custom": sorted(set(tags) - set(BUILTIN_OUTCOMES)),
            },
        )
        conv.outcome_tags = tags
        conv.dirty.add("outcome")
        return seq

    def _conversation_end(self, record: IngestRecord, conv: _Conv | None) -> int:
        assert conv is not None
        ended = record.occurred_at or self.now
        attrs: dict[str, Any] = {"started_at": conv.started_at, "ended_at": ended}
        if conv.ended_at:
            attrs["already_ended_at"] = conv.ended_at
        if record.data.get("reason"):
            attrs["reason"] = record.data["reason"]
        seq = self._add("conversation.end", record, conv, Entity("conversation", conv.id), attrs)
        if not conv.ended_at:
            conv.ended_at = ended
            conv.dirty.add("ended")
        return seq

    def _integration_span(self, record: IngestRecord, conv: _Conv | None) -> int:
        d = record.data
        span_key = f"{d.get('trace_id', '')}:{d.get('span_id', '')}"[:200]
        attrs = {"reason": d.get("reason", "unmapped")}
        if record.chatbot_id and record.chatbot_id not in self.bots:
            attrs["reported_chatbot_id"] = record.chatbot_id
        payload: dict[str, Any] = {
            k: d[k] for k in ("attributes", "resource", "events", "links", "status") if k in d
        }
        return self._add(
            "integration.span",
            record,
            conv,
            Entity("span", span_key if span_key != ":" else record.key[:200]),
            attrs,
            payload or None,
            optional=("links", "events", "resource"),
        )

    def _custom(self, record: IngestRecord, conv: _Conv | None) -> int:
        assert conv is not None
        d = record.data
        reserved = set(self._common(record, conv))
        attrs = {k: v for k, v in d["attributes"].items() if k not in reserved}
        entity = Entity(d.get("entity_type") or "conversation", d.get("entity_id") or conv.id)
        return self._add(record.type, record, conv, entity, attrs, d.get("payload"))

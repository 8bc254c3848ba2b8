"""Evidence packs: one zip that hands a dispute over to a third party, checkable offline.

A pack holds, for a conversation, a data subject or a time range:

``replay.json``      the conversations as recorded (messages, answers with their sources as
                     they were, model and tokens, configuration in force, guard verdicts,
                     feedback, resolution, outcomes) and every other entry of the pack
``replay.html``      the same as one readable, self-contained page (rendered from replay.json)
``entries.jsonl``    the ledger entries' canonical bytes (the Merkle leaves), by seq
``proofs.jsonl``     an RFC 9162 inclusion proof of each entry to the signed checkpoint
``payloads.jsonl``   each included payload's salt and canonical bytes (HMAC-SHA256(salt,
                     bytes) is the digest its entry commits to), or that it was erased
``checkpoint.note``  the signed C2SP checkpoint the proofs lead to
``verifier.key``     the log's verifier key (a verifier should pin its own copy)
``custody.json``     chain of custody: who exported, when, why, with which tool, recorded in
                     the ledger as which ``audit.evidence`` entry (itself inside the pack)
``README.txt``       how to check the pack
``manifest.json``    the SHA-256 of every other file; ``manifest.sig`` a signed note over
                     the manifest's SHA-256, with the log's key (as in ledger bundles)

The export is recorded (``audit.evidence``) *before* the pack is built, so the pack contains
and proves its own custody event; if the ledger cannot record it, no pack is made.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import platform as host_platform
import socket
import uuid
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from chatledger import __version__
from chatledger.audit.evidence_html import render_html
from chatledger.chat.replay import TAMPER_REASON, record_tampering, replay_conversation
from chatledger.errors import ChatLedgerError, IntegrityError, InvalidInput, NotFound
from chatledger.events import Actor, Entity, Event
from chatledger.ledger import merkle
from chatledger.ledger.entry import Entry
from chatledger.ledger.note import open_checkpoint
from chatledger.ledger.service import Ledger, Record
from chatledger.ledger.signed_zip import (
    manifest_note_text,
    pinned_verifier,
    signed_manifest,
)
from chatledger.ledger.signed_zip import read_members as _read_members
from chatledger.privacy.payloads import payload_digest
from chatledger.privacy.retention import parse_time, seq_at_time

EVIDENCE_FORMAT = "chatledger-evidence/1"
REPLAY_FORMAT = "chatledger-evidence-replay/1"
MAX_ENTRIES = 50_000
MAX_CONVERSATIONS = 1_000
TOOL_NAME = "chatledger"
_JSON_OPTS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
_REQUIRED = (
    "manifest.json",
    "manifest.sig",
    "checkpoint.note",
    "verifier.key",
    "entries.jsonl",
    "proofs.jsonl",
    "payloads.jsonl",
    "replay.json",
    "replay.html",
    "custody.json",
)
_DOCUMENT_ACTIONS = ("document.upload", "document.version")

EntryFilter = Callable[[str | None, dict[str, Any]], bool]
"""Given an entry's chatbot id and attributes, whether it may go into the pack."""

README = """ChatLedger evidence pack

Verify with the ChatLedger CLI, pinning the log's verifier key obtained independently:

    chatledger audit verify-evidence THIS.zip --key 'name+keyid+base64key'

or by hand (docs/evidence.md has the commands): check manifest.sig with the log's Ed25519 key
(openssl), the SHA-256 of every file against manifest.json (sha256sum), each entry's leaf hash
SHA-256(0x00 || line of entries.jsonl) and its inclusion proof in proofs.jsonl against the root
in checkpoint.note, and each payload's HMAC-SHA256(salt, body) against the digest in its entry.
replay.json and replay.html are derived from the entries and payloads; every source passage's
SHA-256 equals the chunk_sha256 its answer entry commits to.
"""


def _manifest_note_text(manifest_bytes: bytes) -> str:
    return manifest_note_text("evidence", manifest_bytes)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_JSON_OPTS) + b"\n"


# -- scope and custody --------------------------------------------------------------------------


@dataclass(frozen=True)
class EvidenceScope:
    """What goes into a pack: a conversation, a data subject, a time range, or a combination
    (the time range then narrows the others). Times are ISO 8601 (a bare date is a whole day)."""

    conversation_id: str | None = None
    subject: str | None = None
    start: str | None = None
    end: str | None = None

    def normalized(self) -> tuple[str | None, str | None]:
        if not (self.conversation_id or self.subject or self.start or self.end):
            raise InvalidInput("give a conversation, a subject, or a time range (--from/--to)")
        start = parse_time(self.start) if self.start else None
        end = parse_time(self.end, end=True) if self.end else None
        if start and end and start > end:
            raise InvalidInput("the time range ends before it starts")
        return start, end

    def to_json(self, ledger: Ledger) -> dict[str, Any]:
        start, end = self.normalized()
        return {
            "conversation_id": self.conversation_id,
            "subject": ledger.subject_ref(self.subject) if self.subject else None,
            "from": start,
            "to": end,
        }


@dataclass(frozen=True)
class Custodian:
    """Who exports, through what, and why."""

    actor: Actor
    via: str  # "cli" or "api"
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    """Extra facts about the exporter kept in the custody record and the event's payload
    (for example the OS user and host of a CLI export, the client IP of an API export)."""

    @classmethod
    def for_cli(cls, actor_id: str | None, reason: str) -> Custodian:
        try:
            os_user = getpass.getuser()
        except (KeyError, OSError):
            os_user = "unknown"
        return cls(
            Actor("user", actor_id or f"cli:{os_user}", "operator"),
            "cli",
            reason,
            {"os_user": os_user, "host": socket.gethostname()},
        )


@dataclass
class EvidenceResult:
    path: Path
    pack_id: str
    event_seq: int
    manifest: dict[str, Any]
    manifest_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.path),
            "pack_id": self.pack_id,
            "event_seq": self.event_seq,
            "entries": self.manifest["entries"],
            "conversations": self.manifest["conversations"],
            "tree_size": self.manifest["tree_size"],
            "manifest_sha256": self.manifest_sha256,
        }


# -- shared views (the exporter and the verifier build the same dicts) ------------------------


@dataclass(frozen=True)
class PayloadView:
    status: str  # "present", "erased" or "none"
    value: dict[str, Any] | None = None
    erased_at: str | None = None
    erasure_seq: int | None = None

    @classmethod
    def of(cls, record: Record) -> PayloadView:
        if record.payload_status == "present":
            return cls("present", record.payload)
        if record.payload_status == "erased":
            return cls("erased", None, record.erased_at, record.erasure_seq)
        return cls("none")

    def erased_marker(self) -> dict[str, Any]:
        return {"erased": True, "erased_at": self.erased_at, "erasure_seq": self.erasure_seq}


def event_view(entry: Entry, payload: PayloadView) -> dict[str, Any]:
    """How an entry outside the replayed conversations appears in replay.json."""
    out: dict[str, Any] = {
        "seq": entry.seq,
        "ts": entry.ts,
        "category": entry.category,
        "action": entry.action,
        "actor": entry.actor,
        "entity": entry.entity,
        "outcome": entry.outcome,
        "subject": entry.subject,
        "attributes": entry.attributes,
    }
    if payload.status == "present":
        out["payload"] = payload.value
    elif payload.status == "erased":
        out.update(payload.erased_marker())
    return out


def _conversation_of(attributes: dict[str, Any]) -> str | None:
    value = attributes.get("conversation_id")
    return value if isinstance(value, str) else None


# -- building a pack --------------------------------------------------------------------------


def _select(
    ledger: Ledger, scope: EvidenceScope, entry_filter: EntryFilter | None
) -> tuple[list[int], list[str]]:
    """Seqs in scope (before completion) and the conversations they touch, in order."""
    start, end = scope.normalized()
    where: list[str] = []
    params: list[Any] = []
    if scope.conversation_id:
        if not ledger.store.query(
            "SELECT seq FROM ledger_entries WHERE conversation_id = ? LIMIT 1",
            (scope.conversation_id,),
        ):
            raise NotFound(f"no conversation {scope.conversation_id} in the ledger")
        where.append("conversation_id = ?")
        params.append(scope.conversation_id)
    if scope.subject:
        where.append("subject = ?")
        params.append(ledger.subject_ref(scope.subject))
    if start:
        where.append("seq >= ?")
        params.append(seq_at_time(ledger.store, start))
    if end:
        where.append("seq < ?")
        params.append(seq_at_time(ledger.store, end, after=True))
    clause = " AND ".join(where)
    (count,) = ledger.store.query(f"SELECT COUNT(*) FROM ledger_entries WHERE {clause}", params)[0]
    if int(count) > MAX_ENTRIES:
        raise InvalidInput(
            f"the scope holds {count} entries, over the limit of {MAX_ENTRIES} for one pack: "
            "narrow it (a conversation, a subject, a shorter time range)",
            details={"entries": int(count), "limit": MAX_ENTRIES},
        )
    rows = ledger.store.query(
        f"SELECT seq, chatbot_id, conversation_id, body FROM ledger_entries WHERE {clause} "
        "ORDER BY seq",
        params,
    )
    seqs: list[int] = []
    conversations: dict[str, None] = {}
    for seq, chatbot_id, conversation_id, body in rows:
        if entry_filter is not None:
            attributes = Entry.parse(bytes(body), int(seq)).attributes
            if not entry_filter(chatbot_id, attributes):
                continue
        seqs.append(int(seq))
        if conversation_id is not None:
            conversations[str(conversation_id)] = None
    if not seqs:
        raise NotFound("nothing in the ledger matches this scope")
    if len(conversations) > MAX_CONVERSATIONS:
        raise InvalidInput(
            f"the scope touches {len(conversations)} conversations, over the limit of "
            f"{MAX_CONVERSATIONS} for one pack: narrow it",
            details={"conversations": len(conversations), "limit": MAX_CONVERSATIONS},
        )
    return seqs, list(conversations)


def _document_seqs(ledger: Ledger, replays: Iterable[dict[str, Any]]) -> set[int]:
    """The upload/version entries of every document version a source came from."""
    wanted: set[tuple[str, int]] = set()
    for replay in replays:
        for message in replay.get("messages", []):
            for source in message.get("sources", []) or []:
                wanted.add((str(source["document_id"]), int(source["document_version"])))
    found: set[int] = set()
    ids = sorted({doc for doc, _ in wanted})
    for i in range(0, len(ids), 400):
        part = ids[i : i + 400]
        marks = ",".join("?" * len(part))
        for seq, body in ledger.store.query(
            "SELECT seq, body FROM ledger_entries WHERE entity_type = 'document' AND entity_id "
            f"IN ({marks}) AND action IN ('document.upload', 'document.version') ORDER BY seq",
            part,
        ):
            attrs = Entry.parse(bytes(body), int(seq)).attributes
            if (str(attrs.get("document_id")), int(attrs.get("version", 0))) in wanted:
                found.add(int(seq))
    return found


def _proofs(ledger: Ledger, seqs: list[int], tree_size: int) -> list[bytes]:
    """One JSON line per seq: its leaf hash and RFC 9162 inclusion path, fetched in one batch."""
    paths = [merkle.inclusion_path_ranges(seq, tree_size) for seq in seqs]
    flat = [r for path in paths for r in path]
    hashes = merkle.subtree_hashes(flat, ledger.store.fetch_nodes) if flat else []
    leaves = ledger.store.fetch_nodes([(0, s) for s in seqs])
    lines: list[bytes] = []
    pos = 0
    for seq, path in zip(seqs, paths, strict=True):
        proof = hashes[pos : pos + len(path)]
        pos += len(path)
        lines.append(
            orjson.dumps(
                {
                    "seq": seq,
                    "tree_size": tree_size,
                    "leaf_hash": leaves[(0, seq)].hex(),
                    "hashes": [h.hex() for h in proof],
                }
            )
        )
    return lines


def _payload_line(record: Record) -> bytes:
    entry = record.entry
    item: dict[str, Any] = {"seq": entry.seq}
    if record.payload_status == "present" and record.salt is not None:
        item["salt"] = base64.b64encode(record.salt).decode()
        item["body"] = (record.payload_body or b"").decode()
    else:
        item.update(erased=True, erased_at=record.erased_at, erasure_seq=record.erasure_seq)
    return orjson.dumps(item)


def _refuse_tampered_sources(
    ledger: Ledger, replays: Sequence[dict[str, Any]], custodian: Custodian
) -> None:
    """A pack must not carry a source text that no longer matches the SHA-256 its answer
    recorded: before anything is exported, name such sources and record the finding."""
    for replay in replays:
        conversation_id = replay["conversation_id"]
        if not replay["tampered_sources"]:
            continue
        seq = record_tampering(ledger, replay, custodian.actor, f"evidence_{custodian.via}")
        raise IntegrityError(
            f"no evidence pack written: source texts of conversation {conversation_id} do not "
            f"match the ledger ({'; '.join(replay['warnings'])}); recorded as "
            f"ledger.tamper_detected, seq {seq}",
            reason=TAMPER_REASON,
            seq=min(int(t["answer_seq"]) for t in replay["tampered_sources"]),
        )


def build_evidence_pack(
    ledger: Ledger,
    scope: EvidenceScope,
    custodian: Custodian,
    out: Path,
    *,
    entry_filter: EntryFilter | None = None,
    self_check: bool = True,
) -> EvidenceResult:
    """Record the export, then write the pack to ``out`` (atomically) and check it."""
    scope_json = scope.to_json(ledger)
    seqs, conversations = _select(ledger, scope, entry_filter)
    # 0. Replays first, so that a tampered source stops the export before it is recorded.
    replays = [replay_conversation(ledger, cid) for cid in conversations]
    _refuse_tampered_sources(ledger, replays, custodian)
    pack_id = f"ev_{uuid.uuid4().hex[:20]}"
    # 1. The export goes on the record first; the pack then proves its own custody event.
    attributes: dict[str, Any] = {
        "pack_id": pack_id,
        "via": custodian.via,
        "scope": scope_json,
        "format": EVIDENCE_FORMAT,
        "tool_version": __version__,
    }
    if scope.conversation_id:
        first = ledger.store.query(
            "SELECT chatbot_id FROM ledger_entries WHERE conversation_id = ? ORDER BY seq LIMIT 1",
            (scope.conversation_id,),
        )
        attributes["conversation_id"] = scope.conversation_id
        if first and first[0][0]:
            attributes["chatbot_id"] = first[0][0]
    payload: dict[str, Any] = {"reason": custodian.reason, **custodian.details}
    receipt = ledger.append(
        Event(
            "audit.evidence",
            custodian.actor,
            Entity("evidence_pack", pack_id),
            attributes=attributes,
            payload=payload,
        )
    )
    # 2. Replays, and the entries that complete them (config versions, documents, erasures).
    # The export event names the conversation it is about, so it is one of that
    # conversation's entries (a replay takes no other part of it than its seq).
    for replay in replays:
        if replay["conversation_id"] == attributes.get("conversation_id"):
            replay["ledger_seqs"].append(receipt.seq)
    wanted: set[int] = set(seqs) | {receipt.seq}
    for replay in replays:
        wanted.update(int(s) for s in replay["ledger_seqs"])
        wanted.update(int(c["seq"]) for c in replay.get("configuration", []))
    wanted |= _document_seqs(ledger, replays)
    records: dict[int, Record] = {}
    pending = sorted(wanted)
    while pending:
        for seq in pending:
            records[seq] = ledger.read(seq)
        erasures = {
            r.erasure_seq
            for r in records.values()
            if r.payload_status == "erased" and r.erasure_seq is not None
        }
        pending = sorted(s for s in erasures if s not in records)
    ordered = sorted(records)
    # 3. A checkpoint covering all of it, and the proofs.
    checkpoint = ledger.checkpoint()
    tree_size = checkpoint.size
    in_conversations = {int(s) for r in replays for s in r["ledger_seqs"]}
    views = {seq: PayloadView.of(records[seq]) for seq in ordered}
    replay_doc = {
        "format": REPLAY_FORMAT,
        "pack_id": pack_id,
        "scope": scope_json,
        "conversations": replays,
        "events": [
            event_view(records[seq].entry, views[seq])
            for seq in ordered
            if seq not in in_conversations
        ],
    }
    custody = {
        "pack_id": pack_id,
        "exported_at": records[receipt.seq].entry.ts,
        "exported_by": {**custodian.actor.to_json(), "via": custodian.via, **custodian.details},
        "reason": custodian.reason,
        "scope": scope_json,
        "tool": {
            "name": TOOL_NAME,
            "version": __version__,
            "python": host_platform.python_version(),
        },
        "event": {"action": "audit.evidence", "seq": receipt.seq, "id": receipt.id},
        "ledger": {
            "origin": ledger.origin,
            "tree_size": tree_size,
            "checkpoint": checkpoint.note,
            "verifier_key": str(ledger.verifier),
        },
    }
    files: dict[str, bytes] = {
        "entries.jsonl": b"".join(records[s].entry.body + b"\n" for s in ordered),
        "proofs.jsonl": b"".join(line + b"\n" for line in _proofs(ledger, ordered, tree_size)),
        "payloads.jsonl": b"".join(
            _payload_line(records[s]) + b"\n"
            for s in ordered
            if records[s].entry.payload_digest is not None
        ),
        "replay.json": _dumps(replay_doc),
        "custody.json": _dumps(custody),
        "checkpoint.note": checkpoint.note.encode(),
        "verifier.key": (str(ledger.verifier) + "\n").encode(),
        "README.txt": README.encode(),
    }
    # The page is rendered from the JSON as a verifier will read it back.
    files["replay.html"] = render_html(
        orjson.loads(files["replay.json"]), orjson.loads(files["custody.json"])
    )
    manifest = {
        "format": EVIDENCE_FORMAT,
        "pack_id": pack_id,
        "origin": ledger.origin,
        "tree_size": tree_size,
        "entries": len(ordered),
        "conversations": len(replays),
        "custody_seq": receipt.seq,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    manifest_bytes = _dumps(manifest)
    files["manifest.json"] = manifest_bytes
    files["manifest.sig"] = ledger.sign_note(_manifest_note_text(manifest_bytes)).encode()
    tmp = out.with_name(out.name + ".partial")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            head = ["manifest.json", "manifest.sig", "README.txt"]
            for name in [*head, *sorted(files.keys() - set(head))]:
                zf.writestr(name, files[name])
        if self_check:
            report = verify_evidence(tmp, str(ledger.verifier))
            if report.error is not None:
                raise IntegrityError(
                    f"the pack failed its own verification: {report.error.message}",
                    reason=report.error.reason,
                    seq=report.error.seq,
                )
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return EvidenceResult(
        out, pack_id, receipt.seq, manifest, hashlib.sha256(manifest_bytes).hexdigest()
    )


# -- verifying a pack -------------------------------------------------------------------------


@dataclass
class EvidenceReport:
    ok: bool
    pack_id: str = ""
    origin: str = ""
    tree_size: int = 0
    entries: int = 0
    conversations: int = 0
    payloads_checked: int = 0
    payloads_erased: int = 0
    sources_checked: int = 0
    key_source: str = ""
    custody: dict[str, Any] = field(default_factory=dict)
    error: IntegrityError | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok,
            "pack_id": self.pack_id,
            "origin": self.origin,
            "tree_size": self.tree_size,
            "entries": self.entries,
            "conversations": self.conversations,
            "payloads_checked": self.payloads_checked,
            "payloads_erased": self.payloads_erased,
            "sources_checked": self.sources_checked,
            "key_source": self.key_source,
            "custody": self.custody,
            "warnings": self.warnings,
        }
        if self.error is not None:
            out["error"] = self.error.to_dict()
        return out


def _fail(message: str, reason: str, seq: int | None = None) -> IntegrityError:
    return IntegrityError(message, reason=reason, seq=seq)


def verify_evidence(path: Path, key: str | None = None) -> EvidenceReport:
    """Verify a pack offline. Tampering is reported, not raised: ``report.error`` names the
    first problem found (with a stable ``reason`` and the entry's seq when there is one)."""
    report = EvidenceReport(ok=False)
    try:
        _verify(path, key, report)
        report.ok = True
    except IntegrityError as exc:
        report.error = exc
    except ChatLedgerError as exc:
        report.error = IntegrityError(exc.message, reason=getattr(exc, "reason", "invalid"))
    except (KeyError, TypeError, ValueError, AttributeError, UnicodeDecodeError) as exc:
        report.error = IntegrityError(
            f"a file of the pack is malformed: {type(exc).__name__}: {exc}", reason="malformed"
        )
    return report


def _json_lines(data: bytes, name: str) -> list[Any]:
    try:
        return [orjson.loads(line) for line in data.split(b"\n") if line]
    except orjson.JSONDecodeError as exc:
        raise _fail(f"{name} is not valid JSON Lines: {exc}", "malformed") from exc


def _json(data: bytes, name: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _fail(f"{name} is not valid JSON: {exc}", "malformed") from exc


def _verify(path: Path, key: str | None, report: EvidenceReport) -> None:
    members = _read_members(path)
    for required in _REQUIRED:
        if required not in members:
            raise _fail(f"the pack has no {required}", "missing_file")
    # 1. The key: pinned by the caller, or (weaker) the one inside the pack.
    verifier, report.key_source = pinned_verifier(members, key, "pack", report.warnings)
    # 2. The manifest is signed, and every file matches its hash.
    manifest = signed_manifest(members, verifier, "evidence", EVIDENCE_FORMAT)
    report.pack_id = str(manifest["pack_id"])
    report.origin = str(manifest["origin"])
    # 3. The checkpoint is signed by the key and matches the manifest.
    checkpoint = open_checkpoint(members["checkpoint.note"].decode(), verifier, report.origin)
    tree_size = int(manifest["tree_size"])
    report.tree_size = tree_size
    if checkpoint.size != tree_size:
        raise _fail("the checkpoint's size differs from the manifest's", "bad_checkpoint")
    # 4. Entries: increasing seqs inside the tree; linked where consecutive.
    entries: dict[int, Entry] = {}
    leaves: dict[int, bytes] = {}
    previous: Entry | None = None
    for body in [ln for ln in members["entries.jsonl"].split(b"\n") if ln]:
        entry = Entry.parse(body)
        seq = entry.seq
        if previous is not None and seq <= previous.seq:
            raise _fail(f"entries are not in increasing seq order at {seq}", "entry_order", seq)
        if not 0 <= seq < tree_size:
            raise _fail(f"entry {seq} lies outside the checkpointed tree", "bad_range", seq)
        leaf = merkle.leaf_hash(body)
        if (
            previous is not None
            and seq == previous.seq + 1
            and entry.prev != leaves[previous.seq].hex()
        ):
            raise _fail(f"entry {seq} does not link to entry {seq - 1}", "chain_broken", seq)
        entries[seq] = entry
        leaves[seq] = leaf
        previous = entry
    if len(entries) != int(manifest["entries"]):
        raise _fail(
            f"the pack holds {len(entries)} entries, the manifest says {manifest['entries']}",
            "entry_count",
        )
    # 5. One inclusion proof per entry, to the signed root (RFC 9162 2.1.3.2).
    proofs = _json_lines(members["proofs.jsonl"], "proofs.jsonl")
    if [int(p["seq"]) for p in proofs] != sorted(entries):
        raise _fail("proofs.jsonl does not hold one proof per entry, in order", "proof_count")
    for proof in proofs:
        seq = int(proof["seq"])
        if int(proof.get("tree_size", tree_size)) != tree_size:
            raise _fail(f"the proof of {seq} is for another tree size", "proof_size", seq)
        if proof.get("leaf_hash") not in (None, leaves[seq].hex()):
            raise _fail(f"entry {seq} does not hash to its proof's leaf", "leaf_mismatch", seq)
        try:
            merkle.verify_inclusion(
                seq,
                tree_size,
                leaves[seq],
                [bytes.fromhex(h) for h in proof["hashes"]],
                checkpoint.root,
            )
        except IntegrityError as exc:
            raise _fail(
                f"entry {seq} is not in the signed tree: {exc.message}", "inclusion_failed", seq
            ) from exc
    report.entries = len(entries)
    # 6. Payloads match their digests; erasures cite an erasure event of the pack after them.
    views: dict[int, PayloadView] = {}
    for item in _json_lines(members["payloads.jsonl"], "payloads.jsonl"):
        seq = int(item["seq"])
        entry_or_none = entries.get(seq)
        if entry_or_none is None or entry_or_none.payload_digest is None:
            raise _fail(
                f"a payload is given for entry {seq}, which commits to none in this pack",
                "unexpected_payload",
                seq,
            )
        if seq in views:
            raise _fail(f"two payloads are given for entry {seq}", "duplicate_payload", seq)
        if item.get("erased"):
            erasure_seq = item.get("erasure_seq")
            erasure = entries.get(int(erasure_seq)) if erasure_seq is not None else None
            if erasure is None or erasure.category != "privacy" or erasure.seq <= seq:
                raise _fail(
                    f"the payload of entry {seq} is said to be erased by {erasure_seq}, "
                    "which is no erasure event of this pack after it",
                    "erasure_unproven",
                    seq,
                )
            views[seq] = PayloadView("erased", None, item.get("erased_at"), int(erasure_seq))
            report.payloads_erased += 1
            continue
        body = str(item["body"]).encode()
        if payload_digest(base64.b64decode(item["salt"]), body) != entry_or_none.payload_digest:
            raise _fail(
                f"the payload of entry {seq} does not match its digest",
                "payload_digest_mismatch",
                seq,
            )
        views[seq] = PayloadView("present", orjson.loads(body))
        report.payloads_checked += 1
    for seq, entry in entries.items():
        if seq not in views:
            if entry.payload_digest is not None:
                raise _fail(f"the payload of entry {seq} is missing", "payload_missing", seq)
            views[seq] = PayloadView("none")
    # 7. The custody record is the pack's own audit.evidence entry.
    custody = _json(members["custody.json"], "custody.json")
    report.custody = custody
    _check_custody(custody, manifest, entries, views, members["checkpoint.note"].decode())
    # 8. replay.json says what the entries and payloads say; replay.html renders replay.json.
    replay = _json(members["replay.json"], "replay.json")
    if replay.get("format") != REPLAY_FORMAT or replay.get("pack_id") != report.pack_id:
        raise _fail("replay.json is not this pack's replay", "replay_mismatch")
    checker = _ReplayChecker(entries, views)
    checker.check(replay)
    report.conversations = len(replay["conversations"])
    report.sources_checked = checker.sources_checked
    if int(manifest["conversations"]) != report.conversations:
        raise _fail("the manifest and replay.json disagree on the conversations", "replay_mismatch")
    rendered = render_html(replay, custody)
    if rendered != members["replay.html"]:
        tool = custody.get("tool", {})
        if tool.get("name") == TOOL_NAME and tool.get("version") == __version__:
            raise _fail("replay.html does not render replay.json", "html_mismatch")
        report.warnings.append(
            f"replay.html was rendered by {tool.get('name')} {tool.get('version')}; this "
            f"verifier ({__version__}) renders it differently, so the page was not compared"
        )


def _check_custody(
    custody: dict[str, Any],
    manifest: dict[str, Any],
    entries: dict[int, Entry],
    views: dict[int, PayloadView],
    checkpoint_note: str,
) -> None:
    seq = int(custody["event"]["seq"])
    entry = entries.get(seq)
    if seq != int(manifest["custody_seq"]) or entry is None:
        raise _fail("the custody event is not in the pack", "custody_mismatch", seq)
    attrs = entry.attributes
    problems = []
    if entry.action != "audit.evidence" or attrs.get("pack_id") != custody.get("pack_id"):
        problems.append("action or pack id")
    if custody.get("pack_id") != manifest.get("pack_id"):
        problems.append("pack id of the manifest")
    actor = {k: v for k, v in custody["exported_by"].items() if k in ("type", "id", "role")}
    if actor != entry.actor or custody["exported_by"].get("via") != attrs.get("via"):
        problems.append("exporter")
    if custody.get("exported_at") != entry.ts or custody.get("scope") != attrs.get("scope"):
        problems.append("time or scope")
    view = views.get(seq)
    if view is None or view.status != "present" or view.value is None:
        problems.append("reason (the event's payload is missing)")
    elif view.value.get("reason") != custody.get("reason"):
        problems.append("reason")
    ledger = custody.get("ledger", {})
    if ledger.get("checkpoint") != checkpoint_note or ledger.get("origin") != manifest["origin"]:
        problems.append("checkpoint")
    if problems:
        raise _fail(
            "custody.json does not match its audit.evidence entry: " + ", ".join(problems),
            "custody_mismatch",
            seq,
        )


class _ReplayChecker:
    """Checks every fact of replay.json against the entries and payloads it comes from.

    Fields taken from mutable tables rather than the ledger (a source chunk's ``heading`` and
    ``page``) are not covered; a source's ``text`` is covered by its SHA-256."""

    def __init__(self, entries: dict[int, Entry], views: dict[int, PayloadView]) -> None:
        self.entries = entries
        self.views = views
        self.sources_checked = 0
        self.documents: dict[tuple[str, int], str] = {}
        for entry in entries.values():
            if entry.action in _DOCUMENT_ACTIONS:
                a = entry.attributes
                self.documents[(str(a.get("document_id")), int(a.get("version", 0)))] = str(
                    a.get("name")
                )

    def fail(self, what: str, seq: int | None = None) -> IntegrityError:
        where = f" (entry {seq})" if seq is not None else ""
        return _fail(
            f"replay.json disagrees with the ledger: {what}{where}", "replay_mismatch", seq
        )

    def entry(self, item: dict[str, Any], *actions: str) -> Entry:
        seq = item.get("seq")
        entry = self.entries.get(int(seq)) if isinstance(seq, int) else None
        if entry is None:
            raise self.fail(f"an item cites seq {seq!r}, which is not in the pack")
        if actions and entry.action not in actions:
            raise self.fail(f"an item of kind {actions[0]} cites a {entry.action} entry", entry.seq)
        if "ts" in item and item["ts"] != entry.ts:
            raise self.fail("timestamp", entry.seq)
        if "actor" in item and item["actor"] != entry.actor:
            raise self.fail("actor", entry.seq)
        return entry

    def content(self, item: dict[str, Any], entry: Entry, key: str, default: Any = None) -> None:
        """``item[key]`` is the payload's ``key`` (or the item says the payload was erased)."""
        view = self.views[entry.seq]
        if view.status == "erased":
            if not item.get("erased") or item.get("erasure_seq") != view.erasure_seq:
                raise self.fail(f"{key}: the payload was erased", entry.seq)
        elif view.status == "present":
            assert view.value is not None
            if item.get(key) != view.value.get(key, default):
                raise self.fail(key, entry.seq)
        elif item.get(key, default) != default:
            raise self.fail(f"{key}: the entry has no payload", entry.seq)

    def same(self, got: Any, expected: Any, what: str, seq: int) -> None:
        if got != expected:
            raise self.fail(what, seq)

    def check(self, replay: dict[str, Any]) -> None:
        covered: set[int] = set()
        for conv in replay["conversations"]:
            covered |= self.conversation(conv)
        events = replay["events"]
        for item in events:
            entry = self.entry(item)
            if entry.seq in covered:
                raise self.fail("an entry is listed twice", entry.seq)
            covered.add(entry.seq)
            if item != orjson.loads(orjson.dumps(event_view(entry, self.views[entry.seq]))):
                raise self.fail("event", entry.seq)
        missing = sorted(set(self.entries) - covered)
        if missing:
            raise self.fail("an entry of the pack is not in replay.json", missing[0])

    def conversation(self, conv: dict[str, Any]) -> set[int]:
        cid = conv["conversation_id"]
        mine = [e for e in self.entries.values() if _conversation_of(e.attributes) == cid]
        seqs = sorted(e.seq for e in mine)
        if [int(s) for s in conv["ledger_seqs"]] != seqs:
            raise self.fail(f"the entries of conversation {cid}")
        by_action: dict[str, list[Entry]] = {}
        for e in sorted(mine, key=lambda e: e.seq):
            by_action.setdefault(e.action, []).append(e)
        starts = by_action.get("conversation.start", [])
        if starts:
            start = starts[0]
            a = start.attributes
            self.same(conv.get("started_at"), start.ts, "started_at", start.seq)
            self.same(conv.get("started_by"), start.actor, "started_by", start.seq)
            for key in ("chatbot_id", "channel", "config_version", "identity"):
                self.same(conv.get(key), a.get(key), key, start.seq)
            self.same(conv.get("subject"), start.subject, "subject", start.seq)
            view = self.views[start.seq]
            if view.status == "present" and view.value is not None:
                keys = ("user_id", "visitor_id", "user_agent", "ip")
                expected: Any = {k: view.value.get(k) for k in keys}
            elif view.status == "erased":
                expected = view.erased_marker()
            else:
                expected = {}
            self.same(conv.get("participant"), expected, "participant", start.seq)
        # messages
        message_actions = ("message.user", "message.answer", "message.answer_failed")
        expected_messages = [e.seq for e in mine if e.action in message_actions]
        got = [m.get("seq") for m in conv["messages"]]
        if sorted(s for s in got if isinstance(s, int)) != sorted(expected_messages) or len(
            got
        ) != len(expected_messages):
            raise self.fail(f"the messages of conversation {cid}")
        calls = {e.attributes.get("message_id"): e for e in by_action.get("model.call", [])}
        for message in conv["messages"]:
            self.message(message, calls)
        # feedback, resolution, outcomes, guard verdicts, end
        self.listing(conv["feedback"], by_action.get("message.feedback", []), "feedback")
        for fb in conv["feedback"]:
            e = self.entry(fb, "message.feedback")
            self.same(fb.get("message_id"), e.attributes.get("message_id"), "message_id", e.seq)
            self.same(fb.get("rating"), e.attributes.get("rating"), "rating", e.seq)
            self.content(fb, e, "comment")
        history = conv["resolution_history"]
        self.listing(history, by_action.get("conversation.resolution", []), "resolutions")
        for item in history:
            e = self.entry(item, "conversation.resolution")
            for key in ("resolution", "previous", "set_by", "reason"):
                self.same(item.get(key), e.attributes.get(key), key, e.seq)
        outcomes = conv["outcomes"]
        self.listing(outcomes, by_action.get("conversation.outcome", []), "outcomes")
        for item in outcomes:
            e = self.entry(item, "conversation.outcome")
            for key in ("tags", "added", "removed"):
                self.same(item.get(key), e.attributes.get(key), key, e.seq)
        security = [e for e in mine if e.category == "security"]
        self.listing(conv["guard_verdicts"], security, "guard verdicts")
        for item in conv["guard_verdicts"]:
            verdict = self.entries.get(int(item.get("seq", -1)))
            if verdict is None:
                raise self.fail("a guard verdict cites an entry not in the pack")
            # The replay lays the verdict's attributes over the entry's own fields.
            expected = {
                "seq": verdict.seq,
                "ts": verdict.ts,
                "actor": verdict.actor,
                "action": verdict.action,
                "outcome": verdict.outcome,
                **verdict.attributes,
            }
            for key, value in expected.items():
                self.same(item.get(key), value, f"guard verdict {key}", verdict.seq)
        self.same(
            conv.get("resolution"),
            history[-1]["resolution"] if history else "open",
            "resolution",
            seqs[-1],
        )
        self.same(
            conv.get("outcome_tags"), outcomes[-1]["tags"] if outcomes else [], "tags", seqs[-1]
        )
        ends = by_action.get("conversation.end", [])
        self.same(conv.get("ended_at"), ends[-1].ts if ends else None, "ended_at", seqs[-1])
        for cfg in conv.get("configuration", []):
            e = self.entry(cfg, "chatbot.create", "chatbot.update")
            self.same(
                cfg.get("version"), int(e.attributes.get("config_version", 0)), "version", e.seq
            )
            view = self.views[e.seq]
            if view.status == "present" and view.value is not None:
                self.same(cfg.get("config"), view.value.get("after"), "configuration", e.seq)
            elif view.status == "erased":
                self.content(cfg, e, "config")
        return set(seqs)

    def listing(self, items: list[dict[str, Any]], entries: list[Entry], what: str) -> None:
        if sorted(int(i["seq"]) for i in items) != sorted(e.seq for e in entries):
            raise self.fail(what, entries[0].seq if entries else None)

    def message(self, m: dict[str, Any], calls: dict[Any, Entry]) -> None:
        role = m.get("role")
        if role == "user":
            e = self.entry(m, "message.user")
            a = e.attributes
            self.same(m.get("id"), a.get("message_id"), "message id", e.seq)
            self.same(m.get("outcome"), e.outcome, "outcome", e.seq)
            self.same(m.get("attachments_meta"), a.get("attachments", []), "attachments", e.seq)
            self.same(m.get("guard"), a.get("guard"), "guard verdict", e.seq)
            self.content(m, e, "text")
            view = self.views[e.seq]
            if view.status == "present" and view.value is not None:
                self.same(m.get("attachments"), view.value.get("attachments", []), "files", e.seq)
            return
        if role != "assistant":
            raise self.fail(f"a message with role {role!r}")
        if m.get("id") is None:
            e = self.entry(m, "message.answer_failed")
            self.same(m.get("in_reply_to"), e.attributes.get("message_id"), "in_reply_to", e.seq)
            if self.views[e.seq].status == "none":
                self.same(m.get("error"), e.attributes.get("reason"), "error", e.seq)
            else:
                self.content(m, e, "error")
            return
        e = self.entry(m, "message.answer")
        a = e.attributes
        checks: dict[str, Any] = {
            "id": a.get("message_id"),
            "outcome": e.outcome,
            "in_reply_to": a.get("in_reply_to"),
            "provider": a.get("gen_ai.provider.name"),
            "model": a.get("gen_ai.response.model"),
            "usage": {
                "input_tokens": a.get("gen_ai.usage.input_tokens"),
                "output_tokens": a.get("gen_ai.usage.output_tokens"),
                "source": a.get("usage_source"),
            },
            "latency_ms": a.get("latency_ms"),
            "finish_reason": (a.get("gen_ai.response.finish_reasons") or [None])[0],
            "groundedness": a.get("groundedness"),
            "unanswered": a.get("unanswered", False),
            "config_version": a.get("config_version"),
            "invalid_citations": a.get("invalid_citations", []),
        }
        for key, value in checks.items():
            self.same(m.get(key), value, key, e.seq)
        self.content(m, e, "text")
        retrieved = a.get("retrieved", [])
        sources = m.get("sources", [])
        if len(sources) != len(retrieved):
            raise self.fail("the number of sources", e.seq)
        for source, committed in zip(sources, retrieved, strict=True):
            for key, value in committed.items():
                self.same(source.get(key), value, f"source {key}", e.seq)
            text = source.get("text")
            if text is None:
                if not source.get("erased"):
                    raise self.fail("a source without text is not marked erased", e.seq)
            elif hashlib.sha256(text.encode()).hexdigest() != committed.get("chunk_sha256"):
                raise self.fail(f"the text of source {committed.get('chunk_id')}", e.seq)
            doc = (str(committed.get("document_id")), int(committed.get("document_version", 0)))
            if doc in self.documents:
                self.same(source.get("document_name"), self.documents[doc], "document", e.seq)
            elif source.get("document_name") is not None:
                raise self.fail("a document name with no document entry in the pack", e.seq)
            self.sources_checked += 1
        call = calls.get(a.get("message_id"))
        model_call = m.get("model_call")
        if call is None:
            if model_call is not None:
                raise self.fail("a model call with no model.call entry", e.seq)
        else:
            if model_call is None or model_call.get("seq") != call.seq:
                raise self.fail("the model call", call.seq)
            view = self.views[call.seq]
            if view.status == "present" and view.value is not None:
                self.same(model_call.get("prompt"), view.value.get("messages"), "prompt", call.seq)
            else:
                self.content(model_call, call, "prompt")
        for fb in m.get("feedback", []):
            f = self.entry(fb, "message.feedback")
            self.same(f.attributes.get("message_id"), a.get("message_id"), "feedback", f.seq)

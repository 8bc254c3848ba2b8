"""Self-contained export bundles, and their offline verification.

A bundle is a zip file a third party can check with nothing but the file and the log's
verifier key:

``manifest.json``   format, origin, range, tree size and the SHA-256 of every other file
``manifest.sig``    a signed note (same key as the checkpoints) over the manifest's SHA-256
``checkpoint.note`` the signed C2SP checkpoint the proofs lead to
``verifier.key``    the log's verifier key (a verifier should pin its own copy: ``--key``)
``entries.jsonl``   the entries' canonical bytes, one per line: exactly the Merkle leaves
``proofs.jsonl``    one RFC 9162 inclusion proof per entry (ranges up to 10,000 entries)
``range.json``      the compact range around the entries: left subtrees and right subtrees
``payloads.jsonl``  each payload's salt and canonical bytes (HMAC-SHA256(salt, bytes) is the
                    digest in the entry), or a note that it was erased, when and by which seq
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from chatledger.errors import ChatLedgerError, IntegrityError, InvalidInput
from chatledger.ledger import merkle
from chatledger.ledger.entry import Entry
from chatledger.ledger.note import open_checkpoint
from chatledger.ledger.signed_zip import (
    fail as _fail,
)
from chatledger.ledger.signed_zip import (
    manifest_note_text,
    pinned_verifier,
    read_members,
    signed_manifest,
)
from chatledger.privacy.payloads import payload_digest

BUNDLE_FORMAT = "chatledger-bundle/1"
MAX_PER_ENTRY_PROOFS = 10_000

if TYPE_CHECKING:
    from chatledger.ledger.service import Ledger

Progress = Callable[[int, int], None]


def _right_ranges(start: int, end: int) -> list[merkle.NodeKey]:
    """Aligned perfect subtrees covering ``[start, end)``, appendable to a compact range."""
    keys: list[merkle.NodeKey] = []
    pos = start
    while pos < end:
        level = (end - pos).bit_length() - 1
        if pos:
            level = min(level, (pos & -pos).bit_length() - 1)
        keys.append((level, pos >> level))
        pos += 1 << level
    return keys


def _manifest_note_text(manifest_bytes: bytes) -> str:
    return manifest_note_text("bundle", manifest_bytes)


def export_bundle(
    ledger: Ledger,
    out: Path,
    *,
    start: int = 0,
    end: int | None = None,
    include_payloads: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write entries ``[start, end)`` with proofs against a fresh signed checkpoint."""
    checkpoint = ledger.checkpoint()
    tree_size = checkpoint.size
    end = tree_size if end is None else end
    if not 0 <= start < end <= tree_size:
        raise InvalidInput(
            f"the range must lie within 0..{tree_size - 1}",
            details={"from": start, "to": end - 1, "size": tree_size},
        )
    files: dict[str, bytes] = {}
    entries = io.BytesIO()
    proofs = io.BytesIO()
    payloads = io.BytesIO()
    per_entry = end - start <= MAX_PER_ENTRY_PROOFS
    fetch = ledger.store.fetch_nodes
    for done, record in enumerate(ledger.records(start, end), start=1):
        entry = record.entry
        entries.write(entry.body + b"\n")
        if per_entry:
            hashes = merkle.inclusion_proof(entry.seq, tree_size, fetch)
            proofs.write(
                orjson.dumps({"seq": entry.seq, "hashes": [h.hex() for h in hashes]}) + b"\n"
            )
        if entry.payload_digest is not None and include_payloads:
            item: dict[str, Any] = {"seq": entry.seq}
            if record.payload_status == "present" and record.salt is not None:
                item["salt"] = base64.b64encode(record.salt).decode()
                item["body"] = (record.payload_body or b"").decode()
            else:
                item.update(erased=True, erased_at=record.erased_at, erasure_seq=record.erasure_seq)
            payloads.write(orjson.dumps(item) + b"\n")
        if progress and done % 1000 == 0:
            progress(done, end - start)
    if progress:
        progress(end - start, end - start)
    left = merkle.frontier_keys(start)
    right = _right_ranges(end, tree_size)
    nodes = fetch([*left, *right])
    files["entries.jsonl"] = entries.getvalue()
    if per_entry:
        files["proofs.jsonl"] = proofs.getvalue()
    if include_payloads:
        files["payloads.jsonl"] = payloads.getvalue()
    files["range.json"] = orjson.dumps(
        {
            "left": [nodes[k].hex() for k in left],
            "right": [{"level": k[0], "hash": nodes[k].hex()} for k in right],
        }
    )
    files["checkpoint.note"] = checkpoint.note.encode()
    files["verifier.key"] = (str(ledger.verifier) + "\n").encode()
    manifest = {
        "format": BUNDLE_FORMAT,
        "origin": ledger.origin,
        "from": start,
        "to": end - 1,
        "count": end - start,
        "tree_size": tree_size,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    manifest_bytes = orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    files["manifest.json"] = manifest_bytes
    files["manifest.sig"] = ledger.sign_note(_manifest_note_text(manifest_bytes)).encode()
    tmp = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in [
            "manifest.json",
            "manifest.sig",
            *sorted(files.keys() - {"manifest.json", "manifest.sig"}),
        ]:
            zf.writestr(name, files[name])
    tmp.replace(out)
    return manifest


@dataclass
class BundleReport:
    ok: bool
    origin: str = ""
    start: int = 0
    end: int = 0
    tree_size: int = 0
    entries: int = 0
    payloads_checked: int = 0
    payloads_erased: int = 0
    key_source: str = ""
    error: IntegrityError | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok,
            "origin": self.origin,
            "from": self.start,
            "to": self.end - 1,
            "tree_size": self.tree_size,
            "entries": self.entries,
            "payloads_checked": self.payloads_checked,
            "payloads_erased": self.payloads_erased,
            "key_source": self.key_source,
            "warnings": self.warnings,
        }
        if self.error is not None:
            out["error"] = self.error.to_dict()
        return out


def verify_bundle(path: Path, key: str | None = None) -> BundleReport:
    """Verify a bundle offline. Raises nothing for tampering: the report says what failed."""
    report = BundleReport(ok=False)
    try:
        _verify_bundle(path, key, report)
        report.ok = True
    except IntegrityError as exc:
        report.error = exc
    except ChatLedgerError as exc:
        report.error = IntegrityError(exc.message, reason=getattr(exc, "reason", "invalid"))
    return report


def _verify_bundle(path: Path, key: str | None, report: BundleReport) -> None:
    members = read_members(path)
    for required in (
        "manifest.json",
        "manifest.sig",
        "checkpoint.note",
        "verifier.key",
        "entries.jsonl",
        "range.json",
    ):
        if required not in members:
            raise _fail(f"the bundle has no {required}", "missing_file")
    # 1. The key: pinned by the caller, or (weaker) the one inside the bundle.
    verifier, report.key_source = pinned_verifier(members, key, "bundle", report.warnings)
    # 2. The manifest is signed, and every file matches its hash.
    manifest = signed_manifest(members, verifier, "bundle", BUNDLE_FORMAT)
    origin = str(manifest["origin"])
    report.origin = origin
    # 3. The checkpoint is signed by the key and matches the manifest.
    checkpoint = open_checkpoint(members["checkpoint.note"].decode(), verifier, origin)
    start, last, tree_size = int(manifest["from"]), int(manifest["to"]), int(manifest["tree_size"])
    end = last + 1
    report.start, report.end, report.tree_size = start, end, tree_size
    if checkpoint.size != tree_size or not 0 <= start < end <= tree_size:
        raise _fail("the manifest's range does not fit the checkpoint", "bad_range")
    # 4. Entries: consecutive seqs, linked by prev hashes, hashed as RFC 9162 leaves.
    lines = members["entries.jsonl"].split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) != end - start:
        raise _fail(
            f"the bundle holds {len(lines)} entries, the manifest says {end - start}",
            "entry_count",
        )
    range_data = orjson.loads(members["range.json"])
    left = [bytes.fromhex(h) for h in range_data["left"]]
    compact = merkle.CompactRange(start, left)
    leaves: list[bytes] = []
    digests: dict[int, str] = {}
    prev: str | None = None
    for offset, body in enumerate(lines):
        seq = start + offset
        entry = Entry.parse(body, seq)
        if prev is not None and entry.prev != prev:
            raise _fail(f"entry {seq} does not link to entry {seq - 1}", "chain_broken", seq - 1)
        leaf = merkle.leaf_hash(body)
        prev = leaf.hex()
        leaves.append(leaf)
        compact.append(leaf)
        if entry.payload_digest is not None:
            digests[seq] = entry.payload_digest
    # 5. The range proof: left subtrees + entries + right subtrees give the checkpoint root.
    for item in range_data["right"]:
        level, digest = int(item["level"]), bytes.fromhex(item["hash"])
        try:
            compact.append_subtree(level, digest)
        except ValueError as exc:
            raise _fail("range.json's right subtrees are misaligned", "bad_range_proof") from exc
    if compact.size != tree_size or compact.root() != checkpoint.root:
        raise _fail(
            "the entries do not lead to the signed checkpoint root: an entry was altered, "
            "added or removed",
            "root_mismatch",
            start,
        )
    # 6. Per-entry inclusion proofs (RFC 9162 2.1.3.2), when present.
    if "proofs.jsonl" in members:
        proof_lines = [ln for ln in members["proofs.jsonl"].split(b"\n") if ln]
        if len(proof_lines) != len(leaves):
            raise _fail("proofs.jsonl does not hold one proof per entry", "proof_count")
        for offset, line in enumerate(proof_lines):
            item = orjson.loads(line)
            seq = start + offset
            if item.get("seq") != seq:
                raise _fail(f"proof {offset} is for seq {item.get('seq')}", "proof_order", seq)
            try:
                merkle.verify_inclusion(
                    seq,
                    tree_size,
                    leaves[offset],
                    [bytes.fromhex(h) for h in item["hashes"]],
                    checkpoint.root,
                )
            except IntegrityError as exc:
                raise _fail(
                    f"inclusion proof of entry {seq}: {exc.message}", exc.reason, seq
                ) from exc
    # 7. Payloads match the digests the entries commit to.
    for line in members.get("payloads.jsonl", b"").split(b"\n"):
        if not line:
            continue
        item = orjson.loads(line)
        seq = int(item["seq"])
        if seq not in digests:
            raise _fail(
                f"a payload is given for entry {seq}, which commits to none",
                "unexpected_payload",
                seq,
            )
        if item.get("erased"):
            report.payloads_erased += 1
            continue
        body = str(item["body"]).encode()
        salt = base64.b64decode(item["salt"])
        if payload_digest(salt, body) != digests[seq]:
            raise _fail(
                f"the payload of entry {seq} does not match its digest",
                "payload_digest_mismatch",
                seq,
            )
        report.payloads_checked += 1
    report.entries = len(leaves)

"""What bundles and evidence packs share: a zip whose manifest lists the SHA-256 of every file
and is itself signed (a signed note) by the log's key, checked with a pinned verifier key."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import orjson

from chatledger.errors import IntegrityError
from chatledger.ledger.note import NoteVerifier, open_note

_MAX_MEMBER = 4 * 1024 * 1024 * 1024
SIGNED_FILES = ("manifest.json", "manifest.sig")


def fail(message: str, reason: str, seq: int | None = None) -> IntegrityError:
    return IntegrityError(message, reason=reason, seq=seq)


def manifest_note_text(kind: str, manifest_bytes: bytes) -> str:
    """The signed note over a manifest: ``chatledger <kind> manifest`` and its SHA-256."""
    return f"chatledger {kind} manifest\n{hashlib.sha256(manifest_bytes).hexdigest()}\n"


def read_members(path: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(path) as zf:
            members: dict[str, bytes] = {}
            for info in zf.infolist():
                if info.file_size > _MAX_MEMBER or "/" in info.filename or ".." in info.filename:
                    raise fail(f"unexpected member {info.filename!r}", "bad_member")
                members[info.filename] = zf.read(info)
            return members
    except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
        raise fail(f"not a readable archive: {exc}", "unreadable") from exc


def pinned_verifier(
    members: dict[str, bytes], key: str | None, kind: str, warnings: list[str]
) -> tuple[NoteVerifier, str]:
    """The key given by the caller (pinned), or, weaker and with a warning, the one inside."""
    bundled_key = members["verifier.key"].decode().strip()
    if key is not None:
        verifier = NoteVerifier.parse(key)
        if bundled_key != str(verifier):
            warnings.append(f"the {kind}'s verifier.key differs from the key given")
        return verifier, "given"
    warnings.append(
        f"no --key given: trusting the key inside the {kind}; pin the log's key to be sure"
    )
    return NoteVerifier.parse(bundled_key), kind


def signed_manifest(
    members: dict[str, bytes], verifier: NoteVerifier, kind: str, expected_format: str
) -> dict[str, Any]:
    """Check the manifest's signature, its format, and every file against its hash."""
    manifest_bytes = members["manifest.json"]
    if open_note(members["manifest.sig"].decode(), verifier) != manifest_note_text(
        kind, manifest_bytes
    ):
        raise fail("manifest.json was altered: it does not match manifest.sig", "manifest_altered")
    try:
        manifest: dict[str, Any] = orjson.loads(manifest_bytes)
    except orjson.JSONDecodeError as exc:
        raise fail(f"manifest.json is not valid JSON: {exc}", "malformed") from exc
    if manifest.get("format") != expected_format:
        raise fail(f"unsupported {kind} format {manifest.get('format')!r}", "bad_format")
    listed: dict[str, str] = manifest["files"]
    for name, data in members.items():
        if name in SIGNED_FILES:
            continue
        if name not in listed:
            raise fail(f"{name} is not listed in the manifest", "unlisted_file")
        if hashlib.sha256(data).hexdigest() != listed[name]:
            raise fail(f"{name} was altered: its SHA-256 differs from the manifest", "file_altered")
    for name in listed:
        if name not in members:
            raise fail(f"{name} is listed in the manifest but missing", "missing_file")
    return manifest

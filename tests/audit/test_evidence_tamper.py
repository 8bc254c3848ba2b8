"""Tampering with an evidence pack is detected, file by file.

Two kinds of tamperer: an outsider who edits a file of the pack (caught by the signed
manifest), and an insider who also holds the log's signing key and re-signs the manifest
(caught by the proofs, the payload digests, and the replay and custody checks)."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chatledger.audit.evidence import Custodian, EvidenceScope, build_evidence_pack, verify_evidence
from chatledger.config import Settings
from chatledger.events import Actor
from chatledger.ledger.note import Checkpoint, NoteSigner
from chatledger.ledger.service import Ledger
from chatledger.platform import Platform
from tests.privacy.seed import Seeded, seed

Files = dict[str, bytes]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Seeded, Path]]:
    root = tmp_path_factory.mktemp("tamper")
    platform = Platform.open(Settings.load(root / "data"))
    try:
        data = seed(platform)
        pack = root / "pack.zip"
        build_evidence_pack(
            platform.ledger,
            EvidenceScope(conversation_id=data.conversations["carol"]),
            Custodian(Actor("user", "usr_legal", "auditor"), "cli", "case 5"),
            pack,
        )
        yield data, pack
    finally:
        platform.close()


@pytest.fixture
def ledger(world: tuple[Seeded, Path]) -> Ledger:
    return world[0].platform.ledger


@pytest.fixture
def files(world: tuple[Seeded, Path]) -> Files:
    with zipfile.ZipFile(world[1]) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def write(path: Path, files: Files) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, body in files.items():
            zf.writestr(name, body)
    return path


def resign(ledger: Ledger, files: Files) -> Files:
    """What an insider holding the log's key would do after editing: a fresh manifest."""
    manifest = json.loads(files["manifest.json"])
    manifest["files"] = {
        name: hashlib.sha256(body).hexdigest()
        for name, body in sorted(files.items())
        if name not in ("manifest.json", "manifest.sig")
    }
    body = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    digest = hashlib.sha256(body).hexdigest()
    signed = ledger.sign_note(f"chatledger evidence manifest\n{digest}\n")
    return {**files, "manifest.json": body, "manifest.sig": signed.encode()}


def check(tmp_path: Path, ledger: Ledger, files: Files, reason: str) -> None:
    report = verify_evidence(write(tmp_path / "t.zip", files), str(ledger.verifier))
    assert not report.ok
    assert report.error is not None
    assert report.error.reason == reason, report.error.to_dict()


def test_the_untouched_pack_verifies(tmp_path: Path, ledger: Ledger, files: Files) -> None:
    report = verify_evidence(write(tmp_path / "same.zip", files), str(ledger.verifier))
    assert report.ok, report.to_json()
    # Re-signing without changing anything is still a valid pack (the checks are real).
    report = verify_evidence(write(tmp_path / "re.zip", resign(ledger, files)), None)
    assert report.ok, report.to_json()


def _flip(data: bytes) -> bytes:
    """Change one character in the middle of a file, keeping it text."""
    middle = len(data) // 2
    while data[middle : middle + 1] in (b"\n", b" ", b"=", b"+", b"/"):
        middle += 1
    swap = b"A" if data[middle : middle + 1] != b"A" else b"B"
    return data[:middle] + swap + data[middle + 1 :]


OUTSIDER_CASES = [
    "manifest.json",
    "README.txt",
    "checkpoint.note",
    "verifier.key",
    "entries.jsonl",
    "proofs.jsonl",
    "payloads.jsonl",
    "replay.json",
    "replay.html",
    "custody.json",
]


@pytest.mark.parametrize("name", OUTSIDER_CASES)
def test_every_file_is_covered_by_the_signed_manifest(
    tmp_path: Path, ledger: Ledger, files: Files, name: str
) -> None:
    expected = "manifest_altered" if name == "manifest.json" else "file_altered"
    check(tmp_path, ledger, {**files, name: _flip(files[name])}, expected)


def test_signature_missing_and_extra_files(tmp_path: Path, ledger: Ledger, files: Files) -> None:
    note = files["manifest.sig"].decode()
    head, _, blob = note.rstrip("\n").rpartition(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[10] ^= 0x01
    forged = f"{head} {base64.b64encode(bytes(raw)).decode()}\n".encode()
    check(tmp_path, ledger, {**files, "manifest.sig": forged}, "bad_signature")
    for name in ("entries.jsonl", "replay.html", "custody.json"):
        check(tmp_path, ledger, {k: v for k, v in files.items() if k != name}, "missing_file")
    check(tmp_path, ledger, {**files, "notes.txt": b"trust me"}, "unlisted_file")
    # Another key: the pack is not signed by the log that the verifier pins.
    other = NoteSigner.generate(ledger.origin)
    report = verify_evidence(write(tmp_path / "k.zip", files), str(other.verifier()))
    assert report.error is not None and report.error.reason == "unknown_key"
    # A pack re-signed with another key that also carries that key is caught by pinning.
    swapped = {**files, "verifier.key": (str(other.verifier()) + "\n").encode()}
    report = verify_evidence(write(tmp_path / "s.zip", swapped), str(ledger.verifier))
    assert report.error is not None and report.error.reason == "file_altered"


def _lines(files: Files, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in files[name].splitlines() if line]


def _jsonl(items: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(i, separators=(",", ":")).encode() + b"\n" for i in items)


def _edit_json(files: Files, name: str, fn: Callable[[Any], None]) -> Files:
    value = json.loads(files[name])
    fn(value)
    return {**files, name: json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"}


def _answer(replay: dict[str, Any]) -> dict[str, Any]:
    messages = replay["conversations"][0]["messages"]
    return next(m for m in messages if m["role"] == "assistant" and m.get("sources"))


def _entries_edit(files: Files) -> Files:
    lines = files["entries.jsonl"].split(b"\n")
    index = next(i for i, line in enumerate(lines) if b'"score":0.' in line)
    lines[index] = lines[index].replace(b'"score":0.', b'"score":1.', 1)
    return {**files, "entries.jsonl": b"\n".join(lines)}


def _last_entry_edit(files: Files) -> Files:
    lines = [ln for ln in files["entries.jsonl"].split(b"\n") if ln]
    assert b'"via":"cli"' in lines[-1]
    lines[-1] = lines[-1].replace(b'"via":"cli"', b'"via":"api"')
    return {**files, "entries.jsonl": b"\n".join(lines) + b"\n"}


def _entries_drop(files: Files) -> Files:
    lines = [ln for ln in files["entries.jsonl"].split(b"\n") if ln]
    del lines[3]
    edited = {**files, "entries.jsonl": b"\n".join(lines) + b"\n"}
    return _edit_json(edited, "manifest.json", lambda m: m.update(entries=m["entries"] - 1))


def _proof_edit(files: Files) -> Files:
    proofs = _lines(files, "proofs.jsonl")
    proofs[2]["hashes"][0] = "00" * 32
    return {**files, "proofs.jsonl": _jsonl(proofs)}


def _payload_edit(files: Files) -> Files:
    items = _lines(files, "payloads.jsonl")
    item = next(i for i in items if "weather" in i.get("body", ""))
    item["body"] = item["body"].replace("weather", "climate")
    return {**files, "payloads.jsonl": _jsonl(items)}


def _payload_fake_erasure(files: Files) -> Files:
    items = _lines(files, "payloads.jsonl")
    item = next(i for i in items if "weather" in i.get("body", ""))
    seq = item["seq"]
    items[items.index(item)] = {"seq": seq, "erased": True, "erasure_seq": seq + 1}
    return {**files, "payloads.jsonl": _jsonl(items)}


def _checkpoint_edit(ledger: Ledger) -> Callable[[Files], Files]:
    def edit(files: Files) -> Files:
        real = Checkpoint.parse_text(files["checkpoint.note"].decode().split("\n\n")[0] + "\n")
        fake = Checkpoint(real.origin, real.size, hashlib.sha256(b"another tree").digest())
        note = ledger.sign_note(fake.text()).encode()
        edited = {**files, "checkpoint.note": note}
        return _edit_json(
            edited, "custody.json", lambda c: c["ledger"].update(checkpoint=note.decode())
        )

    return edit


def _replay(fn: Callable[[dict[str, Any]], None]) -> Callable[[Files], Files]:
    return lambda files: _edit_json(files, "replay.json", fn)


def _drop_message(replay: dict[str, Any]) -> None:
    del replay["conversations"][0]["messages"][0]


def _add_event(replay: dict[str, Any]) -> None:
    replay["events"].append(dict(replay["events"][0]))


def _hide_event(replay: dict[str, Any]) -> None:
    replay["events"].pop()


INSIDER_CASES: dict[str, tuple[Callable[[Files], Files], str]] = {
    "entry edited": (_entries_edit, "chain_broken"),
    "last entry edited": (_last_entry_edit, "leaf_mismatch"),
    "entry removed": (_entries_drop, "proof_count"),
    "proof edited": (_proof_edit, "inclusion_failed"),
    "payload edited": (_payload_edit, "payload_digest_mismatch"),
    "payload said to be erased": (_payload_fake_erasure, "erasure_unproven"),
    "answer text": (
        _replay(lambda r: _answer(r).update(text="We guarantee a refund.")),
        "replay_mismatch",
    ),
    "source text": (
        _replay(lambda r: _answer(r)["sources"][0].update(text="Refunds within 90 days.")),
        "replay_mismatch",
    ),
    "source score": (
        _replay(lambda r: _answer(r)["sources"][0].update(score=0.99)),
        "replay_mismatch",
    ),
    "document name": (
        _replay(lambda r: _answer(r)["sources"][0].update(document_name="terms.pdf")),
        "replay_mismatch",
    ),
    "model": (_replay(lambda r: _answer(r).update(model="gpt-9")), "replay_mismatch"),
    "message removed": (_replay(_drop_message), "replay_mismatch"),
    "resolution": (
        _replay(lambda r: r["conversations"][0].update(resolution="resolved")),
        "replay_mismatch",
    ),
    "guard verdict": (
        _replay(lambda r: r["conversations"][0]["guard_verdicts"][0].update(outcome="success")),
        "replay_mismatch",
    ),
    "system prompt": (
        _replay(
            lambda r: r["conversations"][0]["configuration"][0]["config"].update(
                system_prompt="Promise refunds."
            )
        ),
        "replay_mismatch",
    ),
    "event duplicated": (_replay(_add_event), "replay_mismatch"),
    "event hidden": (_replay(_hide_event), "replay_mismatch"),
    "page edited": (
        lambda f: {
            **f,
            "replay.html": f["replay.html"].replace(b"What is the weather", b"What is"),
        },
        "html_mismatch",
    ),
    "custody reason": (
        lambda f: _edit_json(f, "custody.json", lambda c: c.update(reason="routine")),
        "custody_mismatch",
    ),
    "custody exporter": (
        lambda f: _edit_json(f, "custody.json", lambda c: c["exported_by"].update(id="usr_x")),
        "custody_mismatch",
    ),
}


@pytest.mark.parametrize("case", sorted(INSIDER_CASES))
def test_re_signed_edits_are_caught(
    tmp_path: Path, ledger: Ledger, files: Files, case: str
) -> None:
    edit, reason = INSIDER_CASES[case]
    edited = edit(files)
    if case == "page edited":
        assert edited["replay.html"] != files["replay.html"]
    check(tmp_path, ledger, resign(ledger, edited), reason)


def test_checkpoint_with_another_root(tmp_path: Path, ledger: Ledger, files: Files) -> None:
    check(tmp_path, ledger, resign(ledger, _checkpoint_edit(ledger)(files)), "inclusion_failed")


def test_not_a_zip(tmp_path: Path, ledger: Ledger) -> None:
    path = tmp_path / "junk.zip"
    path.write_bytes(b"PK\x03\x04 not really")
    report = verify_evidence(path, str(ledger.verifier))
    assert report.error is not None and report.error.reason == "unreadable"

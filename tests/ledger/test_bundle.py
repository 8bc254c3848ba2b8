"""Export bundles verify offline, and any altered file is detected."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import orjson
import pytest

from chatledger.ledger.bundle import export_bundle, verify_bundle
from chatledger.ledger.note import NoteSigner
from chatledger.ledger.service import Ledger
from tests.conftest import sample_event


@pytest.fixture
def bundle(ledger: Ledger, tmp_path: Path) -> Path:
    ledger.append_many([sample_event(i, subject=f"s{i % 3}") for i in range(30)])
    out = tmp_path / "bundle.zip"
    export_bundle(ledger, out, start=5, end=20)
    ledger.append_many([sample_event(i) for i in range(30, 40)])
    return out


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _rewrite(path: Path, members: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    path.write_bytes(buf.getvalue())


def test_bundle_verifies_with_the_pinned_key(ledger: Ledger, bundle: Path) -> None:
    report = verify_bundle(bundle, str(ledger.verifier))
    assert report.ok, report.to_json()
    assert (report.start, report.end, report.entries) == (5, 20, 15)
    assert report.payloads_checked == 15
    assert report.key_source == "given" and not report.warnings


def test_whole_log_bundle_without_per_entry_proofs(ledger: Ledger, tmp_path: Path) -> None:
    import chatledger.ledger.bundle as bundle_module

    ledger.append_many([sample_event(i) for i in range(25)])
    out = tmp_path / "all.zip"
    old = bundle_module.MAX_PER_ENTRY_PROOFS
    bundle_module.MAX_PER_ENTRY_PROOFS = 10
    try:
        export_bundle(ledger, out, start=3)
    finally:
        bundle_module.MAX_PER_ENTRY_PROOFS = old
    assert "proofs.jsonl" not in _members(out)
    assert verify_bundle(out, str(ledger.verifier)).ok


@pytest.mark.parametrize(
    "name",
    [
        "manifest.json",
        "manifest.sig",
        "checkpoint.note",
        "verifier.key",
        "entries.jsonl",
        "proofs.jsonl",
        "range.json",
        "payloads.jsonl",
    ],
)
def test_any_altered_file_is_detected(ledger: Ledger, bundle: Path, name: str) -> None:
    members = _members(bundle)
    data = bytearray(members[name])
    position = len(data) // 2
    data[position] = ord("A") if data[position] != ord("A") else ord("B")
    members[name] = bytes(data)
    _rewrite(bundle, members)
    report = verify_bundle(bundle, str(ledger.verifier))
    assert not report.ok
    assert report.error is not None


def test_altered_entry_with_recomputed_manifest_is_detected(ledger: Ledger, bundle: Path) -> None:
    """An attacker who also fixes the manifest hashes still cannot re-sign it."""
    import hashlib

    members = _members(bundle)
    lines = members["entries.jsonl"].split(b"\n")
    entry = orjson.loads(lines[3])
    entry["outcome"] = "failure"
    lines[3] = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
    members["entries.jsonl"] = b"\n".join(lines)
    manifest = orjson.loads(members["manifest.json"])
    manifest["files"]["entries.jsonl"] = hashlib.sha256(members["entries.jsonl"]).hexdigest()
    members["manifest.json"] = orjson.dumps(
        manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    )
    _rewrite(bundle, members)
    report = verify_bundle(bundle, str(ledger.verifier))
    assert report.error is not None and report.error.reason == "manifest_altered"


def test_bundle_resigned_by_another_key_fails_against_the_pinned_key(
    ledger: Ledger, bundle: Path
) -> None:
    other = NoteSigner.generate(ledger.origin)
    members = _members(bundle)
    members["verifier.key"] = (str(other.verifier()) + "\n").encode()
    _rewrite(bundle, members)
    report = verify_bundle(bundle, str(ledger.verifier))
    assert not report.ok


def test_removed_file_and_garbage(ledger: Ledger, bundle: Path, tmp_path: Path) -> None:
    members = _members(bundle)
    del members["payloads.jsonl"]
    _rewrite(bundle, members)
    report = verify_bundle(bundle, str(ledger.verifier))
    assert report.error is not None and report.error.reason == "missing_file"
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip at all")
    report = verify_bundle(garbage, str(ledger.verifier))
    assert report.error is not None and report.error.reason == "unreadable"


def test_bad_export_ranges(ledger: Ledger, tmp_path: Path) -> None:
    from chatledger.errors import InvalidInput

    ledger.append_many([sample_event(i) for i in range(5)])
    with pytest.raises(InvalidInput):
        export_bundle(ledger, tmp_path / "x.zip", start=4, end=9)
    with pytest.raises(InvalidInput):
        export_bundle(ledger, tmp_path / "x.zip", start=3, end=3)
    assert not (tmp_path / "x.zip").exists()

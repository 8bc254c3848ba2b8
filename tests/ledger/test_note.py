"""Signed notes and checkpoints (c2sp.org/signed-note, c2sp.org/tlog-checkpoint)."""

from __future__ import annotations

import base64

import pytest

from chatledger.errors import CheckpointError
from chatledger.ledger.note import Checkpoint, NoteSigner, NoteVerifier, open_checkpoint, open_note

# The example key and note of golang.org/x/mod/sumdb/note, the reference implementation.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZS"
    "NXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_go_reference_vector() -> None:
    verifier = NoteVerifier.parse(GO_VKEY)
    signer = NoteSigner.parse(GO_SKEY)
    assert str(signer.verifier()) == GO_VKEY
    assert signer.encode() == GO_SKEY
    assert signer.sign(GO_TEXT) == GO_NOTE  # Ed25519 is deterministic
    assert open_note(GO_NOTE, verifier) == GO_TEXT


def test_checkpoint_round_trip() -> None:
    signer = NoteSigner.generate("example.org/log")
    cp = Checkpoint("example.org/log", 42, bytes(range(32)), ("extra line",))
    note = cp.sign(signer)
    assert note.startswith("example.org/log\n42\n" + base64.b64encode(bytes(range(32))).decode())
    assert open_checkpoint(note, signer.verifier(), "example.org/log") == cp


def test_forged_signature_is_rejected() -> None:
    signer = NoteSigner.generate("example.org/log")
    note = Checkpoint("example.org/log", 1, b"\x00" * 32).sign(signer)
    head, sig = note.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(sig))
    raw[10] ^= 0x01
    forged = head + " " + base64.b64encode(bytes(raw)).decode() + "\n"
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(forged, signer.verifier())
    assert err.value.reason == "bad_signature"


def test_altered_text_is_rejected() -> None:
    signer = NoteSigner.generate("example.org/log")
    note = Checkpoint("example.org/log", 1, b"\x00" * 32).sign(signer)
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(note.replace("\n1\n", "\n2\n"), signer.verifier())
    assert err.value.reason == "bad_signature"


def test_note_signed_by_another_key_is_rejected() -> None:
    ours = NoteSigner.generate("example.org/log")
    theirs = NoteSigner.generate("example.org/log")  # same name, other key
    note = Checkpoint("example.org/log", 1, b"\x00" * 32).sign(theirs)
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(note, ours.verifier())
    assert err.value.reason == "unknown_key"


def test_wrong_origin_is_rejected() -> None:
    signer = NoteSigner.generate("example.org/log")
    note = Checkpoint("example.org/log", 1, b"\x00" * 32).sign(signer)
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(note, signer.verifier(), "example.org/other")
    assert err.value.reason == "wrong_origin"


@pytest.mark.parametrize(
    "text",
    [
        "origin\n12\n",  # too few lines
        "origin\n012\n" + base64.b64encode(b"\x00" * 32).decode() + "\n",  # leading zero
        "origin\n-1\n" + base64.b64encode(b"\x00" * 32).decode() + "\n",
        "origin\n1\n" + base64.b64encode(b"\x00" * 31).decode() + "\n",  # short root
        "origin\n1\nnot base64!\n",
    ],
)
def test_malformed_checkpoint_bodies(text: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.parse_text(text)


@pytest.mark.parametrize(
    "key",
    [
        "name+c74f20a3",
        "name+zzzz+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key id
        "na me+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_malformed_verifier_keys(key: str) -> None:
    with pytest.raises(CheckpointError):
        NoteVerifier.parse(key)

"""C2SP signed notes with Ed25519, and the C2SP tlog-checkpoint body they carry.

Written by hand because no maintained Python library implements signed notes; the format
is small and fully specified (c2sp.org/signed-note, c2sp.org/tlog-checkpoint), and the
verifier and signer key strings follow golang.org/x/mod/sumdb/note, so that Go tooling
(``note.NewVerifier``) accepts our keys and checkpoints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chatledger.errors import CheckpointError

ALG_ED25519 = 0x01
_SIG_PREFIX = "\u2014 "  # em dash, space


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError(f"{what} is not valid base64", reason="malformed") from exc


def _check_key_name(name: str) -> None:
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise CheckpointError(
            "a key name must be non-empty with no spaces and no '+'", reason="bad_key_name"
        )


def key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class NoteVerifier:
    """A verifier key: name, key id and the Ed25519 public key."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey

    @classmethod
    def parse(cls, vkey: str) -> NoteVerifier:
        """Parse ``name+hex(keyid)+base64(0x01 || public key)``."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise CheckpointError(
                "a verifier key has the form name+keyid+base64key", reason="bad_verifier_key"
            )
        name, hex_id, b64 = parts
        _check_key_name(name)
        try:
            kid = bytes.fromhex(hex_id)
        except ValueError as exc:
            raise CheckpointError("the key id is not hex", reason="bad_verifier_key") from exc
        raw = _b64decode(b64, "the verifier key")
        if len(kid) != 4 or len(raw) != 33 or raw[0] != ALG_ED25519:
            raise CheckpointError(
                "only Ed25519 verifier keys (type 0x01, 32 bytes) are supported",
                reason="bad_verifier_key",
            )
        if key_id(name, raw[1:]) != kid:
            raise CheckpointError(
                "the key id does not match the key name and public key", reason="bad_verifier_key"
            )
        return cls(name, kid, Ed25519PublicKey.from_public_bytes(raw[1:]))

    def __str__(self) -> str:
        raw = bytes([ALG_ED25519]) + _raw_public(self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(raw).decode()}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class NoteSigner:
    """A signing key, kept as ``PRIVATE+KEY+name+keyid+base64(0x01 || seed)``."""

    name: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        _check_key_name(name)
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, skey: str) -> NoteSigner:
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise CheckpointError("malformed signer key", reason="bad_signer_key")
        name, hex_id, b64 = parts[2:]
        raw = _b64decode(b64, "the signer key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise CheckpointError("only Ed25519 signer keys are supported", reason="bad_signer_key")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.verifier().key_id.hex() != hex_id:
            raise CheckpointError("signer key id does not match", reason="bad_signer_key")
        return signer

    def encode(self) -> str:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        raw = bytes([ALG_ED25519]) + seed
        kid = self.verifier().key_id.hex()
        return f"PRIVATE+KEY+{self.name}+{kid}+{base64.b64encode(raw).decode()}"

    def verifier(self) -> NoteVerifier:
        public = self.private_key.public_key()
        return NoteVerifier(self.name, key_id(self.name, _raw_public(public)), public)

    def sign(self, text: str) -> str:
        """Return the signed note: text, a blank line, one signature line."""
        _check_note_text(text)
        signature = self.private_key.sign(text.encode())
        blob = base64.b64encode(self.verifier().key_id + signature).decode()
        return f"{text}\n{_SIG_PREFIX}{self.name} {blob}\n"


def _check_note_text(text: str) -> None:
    if not text.endswith("\n"):
        raise CheckpointError("note text must end with a newline", reason="malformed")
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):
        raise CheckpointError("note text contains control characters", reason="malformed")


def open_note(note: str, verifier: NoteVerifier) -> str:
    """Verify a signed note with a known key and return its text (c2sp.org/signed-note).

    Signatures by unknown keys are ignored; a signature by the known key that fails to
    verify rejects the note; a note with no verified signature by the known key is rejected.
    """
    if "\n\n" not in note or not note.endswith("\n"):
        raise CheckpointError("not a signed note (no signature block)", reason="malformed")
    _check_note_text(note)
    split = note.rindex("\n\n")
    text, sig_block = note[: split + 1], note[split + 2 :]
    verified = False
    for line in sig_block.splitlines():
        if not line.startswith(_SIG_PREFIX):
            raise CheckpointError("malformed signature line", reason="malformed")
        name, _, blob = line[len(_SIG_PREFIX) :].partition(" ")
        raw = _b64decode(blob, "a signature")
        if len(raw) < 5:
            raise CheckpointError("signature too short", reason="malformed")
        if name != verifier.name or raw[:4] != verifier.key_id:
            continue  # an unknown key: ignored, as the specification requires
        if not verifier.verify(text.encode(), raw[4:]):
            raise CheckpointError(
                f"the signature by {name} does not verify", reason="bad_signature"
            )
        verified = True
    if not verified:
        raise CheckpointError(
            f"the note carries no signature by the known key {verifier.name}",
            reason="unknown_key",
        )
    return text


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: origin, tree size, root hash, optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def parse_text(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise CheckpointError("a checkpoint has at least three lines", reason="malformed")
        origin, size_text, root_text, *rest = lines[:-1]
        if not origin:
            raise CheckpointError("checkpoint origin is empty", reason="malformed")
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise CheckpointError("checkpoint tree size is not a decimal", reason="malformed")
        root = _b64decode(root_text, "the checkpoint root hash")
        if len(root) != 32:
            raise CheckpointError("checkpoint root hash is not 32 bytes", reason="malformed")
        if any(not line for line in rest):
            raise CheckpointError("empty checkpoint extension line", reason="malformed")
        return cls(origin, int(size_text), root, tuple(rest))

    def sign(self, signer: NoteSigner) -> str:
        return signer.sign(self.text())


def open_checkpoint(note: str, verifier: NoteVerifier, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint and parse it; ``origin`` (when given) must match."""
    checkpoint = Checkpoint.parse_text(open_note(note, verifier))
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(
            f"checkpoint is for log {checkpoint.origin!r}, expected {origin!r}",
            reason="wrong_origin",
        )
    return checkpoint

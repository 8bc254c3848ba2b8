"""The Merkle code against the public RFC 6962/9162 vectors and a naive reference tree."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatledger.errors import ProofError
from chatledger.ledger import merkle
from tests.ledger import reference_tree as ref

VECTORS = Path(__file__).resolve().parents[1] / "data" / "vectors" / "merkle"


def _cases(kind: str) -> list[Path]:
    folder = VECTORS / kind
    return sorted(folder.rglob("*.json")) if folder.is_dir() else []


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_vectors_are_present() -> None:
    assert len(_cases("inclusion")) > 50
    assert len(_cases("consistency")) > 50


@pytest.mark.parametrize("case", _cases("inclusion"), ids=lambda p: str(p.relative_to(VECTORS)))
def test_inclusion_vector(case: Path) -> None:
    data = _load(case)
    proof = [_b64(p) for p in data["proof"] or []]
    try:
        merkle.verify_inclusion(
            data["leafIdx"], data["treeSize"], _b64(data["leafHash"]), proof, _b64(data["root"])
        )
        failed = False
    except ProofError:
        failed = True
    assert failed == data["wantErr"], data["desc"]


@pytest.mark.parametrize("case", _cases("consistency"), ids=lambda p: str(p.relative_to(VECTORS)))
def test_consistency_vector(case: Path) -> None:
    data = _load(case)
    proof = [_b64(p) for p in data["proof"] or []]
    try:
        merkle.verify_consistency(
            data["size1"], data["size2"], proof, _b64(data["root1"]), _b64(data["root2"])
        )
        failed = False
    except ProofError:
        failed = True
    assert failed == data["wantErr"], data["desc"]


def _leaves(n: int) -> list[bytes]:
    return [ref.leaf(f"entry-{i}".encode()) for i in range(n)]


class _Store:
    """Nodes as the ledger store keeps them: leaves plus completed perfect subtrees."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.nodes: dict[merkle.NodeKey, bytes] = {}
        cr = merkle.CompactRange()
        for i, h in enumerate(leaves):
            self.nodes[(0, i)] = h
            for level, index, node in cr.append(h):
                self.nodes[(level, index)] = node
        self.compact = cr
        self.fetches = 0

    def fetch(self, keys: Any) -> dict[merkle.NodeKey, bytes]:
        self.fetches += 1
        return {k: self.nodes[k] for k in keys if k in self.nodes}


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_proofs_match_reference(size: int, data: st.DataObject) -> None:
    leaves = _leaves(size)
    store = _Store(leaves)
    root = ref.mth(leaves)
    assert store.compact.root() == root
    assert merkle.tree_root(size, store.fetch) == root
    assert merkle.root_from_leaves(leaves) == root

    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = merkle.inclusion_proof(index, size, store.fetch)
    assert proof == ref.path(index, leaves)
    merkle.verify_inclusion(index, size, leaves[index], proof, root)

    old = data.draw(st.integers(min_value=1, max_value=size))
    cproof = merkle.consistency_proof(old, size, store.fetch)
    assert cproof == ref.proof(old, leaves)
    merkle.verify_consistency(old, size, cproof, ref.mth(leaves[:old]), root)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=2, max_value=200), st.data())
def test_any_flipped_bit_is_rejected(size: int, data: st.DataObject) -> None:
    leaves = _leaves(size)
    store = _Store(leaves)
    root = ref.mth(leaves)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = merkle.inclusion_proof(index, size, store.fetch)
    if not proof:
        return
    which = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=255))
    tampered = list(proof)
    flipped = bytearray(tampered[which])
    flipped[bit // 8] ^= 1 << (bit % 8)
    tampered[which] = bytes(flipped)
    with pytest.raises(ProofError) as err:
        merkle.verify_inclusion(index, size, leaves[index], tampered, root)
    assert err.value.reason == "root_mismatch"
    assert err.value.details["expected_root"] == root.hex()


def test_proof_reads_are_one_batch_of_log_n_nodes() -> None:
    size = 1_000_003
    leaves = [i.to_bytes(32, "big") for i in range(size)]
    cr = merkle.CompactRange()
    nodes: dict[merkle.NodeKey, bytes] = {}
    for i, h in enumerate(leaves):
        nodes[(0, i)] = h
        for level, index, node in cr.append(h):
            nodes[(level, index)] = node
    asked: list[int] = []

    def fetch(keys: Any) -> dict[merkle.NodeKey, bytes]:
        asked.append(len(keys))
        return {k: nodes[k] for k in keys}

    merkle.inclusion_proof(size - 1, size, fetch)
    merkle.consistency_proof(size // 3, size, fetch)
    assert len(asked) == 2
    assert max(asked) <= 2 * 21


def test_preconditions_have_precise_messages() -> None:
    with pytest.raises(ProofError, match="beyond the tree size"):
        merkle.root_from_inclusion_proof(5, 5, b"\x00" * 32, [])
    with pytest.raises(ProofError, match="must be 32 bytes"):
        merkle.root_from_inclusion_proof(0, 1, b"short", [])
    with pytest.raises(ProofError, match="expected 3"):
        merkle.root_from_inclusion_proof(0, 8, b"\x00" * 32, [b"\x00" * 32])
    with pytest.raises(ValueError, match="not a subtree"):
        merkle.perfect_ranges(1, 3)

"""The RFC 9162 section 2.1 Merkle tree: hashing, proof shapes and proof verification.

Pure functions, no I/O. Proof *generation* is split in two so that a store can answer a
proof with O(log n) reads: :func:`inclusion_path_ranges` and :func:`consistency_path_ranges`
name the subtrees ``[start, end)`` whose hashes make up a proof, :func:`perfect_ranges`
decomposes any such subtree into aligned perfect subtrees (the only nodes a store keeps),
and :func:`fold_ranges` rebuilds a subtree hash from those nodes.

Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step (numbered comments),
after checking preconditions the way transparency-dev/merkle does, so that the public test
vectors agree with it case for case. Functions compute roots and return bytes; ``verify_*``
compare and raise :class:`ProofError` carrying both values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from chatledger.errors import ProofError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

Range = tuple[int, int]
"""A subtree as the half-open leaf range ``[start, end)``."""

NodeKey = tuple[int, int]
"""A perfect subtree ``(level, index)``: leaves ``[index << level, (index + 1) << level)``."""


def leaf_hash(entry: bytes) -> bytes:
    """MTH of one entry: SHA-256(0x00 || entry)."""
    return hashlib.sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2), RFC 9162's ``k``."""
    if n < 2:
        raise ValueError("split_point needs n >= 2")
    return 1 << ((n - 1).bit_length() - 1)


def perfect_ranges(start: int, end: int) -> list[NodeKey]:
    """Decompose the RFC 9162 subtree ``[start, end)`` into aligned perfect subtrees.

    The subtrees come left to right, largest first. The hash of ``[start, end)`` is these
    hashes folded from the right (see :func:`fold_ranges`), which is exactly the recursive
    MTH definition, because every subtree the RFC recursion produces starts at a multiple of
    a power of two at least as large as its size.
    """
    if not 0 <= start < end:
        raise ValueError(f"empty or negative range [{start}, {end})")
    keys: list[NodeKey] = []
    pos = start
    remaining = end - start
    while remaining:
        level = remaining.bit_length() - 1
        if pos & ((1 << level) - 1):
            raise ValueError(f"[{start}, {end}) is not a subtree of an RFC 9162 tree")
        keys.append((level, pos >> level))
        pos += 1 << level
        remaining -= 1 << level
    return keys


def fold_ranges(hashes: Sequence[bytes]) -> bytes:
    """Combine the hashes of :func:`perfect_ranges` (left to right) into the subtree hash."""
    if not hashes:
        raise ValueError("nothing to fold")
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_path_ranges(index: int, size: int) -> list[Range]:
    """The subtrees whose hashes form PATH(index, D[0:size]) (RFC 9162 2.1.3.1), leaf first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    path: list[Range] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = split_point(hi - lo)
        if m < k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo, m = lo + k, m - k
    path.reverse()
    return path


def consistency_path_ranges(old_size: int, new_size: int) -> list[Range]:
    """The subtrees whose hashes form PROOF(old_size, D[0:new_size]) (RFC 9162 2.1.4.1)."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    # SUBPROOF(m, D[lo:hi], b) appends the sibling after the recursive part, so we collect
    # siblings top-down and reverse at the end.
    siblings: list[Range] = []
    lo, hi, m, whole = 0, new_size, old_size, True
    while True:
        if m == hi - lo:
            if not whole:
                siblings.append((lo, hi))
            break
        k = split_point(hi - lo)
        if m <= k:
            siblings.append((lo + k, hi))
            hi = lo + k
        else:
            siblings.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    siblings.reverse()
    return siblings


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[0:n]) from leaf hashes with a compact-range stack (O(n) time, O(log n) space)."""
    stack = CompactRange()
    for h in leaves:
        stack.append(h)
    return stack.root()


class CompactRange:
    """The right frontier of a growing tree: one perfect-subtree hash per set bit of size.

    ``append`` returns the perfect subtrees completed by the new leaf, as ``(level, index,
    hash)`` with level >= 1, so a store can keep them for O(log n) proofs.
    """

    __slots__ = ("_hashes", "size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        self.size = size
        self._hashes = list(hashes)
        if len(self._hashes) != size.bit_count():
            raise ValueError("a compact range needs one hash per set bit of its size")

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        completed: list[tuple[int, int, bytes]] = []
        h = leaf
        index = self.size
        level = 0
        while index & 1:
            h = node_hash(self._hashes.pop(), h)
            index >>= 1
            level += 1
            completed.append((level, index, h))
        self._hashes.append(h)
        self.size += 1
        return completed

    def append_subtree(self, level: int, digest: bytes) -> None:
        """Append an aligned perfect subtree of ``2**level`` leaves (its hash ``digest``)."""
        if self.size & ((1 << level) - 1):
            raise ValueError(f"a subtree of level {level} cannot start at {self.size}")
        h = digest
        index = self.size >> level
        while index & 1:
            h = node_hash(self._hashes.pop(), h)
            index >>= 1
        self._hashes.append(h)
        self.size += 1 << level

    def append_subtree_nodes(self, level: int, digest: bytes) -> list[tuple[int, int, bytes]]:
        """:meth:`append_subtree`, returning the perfect subtrees it completes as ``(level,
        index, hash)``, lowest first (as :meth:`append` does for one leaf)."""
        if self.size & ((1 << level) - 1):
            raise ValueError(f"a subtree of level {level} cannot start at {self.size}")
        completed: list[tuple[int, int, bytes]] = []
        h = digest
        index = self.size >> level
        height = level
        while index & 1:
            h = node_hash(self._hashes.pop(), h)
            index >>= 1
            height += 1
            completed.append((height, index, h))
        self._hashes.append(h)
        self.size += 1 << level
        return completed

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        return fold_ranges(self._hashes)

    def hashes(self) -> list[bytes]:
        return list(self._hashes)

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self._hashes)


def subtree_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every perfect subtree over ``leaves``, level by level: ``levels[0]`` is the leaves and
    ``levels[l][i]`` the hash of leaves ``[i << l, (i + 1) << l)``. For leaves that start at a
    multiple of ``2**(len(levels) - 1)`` these are exactly the tree's stored nodes among them.
    One pass per level over a list is several times faster than :meth:`CompactRange.append`
    per leaf."""
    sha256 = hashlib.sha256
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        pairs = zip(below[::2], below[1::2], strict=False)  # an odd last hash waits
        levels.append([sha256(NODE_PREFIX + a + b).digest() for a, b in pairs])
    return levels


def prefix_subtrees(levels: Sequence[Sequence[bytes]], count: int) -> list[tuple[int, bytes]]:
    """The perfect subtrees ``(level, hash)`` that make up the first ``count`` leaves of
    :func:`subtree_levels` output, largest first (the compact range of that prefix)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    for level in range(count.bit_length() - 1, -1, -1):
        if count >> level & 1:
            out.append((level, levels[level][pos >> level]))
            pos += 1 << level
    return out


def frontier_keys(size: int) -> list[NodeKey]:
    """The perfect subtrees that make up a tree of ``size`` leaves (its compact range)."""
    return perfect_ranges(0, size) if size else []


# --- generation over a node source -------------------------------------------------------

NodeSource = Callable[[Sequence[NodeKey]], dict[NodeKey, bytes]]
"""Fetches the hashes of aligned perfect subtrees in one batch (a store's single query)."""


def subtree_hashes(ranges: Sequence[Range], fetch: NodeSource) -> list[bytes]:
    """Hashes of several RFC subtrees with one batched fetch of O(log n) stored nodes."""
    decomposed = [perfect_ranges(a, b) for a, b in ranges]
    wanted = sorted({key for keys in decomposed for key in keys})
    nodes = fetch(wanted)
    missing = [key for key in wanted if key not in nodes]
    if missing:
        raise ProofError(
            "the store is missing tree nodes needed for the proof",
            reason="missing_nodes",
            details={"first_missing": f"level={missing[0][0]} index={missing[0][1]}"},
        )
    return [fold_ranges([nodes[key] for key in keys]) for keys in decomposed]


def inclusion_proof(index: int, size: int, fetch: NodeSource) -> list[bytes]:
    return subtree_hashes(inclusion_path_ranges(index, size), fetch)


def consistency_proof(old_size: int, new_size: int, fetch: NodeSource) -> list[bytes]:
    if old_size == new_size:
        return []
    return subtree_hashes(consistency_path_ranges(old_size, new_size), fetch)


def tree_root(size: int, fetch: NodeSource) -> bytes:
    if size == 0:
        return EMPTY_ROOT
    return subtree_hashes([(0, size)], fetch)[0]


# --- verification (RFC 9162 2.1.3.2 and 2.1.4.2) -----------------------------------------


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(
            f"{name} must be {HASH_SIZE} bytes, got {len(value)}",
            reason="bad_hash_length",
        )


def _inner_and_border(index: int, size: int) -> tuple[int, int]:
    """Proof length split as transparency-dev does: inner levels, then the right border."""
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof; raises ProofError on malformed input."""
    # Preconditions: index < size, 32-byte hashes, exactly the expected proof length.
    if index >= size or index < 0:
        raise ProofError(
            f"leaf index {index} is beyond the tree size {size}", reason="index_out_of_range"
        )
    _check_hash("leaf hash", leaf)
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
    inner, border = _inner_and_border(index, size)
    if len(proof) != inner + border:
        raise ProofError(
            f"inclusion proof has {len(proof)} hashes, expected {inner + border}",
            reason="wrong_proof_length",
        )
    # RFC 9162 2.1.3.2
    # 2. Set fn to leaf_index and sn to tree_size - 1.
    fn, sn = index, size - 1
    # 3. Set r to hash.
    r = leaf
    # 4. For each value p in the inclusion_path array:
    for p in proof:
        # 4a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            raise ProofError("inclusion proof is too long", reason="wrong_proof_length")
        # 4b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # 4b.i. Set r to HASH(0x01 || p || r).
            r = node_hash(p, r)
            # 4b.ii. If LSB(fn) is not set, right-shift fn and sn until LSB(fn) is set or fn is 0.
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            # Otherwise: Set r to HASH(0x01 || r || p).
            r = node_hash(r, p)
        # 4c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 5. Compare sn to 0 (the caller compares r with the root hash).
    if sn != 0:
        raise ProofError("inclusion proof is too short", reason="wrong_proof_length")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    _check_hash("root", root)
    computed = root_from_inclusion_proof(index, size, leaf, proof)
    if computed != root:
        raise ProofError(
            "inclusion proof does not lead to the expected root",
            reason="root_mismatch",
            details={"computed_root": computed.hex(), "expected_root": root.hex()},
        )


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Check that the tree of ``new_size`` with ``new_root`` extends the one of ``old_size``."""
    if new_size < old_size or old_size < 0:
        raise ProofError(
            f"new size {new_size} is smaller than old size {old_size}", reason="size_decreased"
        )
    if old_size == new_size:
        # Equal sizes compare roots as given (as transparency-dev/merkle and its vectors do).
        if proof:
            raise ProofError("sizes are equal but the proof is not empty", reason="bad_proof")
        if old_root != new_root:
            raise ProofError(
                "same tree size but different roots",
                reason="root_mismatch",
                details={"old_root": old_root.hex(), "new_root": new_root.hex()},
            )
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise ProofError("an empty tree must have the empty root", reason="root_mismatch")
        return
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    for i, c in enumerate(proof):
        _check_hash(f"proof[{i}]", c)
    if old_size == 0:
        # Every tree extends the empty tree; a non-empty proof is malformed.
        if proof:
            raise ProofError("a proof from the empty tree must be empty", reason="bad_proof")
        if old_root != EMPTY_ROOT:
            raise ProofError("an empty tree must have the empty root", reason="root_mismatch")
        return
    # RFC 9162 2.1.4.2
    # 1. If consistency_path is an empty array, stop and fail the proof verification.
    if not proof:
        raise ProofError("consistency proof is empty", reason="bad_proof")
    path = list(proof)
    # 2. If first is an exact power of 2, then prepend first_hash to the consistency_path.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = old_size - 1, new_size - 1
    # 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Set both fr and sr to the first value in the consistency_path array.
    fr = sr = path[0]
    # 6. For each subsequent value c in the consistency_path array:
    for c in path[1:]:
        # 6a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            raise ProofError("consistency proof is too long", reason="wrong_proof_length")
        # 6b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # 6b.i/ii. fr = HASH(0x01 || c || fr); sr = HASH(0x01 || c || sr).
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            # 6b.iii. If LSB(fn) is not set, right-shift both until LSB(fn) is set or fn is 0.
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            # Otherwise: Set sr to HASH(0x01 || sr || c).
            sr = node_hash(sr, c)
        # 6c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 7. fr must equal first_hash, sr must equal second_hash, and sn must be 0.
    if sn != 0:
        raise ProofError("consistency proof is too short", reason="wrong_proof_length")
    if fr != old_root:
        raise ProofError(
            "consistency proof does not lead to the old root",
            reason="old_root_mismatch",
            details={"computed_root": fr.hex(), "expected_root": old_root.hex()},
        )
    if sr != new_root:
        raise ProofError(
            "consistency proof does not lead to the new root",
            reason="new_root_mismatch",
            details={"computed_root": sr.hex(), "expected_root": new_root.hex()},
        )

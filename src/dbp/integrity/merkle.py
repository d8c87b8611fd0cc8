"""RFC 9162 §2.1 Merkle tree hashing (the RFC 6962 tree, SHA-256), proofs and the append frontier.

Hashing (§2.1.1): a leaf hashes as SHA-256(0x00 || leaf), an interior node as SHA-256(0x01 || left || right);
the tree of n > 1 leaves splits at k, the largest power of two below n; the empty tree's root is SHA-256 of the
empty string.

Storage model. Every *complete subtree* of the log — leaves [index * 2**level, (index + 1) * 2**level) — is
hashed exactly once, when its last leaf is appended (``Frontier.append`` returns the new ones as ``Subtree``
rows), and never changes afterwards. Proofs are built from those stored hashes only: ``inclusion_plan`` and
``consistency_plan`` name the O(log n) complete subtrees a proof needs (so a database can fetch them in one
query), ``build_proof`` folds them through a ``subtree_hash(start, end)`` lookup. Nothing here ever rebuilds
a tree. ``MemoryTree`` is the in-memory subtree store for tests and small trees.

Verification (``verify_inclusion`` §2.1.3.2, ``verify_consistency`` §2.1.4.2) is pure and fails closed: it
checks every precondition first (hash sizes, sizes and index in range, the exact proof length) and raises
``ProofError`` — a ``VerificationError`` — with a stable ``reason`` slug and an "expected X, got Y" message on
any mismatch. It returns ``None`` only when the proof has exactly the RFC's number of hashes for those sizes
and, folded as the RFC prescribes, yields the given root(s). (A proof binds leaf and root, not the size by
itself: take sizes and roots together from one verified checkpoint.)

Proof generation raises ``ValueError`` for arguments out of range (a caller error, checked by the service
before it asks), and ``ProofError`` (reason ``hash-size``) if storage hands back something that is not a
32-byte hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from dbp.errors import ProofError

HASH_SIZE = 32
#: Tree sizes and leaf indexes are uint64 on the wire (C2SP tlog-checkpoint, RFC 9162 §4); larger is refused.
MAX_TREE_SIZE = 2**64 - 1
#: RFC 9162 §2.1.1: MTH({}) = SHA-256().
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: ``subtree_hash(start, end)`` returns the stored hash of the complete subtree of leaves [start, end);
#: it is only ever called with ``end - start`` a power of two and ``start`` a multiple of it.
SubtreeHash = Callable[[int, int], bytes]


def hash_leaf(leaf: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    return hashlib.sha256(b"\x01" + left + right).digest()


@dataclass(frozen=True, slots=True)
class Node:
    """A complete subtree: the 2**level leaves [index * 2**level, (index + 1) * 2**level)."""

    level: int
    index: int

    @property
    def start(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


@dataclass(frozen=True, slots=True)
class Subtree:
    """A complete subtree and its hash, as ``Frontier.append`` hands it over for storage."""

    level: int
    index: int
    digest: bytes

    @property
    def node(self) -> Node:
        return Node(self.level, self.index)


#: One proof element per entry: the complete subtrees, left to right, whose hashes fold from the right
#: (``hash_children(a, hash_children(b, c))``) into that element. Most entries hold one subtree; the one
#: element that covers the ragged right edge of the tree holds one per set bit of its width.
ProofPlan = list[tuple[Node, ...]]


def node_for_range(start: int, end: int) -> Node:
    """The complete subtree covering exactly [start, end). ``ValueError`` unless ``end - start`` is a power of
    two and ``start`` a multiple of it."""
    width = end - start
    if start < 0 or width <= 0 or width & (width - 1) or start % width:
        raise ValueError(f"[{start}, {end}) is not a complete subtree (aligned power-of-two range)")
    level = width.bit_length() - 1
    return Node(level, start >> level)


def _range_nodes(start: int, end: int) -> tuple[Node, ...]:
    """Complete subtrees covering [start, end), largest first. Precondition: ``start`` is a multiple of a power
    of two >= ``end - start`` (true of [0, n) and of every right-edge node of the RFC 9162 tree), so that the
    right fold of their hashes is MTH(D[start:end])."""
    nodes: list[Node] = []
    while start < end:
        level = (end - start).bit_length() - 1
        nodes.append(Node(level, start >> level))
        start += 1 << level
    return tuple(nodes)


def _path(index: int, size: int, from_level: int) -> ProofPlan:
    """The siblings, bottom up from ``from_level``, of the nodes on the path from leaf ``index`` to the root of
    the tree of ``size`` leaves (RFC 9162 §2.1.3.1 PATH, read level by level).

    Leaf ``index`` and the last leaf ``size - 1`` share the bits above ``inner``. Below level ``inner - 1`` the
    path runs inside a complete subtree, so each sibling is complete. At level ``inner - 1`` the sibling is the
    right part [s, size) of the subtree holding both leaves — complete or ragged. Above, the path follows the
    right edge of the tree, whose left siblings are complete and exist where ``index`` has a bit set.
    """
    last = size - 1
    inner = (index ^ last).bit_length()
    plan: ProofPlan = [(Node(level, (index >> level) ^ 1),) for level in range(from_level, inner - 1)]
    if from_level < inner:
        start = ((index >> (inner - 1)) + 1) << (inner - 1)
        plan.append(_range_nodes(start, size))
    for level in range(max(inner, from_level), last.bit_length()):
        if (index >> level) & 1:
            plan.append((Node(level, (index >> level) - 1),))
    return plan


def _check_arg(name: str, value: int, limit: int = MAX_TREE_SIZE) -> None:
    if type(value) is not int or not 0 <= value <= limit:
        raise ValueError(f"{name} must be an integer in 0..{limit}, got {value!r}")


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """The complete subtrees an inclusion proof of leaf ``index`` in the tree of ``size`` leaves is made of
    (RFC 9162 §2.1.3.1). ``ValueError`` unless 0 <= index < size."""
    _check_arg("size", size)
    _check_arg("index", index)
    if index >= size:
        raise ValueError(f"leaf index {index} is not in a tree of {size} leaves")
    return _path(index, size, 0)


def consistency_plan(size1: int, size2: int) -> ProofPlan:
    """The complete subtrees a consistency proof from ``size1`` to ``size2`` leaves is made of (RFC 9162
    §2.1.4.1). Empty when ``size1`` is 0 or equals ``size2``. ``ValueError`` unless 0 <= size1 <= size2.

    SUBPROOF descends towards leaf ``size1 - 1`` and stops at the first node ending at ``size1``: the largest
    complete subtree ending there, of level = trailing zeros of ``size1``. Its hash comes first unless it is
    the whole old tree (``size1`` a power of two, which the verifier already holds as ``root1``); then come the
    siblings of its path to the root of the new tree.
    """
    _check_arg("size2", size2)
    _check_arg("size1", size1, size2)
    if size1 == 0 or size1 == size2:
        return []
    level = (size1 & -size1).bit_length() - 1
    plan: ProofPlan = [] if size1 == 1 << level else [(Node(level, (size1 - 1) >> level),)]
    return plan + _path(size1 - 1, size2, level)


def inclusion_proof_length(index: int, size: int) -> int:
    """Number of hashes in the inclusion proof of leaf ``index`` (< ``size``) in a tree of ``size`` leaves."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_length(size1: int, size2: int) -> int:
    """Number of hashes in the consistency proof from ``size1`` to ``size2`` (0 <= size1 <= size2) leaves."""
    if size1 == 0 or size1 == size2:
        return 0
    level = (size1 & -size1).bit_length() - 1
    first = 0 if size1 == 1 << level else 1
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    return first + (inner - level) + ((size1 - 1) >> inner).bit_count()


def _fetch(subtree_hash: SubtreeHash, node: Node) -> bytes:
    digest = subtree_hash(node.start, node.end)
    if type(digest) is not bytes or len(digest) != HASH_SIZE:
        got = len(digest) if isinstance(digest, bytes | bytearray) else type(digest).__name__
        raise ProofError(f"stored hash of leaves [{node.start}, {node.end}): expected {HASH_SIZE} bytes, got {got}",
                         reason="hash-size")
    return digest


def _fold(nodes: Sequence[Node], subtree_hash: SubtreeHash) -> bytes:
    digest = _fetch(subtree_hash, nodes[-1])
    for node in reversed(nodes[:-1]):
        digest = hash_children(_fetch(subtree_hash, node), digest)
    return digest


def build_proof(plan: ProofPlan, subtree_hash: SubtreeHash) -> list[bytes]:
    """The proof hashes for ``plan``, one ``subtree_hash`` lookup per node of the plan."""
    return [_fold(nodes, subtree_hash) for nodes in plan]


def inclusion_proof(index: int, size: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[size]) from stored complete-subtree hashes (O(log size) lookups)."""
    return build_proof(inclusion_plan(index, size), subtree_hash)


def consistency_proof(size1: int, size2: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(size1, D[size2]) from stored complete-subtree hashes (O(log size2) lookups)."""
    return build_proof(consistency_plan(size1, size2), subtree_hash)


def root_nodes(size: int) -> tuple[Node, ...]:
    """The complete subtrees whose right fold is the root of the tree of ``size`` leaves (one per set bit)."""
    _check_arg("size", size)
    return _range_nodes(0, size)


def root_from_subtrees(size: int, subtree_hash: SubtreeHash) -> bytes:
    """MTH(D[size]) from stored complete-subtree hashes (popcount(size) lookups)."""
    nodes = root_nodes(size)
    return _fold(nodes, subtree_hash) if nodes else EMPTY_ROOT


class Frontier:
    """The append state of a log of ``size`` leaves: the hashes of its maximal complete subtrees, left to right
    (one per set bit of ``size``, largest first) — the compact range [0, size).

    ``append`` adds one leaf hash and returns every complete subtree that the new leaf completes (the leaf
    itself at level 0 and each subtree it closes above), which is exactly what a store must persist to answer
    ``subtree_hash`` for every complete subtree ever. ``root`` is MTH of the current tree. Not thread-safe; a
    caller whose transaction may roll back appends to a ``copy``.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        _check_arg("size", size)
        stored = list(hashes)
        if len(stored) != size.bit_count():
            raise ValueError(f"a frontier of {size} leaves has {size.bit_count()} hashes, got {len(stored)}")
        for digest in stored:
            if type(digest) is not bytes or len(digest) != HASH_SIZE:
                raise ValueError(f"frontier hash: expected {HASH_SIZE} bytes, got {digest!r:.80}")
        self._size = size
        self._hashes = stored

    @classmethod
    def load(cls, size: int, subtree_hash: SubtreeHash) -> Frontier:
        """The frontier of a stored log of ``size`` leaves (popcount(size) lookups)."""
        return cls(size, [_fetch(subtree_hash, node) for node in root_nodes(size)])

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def copy(self) -> Frontier:
        return Frontier(self._size, self._hashes)

    def append(self, leaf_hash: bytes) -> list[Subtree]:
        """Add leaf ``size`` with hash ``leaf_hash``; return the complete subtrees it completes, bottom up."""
        if type(leaf_hash) is not bytes or len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {leaf_hash!r:.80}")
        index = self._size
        if index >= MAX_TREE_SIZE:
            raise ValueError(f"the log is full ({MAX_TREE_SIZE} leaves)")
        digest = leaf_hash
        completed = [Subtree(0, index, digest)]
        level = 0
        while (index >> level) & 1:  # the left sibling at this level is the rightmost frontier subtree
            digest = hash_children(self._hashes.pop(), digest)
            level += 1
            completed.append(Subtree(level, index >> level, digest))
        self._hashes.append(digest)
        self._size = index + 1
        return completed

    def root(self) -> bytes:
        """MTH(D[size]); ``EMPTY_ROOT`` for the empty log."""
        if not self._hashes:
            return EMPTY_ROOT
        digest = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            digest = hash_children(left, digest)
        return digest


class MemoryTree:
    """An in-memory log: a ``Frontier`` plus a dict of every complete subtree's hash. For tests and small trees;
    the database store keeps the same ``Subtree`` rows in a table."""

    def __init__(self) -> None:
        self._frontier = Frontier()
        self._nodes: dict[Node, bytes] = {}

    @property
    def size(self) -> int:
        return self._frontier.size

    def append(self, leaf: bytes) -> list[Subtree]:
        """Append leaf data (hashed with ``hash_leaf``); return the subtrees it completes."""
        return self.append_hash(hash_leaf(leaf))

    def append_hash(self, leaf_hash: bytes) -> list[Subtree]:
        completed = self._frontier.append(leaf_hash)
        for subtree in completed:
            self._nodes[subtree.node] = subtree.digest
        return completed

    def subtree_hash(self, start: int, end: int) -> bytes:
        """Hash of the complete subtree [start, end). ``ValueError`` for a range that is not a complete subtree,
        ``LookupError`` for one beyond the current size."""
        node = node_for_range(start, end)
        if end > self.size:
            raise LookupError(f"leaves [{start}, {end}) are not all in a log of {self.size}")
        return self._nodes[node]

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all)."""
        if size is None:
            return self._frontier.root()
        _check_arg("size", size, self.size)
        return root_from_subtrees(size, self.subtree_hash)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        _check_arg("size", size, self.size)
        return inclusion_proof(index, size, self.subtree_hash)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        size2 = self.size if size2 is None else size2
        _check_arg("size2", size2, self.size)
        return consistency_proof(size1, size2, self.subtree_hash)


# --- verification (pure, fail closed) -------------------------------------------------------------------------


def _need_hash(name: str, value: object) -> bytes:
    if type(value) is not bytes or len(value) != HASH_SIZE:
        got = f"{len(value)} bytes" if isinstance(value, bytes | bytearray) else type(value).__name__
        raise ProofError(f"{name}: expected a {HASH_SIZE}-byte hash, got {got}", reason="hash-size")
    return value


def _need_size(name: str, value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_TREE_SIZE:
        raise ProofError(f"{name}: expected an integer in 0..2**64-1, got {value!r:.40}", reason="invalid-size")
    return value


def _need_proof(proof: object) -> list[bytes]:
    if isinstance(proof, str | bytes | bytearray) or not isinstance(proof, Sequence):
        raise ProofError(f"proof: expected a sequence of hashes, got {type(proof).__name__}", reason="hash-size")
    return [_need_hash(f"proof[{i}]", p) for i, p in enumerate(proof)]


def _mismatch(what: str, expected: bytes, got: bytes) -> ProofError:
    return ProofError(f"{what}: expected {expected.hex()}, got {got.hex()}", reason="root-mismatch")


def verify_inclusion(*, leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``proof`` shows the leaf with hash ``leaf_hash`` at ``index`` in the tree of ``size`` leaves
    whose root is ``root`` (RFC 9162 §2.1.3.2). Returns ``None`` on success; raises ``ProofError`` otherwise,
    reason ``hash-size`` (also: ``proof`` not a sequence of byte strings), ``invalid-size``,
    ``index-out-of-range`` (also: any index of the empty tree), ``proof-length`` or ``root-mismatch``.

    A proof binds the leaf to the root, not the size on its own: trees whose shapes agree along the path (leaf 0
    of 3 and of 4) accept the same proof. Take ``size`` and ``root`` together from one verified checkpoint."""
    leaf_hash = _need_hash("leaf hash", leaf_hash)
    root = _need_hash("root", root)
    hashes = _need_proof(proof)
    size = _need_size("tree size", size)
    index = _need_size("leaf index", index)
    if index >= size:
        raise ProofError(f"leaf index: expected < tree size {size}, got {index}", reason="index-out-of-range")
    want = inclusion_proof_length(index, size)
    if len(hashes) != want:
        raise ProofError(f"inclusion proof of leaf {index} in a tree of {size}: expected {want} hashes, "
                         f"got {len(hashes)}", reason="proof-length")
    # §2.1.3.2 steps 2-5, verbatim.
    fn, sn = index, size - 1
    r = leaf_hash
    for p in hashes:
        if sn == 0:
            raise ProofError("inclusion proof: expected no more hashes, got more", reason="proof-length")
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof: expected more hashes, got too few", reason="proof-length")
    if r != root:
        raise _mismatch(f"root of the tree of {size} computed from the inclusion proof of leaf {index}", root, r)


def verify_consistency(*, size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """Check that ``proof`` shows the tree of ``size1`` leaves with root ``root1`` is a prefix of the tree of
    ``size2`` leaves with root ``root2`` (RFC 9162 §2.1.4.2). Returns ``None`` on success; raises
    ``ProofError`` otherwise, reason ``hash-size``, ``invalid-size``, ``size-order`` (size1 > size2),
    ``proof-length`` or ``root-mismatch``.

    Beyond the RFC (which assumes 0 < size1 < size2): equal sizes need an empty proof and equal roots; size1 = 0
    needs an empty proof and ``root1`` equal to ``EMPTY_ROOT`` (every tree extends the empty one).
    """
    root1 = _need_hash("root1", root1)
    root2 = _need_hash("root2", root2)
    hashes = _need_proof(proof)
    size1 = _need_size("size1", size1)
    size2 = _need_size("size2", size2)
    if size1 > size2:
        raise ProofError(f"size1: expected <= size2 {size2}, got {size1}", reason="size-order")
    want = consistency_proof_length(size1, size2)
    if len(hashes) != want:
        raise ProofError(f"consistency proof from {size1} to {size2}: expected {want} hashes, got {len(hashes)}",
                         reason="proof-length")
    if size1 == size2:
        if root1 != root2:
            raise _mismatch(f"root2 of the same tree size {size2} as root1", root1, root2)
        return
    if size1 == 0:
        if root1 != EMPTY_ROOT:
            raise _mismatch("root1 of the empty tree", EMPTY_ROOT, root1)
        return
    # §2.1.4.2 steps 2-7, verbatim.
    path = [root1, *hashes] if size1 & (size1 - 1) == 0 else hashes
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof: expected no more hashes, got more", reason="proof-length")
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof: expected more hashes, got too few", reason="proof-length")
    if fr != root1:
        raise _mismatch(f"root of the tree of {size1} computed from the consistency proof", root1, fr)
    if sr != root2:
        raise _mismatch(f"root of the tree of {size2} computed from the consistency proof", root2, sr)

"""Write the integrity test vectors in tests/integrity/vectors/ from an independent reference.

The reference below is a deliberately naive transcription of RFC 9162 §2.1 — recursive MTH, PATH and
PROOF/SUBPROOF over ranges of the leaf list, memoised only so that big trees stay cheap — and shares no code
with ``dbp.integrity.merkle``. Good cases hold the proofs this reference builds. Whether any case must verify
is decided by recomputing the roots recursively from the definitions of PATH and SUBPROOF (see
``inclusion_outcome``), not with the RFC's iterative verification algorithm that production uses; the expected
``wantReason`` of a failing case follows the documented order of checks of ``dbp.integrity.merkle``:
``hash-size`` (any hash not 32 bytes), then ``index-out-of-range`` / ``size-order``, then ``proof-length`` (not
the RFC's number of hashes), then ``root-mismatch``. Checkpoint notes are written out by hand (f-strings and
``cryptography``), not through ``dbp.integrity.checkpoint``.

The JSON has the shape of transparency-dev/merkle's testdata (``leafIdx``, ``treeSize``, ``root``,
``leafHash``, ``proof``, ``desc``, ``wantErr``; ``size1``, ``size2``, ``root1``, ``root2``), byte strings as
standard base64, plus ``wantReason``. One case per line. Output is deterministic; regenerate with::

    .venv/bin/python tests/integrity/make_vectors.py
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

OUT = Path(__file__).parent / "vectors"

# RFC 6962 reference leaves and the published roots of their first 0..8 (certificate-transparency test data):
# an anchor outside this repository for both implementations.
RFC6962_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
RFC6962_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def make_leaves(count: int) -> list[bytes]:
    """The RFC 6962 leaves, then leaves of varying length."""
    leaves = [bytes.fromhex(h) for h in RFC6962_LEAVES]
    while len(leaves) < count:
        i = len(leaves)
        leaves.append(f"dbp vector leaf {i}".encode() * (1 + i % 3))
    return leaves[:count]


# --- the naive reference, RFC 9162 §2.1 -------------------------------------------------------------------------


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _largest_power_of_two_below(n: int) -> int:
    """"k is the largest power of two smaller than n (i.e., k < n <= 2k)" (§2.1.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class NaiveTree:
    """D[lo:hi] is written as the pair (lo, hi) of the leaf list; otherwise the RFC's definitions, line by line."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.d = leaves

    @functools.cache  # noqa: B019 - one tree per generator run or test module
    def mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return _sha256(b"")  # MTH({}) = SHA-256()
        if n == 1:
            return _sha256(b"\x00" + self.d[lo])  # MTH({d(0)}) = SHA-256(0x00 || d(0))
        k = _largest_power_of_two_below(n)
        # MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
        return _sha256(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi))

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        """PATH(m, D[n]) (§2.1.3.1), the tree being D[lo:hi] and m relative to lo."""
        n = hi - lo
        if n == 1:
            return []  # PATH(0, {d(0)}) = {}
        k = _largest_power_of_two_below(n)
        if m < k:  # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) for m < k
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        # PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k]) for m >= k
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        """SUBPROOF(m, D[n], b) (§2.1.4.1), the tree being D[lo:hi]."""
        n = hi - lo
        if m == n:
            # SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
            return [] if b else [self.mth(lo, hi)]
        k = _largest_power_of_two_below(n)
        if m <= k:  # SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            return [*self.subproof(m, lo, lo + k, b), self.mth(lo + k, hi)]
        # SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
        return [*self.subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]

    # Whole-tree conveniences.
    def root(self, n: int) -> bytes:
        return self.mth(0, n)

    def leaf_hash(self, i: int) -> bytes:
        return self.mth(i, i + 1)

    def inclusion(self, m: int, n: int) -> list[bytes]:
        return self.path(m, 0, n)

    def consistency(self, m: int, n: int) -> list[bytes]:
        """PROOF(m, D[n]) = SUBPROOF(m, D[n], true), for 0 < m <= n; empty for m = 0 (nothing to prove)."""
        return [] if m == 0 else self.subproof(m, 0, n, True)

    def complete_subtrees_ending_at(self, n: int) -> list[tuple[int, int, bytes]]:
        """(level, index, MTH) of every complete aligned subtree whose last leaf is n - 1, bottom up — what a
        store must persist when leaf n - 1 is appended."""
        out = []
        level = 0
        while n % (1 << level) == 0:
            width = 1 << level
            out.append((level, n // width - 1, self.mth(n - width, n)))
            level += 1
        return out


# --- case construction ------------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def garbage(label: str) -> bytes:
    return _sha256(b"dbp vector garbage " + label.encode())


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _bit(*parts: int) -> int:
    """A bit position spread over the whole hash, different from element to element."""
    return (37 * parts[0] + 11 * sum(parts[1:]) + 5) % 256


# What a verifier must answer. A verifier holds only sizes, hashes and the proof, so a proof is good when the tree
# shape of those sizes, filled with the proof's hashes, gives the claimed roots. That is recomputed here
# recursively from the *definitions* of PATH and SUBPROOF, not with the iterative algorithm of §2.1.3.2 /
# §2.1.4.2 that production uses. Note what follows from it: a proof does not bind the tree size on its own —
# the proof of leaf 0 in a tree of 3 also "verifies" leaf 0 in a tree of 4 with the same root (the shapes agree),
# so a few treeSize±1 / size2±1 mutations are accepted, as by every RFC 9162 verifier. Sizes and roots must come
# together from one signed checkpoint.


def path_length(m: int, n: int) -> int:
    """len(PATH(m, D[n]))."""
    if n == 1:
        return 0
    k = _largest_power_of_two_below(n)
    return 1 + (path_length(m, k) if m < k else path_length(m - k, n - k))


def subproof_length(m: int, n: int, b: bool) -> int:
    """len(SUBPROOF(m, D[n], b))."""
    if m == n:
        return 0 if b else 1
    k = _largest_power_of_two_below(n)
    return 1 + (subproof_length(m, k, b) if m <= k else subproof_length(m - k, n - k, False))


def root_from_path(m: int, n: int, leaf_hash: bytes, proof: list[bytes]) -> bytes:
    """The root of a tree of n leaves whose leaf m hashes to leaf_hash and whose PATH(m, D[n]) is proof."""
    if n == 1:
        assert not proof
        return leaf_hash
    k = _largest_power_of_two_below(n)
    *below, top = proof  # PATH lists the sibling of the top split last
    if m < k:
        return _sha256(b"\x01" + root_from_path(m, k, leaf_hash, below) + top)
    return _sha256(b"\x01" + top + root_from_path(m - k, n - k, leaf_hash, below))


def roots_from_subproof(m: int, n: int, root1: bytes, proof: list[bytes], b: bool = True) -> tuple[bytes, bytes]:
    """(MTH(D[m]), MTH(D[n])) of trees whose SUBPROOF(m, D[n], b) is proof, given root1 = MTH(D[m])."""
    if m == n:
        if b:
            assert not proof
            return root1, root1  # SUBPROOF(m, D[m], true) = {}: the verifier's own root1
        (node,) = proof
        return node, node
    k = _largest_power_of_two_below(n)
    *below, top = proof
    if m <= k:  # the old tree lies in the left subtree; top is the right one
        old, new = roots_from_subproof(m, k, root1, below, b)
        return old, _sha256(b"\x01" + new + top)
    old, new = roots_from_subproof(m - k, n - k, root1, below, False)  # top is the complete left subtree
    return _sha256(b"\x01" + top + old), _sha256(b"\x01" + top + new)


def inclusion_outcome(*, index: int, size: int, leaf_hash: bytes, root: bytes, proof: list[bytes]) -> str | None:
    """None if a verifier must accept the case, else the reason it must give."""
    if any(len(h) != 32 for h in [leaf_hash, root, *proof]):
        return "hash-size"
    if index >= size:
        return "index-out-of-range"
    if len(proof) != path_length(index, size):
        return "proof-length"
    return None if root_from_path(index, size, leaf_hash, proof) == root else "root-mismatch"


def consistency_outcome(*, size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]) -> str | None:
    if any(len(h) != 32 for h in [root1, root2, *proof]):
        return "hash-size"
    if size1 > size2:
        return "size-order"
    if len(proof) != (subproof_length(size1, size2, True) if 0 < size1 < size2 else 0):
        return "proof-length"
    if size1 == size2:  # nothing but the roots to compare
        return None if root1 == root2 else "root-mismatch"
    if size1 == 0:  # every tree extends the empty one, whose root is known
        return None if root1 == _sha256(b"") else "root-mismatch"
    return None if roots_from_subproof(size1, size2, root1, proof) == (root1, root2) else "root-mismatch"


def inclusion_case(tree: NaiveTree, desc: str, *, index: int, size: int, leaf_hash: bytes, root: bytes,
                   proof: list[bytes]) -> dict[str, Any]:
    reason = inclusion_outcome(index=index, size=size, leaf_hash=leaf_hash, root=root, proof=proof)
    return {"leafIdx": index, "treeSize": size, "root": b64(root), "leafHash": b64(leaf_hash),
            "proof": [b64(p) for p in proof], "desc": desc, "wantErr": reason is not None, "wantReason": reason}


def consistency_case(tree: NaiveTree, desc: str, *, size1: int, size2: int, root1: bytes, root2: bytes,
                     proof: list[bytes]) -> dict[str, Any]:
    reason = consistency_outcome(size1=size1, size2=size2, root1=root1, root2=root2, proof=proof)
    return {"size1": size1, "size2": size2, "root1": b64(root1), "root2": b64(root2),
            "proof": [b64(p) for p in proof], "desc": desc, "wantErr": reason is not None, "wantReason": reason}


def inclusion_mutations(tree: NaiveTree, index: int, size: int) -> Iterator[dict[str, Any]]:
    """Every named mutation of the true inclusion case (index, size)."""
    proof, root, leaf = tree.inclusion(index, size), tree.root(size), tree.leaf_hash(index)

    def case(desc: str, **changes: Any) -> dict[str, Any]:
        args: dict[str, Any] = {"index": index, "size": size, "leaf_hash": leaf, "root": root, "proof": proof}
        args.update(changes)
        return inclusion_case(tree, f"{desc} (leaf {index} of {size})", **args)

    yield case("wrong-leaf", leaf_hash=_sha256(b"\x00" + b"not leaf %d" % index))
    for i, element in enumerate(proof):
        k = _bit(i, index, size)
        yield case(f"modified-proof[{i}]-bit-{k}", proof=[*proof[:i], flip(element, k), *proof[i + 1:]])
    yield case("leafIdx+1", index=index + 1)
    if index > 0:
        yield case("leafIdx-1", index=index - 1)
    yield case("leafIdx=treeSize", index=size)
    yield case("treeSize/2", size=size // 2)
    yield case("treeSize+1", size=size + 1)
    yield case("treeSize-1", size=size - 1)
    yield case("treeSize*2", size=size * 2)
    yield case("trailing-garbage", proof=[*proof, garbage(f"t{index}/{size}")])
    yield case("trailing-empty", proof=[*proof, b""])
    yield case("preceding-garbage", proof=[garbage(f"p{index}/{size}"), *proof])
    yield case("trailing-root", proof=[*proof, root])
    if proof:
        yield case("empty-proof", proof=[])
        yield case("truncated-proof", proof=proof[:-1])
        yield case("short-hash", proof=[proof[0][:31], *proof[1:]])
        if len(proof) > 1:
            yield case("swapped-proof[0,1]", proof=[proof[1], proof[0], *proof[2:]])
    yield case("wrong-root", root=garbage(f"r{index}/{size}"))
    yield case("empty-root", root=_sha256(b""))
    yield case("root-bit-0", root=flip(root, 0))


def consistency_mutations(tree: NaiveTree, size1: int, size2: int) -> Iterator[dict[str, Any]]:
    return (case for case in _consistency_mutations(tree, size1, size2) if case is not None)


def _consistency_mutations(tree: NaiveTree, size1: int, size2: int) -> Iterator[dict[str, Any] | None]:
    proof, root1, root2 = tree.consistency(size1, size2), tree.root(size1), tree.root(size2)

    def case(desc: str, **changes: Any) -> dict[str, Any] | None:
        args: dict[str, Any] = {"size1": size1, "size2": size2, "root1": root1, "root2": root2, "proof": proof}
        original = dict(args)
        args.update(changes)
        if args == original:  # e.g. swapping equal sizes: not a mutation
            return None
        return consistency_case(tree, f"{desc} ({size1} to {size2})", **args)

    for i, element in enumerate(proof):
        k = _bit(i, size1, size2)
        yield case(f"modified-proof[{i}]-bit-{k}", proof=[*proof[:i], flip(element, k), *proof[i + 1:]])
    yield case("wrong-root1", root1=garbage(f"r1 {size1}/{size2}"))
    yield case("wrong-root2", root2=garbage(f"r2 {size1}/{size2}"))
    yield case("root1-bit-255", root1=flip(root1, 255))
    yield case("swapped-roots", root1=root2, root2=root1)
    yield case("swapped-sizes", size1=size2, size2=size1, root1=root2, root2=root1)
    yield case("size1+1", size1=size1 + 1)
    yield case("size1-1", size1=size1 - 1)
    yield case("size2+1", size2=size2 + 1)
    yield case("size2-1", size2=size2 - 1)
    yield case("size2/2", size2=size2 // 2)
    yield case("size2*2", size2=size2 * 2)
    yield case("size1=0", size1=0)
    yield case("trailing-garbage", proof=[*proof, garbage(f"t {size1}/{size2}")])
    yield case("trailing-empty", proof=[*proof, b""])
    yield case("preceding-garbage", proof=[garbage(f"p {size1}/{size2}"), *proof])
    yield case("preceding-root1", proof=[root1, *proof])
    yield case("trailing-root2", proof=[*proof, root2])
    if proof:
        yield case("empty-proof", proof=[])
        yield case("truncated-proof", proof=proof[:-1])
        yield case("short-hash", proof=[*proof[:-1], proof[-1][:31]])
        if len(proof) > 1:
            yield case("swapped-proof[0,1]", proof=[proof[1], proof[0], *proof[2:]])


def inclusion_vectors(tree: NaiveTree) -> list[dict[str, Any]]:
    cases = []
    # Every leaf of every tree up to 17 leaves and of the trees around 32 and 64.
    for size in [*range(1, 18), 31, 32, 33, 63, 64]:
        for index in range(size):
            cases.append(inclusion_case(tree, f"happy-path (leaf {index} of {size})", index=index, size=size,
                                        leaf_hash=tree.leaf_hash(index), root=tree.root(size),
                                        proof=tree.inclusion(index, size)))
    # Every mutation of every leaf of the small trees, and of chosen leaves of bigger ones.
    for size in range(1, 10):
        for index in range(size):
            cases.extend(inclusion_mutations(tree, index, size))
    for size in [12, 15, 16, 17, 31, 32, 33, 63, 64]:
        for index in sorted({0, 1, size // 2, size - 2, size - 1}):
            cases.extend(inclusion_mutations(tree, index, size))
    # The empty tree holds no leaf, whatever the proof.
    empty = tree.root(0)
    cases.append(inclusion_case(tree, "empty-tree", index=0, size=0, leaf_hash=tree.leaf_hash(0), root=empty,
                                proof=[]))
    cases.append(inclusion_case(tree, "empty-tree with a proof", index=0, size=0, leaf_hash=tree.leaf_hash(0),
                                root=empty, proof=[tree.leaf_hash(1)]))
    cases.append(inclusion_case(tree, "empty-tree leaf as root", index=0, size=0, leaf_hash=tree.leaf_hash(0),
                                root=tree.leaf_hash(0), proof=[]))
    return cases


MUTATED_SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 31, 32, 33, 63, 64]


def consistency_vectors(tree: NaiveTree, top: int) -> list[dict[str, Any]]:
    cases = []
    for size2 in range(0, top + 1):  # every pair of sizes 1..top, and from the empty tree
        for size1 in range(0, size2 + 1):
            if size1 == 0 and size2 not in (0, 1, 2, 3, 8, 63, 64):
                continue
            cases.append(consistency_case(tree, f"happy-path ({size1} to {size2})", size1=size1, size2=size2,
                                          root1=tree.root(size1), root2=tree.root(size2),
                                          proof=tree.consistency(size1, size2)))
    for size2 in MUTATED_SIZES:
        for size1 in MUTATED_SIZES:
            if size1 <= size2:
                cases.extend(consistency_mutations(tree, size1, size2))
    # Every other pair gets one named mutation, a different kind from pair to pair.
    for size2 in range(1, top + 1):
        for size1 in range(1, size2 + 1):
            if size1 in MUTATED_SIZES and size2 in MUTATED_SIZES:
                continue
            variants = [case for case in consistency_mutations(tree, size1, size2) if case["wantErr"]]
            cases.append(variants[(size1 * 7 + size2 * 3) % len(variants)])
    return cases


# --- checkpoints -------------------------------------------------------------------------------------------------

LOG_ORIGIN = "dbp.example/log"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY_MATERIAL = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # PRIVATE+KEY+PeterNeumann+c74f20a3+<this>
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (GO_TEXT + "\n\u2014 PeterNeumann "
           "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")


class Key:
    """A test Ed25519 key from a fixed seed, with the signed-note key ID computed by hand."""

    def __init__(self, name: str, seed: bytes) -> None:
        self.name, self.seed = name, seed
        self.private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.id = _sha256(name.encode() + b"\x0a\x01" + self.public)[:4]
        material = b64(bytes([1]) + self.public)
        self.vkey = f"{name}+{self.id.hex()}+{material}"

    def line(self, text: str, *, signature: bytes | None = None, name: str | None = None) -> str:
        sig = self.private.sign(text.encode()) if signature is None else signature
        return f"\u2014 {name or self.name} {b64(self.id + sig)}\n"


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def non_canonical(encoded: str) -> str:
    """The same bytes with a padding bit set: decoders that do not check would accept it (RFC 4648 §3.5)."""
    assert encoded.endswith("=") and not encoded.endswith("==")  # 2 bytes in 3 characters: 2 spare bits
    last = _ALPHABET.index(encoded[-2])
    return encoded[:-2] + _ALPHABET[last ^ 1] + "="


def seed(label: str) -> bytes:
    return _sha256(b"dbp test key seed " + label.encode())


def checkpoint_vectors(tree: NaiveTree) -> dict[str, Any]:
    log = Key(LOG_ORIGIN, seed("log"))
    witness = Key("witness.example/w1", seed("witness"))
    other = Key(LOG_ORIGIN, seed("another key, same name"))
    stranger = Key("stranger.example/s", seed("stranger"))
    root = b64(tree.root(20))
    body = f"{LOG_ORIGIN}\n20\n{root}\n"
    good = body + "\n" + log.line(body)
    cases: list[dict[str, Any]] = []

    def case(desc: str, note: str | bytes, *, reason: str | None, verifiers: list[str] | None = None,
             origin: str = LOG_ORIGIN, **want: Any) -> None:
        data = note.encode() if isinstance(note, str) else note
        entry: dict[str, Any] = {"desc": desc, "note": b64(data), "origin": origin,
                                 "verifiers": verifiers if verifiers is not None else [log.vkey],
                                 "wantErr": reason is not None, "wantReason": reason}
        if reason is None:
            entry.update(want)
        cases.append(entry)

    def ok(desc: str, note: str, *, size: int, root_hash: str, extensions: list[str] | None = None,
           verified_by: list[str] | None = None, verifiers: list[str] | None = None, origin: str = LOG_ORIGIN) -> None:
        case(desc, note, reason=None, verifiers=verifiers, origin=origin, size=size, rootHash=root_hash,
             extensions=extensions or [], verifiedBy=verified_by or [log.vkey])

    ok("happy-path", good, size=20, root_hash=root)
    empty = f"{LOG_ORIGIN}\n0\n{b64(tree.root(0))}\n"
    ok("empty-tree", empty + "\n" + log.line(empty), size=0, root_hash=b64(tree.root(0)))
    big = f"{LOG_ORIGIN}\n18446744073709551615\n{root}\n"
    ok("max-uint64-size", big + "\n" + log.line(big), size=2**64 - 1, root_hash=root)
    ext = body + "timestamp 1767225600\n"
    ok("extension-line", ext + "\n" + log.line(ext), size=20, root_hash=root, extensions=["timestamp 1767225600"])
    ok("cosigned-by-unknown-witness", good + witness.line(body), size=20, root_hash=root)
    ok("unknown-signature-first", body + "\n" + stranger.line(body) + log.line(body), size=20, root_hash=root)
    ok("log-and-witness-known", good + witness.line(body), size=20, root_hash=root,
       verifiers=[log.vkey, witness.vkey], verified_by=[log.vkey, witness.vkey])
    ok("only-witness-known", good + witness.line(body), size=20, root_hash=root, verifiers=[witness.vkey],
       verified_by=[witness.vkey])
    ok("same-name-other-key-ignored", body + "\n" + other.line(body) + log.line(body), size=20, root_hash=root)
    ok("unknown-post-quantum-sized-signature", good + f"\u2014 pq.example/w {b64(b'WXYZ' + bytes(2420))}\n",
       size=20, root_hash=root)
    ok("non-key-name-origin", "Some Log\n20\n" + root + "\n\n" + log.line(f"Some Log\n20\n{root}\n"), size=20,
       root_hash=root, origin="Some Log")

    sig = log.private.sign(body.encode())
    case("signature-bit-flip", body + "\n" + log.line(body, signature=flip(sig, 9)), reason="bad-signature")
    case("signature-truncated", body + "\n" + log.line(body, signature=sig[:63]), reason="bad-signature")
    case("body-changed-after-signing", good.replace("\n20\n", "\n21\n"), reason="bad-signature")
    case("root-bit-flip-after-signing",
         good.replace(root, b64(flip(tree.root(20), 0))), reason="bad-signature")
    case("extra-body-line-after-signing", body + "extra\n\n" + log.line(body), reason="bad-signature")
    case("known-bad-before-known-good", body + "\n" + log.line(body, signature=flip(sig, 0))
         + witness.line(body), reason="bad-signature", verifiers=[log.vkey, witness.vkey])
    case("duplicate-signature", good + log.line(body), reason="duplicate-signature")
    case("wrong-key", good, reason="no-known-signature", verifiers=[other.vkey])
    case("no-verifiers", good, reason="no-known-signature", verifiers=[])
    case("only-unknown-signatures", body + "\n" + stranger.line(body), reason="no-known-signature")
    case("key-id-of-another-name", body + "\n" + log.line(body, name="dbp.example/other"),
         reason="no-known-signature")
    wrong = f"other.example/log\n20\n{root}\n"
    case("wrong-origin", wrong + "\n" + log.line(wrong), reason="origin-mismatch")
    case("missing-blank-line", body + log.line(body), reason="malformed-note")
    case("extra-line-after-signatures", good + "\n", reason="malformed-note")
    case("text-after-signatures", good + "trailing\n", reason="malformed-note")
    case("no-final-newline", good[:-1], reason="malformed-note")
    case("no-signature-lines", body + "\n", reason="malformed-note")
    case("crlf", good.replace("\n", "\r\n"), reason="malformed-note")
    tab = f"{LOG_ORIGIN}\n20\t\n{root}\n"
    case("tab-in-note", tab + "\n" + log.line(tab), reason="malformed-note")
    case("invalid-utf8", good.encode().replace(b"dbp.example", b"dbp.\xffxample", 1), reason="malformed-note")
    case("ascii-dash", good.replace("\u2014", "--"), reason="malformed-note")
    case("en-dash", good.replace("\u2014", "\u2013"), reason="malformed-note")
    case("two-spaces-after-name", good.replace(f"{LOG_ORIGIN} ", f"{LOG_ORIGIN}  "), reason="malformed-note")
    case("plus-in-key-name", body + "\n" + log.line(body, name="dbp.example+log"), reason="malformed-note")
    case("unicode-space-in-key-name", body + "\n" + log.line(body, name="dbp.example\u00a0log"),
         reason="malformed-note")
    sig_b64 = b64(log.id + sig)
    case("non-canonical-signature-base64", good.replace(sig_b64, non_canonical(sig_b64)), reason="malformed-note")
    case("unpadded-signature-base64", good.replace(sig_b64, sig_b64.rstrip("=")), reason="malformed-note")
    case("url-safe-signature-base64", body + "\n" + f"\u2014 {LOG_ORIGIN} "
         + base64.urlsafe_b64encode(log.id + bytes([0xfb] * 64)).decode() + "\n", reason="malformed-note")
    case("signature-too-short", body + f"\n\u2014 {LOG_ORIGIN} {b64(log.id)}\n", reason="malformed-note")
    cosigners = "".join(Key(f"w{i}.example", seed(f"w{i}")).line(body) for i in range(99))
    ok("hundred-signatures", good + cosigners, size=20, root_hash=root)
    case("too-many-signatures", good + cosigners + stranger.line(body), reason="too-many-signatures")

    def signed(text: str) -> str:
        return text + "\n" + log.line(text)

    bad_bodies = {
        "size-leading-zero": f"{LOG_ORIGIN}\n020\n{root}\n",
        "size-plus-sign": f"{LOG_ORIGIN}\n+20\n{root}\n",
        "size-negative": f"{LOG_ORIGIN}\n-20\n{root}\n",
        "size-space": f"{LOG_ORIGIN}\n 20\n{root}\n",
        "size-underscore": f"{LOG_ORIGIN}\n2_0\n{root}\n",
        "size-arabic-indic-digits": f"{LOG_ORIGIN}\n\u0662\u0660\n{root}\n",
        "size-over-uint64": f"{LOG_ORIGIN}\n18446744073709551616\n{root}\n",
        "size-empty": f"{LOG_ORIGIN}\n\n{root}\n",
        "non-canonical-root-base64": f"{LOG_ORIGIN}\n20\n{non_canonical(root)}\n",
        "unpadded-root-base64": f"{LOG_ORIGIN}\n20\n{root.rstrip('=')}\n",
        "root-31-bytes": f"{LOG_ORIGIN}\n20\n{b64(tree.root(20)[:31])}\n",
        "root-33-bytes": f"{LOG_ORIGIN}\n20\n{b64(tree.root(20) + b'x')}\n",
        "root-hex": f"{LOG_ORIGIN}\n20\n{tree.root(20).hex()}\n",
        "two-lines": f"{LOG_ORIGIN}\n20\n",
        "empty-origin": f"\n20\n{root}\n",
        "empty-extension-line": f"{LOG_ORIGIN}\n20\n{root}\next\n\nmore\n",
    }
    for desc, text in bad_bodies.items():
        case(desc, signed(text), reason="malformed-checkpoint", origin="" if desc == "empty-origin" else LOG_ORIGIN)

    go_seed = base64.b64decode(GO_SKEY_MATERIAL)[1:]
    return {
        "keys": [{"name": k.name, "seed": b64(k.seed), "vkey": k.vkey} for k in (log, witness, other, stranger)],
        "goSumdbNote": {"vkey": GO_VKEY, "seed": b64(go_seed), "text": GO_TEXT, "note": GO_NOTE,
                        "source": "golang.org/x/mod/sumdb/note note_test.go (PeterNeumann)"},
        "cases": cases,
    }


def verifier_key_vectors() -> list[dict[str, Any]]:
    key = Key(LOG_ORIGIN, seed("log"))
    material = b64(b"\x01" + key.public)
    good = [GO_VKEY, "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop",
            "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6", key.vkey]
    bad = {
        "uppercase-key-id": f"{LOG_ORIGIN}+{key.id.hex().upper()}+{material}",
        "wrong-key-id": f"{LOG_ORIGIN}+{bytes(b ^ 1 for b in key.id).hex()}+{material}",
        "short-key-id": f"{LOG_ORIGIN}+{key.id.hex()[:7]}+{material}",
        "other-name": f"dbp.example/other+{key.id.hex()}+{material}",
        "ecdsa-type": f"{LOG_ORIGIN}+{key.id.hex()}+{b64(bytes([2]) + key.public)}",
        "31-byte-key": f"{LOG_ORIGIN}+{key.id.hex()}+{b64(bytes([1]) + key.public[:31])}",
        "extra-padding": f"{LOG_ORIGIN}+{key.id.hex()}+{material}==",
        "url-safe-base64": f"{LOG_ORIGIN}+{key.id.hex()}+{material.replace('+', '-').replace('/', '_')}",
        "space-in-name": f"dbp example+{key.id.hex()}+{material}",
        "empty-name": f"+{key.id.hex()}+{material}",
        "two-parts": f"{LOG_ORIGIN}+{key.id.hex()}",
        "trailing-newline": key.vkey + "\n",
    }
    return ([{"desc": f"good {v.split('+')[0]}", "vkey": v, "wantErr": False, "wantReason": None} for v in good]
            + [{"desc": d, "vkey": v, "wantErr": True, "wantReason": "malformed-verifier-key"}
               for d, v in bad.items()])


def render(header: dict[str, Any], cases: list[dict[str, Any]]) -> str:
    """Header fields pretty-printed, then one case per line (readable diffs, files that compress well)."""
    head = json.dumps(header, indent=1, ensure_ascii=False)[:-2]
    lines = ",\n".join("  " + json.dumps(c, separators=(",", ":"), ensure_ascii=False) for c in cases)
    return f"{head},\n \"cases\": [\n{lines}\n ]\n}}\n"


def render_all() -> dict[str, str]:
    """File name -> exact text of every vector file."""
    leaves = make_leaves(64)
    tree = NaiveTree(leaves)
    for n, want in enumerate(RFC6962_ROOTS):
        assert tree.root(n).hex() == want, f"naive MTH of {n} RFC 6962 leaves disagrees with the published root"
    common = {"generator": "tests/integrity/make_vectors.py", "reference": "RFC 9162 section 2.1",
              "encoding": "byte strings are standard base64 (RFC 4648 section 4)",
              "leaves": [b64(leaf) for leaf in leaves]}
    cp = checkpoint_vectors(tree)
    return {
        "inclusion.json": render({"description": "RFC 9162 inclusion proofs over the first treeSize leaves",
                                  **common}, inclusion_vectors(tree)),
        "consistency.json": render({"description": "RFC 9162 consistency proofs, every pair of sizes 1..64",
                                    **common}, consistency_vectors(tree, 64)),
        "checkpoint.json": render({"description": "C2SP signed-note checkpoints (tlog-checkpoint, signed-note), "
                                   "Ed25519; the seeds are test keys and sign nothing else",
                                   "generator": common["generator"], "keys": cp["keys"],
                                   "goSumdbNote": cp["goSumdbNote"]}, cp["cases"]),
        "verifier_keys.json": render({"description": "signed-note verifier key strings "
                                      "<name>+<key ID>+<base64(0x01 || key)>", "generator": common["generator"]},
                                     verifier_key_vectors()),
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in render_all().items():
        (OUT / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

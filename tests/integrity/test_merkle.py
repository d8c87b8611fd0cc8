"""dbp.integrity.merkle checked against an independent, naive RFC 9162 §2.1 reference (make_vectors.py): the
committed JSON vectors (transparency-dev shape, named mutations), every proof of every tree up to 300 leaves
built through subtree lookups, and the append frontier's stored subtrees."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dbp.errors import ProofError, VerificationError
from dbp.integrity import merkle
from dbp.integrity.merkle import (
    EMPTY_ROOT,
    Frontier,
    MemoryTree,
    Node,
    consistency_plan,
    consistency_proof,
    consistency_proof_length,
    hash_children,
    hash_leaf,
    inclusion_plan,
    inclusion_proof,
    inclusion_proof_length,
    node_for_range,
    root_from_subtrees,
    verify_consistency,
    verify_inclusion,
)

HERE = Path(__file__).parent


def _reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dbp_integrity_make_vectors", HERE / "make_vectors.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ref = _reference()


def _vectors(name: str) -> dict[str, Any]:
    return json.loads((HERE / "vectors" / name).read_text(encoding="utf-8"))


INCLUSION = _vectors("inclusion.json")
CONSISTENCY = _vectors("consistency.json")


def _b(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _tree(leaves_b64: list[str], count: int | None = None) -> MemoryTree:
    tree = MemoryTree()
    for leaf in leaves_b64[:count]:
        tree.append(_b(leaf))
    return tree


VECTOR_TREE = _tree(INCLUSION["leaves"])


def test_vector_files_are_what_the_generator_writes() -> None:
    """Nobody edited the JSON by hand, and the generator still agrees with the published RFC 6962 roots."""
    for name, text in ref.render_all().items():
        assert (HERE / "vectors" / name).read_text(encoding="utf-8") == text, f"regenerate {name}"


def test_published_rfc6962_roots() -> None:
    tree = _tree([base64.b64encode(bytes.fromhex(h)).decode() for h in ref.RFC6962_LEAVES])
    for size, want in enumerate(ref.RFC6962_ROOTS):
        assert tree.root(size).hex() == want
    assert EMPTY_ROOT.hex() == ref.RFC6962_ROOTS[0]
    assert tree.root().hex() == ref.RFC6962_ROOTS[8]
    assert hash_leaf(b"").hex() == ref.RFC6962_ROOTS[1]


def _run(verify: Callable[[], None], case: dict[str, Any]) -> str | None:
    """None if the verdict is the vector's, else what went wrong."""
    try:
        verify()
    except ProofError as exc:
        if not case["wantErr"]:
            return f"{case['desc']}: refused ({exc.reason}: {exc.message})"
        if exc.reason != case["wantReason"]:
            return f"{case['desc']}: reason {exc.reason!r}, want {case['wantReason']!r} ({exc.message})"
        if "expected" not in exc.message:
            return f"{case['desc']}: message does not say what was expected: {exc.message}"
        return None
    return f"{case['desc']}: accepted, want {case['wantReason']}" if case["wantErr"] else None


def test_inclusion_vectors() -> None:
    failures = []
    for case in INCLUSION["cases"]:
        proof = [_b(p) for p in case["proof"]]

        def verify(case: dict[str, Any] = case, proof: list[bytes] = proof) -> None:
            verify_inclusion(leaf_hash=_b(case["leafHash"]), index=case["leafIdx"], size=case["treeSize"],
                             proof=proof, root=_b(case["root"]))

        failures.append(_run(verify, case))
        if case["desc"].startswith("happy-path"):  # the reference's own proof and root
            if VECTOR_TREE.inclusion_proof(case["leafIdx"], case["treeSize"]) != proof:
                failures.append(f"{case['desc']}: generated proof differs from the reference")
            if VECTOR_TREE.root(case["treeSize"]) != _b(case["root"]):
                failures.append(f"{case['desc']}: root differs from the reference")
    failures = [f for f in failures if f]
    assert not failures, "\n".join(failures[:20])
    assert sum(c["wantErr"] for c in INCLUSION["cases"]) > 1500


def test_consistency_vectors_cover_every_pair_up_to_64() -> None:
    happy = {(c["size1"], c["size2"]) for c in CONSISTENCY["cases"] if not c["wantErr"]}
    assert {(m, n) for n in range(1, 65) for m in range(1, n + 1)} <= happy
    tampered = {tuple(map(int, re.findall(r"\((\d+) to (\d+)\)$", c["desc"])[0]))
                for c in CONSISTENCY["cases"] if c["wantErr"] and "(" in c["desc"]}
    assert {(m, n) for n in range(1, 65) for m in range(1, n + 1)} <= tampered


def test_consistency_vectors() -> None:
    failures = []
    for case in CONSISTENCY["cases"]:
        proof = [_b(p) for p in case["proof"]]

        def verify(case: dict[str, Any] = case, proof: list[bytes] = proof) -> None:
            verify_consistency(size1=case["size1"], size2=case["size2"], root1=_b(case["root1"]),
                               root2=_b(case["root2"]), proof=proof)

        failures.append(_run(verify, case))
        if case["desc"].startswith("happy-path") and \
                VECTOR_TREE.consistency_proof(case["size1"], case["size2"]) != proof:
            failures.append(f"{case['desc']}: generated proof differs from the reference")
    failures = [f for f in failures if f]
    assert not failures, "\n".join(failures[:20])


def test_every_bit_flip_of_every_good_vector_is_refused() -> None:
    """Beyond the named vectors: the first or the last bit flipped in any one hash. (Sizes ±1 are in the named
    vectors: a few of them verify, see make_vectors.py.)"""
    for case in INCLUSION["cases"]:
        if case["wantErr"]:
            continue
        good = {"leaf_hash": _b(case["leafHash"]), "index": case["leafIdx"], "size": case["treeSize"],
                "proof": [_b(p) for p in case["proof"]], "root": _b(case["root"])}
        variants: list[dict[str, Any]] = []
        for bit in (0, 255):
            variants += [{"leaf_hash": ref.flip(good["leaf_hash"], bit)}, {"root": ref.flip(good["root"], bit)}]
            for i in range(len(good["proof"])):
                variants.append({"proof": [ref.flip(p, bit) if j == i else p for j, p in enumerate(good["proof"])]})
        for change in variants:
            with pytest.raises(ProofError):
                verify_inclusion(**{**good, **change})
    for case in CONSISTENCY["cases"]:
        if case["wantErr"] or case["size1"] == 0:
            continue
        good = {"size1": case["size1"], "size2": case["size2"], "root1": _b(case["root1"]),
                "root2": _b(case["root2"]), "proof": [_b(p) for p in case["proof"]]}
        variants = []
        for bit in (0, 255):
            variants += [{"root1": ref.flip(good["root1"], bit)}, {"root2": ref.flip(good["root2"], bit)}]
            for i in range(len(good["proof"])):
                variants.append({"proof": [ref.flip(p, bit) if j == i else p for j, p in enumerate(good["proof"])]})
        for change in variants:
            with pytest.raises(ProofError):
                verify_consistency(**{**good, **change})


# --- the append frontier and subtree lookups, up to 300 leaves --------------------------------------------------

N = 300
LEAVES = [f"leaf {i} of the 300-leaf test log".encode() * (1 + i % 4) for i in range(N)]
NAIVE = ref.NaiveTree(LEAVES)


@pytest.fixture(scope="module")
def log300() -> MemoryTree:
    tree = MemoryTree()
    for leaf in LEAVES:
        tree.append(leaf)
    return tree


def test_append_stores_the_reference_subtrees_and_roots() -> None:
    frontier = Frontier()
    stored: dict[Node, bytes] = {}
    for n in range(1, N + 1):
        completed = frontier.append(hash_leaf(LEAVES[n - 1]))
        assert [(s.level, s.index, s.digest) for s in completed] == NAIVE.complete_subtrees_ending_at(n)
        for s in completed:
            assert s.node not in stored  # each complete subtree is produced exactly once
            stored[s.node] = s.digest
        assert frontier.size == n
        assert frontier.root() == NAIVE.root(n)
        assert len(frontier.hashes) == n.bit_count()
    # Everything stored is every complete subtree of the 300-leaf tree, with the reference's hash.
    every = {Node(level, index) for level in range(9) for index in range(N >> level)}
    assert set(stored) == every
    assert all(stored[node] == NAIVE.mth(node.start, node.end) for node in every)


def test_frontier_resumes_from_stored_subtrees(log300: MemoryTree) -> None:
    for size in [0, 1, 2, 3, 64, 100, 255, 256, 299]:
        frontier = Frontier.load(size, log300.subtree_hash)
        assert frontier.size == size and frontier.root() == NAIVE.root(size)
        copy = frontier.copy()
        for n in range(size + 1, min(size + 40, N) + 1):
            assert [(s.level, s.index, s.digest) for s in copy.append(hash_leaf(LEAVES[n - 1]))] \
                == NAIVE.complete_subtrees_ending_at(n)
            assert copy.root() == NAIVE.root(n)
        assert frontier.size == size  # the copy did not move the original


def _counting(tree: MemoryTree, size: int, calls: list[tuple[int, int]]) -> Callable[[int, int], bytes]:
    def lookup(start: int, end: int) -> bytes:
        assert end <= size, f"lookup of [{start}, {end}) beyond the proof's tree of {size}"
        calls.append((start, end))
        return tree.subtree_hash(start, end)  # refuses anything but an aligned power-of-two range
    return lookup


def test_inclusion_proofs_from_lookups_up_to_300(log300: MemoryTree) -> None:
    for size in range(1, N + 1):
        root = root_from_subtrees(size, log300.subtree_hash)
        assert root == NAIVE.root(size)
        for index in range(size):
            calls: list[tuple[int, int]] = []
            proof = inclusion_proof(index, size, _counting(log300, size, calls))
            assert proof == NAIVE.inclusion(index, size), (index, size)
            assert len(proof) == inclusion_proof_length(index, size)
            assert len(calls) <= 2 * size.bit_length()  # O(log n) lookups, never a rebuild
            verify_inclusion(leaf_hash=hash_leaf(LEAVES[index]), index=index, size=size, proof=proof, root=root)


def test_consistency_proofs_from_lookups_up_to_300(log300: MemoryTree) -> None:
    roots = [NAIVE.root(n) for n in range(N + 1)]
    for size2 in range(1, N + 1):
        for size1 in range(0, size2 + 1):
            calls: list[tuple[int, int]] = []
            proof = consistency_proof(size1, size2, _counting(log300, size2, calls))
            assert proof == NAIVE.consistency(size1, size2), (size1, size2)
            assert len(proof) == consistency_proof_length(size1, size2)
            assert len(calls) <= 2 * size2.bit_length()
            verify_consistency(size1=size1, size2=size2, root1=roots[size1], root2=roots[size2], proof=proof)


def test_memory_tree_defaults(log300: MemoryTree) -> None:
    assert log300.root() == log300.root(N) == NAIVE.root(N)
    assert log300.inclusion_proof(7) == NAIVE.inclusion(7, N)
    assert log300.consistency_proof(100) == NAIVE.consistency(100, N)
    with pytest.raises(LookupError):
        log300.subtree_hash(256, 512)
    with pytest.raises(ValueError):
        log300.subtree_hash(3, 5)


def test_huge_trees_of_identical_leaves() -> None:
    """Sizes near 2**64: when every leaf is the same, the hash of a complete subtree depends only on its level,
    so proofs can be built and checked without storing anything."""
    level_hash = [hash_leaf(b"same")]
    for _ in range(64):
        level_hash.append(hash_children(level_hash[-1], level_hash[-1]))

    def lookup(start: int, end: int) -> bytes:
        return level_hash[node_for_range(start, end).level]

    sizes = [2**63, 2**63 + 1, 2**64 - 1, 10**18 + 7, 2**40 - 3]
    for size in sizes:
        root = root_from_subtrees(size, lookup)
        for index in [0, 1, size // 3, size - 2, size - 1]:
            proof = inclusion_proof(index, size, lookup)
            assert len(proof) == len(inclusion_plan(index, size)) <= 2 * 64
            verify_inclusion(leaf_hash=level_hash[0], index=index, size=size, proof=proof, root=root)
        for size1 in [1, 2**20 + 3, size // 2, size - 1]:
            proof = consistency_proof(size1, size, lookup)
            verify_consistency(size1=size1, size2=size, root1=root_from_subtrees(size1, lookup), root2=root,
                               proof=proof)
    frontier = Frontier.load(2**64 - 2, lookup)
    frontier.append(level_hash[0])
    assert frontier.root() == root_from_subtrees(2**64 - 1, lookup)
    with pytest.raises(ValueError, match="full"):
        frontier.append(level_hash[0])


def test_plans_name_only_complete_subtrees_inside_the_tree() -> None:
    for size in range(1, 130):
        for index in range(size):
            plan = inclusion_plan(index, size)
            assert len(plan) == inclusion_proof_length(index, size)
            assert all(0 <= node.start < node.end <= size for nodes in plan for node in nodes)
        for size1 in range(size + 1):
            plan = consistency_plan(size1, size)
            assert len(plan) == consistency_proof_length(size1, size)
            assert all(node.end <= size for nodes in plan for node in nodes)


# --- preconditions ------------------------------------------------------------------------------------------------

H = hash_leaf(b"x")


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"leaf_hash": H[:31]}, "hash-size"),
    ({"leaf_hash": bytearray(H)}, "hash-size"),
    ({"leaf_hash": H.hex()}, "hash-size"),
    ({"root": b""}, "hash-size"),
    ({"proof": [H + b"\x00"]}, "hash-size"),
    ({"proof": H}, "hash-size"),
    ({"proof": None}, "hash-size"),
    ({"index": -1}, "invalid-size"),
    ({"index": True}, "invalid-size"),
    ({"size": 2**64}, "invalid-size"),
    ({"size": 1.0}, "invalid-size"),
    ({"index": 1}, "index-out-of-range"),
    ({"size": 0, "index": 0}, "index-out-of-range"),
    ({"proof": [H]}, "proof-length"),
    ({"root": H[::-1]}, "root-mismatch"),
])
def test_inclusion_preconditions(kwargs: dict[str, Any], reason: str) -> None:
    good: dict[str, Any] = {"leaf_hash": H, "index": 0, "size": 1, "proof": [], "root": H}
    verify_inclusion(**good)
    with pytest.raises(ProofError) as caught:
        verify_inclusion(**{**good, **kwargs})
    assert caught.value.reason == reason
    assert isinstance(caught.value, VerificationError) and "expected" in caught.value.message


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"size1": 2}, "size-order"),
    ({"size1": -1}, "invalid-size"),
    ({"size2": 2**64}, "invalid-size"),
    ({"root2": H[::-1]}, "root-mismatch"),
    ({"proof": [H]}, "proof-length"),
    ({"size1": 0}, "root-mismatch"),  # root1 must be the empty tree's
    ({"root1": b"\x00" * 33}, "hash-size"),
])
def test_consistency_preconditions(kwargs: dict[str, Any], reason: str) -> None:
    good: dict[str, Any] = {"size1": 1, "size2": 1, "root1": H, "root2": H, "proof": []}
    verify_consistency(**good)
    verify_consistency(size1=0, size2=5, root1=EMPTY_ROOT, root2=H, proof=[])
    with pytest.raises(ProofError) as caught:
        verify_consistency(**{**good, **kwargs})
    assert caught.value.reason == reason


def test_generation_preconditions() -> None:
    tree = MemoryTree()
    tree.append(b"a")
    with pytest.raises(ValueError):
        inclusion_plan(1, 1)
    with pytest.raises(ValueError):
        inclusion_plan(0, 0)
    with pytest.raises(ValueError):
        consistency_plan(2, 1)
    with pytest.raises(ValueError):
        inclusion_plan(0, 2**64)
    with pytest.raises(ValueError):
        tree.inclusion_proof(0, 2)  # beyond what the tree holds
    with pytest.raises(ValueError):
        Frontier(3, [H])  # a frontier of 3 leaves has 2 hashes
    with pytest.raises(ValueError):
        Frontier().append(H[:20])
    for start, end in [(0, 0), (1, 3), (2, 4 + 2), (-2, 0), (4, 2)]:
        with pytest.raises(ValueError):
            node_for_range(start, end)
    assert node_for_range(8, 12) == Node(2, 2)


def test_storage_returning_a_bad_hash_fails_closed() -> None:
    with pytest.raises(ProofError) as caught:
        inclusion_proof(0, 2, lambda start, end: b"short")
    assert caught.value.reason == "hash-size"
    with pytest.raises(ProofError):
        Frontier.load(3, lambda start, end: None)  # type: ignore[arg-type, return-value]


def test_module_exports_the_documented_constants() -> None:
    assert merkle.HASH_SIZE == 32 and merkle.MAX_TREE_SIZE == 2**64 - 1
    assert hash_children(H, H) == ref._sha256(b"\x01" + H + H)

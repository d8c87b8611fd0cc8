"""Write tests/replication/vectors/feed_entry_vectors.json: change-feed entries for ``dbp.replication.verify``,
valid and with named mutations, each refused at a named step.

Built with the real integrity code: version keys from fixed seeds sign canonical bodies as the repository does
(``signing.VersionKey``), a small log of passport versions (and one access-log digest leaf, which the feed
skips) is hashed with ``log.Leaf`` into a ``merkle.MemoryTree``, checkpoints are signed notes
(``checkpoint.sign_checkpoint``) by a log key from a fixed seed, and every entry is made by the feed's own
``replication.service._entry`` from the row the feed's query would return. Byte strings are standard base64.
Deterministic (Ed25519 signatures are); regenerate with::

    .venv/bin/python tests/replication/make_feed_vectors.py
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from dbp.integrity import merkle
from dbp.integrity.canonical import canonical_bytes
from dbp.integrity.checkpoint import Checkpoint, Ed25519Signer, sign_checkpoint
from dbp.integrity.log import Leaf, digest_leaf
from dbp.integrity.signing import VersionKey, protected_header
from dbp.replication.service import _entry

OUT = Path(__file__).parent / "vectors" / "feed_entry_vectors.json"
ORIGIN = "dbp.example/log"
KID = "vk-2027-01"
OTHER_KID = "vk-2027-02"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def private_key(seed: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def flip_b64(text: str, index: int = 0) -> str:
    """``text`` (standard base64) with the lowest bit of byte ``index`` flipped."""
    data = bytearray(base64.b64decode(text))
    data[index] ^= 1
    return b64(bytes(data))


def flip_signature(jws: str) -> str:
    header, _, sig = jws.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[10] ^= 1
    return f"{header}..{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"


def build() -> dict[str, Any]:
    vkeys = {kid: VersionKey(kid, private_key(f"dbp feed vectors {kid}"), protected_header(kid))
             for kid in (KID, OTHER_KID)}
    keys = {kid: b64(raw_public(k.private_key)) for kid, k in vkeys.items()}
    log_signer = Ed25519Signer(ORIGIN, private_key("dbp feed vectors log key"))

    tree = merkle.MemoryTree()
    versions: list[tuple[int, Leaf, bytes, str]] = []
    plan = [("urn:dbp:dpp:a", 1, "create", "active"), ("urn:dbp:dpp:b", 1, "create", "active"),
            ("urn:dbp:dpp:a", 2, "update", "active"), None, ("urn:dbp:dpp:a", 3, "waste", "active"),
            ("urn:dbp:dpp:b", 2, "recycled", "archived")]
    changes: dict[int, str] = {}
    for i, item in enumerate(plan):
        at = f"2027-02-18T10:00:0{i}.000000Z"
        if item is None:  # an access-log digest leaf: in the log, never in the feed
            tree.append_hash(digest_leaf(sha256=hashlib.sha256(b"access log").hexdigest(), from_id=1, to_id=9,
                                         count=9, at=at).leaf_hash())
            continue
        dpp_id, version, change, status = item
        doc = {"dppId": dpp_id, "version": version, "dppStatus": status, "ratedCapacity": 70 + i}
        canonical = canonical_bytes(doc)
        public_sha = hashlib.sha256(canonical_bytes({"dppId": dpp_id, "dppStatus": status})).hexdigest()
        leaf = Leaf(dpp_id, version, hashlib.sha256(canonical).hexdigest(), at, kid=KID, public_sha256=public_sha)
        tree.append_hash(leaf.leaf_hash())
        versions.append((i, leaf, canonical, vkeys[KID].sign(canonical)))
        changes[i] = change

    size = tree.size
    small = 3
    checkpoints = {
        "main": sign_checkpoint(Checkpoint(ORIGIN, size, tree.root()), [log_signer]).decode(),
        "small": sign_checkpoint(Checkpoint(ORIGIN, small, tree.root(small)), [log_signer]).decode(),
    }

    def entry_of(index: int, leaf: Leaf, canonical: bytes, jws: str) -> dict[str, Any]:
        row = (index, leaf.dpp_id, leaf.version, leaf.sha256, leaf.at, leaf.kid, leaf.public_sha256,
               leaf.leaf_hash(), changes[index], jws, leaf.sha256, canonical.decode(), "urn:dbp:op:maker")
        return _entry(row, with_body=True)

    cases: list[dict[str, Any]] = []
    base: dict[str, Any] = {}
    for index, leaf, canonical, jws in versions:
        case = {"name": f"valid-position-{index}", "desc": f"{leaf.dpp_id} v{leaf.version} in the tree of {size}",
                "entry": entry_of(index, leaf, canonical, jws), "body": b64(canonical),
                "inclusion": [b64(h) for h in tree.inclusion_proof(index, size)], "checkpoint": "main",
                "keys": keys, "want": "ok"}
        cases.append(case)
        if index == 2:
            base = case
    index0, leaf0, canonical0, jws0 = versions[0]
    cases.append({"name": "valid-older-checkpoint", "desc": "position 0 proven in the checkpoint of size 3",
                  "entry": entry_of(index0, leaf0, canonical0, jws0), "body": b64(canonical0),
                  "inclusion": [b64(h) for h in tree.inclusion_proof(0, small)], "checkpoint": "small",
                  "keys": keys, "want": "ok"})
    no_body = copy.deepcopy(base)
    del no_body["entry"]["body"]
    no_body.update(name="valid-metadata-entry", desc="an entry without body (include=metadata), body fetched apart")
    cases.append(no_body)

    def mutation(name: str, desc: str, step: str, edit: Any) -> None:
        case = copy.deepcopy(base)
        case.update(name=name, desc=desc, want={"step": step})
        edit(case)
        cases.append(case)

    def set_entry(**fields: Any) -> Any:
        return lambda c: c["entry"].update(fields)

    other_body = canonical_bytes({"dppId": "urn:dbp:dpp:a", "version": 2, "dppStatus": "draft"})

    def wrong_body(c: dict[str, Any]) -> None:
        c["body"] = b64(other_body)
        c["entry"]["body"] = other_body.decode()

    def body_mismatch(c: dict[str, Any]) -> None:
        c["entry"]["body"] = other_body.decode()

    def kid_mismatch(c: dict[str, Any]) -> None:  # the JWS kid (KID) is published, the entry claims another
        c["entry"]["kid"] = OTHER_KID

    def unknown_kid(c: dict[str, Any]) -> None:
        c["keys"] = {OTHER_KID: keys[OTHER_KID]}

    def other_signer(c: dict[str, Any]) -> None:  # validly signed, by a key the repository does not publish
        attacker = VersionKey(KID, private_key("an attacker"), protected_header(KID))
        c["entry"]["signature"] = attacker.sign(base64.b64decode(c["body"]))

    def drop(field: str) -> Any:
        return lambda c: c["entry"].pop(field)

    def proof_bit(c: dict[str, Any]) -> None:
        c["inclusion"][1] = flip_b64(c["inclusion"][1], 31)

    def truncated(c: dict[str, Any]) -> None:
        c["inclusion"].pop()

    def not_stored(c: dict[str, Any]) -> None:
        del c["entry"]["body"]
        c["entry"]["stored"] = False

    mutation("wrong-body", "the body (and the entry's copy) altered in transit", "content hash", wrong_body)
    mutation("body-differs-from-entry", "the entry's body is not the body given", "content hash", body_mismatch)
    mutation("flipped-signature-bit", "one bit of the Ed25519 signature flipped", "signature",
             lambda c: c["entry"].update(signature=flip_signature(c["entry"]["signature"])))
    mutation("trailing-garbage-in-signature", "two base64url characters appended to the signature", "signature",
             lambda c: c["entry"].update(signature=c["entry"]["signature"] + "AA"))
    mutation("unknown-kid", "the key the JWS names is not among the published keys", "signature", unknown_kid)
    mutation("kid-mismatch", "the entry names another published key than the JWS", "signature", kid_mismatch)
    mutation("unpublished-signer", "a valid signature by a key that is not the published one", "signature",
             other_signer)
    mutation("wrong-leaf-hash", "leafHash of another version", "leaf hash",
             set_entry(leafHash=cases[0]["entry"]["leafHash"]))
    mutation("wrong-created-at", "createdAt changed: the rebuilt leaf no longer hashes to leafHash", "leaf hash",
             set_entry(createdAt="2027-02-18T10:00:09.000000Z"))
    mutation("wrong-public-sha256", "publicSha256 changed", "leaf hash", set_entry(publicSha256="0" * 64))
    mutation("modified-proof-bit", "one bit of an inclusion proof hash flipped", "inclusion", proof_bit)
    mutation("truncated-proof", "the last inclusion proof hash dropped", "inclusion", truncated)
    mutation("wrong-position", "the entry claims position 1", "inclusion", set_entry(position=1))
    mutation("position-beyond-tree", f"position {size}: past the checkpoint's tree of {size}", "tree size",
             set_entry(position=size))
    def older_checkpoint(c: dict[str, Any]) -> None:
        c["checkpoint"] = "small"
        c["entry"]["position"] = 4

    mutation("position-beyond-older-checkpoint", "position 4 against the checkpoint of size 3", "tree size",
             older_checkpoint)
    mutation("missing-field", "no kid", "shape", drop("kid"))
    mutation("missing-leaf-hash", "no leafHash", "shape", drop("leafHash"))
    mutation("wrong-type", "version as a string", "shape", set_entry(version="2"))
    mutation("negative-position", "position -1", "shape", set_entry(position=-1))
    mutation("boolean-position", "position true", "shape", set_entry(position=True))
    mutation("version-zero", "version 0", "shape", set_entry(version=0))
    mutation("uppercase-sha256", "sha256 in uppercase hex", "shape",
             lambda c: c["entry"].update(sha256=c["entry"]["sha256"].upper()))
    mutation("short-sha256", "sha256 of 63 hex digits", "shape",
             lambda c: c["entry"].update(sha256=c["entry"]["sha256"][:63]))
    mutation("hex-leaf-hash", "leafHash as hex, not base64", "shape",
             lambda c: c["entry"].update(leafHash=base64.b64decode(c["entry"]["leafHash"]).hex()))
    mutation("unsigned-version", "a version logged before signing (kid null)", "shape", set_entry(kid=None))
    mutation("not-stored", "the repository no longer holds the logged version", "shape", not_stored)
    mutation("extra-field", "a field the feed does not write", "shape", set_entry(trusted=True))
    mutation("wrong-kind", "kind other than version", "shape", set_entry(kind="accessLogDigest"))

    # checkpoint steps: the original tree, and a rewritten one (leaf 1 replaced) of the same size
    forged = merkle.MemoryTree()
    for i in range(size):
        forged.append_hash(merkle.hash_leaf(b"rewritten") if i == 1 else _leaf_hash(tree, i))
    assert forged.root(small) != tree.root(small)

    def cp(n: int, t: merkle.MemoryTree = tree) -> dict[str, Any]:
        return {"size": n, "root": b64(t.root(n) if n else merkle.EMPTY_ROOT)}

    def proof(a: int, b: int, t: merkle.MemoryTree = tree) -> list[str]:
        return [b64(h) for h in t.consistency_proof(a, b)]

    bad = proof(small, size)
    bad[0] = flip_b64(bad[0], 0)
    steps = [
        {"name": "valid-growth", "old": cp(small), "new": cp(size), "proof": proof(small, size), "want": "ok"},
        {"name": "valid-growth-from-power-of-two", "old": cp(2), "new": cp(size), "proof": proof(2, size),
         "want": "ok"},
        {"name": "valid-same", "old": cp(size), "new": cp(size), "proof": [], "want": "ok"},
        {"name": "valid-from-empty", "old": cp(0), "new": cp(size), "proof": [], "want": "ok"},
        {"name": "rollback", "old": cp(size), "new": cp(small), "proof": [], "want": {"step": "checkpoint",
                                                                                      "contains": "rollback"}},
        {"name": "fork", "old": cp(size), "new": cp(size, forged), "proof": [],
         "want": {"step": "checkpoint", "contains": "fork"}},
        {"name": "bad-consistency-proof", "old": cp(small), "new": cp(size), "proof": bad,
         "want": {"step": "checkpoint", "contains": "consistency"}},
        {"name": "truncated-consistency-proof", "old": cp(small), "new": cp(size), "proof": proof(small, size)[:-1],
         "want": {"step": "checkpoint", "contains": "consistency"}},
        {"name": "rewritten-log", "old": cp(small), "new": cp(size, forged), "proof": proof(small, size, forged),
         "want": {"step": "checkpoint", "contains": "consistency"}},
        {"name": "same-size-nonempty-proof", "old": cp(size), "new": cp(size), "proof": proof(small, size),
         "want": {"step": "checkpoint", "contains": "consistency"}},
    ]
    return {
        "description": "Change-feed entries for dbp.replication.verify (verify_entry, verify_checkpoint_step); "
                       "generated by tests/replication/make_feed_vectors.py. Byte strings are standard base64.",
        "origin": ORIGIN, "logVerifierKey": log_signer.verifier.encode(), "checkpoints": checkpoints,
        "entries": cases, "checkpointSteps": steps,
    }


def _leaf_hash(tree: merkle.MemoryTree, index: int) -> bytes:
    return tree.subtree_hash(index, index + 1)


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")

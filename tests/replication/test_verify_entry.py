"""dbp.replication.verify: a backup node's check of one change-feed entry, and of successive checkpoints, from the
JSON vectors of make_feed_vectors.py (valid cases and named mutations, each refused at a named step), then end to
end over real HTTP against the test server's feed, published keys, proofs and checkpoint."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import make_feed_vectors
import pytest

from dbp.errors import VerificationError
from dbp.integrity.checkpoint import VerifiedCheckpoint, parse_verifier_key, verify_checkpoint
from dbp.integrity.verify import trusted_keys
from dbp.replication.verify import VerifiedEntry, verify_checkpoint_step, verify_entry

VECTORS = json.loads((Path(__file__).parent / "vectors" / "feed_entry_vectors.json").read_text("utf-8"))
ENTRY_CASES = {c["name"]: c for c in VECTORS["entries"]}
STEP_CASES = {c["name"]: c for c in VECTORS["checkpointSteps"]}
REQUIRED_MUTATIONS = {"wrong-body", "flipped-signature-bit", "unknown-kid", "kid-mismatch", "wrong-leaf-hash",
                      "modified-proof-bit", "wrong-position", "position-beyond-tree", "truncated-proof",
                      "trailing-garbage-in-signature", "missing-field", "wrong-type"}


def _opened(name: str) -> VerifiedCheckpoint:
    return verify_checkpoint(VECTORS["checkpoints"][name].encode(), origin=VECTORS["origin"],
                             verifiers=[parse_verifier_key(VECTORS["logVerifierKey"])])


def _run(case: dict[str, Any]) -> VerifiedEntry:
    return verify_entry(case["entry"], body=base64.b64decode(case["body"]),
                        keys={kid: base64.b64decode(k) for kid, k in case["keys"].items()},
                        inclusion=[base64.b64decode(h) for h in case["inclusion"]],
                        checkpoint=_opened(case["checkpoint"]))


def test_vectors_are_what_the_generator_writes() -> None:
    assert make_feed_vectors.render() == (Path(__file__).parent / "vectors" / "feed_entry_vectors.json").read_text(
        "utf-8")


def test_vectors_cover_the_named_mutations() -> None:
    assert set(ENTRY_CASES) >= REQUIRED_MUTATIONS
    assert {"rollback", "fork", "bad-consistency-proof", "rewritten-log"} <= set(STEP_CASES)
    assert sum(c["want"] == "ok" for c in VECTORS["entries"]) >= 5


@pytest.mark.parametrize("name", sorted(ENTRY_CASES))
def test_entry_vector(name: str) -> None:
    case = ENTRY_CASES[name]
    if case["want"] == "ok":
        verified = _run(case)
        assert verified.position == case["entry"]["position"]
        assert verified.sha256 == case["entry"]["sha256"]
        assert verified.body == base64.b64decode(case["body"])
        assert base64.b64encode(verified.leaf_hash).decode() == case["entry"]["leafHash"]
        assert verified.tree_size == _opened(case["checkpoint"]).checkpoint.size
        return
    with pytest.raises(VerificationError) as info:
        _run(case)
    assert info.value.message.startswith(case["want"]["step"] + ": "), info.value.message
    assert "expected" in info.value.message


@pytest.mark.parametrize("name", sorted(STEP_CASES))
def test_checkpoint_step_vector(name: str) -> None:
    case = STEP_CASES[name]

    def tree(cp: dict[str, Any]) -> tuple[int, bytes]:
        return cp["size"], base64.b64decode(cp["root"])

    proof = [base64.b64decode(h) for h in case["proof"]]
    if case["want"] == "ok":
        verify_checkpoint_step(tree(case["old"]), tree(case["new"]), proof)  # returns only when consistent
        return
    with pytest.raises(VerificationError) as info:
        verify_checkpoint_step(tree(case["old"]), tree(case["new"]), proof)
    assert info.value.message.startswith("checkpoint: "), info.value.message
    assert case["want"]["contains"] in info.value.message


def test_an_unverified_checkpoint_is_refused() -> None:
    case = ENTRY_CASES["valid-position-0"]
    with pytest.raises(VerificationError, match=r"^shape: checkpoint: expected a VerifiedCheckpoint"):
        verify_entry(case["entry"], body=base64.b64decode(case["body"]), keys={},
                     inclusion=[base64.b64decode(h) for h in case["inclusion"]],
                     checkpoint=_opened("main").checkpoint)  # type: ignore[arg-type]


@pytest.mark.parametrize("inclusion", ["00" * 32, [b"\x00" * 31], [("00" * 32)]])
def test_malformed_proof_arguments_are_refused_before_any_check(inclusion: Any) -> None:
    case = ENTRY_CASES["valid-position-0"]
    with pytest.raises(VerificationError, match=r"^shape: inclusion"):
        verify_entry(case["entry"], body=base64.b64decode(case["body"]), keys={}, inclusion=inclusion,
                     checkpoint=_opened("main"))


# --- end to end over real HTTP ------------------------------------------------------------------------------------


def _read_feed(client: httpx.Client) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = client.get("/api/v1/feed", params={"include": "body", "limit": 1000, **({"cursor": cursor} if cursor
                                                                                     else {})})
        assert r.status_code == 200, r.text
        entries.extend(r.json()["entries"])
        cursor = r.json()["nextCursor"]
        if not r.json()["hasMore"]:
            return entries


def _checkpoint(public: httpx.Client, *, at_least: int) -> VerifiedCheckpoint:
    deadline = time.monotonic() + 15
    while True:
        r = public.get("/api/v1/log/checkpoint", headers={"Accept": "application/json"})
        if r.status_code == 200 and r.json()["size"] >= at_least:
            break
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)
    data = r.json()
    return verify_checkpoint(data["note"].encode(), origin=data["origin"],
                             verifiers=[parse_verifier_key(data["verifierKey"])])


def test_every_entry_of_the_servers_feed_verifies_and_a_tampered_body_does_not(
        client: httpx.Client, public: httpx.Client, fleet: list[dict[str, Any]]) -> None:
    docs = [d for d in fleet if d["generalProductInformation"]["batteryCategory"] == "ev"][:2]
    for doc in docs:
        r = client.post("/api/v1/dpps", json=doc)
        assert r.status_code == 201, r.text
    entries = _read_feed(client)
    assert len(entries) >= 2
    keys = trusted_keys(public.get("/.well-known/jwks.json").json())
    opened = _checkpoint(public, at_least=entries[-1]["position"] + 1)
    size = opened.checkpoint.size
    proofs = {}
    for entry in entries:
        r = public.get("/api/v1/log/proof/inclusion", params={"leafIndex": entry["position"], "treeSize": size})
        assert r.status_code == 200, r.text
        proofs[entry["position"]] = [base64.b64decode(h) for h in r.json()["hashes"]]
        verified = verify_entry(entry, body=entry["body"].encode(), keys=keys, inclusion=proofs[entry["position"]],
                                checkpoint=opened)
        assert (verified.dpp_id, verified.version, verified.kid) == (entry["dppId"], entry["version"], entry["kid"])

    entry = entries[0]
    raw = bytearray(entry["body"].encode())
    raw[len(raw) // 2] ^= 1
    tampered = {**entry, "body": raw.decode("utf-8", "replace")}
    for candidate in (entry, tampered):  # the body given, and the body given with the entry's copy agreeing
        with pytest.raises(VerificationError, match=r"^content hash: "):
            verify_entry(candidate, body=bytes(raw), keys=keys, inclusion=proofs[entry["position"]],
                         checkpoint=opened)

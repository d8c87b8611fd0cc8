"""The transparency log over HTTP, as a client checks it: the signed checkpoint verifies with the published
verifier key; every passport version written through the API or imported is a leaf committing to its content
hash; inclusion and consistency proofs verify against signed roots; leaves rebuild the signed root; hostile
queries get 4xx EN 18222 error objects."""

from __future__ import annotations

import base64
import copy
import hashlib
import time
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from dbp.integrity import log, merkle, signing
from dbp.integrity.checkpoint import VerifiedCheckpoint, parse_verifier_key, verify_checkpoint
from dbp.passports import bulk
from dbp.passports.models import PassportVersion


def _checkpoint(public: httpx.Client, *, at_least: int,
                timeout: float = 15) -> tuple[VerifiedCheckpoint, dict[str, Any]]:
    """The latest checkpoint once it covers ``at_least`` leaves, its signature verified with the published key."""
    deadline = time.monotonic() + timeout
    while True:
        r = public.get("/api/v1/log/checkpoint", headers={"Accept": "application/json"})
        if r.status_code == 200 and r.json()["size"] >= at_least:
            break
        assert r.status_code in (200, 503), r.text
        assert time.monotonic() < deadline, f"no checkpoint of {at_least} leaves after {timeout} s: {r.text}"
        time.sleep(0.1)
    data: dict[str, Any] = r.json()
    key = parse_verifier_key(data["verifierKey"])
    opened = verify_checkpoint(data["note"].encode(), origin=data["origin"], verifiers=[key])
    assert key.name == data["origin"]
    assert (opened.checkpoint.size, opened.checkpoint.root_hash) == (data["size"], base64.b64decode(data["rootHash"]))
    return opened, data


def _b64s(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


def _create(client: httpx.Client, doc: dict[str, Any]) -> str:
    r = client.post("/api/v1/dpps", json=doc)
    assert r.status_code == 201, r.text
    return str(r.json()["dppId"])


def _error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["statusCode"].startswith("Client") and body["message"][0]["correlationId"]
    return str(body["message"][0]["text"])


def test_checkpoint_text_and_json_agree_and_verify(public: httpx.Client) -> None:
    opened, data = _checkpoint(public, at_least=0)
    text = public.get("/api/v1/log/checkpoint")
    assert text.status_code == 200 and text.headers["content-type"] == "text/plain; charset=utf-8"
    assert text.headers["x-log-verifier-key"] == data["verifierKey"]
    key = parse_verifier_key(data["verifierKey"])
    again = verify_checkpoint(text.content, origin=data["origin"], verifiers=[key])
    assert again.checkpoint.size >= opened.checkpoint.size
    assert data["origin"].endswith("/log") and "://" not in data["origin"]
    assert public.get("/api/v1/log/checkpoint", headers={"Accept": "*/*"}).content.startswith(
        data["origin"].encode() + b"\n")
    _error(public.get("/api/v1/log/checkpoint", headers={"Accept": "image/png"}), 406)


def test_every_version_written_through_the_api_is_provably_logged(
        client: httpx.Client, public: httpx.Client, fleet: list[dict[str, Any]]) -> None:
    evs = [copy.deepcopy(d) for d in fleet if d["generalProductInformation"]["batteryCategory"] == "ev"][:3]
    ids = [_create(client, d) for d in evs]
    for i, dpp in enumerate(ids):
        for j in range(i + 1):
            r = client.patch(f"/api/v1/dpps/{dpp}", json={"performanceAndDurability": {"ratedCapacity": 60.5 + j}})
            assert r.status_code == 200, r.text
    assert client.post(f"/api/v1/dpps/{ids[0]}/waste",
                       json={"responsibleOperatorId": "urn:dbp:op:pro-recycling-eu"}).status_code == 200
    versions = {dpp: client.get(f"/api/v1/dpps/{dpp}/versions").json()["versions"] for dpp in ids}
    total = sum(len(v) for v in versions.values())
    assert total == 3 + 6 + 1
    opened, data = _checkpoint(public, at_least=total)
    size, root = opened.checkpoint.size, opened.checkpoint.root_hash
    assert size == total

    seen: set[int] = set()
    for dpp, listed in versions.items():
        for v in listed:
            # the leaf commits to exactly what the versions API lists: the content hash and time of the version
            full = client.get(f"/api/v1/dpps/{dpp}/versions/{v['version']}")
            assert full.headers["etag"] == f'"{v["sha256"]}"'
            shown = public.get(f"/api/v1/dpps/{dpp}/versions/{v['version']}")  # the public view
            assert shown.status_code == 200 and shown.headers["x-dpp-access"] == "public"
            # ... the key that signed it and the hash of the public view the public is shown
            leaf = log.Leaf(dpp, v["version"], v["sha256"], v["createdAt"],
                            kid=signing.kid_of(full.headers["x-dpp-signature"]),
                            public_sha256=shown.headers["etag"].strip('"'))
            assert hashlib.sha256(shown.content).hexdigest() == leaf.public_sha256
            r = public.get("/api/v1/log/proof/inclusion", params={"dppId": dpp, "version": v["version"],
                                                                  "treeSize": size})
            assert r.status_code == 200, r.text
            proof = r.json()
            assert proof["leaf"] == leaf.as_json() and proof["treeSize"] == size
            assert base64.b64decode(proof["leafData"]) == leaf.encode()
            assert base64.b64decode(proof["leafHash"]) == leaf.leaf_hash()
            merkle.verify_inclusion(leaf_hash=leaf.leaf_hash(), index=proof["leafIndex"], size=size,
                                    proof=_b64s(proof["hashes"]), root=root)
            by_index = public.get("/api/v1/log/proof/inclusion",
                                  params={"leafIndex": proof["leafIndex"], "treeSize": size}).json()
            assert by_index == proof
            seen.add(proof["leafIndex"])
    assert seen == set(range(total))  # every leaf is a version, each version one leaf

    # without treeSize: the latest checkpoint's size, with its signed note
    latest = public.get("/api/v1/log/proof/inclusion", params={"dppId": ids[2], "version": 1}).json()
    assert latest["checkpoint"] == data["note"] and latest["treeSize"] == size

    # the leaves rebuild the signed root
    leaves = public.get("/api/v1/log/leaves", params={"start": 0, "end": size}).json()["leaves"]
    tree = merkle.MemoryTree()
    for i, entry in enumerate(leaves):
        assert entry["leafIndex"] == i
        data_bytes = base64.b64decode(entry["leafData"])
        fields = entry["leaf"]
        assert data_bytes == log.Leaf(fields["dppId"], fields["version"], fields["sha256"], fields["at"],
                                      kid=fields["kid"], public_sha256=fields["publicSha256"]).encode()
        tree.append(data_bytes)
        assert merkle.hash_leaf(data_bytes) == base64.b64decode(entry["leafHash"])
    assert tree.root() == root


def test_consistency_between_two_signed_checkpoints(client: httpx.Client, public: httpx.Client,
                                                    fleet: list[dict[str, Any]]) -> None:
    docs = [copy.deepcopy(d) for d in fleet[:5]]
    for d in docs[:2]:
        _create(client, d)
    old, _ = _checkpoint(public, at_least=2)
    for d in docs[2:]:
        _create(client, d)
    new, _ = _checkpoint(public, at_least=5)
    size1, size2 = old.checkpoint.size, new.checkpoint.size
    r = public.get("/api/v1/log/proof/consistency", params={"from": size1, "to": size2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["from"], body["to"]) == (size1, size2)
    merkle.verify_consistency(size1=size1, size2=size2, root1=old.checkpoint.root_hash,
                              root2=new.checkpoint.root_hash, proof=_b64s(body["hashes"]))
    implicit = public.get("/api/v1/log/proof/consistency", params={"from": size1}).json()
    assert implicit["to"] == size2 and implicit["hashes"] == body["hashes"] and "checkpoint" in implicit
    with pytest.raises(merkle.ProofError):  # a root the log never had is caught
        merkle.verify_consistency(size1=size1, size2=size2, root1=merkle.hash_leaf(b"forged"),
                                  root2=new.checkpoint.root_hash, proof=_b64s(body["hashes"]))


def test_imported_passports_are_logged(session_factory: Any, public: httpx.Client,
                                       fleet: list[dict[str, Any]]) -> None:
    docs = [copy.deepcopy(d) for d in fleet[10:25]]
    report = bulk.import_records(session_factory, [bulk.RecordSource("mem", i, raw=orjson.dumps(d))
                                                   for i, d in enumerate(docs, 1)], batch_size=6, workers=0)
    assert report.created == 15
    opened, _ = _checkpoint(public, at_least=15)
    leaves = public.get("/api/v1/log/leaves", params={"start": 0, "end": 15}).json()["leaves"]
    with session_factory() as s:
        stored = set(s.execute(select(PassportVersion.dpp_id, PassportVersion.version, PassportVersion.sha256)))
    assert {(e["leaf"]["dppId"], e["leaf"]["version"], e["leaf"]["sha256"]) for e in leaves} == stored
    for entry in leaves:
        r = public.get("/api/v1/log/proof/inclusion", params={"leafIndex": entry["leafIndex"], "treeSize": 15})
        merkle.verify_inclusion(leaf_hash=base64.b64decode(entry["leafHash"]), index=entry["leafIndex"], size=15,
                                proof=_b64s(r.json()["hashes"]), root=opened.checkpoint.root_hash)


def test_a_refused_write_logs_nothing(client: httpx.Client, public: httpx.Client,
                                      passport: dict[str, Any]) -> None:
    dpp = _create(client, passport)
    _checkpoint(public, at_least=1)
    assert client.post("/api/v1/dpps", json=passport).status_code == 409  # the same product again
    bad = client.patch(f"/api/v1/dpps/{dpp}", json={"performanceAndDurability": {"ratedCapacity": "lots"}})
    assert bad.status_code == 422
    stale = client.patch(f"/api/v1/dpps/{dpp}", json={"performanceAndDurability": {"ratedCapacity": 1.5}},
                         headers={"If-Match": '"0000"'})
    assert stale.status_code == 412
    time.sleep(1.5)  # a checkpointer tick or more
    opened, _ = _checkpoint(public, at_least=1)
    assert opened.checkpoint.size == 1
    _error(public.get("/api/v1/log/proof/inclusion", params={"dppId": dpp, "version": 2}), 404)


HOSTILE = [
    ("proof/inclusion", {"leafIndex": -1, "treeSize": 1}, 400),
    ("proof/inclusion", {"leafIndex": 0, "treeSize": 2**64}, 400),
    ("proof/inclusion", {"leafIndex": 0, "treeSize": "ten"}, 400),
    ("proof/inclusion", {"leafIndex": "1e3"}, 400),
    ("proof/inclusion", {"leafIndex": 3, "treeSize": 3}, 400),
    ("proof/inclusion", {"leafIndex": 0, "treeSize": 2**63 - 1}, 404),
    ("proof/inclusion", {"leafIndex": 2**40}, 400),
    ("proof/inclusion", {}, 400),
    ("proof/inclusion", {"leafIndex": 0, "dppId": "urn:x", "version": 1}, 400),
    ("proof/inclusion", {"dppId": "urn:x"}, 400),
    ("proof/inclusion", {"version": 1}, 400),
    ("proof/inclusion", {"dppId": "urn:uuid:unknown", "version": 1}, 404),
    ("proof/inclusion", {"dppId": "x" * 300, "version": 1}, 400),
    ("proof/inclusion", {"dppId": "urn:x", "version": 0}, 400),
    ("proof/consistency", {"from": 2, "to": 1}, 400),
    ("proof/consistency", {"from": -1, "to": 1}, 400),
    ("proof/consistency", {"to": 1}, 400),
    ("proof/consistency", {"from": 0, "to": 10**30}, 400),
    ("proof/consistency", {"from": 0, "to": 10**6}, 404),
    ("proof/consistency", {"from": "a", "to": "b"}, 400),
    ("leaves", {"start": 0, "end": 1001}, 400),
    ("leaves", {"start": 5, "end": 5}, 400),
    ("leaves", {"start": 6, "end": 5}, 400),
    ("leaves", {"start": -5, "end": 5}, 400),
    ("leaves", {"start": 0}, 400),
    ("leaves", {"start": 0, "end": 1000}, 404),
    ("leaves", {"start": "0x0", "end": 2}, 400),
]


def test_hostile_queries_get_error_objects(client: httpx.Client, public: httpx.Client,
                                           passport: dict[str, Any]) -> None:
    _create(client, passport)
    _checkpoint(public, at_least=1)
    for path, params, status in HOSTILE:
        r = public.get(f"/api/v1/log/{path}", params=params)
        assert r.status_code == status, (path, params, r.text)
        _error(r, status)


def test_log_endpoints_are_public_and_read_only(public: httpx.Client) -> None:
    _checkpoint(public, at_least=0)
    for path in ("checkpoint", "proof/inclusion", "proof/consistency", "leaves"):
        _error(public.post(f"/api/v1/log/{path}", content=b"{}"), 405)

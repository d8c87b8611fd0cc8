"""Signed versions, checked as an outside verifier would: every version written through the API or imported
carries a detached compact JWS (``X-DPP-Signature`` on reads of the full version, ``passport_versions.signature``
in storage) that verifies — with ``cryptography`` directly, not through ``dbp.integrity.signing`` — against the
key published at ``/.well-known/jwks.json`` and in ``/.well-known/did.json``; an altered byte of the canonical
document or of the signature fails; views (the public one included) carry no signature."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import httpx
import orjson
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select

from dbp.errors import VerificationError
from dbp.integrity import signing
from dbp.passports import bulk
from dbp.passports.models import PassportVersion


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwks(public: httpx.Client) -> dict[str, Any]:
    r = public.get("/.well-known/jwks.json")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def _valid(jws: str, canonical: bytes, jwks: dict[str, Any]) -> bool:
    """RFC 7515 §5.2 with a detached payload (Appendix F), independently of the repository's own code."""
    header_b64, payload, signature_b64 = jws.split(".")
    assert payload == ""  # detached: the payload is the canonical document the verifier already holds
    header = json.loads(_b64d(header_b64))
    assert header["alg"] == "EdDSA" and header["typ"] == "dbp-version+jws"
    [jwk] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519")
    key = Ed25519PublicKey.from_public_bytes(_b64d(jwk["x"]))
    try:
        key.verify(_b64d(signature_b64), f"{header_b64}.{_b64e(canonical)}".encode())
    except InvalidSignature:
        return False
    return True


def _create(client: httpx.Client, doc: dict[str, Any]) -> str:
    r = client.post("/api/v1/dpps", json=doc)
    assert r.status_code == 201, r.text
    return str(r.json()["dppId"])


def _stored(session_factory: Any, dpp_id: str) -> list[tuple[int, bytes, str | None]]:
    with session_factory() as s:
        rows = s.execute(select(PassportVersion.version, PassportVersion.canonical, PassportVersion.signature)
                         .where(PassportVersion.dpp_id == dpp_id).order_by(PassportVersion.version)).all()
    return [(v, c.encode(), sig) for v, c, sig in rows]


def test_every_version_written_through_the_api_is_signed_and_served_with_its_signature(
        client: httpx.Client, public: httpx.Client, session_factory: Any, passport: dict[str, Any]) -> None:
    dpp_id = _create(client, passport)
    patched = client.patch(f"/api/v1/dpps/{dpp_id}", content=b'{"performanceAndDurability":{"ratedCapacity":61}}',
                           headers={"Content-Type": "application/merge-patch+json"})
    assert patched.status_code == 200, patched.text
    assert client.delete(f"/api/v1/dpps/{dpp_id}").status_code in (200, 204)
    jwks = _jwks(public)
    stored = _stored(session_factory, dpp_id)
    assert [v for v, _, _ in stored] == [1, 2, 3]
    assert patched.headers["x-dpp-signature"] == stored[1][2]  # a write's answer is the version written
    for version, canonical, signature in stored:
        assert signature is not None and _valid(signature, canonical, jwks)
        r = client.get(f"/api/v1/dpps/{dpp_id}/versions/{version}")
        assert r.status_code == 200 and r.content == canonical  # the full version: the signed bytes
        assert r.headers["x-dpp-signature"] == signature
    current = client.get(f"/api/v1/dpps/{dpp_id}")  # the hot read path, full view
    assert current.status_code == 200 and current.headers["x-dpp-signature"] == stored[-1][2]
    assert _valid(current.headers["x-dpp-signature"], current.content, jwks)


def test_views_are_not_the_signed_bytes_and_carry_no_signature(
        client: httpx.Client, public: httpx.Client, passport: dict[str, Any]) -> None:
    dpp_id = _create(client, passport)
    for path in (f"/api/v1/dpps/{dpp_id}", f"/api/v1/dpps/{dpp_id}/versions/1"):
        r = public.get(path)
        assert r.status_code == 200, r.text
        assert "x-dpp-signature" not in r.headers


def test_imported_versions_are_signed(public: httpx.Client, session_factory: Any,
                                      fleet: list[dict[str, Any]]) -> None:
    docs = [copy.deepcopy(d) for d in fleet[:6]]
    report = bulk.import_records(session_factory, [bulk.RecordSource("mem", i, raw=orjson.dumps(d))
                                                   for i, d in enumerate(docs, 1)], batch_size=4, workers=0)
    assert report.created == 6
    for d in docs[:2]:  # changed products: a new version each, signed too
        d["performanceAndDurability"]["ratedCapacity"] = 12.5
    again = bulk.import_records(session_factory, [bulk.RecordSource("mem", i, raw=orjson.dumps(d))
                                                  for i, d in enumerate(docs, 1)], batch_size=4, workers=0)
    assert again.updated == 2
    jwks = _jwks(public)
    with session_factory() as s:
        rows = s.execute(select(PassportVersion.canonical, PassportVersion.signature)).all()
    assert len(rows) == 8
    assert all(sig is not None and _valid(sig, body.encode(), jwks) for body, sig in rows)


def test_a_tampered_document_or_signature_fails(client: httpx.Client, public: httpx.Client,
                                                session_factory: Any, passport: dict[str, Any]) -> None:
    dpp_id = _create(client, passport)
    [(_, canonical, signature)] = _stored(session_factory, dpp_id)
    assert signature is not None
    jwks = _jwks(public)
    keys = {k["kid"]: _b64d(k["x"]) for k in jwks["keys"]}
    assert _valid(signature, canonical, jwks)
    assert signing.verify_version(signature, canonical, keys)
    i = canonical.index(b'"ratedCapacity":') + len(b'"ratedCapacity":')
    altered = canonical[:i] + (b"9" if canonical[i:i + 1] != b"9" else b"8") + canonical[i + 1:]
    header, _, sig = signature.split(".")
    raw = bytearray(_b64d(sig))
    raw[7] ^= 0x01
    flipped = f"{header}..{_b64e(bytes(raw))}"
    assert not _valid(signature, altered, jwks)
    assert not _valid(flipped, canonical, jwks)
    assert not _valid(signature, canonical + b" ", jwks)
    for jws, body in ((signature, altered), (flipped, canonical), (signature.replace("..", ".x."), canonical),
                      (signature + "=", canonical)):
        with pytest.raises(VerificationError):
            signing.verify_version(jws, body, keys)
    with pytest.raises(VerificationError, match="kid"):
        signing.verify_version(signature, canonical, {})


def test_the_did_document_publishes_the_same_keys(public: httpx.Client, server: Any,
                                                  client: httpx.Client, passport: dict[str, Any]) -> None:
    _create(client, passport)
    jwks = _jwks(public)
    assert jwks["keys"] and all(k.keys() >= {"kty", "crv", "x", "kid"} and "d" not in k for k in jwks["keys"])
    r = public.get("/.well-known/did.json")
    assert r.status_code == 200, r.text
    doc = r.json()
    host = server.base_url.split("://", 1)[1]
    did = "did:web:" + host.replace(":", "%3A")
    assert doc["id"] == did
    methods = {m["id"]: m for m in doc["verificationMethod"]}
    assert set(methods) == {f"{did}#{k['kid']}" for k in jwks["keys"]}
    for k in jwks["keys"]:
        method = methods[f"{did}#{k['kid']}"]
        assert method["type"] == "JsonWebKey2020" and method["controller"] == did
        assert method["publicKeyJwk"] == k
    assert set(doc["assertionMethod"]) <= set(methods) and doc["assertionMethod"]


def test_signing_uses_the_key_the_checkpoints_are_signed_with(public: httpx.Client, client: httpx.Client,
                                                              passport: dict[str, Any]) -> None:
    dpp_id = _create(client, passport)
    signature = client.get(f"/api/v1/dpps/{dpp_id}").headers["x-dpp-signature"]
    kid = json.loads(_b64d(signature.split(".")[0]))["kid"]
    [jwk] = [k for k in _jwks(public)["keys"] if k["kid"] == kid]
    verifier = public.get("/api/v1/log/checkpoint", headers={"Accept": "application/json"})
    if verifier.status_code == 200:  # "<name>+<key id hex>+<base64(0x01 || public key)>"
        assert base64.b64decode(verifier.json()["verifierKey"].split("+")[2])[1:] == _b64d(jwk["x"])

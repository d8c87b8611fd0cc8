"""Supplier attestations: a cell supplier signs a verifiable credential (with jwcrypto, as its own tooling would)
under its own did:web, whose DID document a tiny loopback server publishes; the passport's operator attaches it
to the passport and the repository verifies it on upload — over HTTP, resolving the supplier's DID over loopback
(DBP_DID_WEB_HTTP_HOSTS=127.0.0.1 on a second dbp server sharing the test database).
"""

from __future__ import annotations

import copy
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jwcrypto import jwk, jws
from sqlalchemy import text

from conftest import ServerThread, _free_port, settle_access_log
from dbp.access import service as access
from dbp.access.principal import Role
from dbp.app import create_app
from dbp.config import Settings
from dbp.passports.attestations import MAX_ATTESTATION_BYTES

VC = {"Content-Type": "application/vc+jwt"}


class DidHost:
    """A loopback web server publishing DID documents (and whatever else a test puts at a path)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        routes = self.routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = routes.get(self.path, (404, {}, b"not here"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def did(self, *path: str) -> str:
        return f"did:web:127.0.0.1%3A{self.port}" + "".join(f":{p}" for p in path)

    def publish(self, path: str, document: dict[str, Any]) -> None:
        self.routes[path] = (200, {"Content-Type": "application/did+json"}, json.dumps(document).encode())


class Supplier:
    """An organisation with its own Ed25519 key and did:web, signing credentials with jwcrypto."""

    def __init__(self, host: DidHost, name: str) -> None:
        self.key = jwk.JWK.generate(kty="OKP", crv="Ed25519")
        self.did = host.did("suppliers", name)
        self.kid = f"{self.did}#key-1"
        public = self.key.export_public(as_dict=True)
        host.publish(f"/suppliers/{name}/did.json", {
            "@context": ["https://www.w3.org/ns/did/v1"], "id": self.did,
            "verificationMethod": [{"id": self.kid, "type": "JsonWebKey2020", "controller": self.did,
                                    "publicKeyJwk": public}],
            "assertionMethod": [self.kid]})

    def credential(self, subject_id: str, **extra: Any) -> dict[str, Any]:
        return {"@context": ["https://www.w3.org/ns/credentials/v2"], "id": "urn:uuid:7d6f0a2e-1c1b-4d6e-9c1a-0a0b",
                "type": ["VerifiableCredential", "MaterialOriginCredential"], "issuer": self.did,
                "validFrom": "2026-01-01T00:00:00Z",
                "credentialSubject": {"id": subject_id, "cobaltOrigin": {"country": "AU", "mine": "Example Mine",
                                                                         "recycledShare": 0.16}}, **extra}

    def sign(self, credential: dict[str, Any], *, key: jwk.JWK | None = None, **header: Any) -> str:
        token = jws.JWS(json.dumps(credential).encode())
        token.add_signature(key or self.key, None, protected=json.dumps(
            {"alg": "EdDSA", "typ": "vc+jwt", "cty": "vc", "kid": self.kid, **header}))
        out: str = token.serialize(compact=True)
        return out


@pytest.fixture(scope="module")
def did_host() -> Iterator[DidHost]:
    host = DidHost()
    yield host
    host.server.shutdown()


@pytest.fixture(scope="module")
def repo(settings: Settings) -> Iterator[ServerThread]:
    """A second dbp server on the test database that resolves did:web over plain http on loopback."""
    s = settings.model_copy(update={"port": _free_port(), "did_web_http_hosts": ["127.0.0.1"]})
    with ServerThread(create_app(s), s.port) as srv:
        yield srv


def _token(repo: ServerThread, client_id: str, secret: str) -> dict[str, str]:
    r = httpx.post(f"{repo.base_url}/api/v1/auth/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture()
def operator(repo: ServerThread, service_provider: dict[str, Any]) -> Iterator[httpx.Client]:
    """The service provider every test operator authorised in writing: it may attach attestations."""
    headers = _token(repo, service_provider["client_id"], service_provider["client_secret"])
    with httpx.Client(base_url=repo.base_url, timeout=30, headers=headers) as c:
        yield c


@pytest.fixture()
def recycler(repo: ServerThread, session_factory: Any) -> Iterator[httpx.Client]:
    with session_factory.begin() as s:
        org = access.create_org(s, name="Recycler", operator_id="urn:test:att-recycler", role=Role.recycler)
        issued = access.create_client(s, org_id=org.id, role=Role.recycler)
    headers = {**_token(repo, issued.client_id, issued.client_secret), "X-Purpose": "recycling"}
    with httpx.Client(base_url=repo.base_url, timeout=30, headers=headers) as c:
        yield c


@pytest.fixture()
def anonymous(repo: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=repo.base_url, timeout=30) as c:
        yield c


@pytest.fixture()
def dpp(operator: httpx.Client, passport: dict[str, Any]) -> dict[str, Any]:
    r = operator.post("/api/v1/dpps", json=passport)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def attach(http: httpx.Client, dpp_id: str, token: str, **params: Any) -> httpx.Response:
    return http.post(f"/api/v1/dpps/{dpp_id}/attestations", content=token, headers=VC, params=params)


def error_text(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert "statusCode" in body and body["message"][0]["correlationId"]
    return str(body["message"][0]["text"]) + json.dumps(body["message"][0].get("details", []))


def stored(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM attestations")).scalar_one())


def test_attach_verify_list_and_log(did_host: DidHost, operator: httpx.Client, anonymous: httpx.Client,
                                    recycler: httpx.Client, dpp: dict[str, Any], engine: Any) -> None:
    cells = Supplier(did_host, "cells")
    dpp_id = dpp["dppId"]
    token = cells.sign(cells.credential(dpp_id))
    r = attach(operator, dpp_id, token)
    assert r.status_code == 201, r.text
    att = r.json()
    assert att["issuer"] == cells.did and att["kid"] == cells.kid and att["dppId"] == dpp_id
    assert att["type"] == ["VerifiableCredential", "MaterialOriginCredential"]
    assert att["accessGroup"] == "legitimateInterestAndAuthorities" and att["credential"] == token
    again = attach(operator, dpp_id, token)  # a retry: the stored one, nothing new
    assert again.status_code == 200 and again.json()["id"] == att["id"]

    # subject by product identifier and by passport URL; this one is public
    by_product = cells.sign(cells.credential(dpp["uniqueProductIdentifier"], validUntil="2099-01-01T00:00:00Z"))
    assert attach(operator, dpp_id, by_product, accessGroup="public").status_code == 201
    by_url = cells.sign(cells.credential(f"{operator.base_url}/api/v1/dpps/{dpp_id}"))
    assert attach(operator, dpp_id, by_url, accessGroup="authorities").status_code == 201
    assert stored(engine) == 3

    def listed(http: httpx.Client) -> list[str]:
        r = http.get(f"/api/v1/dpps/{dpp_id}/attestations")
        assert r.status_code == 200, r.text
        return sorted(a["accessGroup"] for a in r.json()["attestations"])

    assert listed(operator) == ["authorities", "legitimateInterestAndAuthorities", "public"]
    assert listed(recycler) == ["legitimateInterestAndAuthorities", "public"]
    assert listed(anonymous) == ["public"]
    public_one = anonymous.get(f"/api/v1/dpps/{dpp_id}/attestations").json()["attestations"][0]
    assert public_one["credential"] == by_product and public_one["validUntil"] == "2099-01-01T00:00:00Z"
    assert public_one["expired"] is False

    # the stored token still verifies, by the repository's verify route (an authenticated caller: remote issuer)
    checks = operator.post("/api/v1/credentials/verify", content=public_one["credential"], headers=VC).json()
    assert checks["verified"] is True, checks

    settle_access_log(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT action, outcome, detail FROM access_log WHERE dpp_id = :d AND action = "
                                 "'attachAttestation'"), {"d": dpp_id}).all()
        reads = conn.execute(text("SELECT COUNT(*) FROM access_log WHERE dpp_id = :d AND action = 'read' AND "
                                  "detail LIKE '%attestations%'"), {"d": dpp_id}).scalar_one()
    assert [(r[0], r[1]) for r in rows] == [("attachAttestation", "granted")] * 3  # the retry added no record
    assert cells.did in rows[0][2]
    assert reads >= 3


def test_refusals_store_nothing(did_host: DidHost, repo: ServerThread, operator: httpx.Client,
                                anonymous: httpx.Client, recycler: httpx.Client, dpp: dict[str, Any],
                                passport: dict[str, Any], engine: Any) -> None:
    cells = Supplier(did_host, "cells2")
    dpp_id = dpp["dppId"]
    good = cells.sign(cells.credential(dpp_id))

    # who may attach: the operator and its authorised agents only
    assert "needs credentials" in error_text(attach(anonymous, dpp_id, good), 401)
    assert "recycler may not attachAttestation" in error_text(attach(recycler, dpp_id, good), 403)

    # bad signature: signed by another key than the one the supplier's DID document publishes
    forged = cells.sign(cells.credential(dpp_id), key=jwk.JWK.generate(kty="OKP", crv="Ed25519"))
    assert "step 7 (signature)" in error_text(attach(operator, dpp_id, forged), 422)
    # tampered claim
    header, payload, sig = good.split(".")
    claims = json.loads(jws.base64url_decode(payload))
    claims["credentialSubject"]["cobaltOrigin"]["recycledShare"] = 0.9
    tampered = f"{header}.{jws.base64url_encode(json.dumps(claims))}.{sig}"
    assert "expected a valid EdDSA signature" in error_text(attach(operator, dpp_id, tampered), 422)

    # unknown issuer: nobody serves its DID document; a host that is not on the loopback allow-list
    ghost = Supplier(did_host, "ghost")
    ghost.did = f"did:web:127.0.0.1%3A{_free_port()}"  # nothing listens there
    ghost.kid = f"{ghost.did}#key-1"
    assert "step 5 (DID document)" in error_text(attach(operator, dpp_id, ghost.sign(ghost.credential(dpp_id))), 422)
    nobody = Supplier(did_host, "nobody")
    did_host.routes.pop("/suppliers/nobody/did.json")
    assert "expected HTTP 200" in error_text(attach(operator, dpp_id, nobody.sign(nobody.credential(dpp_id))), 422)
    local = Supplier(did_host, "local")
    local.did, local.kid = f"did:web:localhost%3A{did_host.port}", f"did:web:localhost%3A{did_host.port}#key-1"
    assert "public addresses" in error_text(attach(operator, dpp_id, local.sign(local.credential(dpp_id))), 422)

    # a redirect to another host is not followed
    mover = Supplier(did_host, "mover")
    did_host.routes["/suppliers/mover/did.json"] = (302, {"Location": f"http://localhost:{did_host.port}/x"}, b"")
    assert "no redirect to another origin" in error_text(
        attach(operator, dpp_id, mover.sign(mover.credential(dpp_id))), 422)

    # wrong subject: another passport, or none
    other = copy.deepcopy(passport)
    other["uniqueProductIdentifier"] = passport["uniqueProductIdentifier"] + "-other"
    other.pop("dppId", None)
    other_id = operator.post("/api/v1/dpps", json=other).json()["dppId"]
    assert "not about this passport" in error_text(attach(operator, dpp_id, cells.sign(cells.credential(other_id))),
                                                   422)
    no_id = cells.credential(dpp_id)
    del no_id["credentialSubject"]["id"]
    assert "attestation.subject" in error_text(attach(operator, dpp_id, cells.sign(no_id)), 422)

    # dates, type, header
    expired = cells.sign(cells.credential(dpp_id, validUntil="2026-02-01T00:00:00Z"))
    assert "(expired)" in error_text(attach(operator, dpp_id, expired), 422)
    assert "expected typ vc+jwt" in error_text(attach(operator, dpp_id, cells.sign(cells.credential(dpp_id),
                                                                                   typ="JWT")), 422)
    assert "expected a key of the issuer" in error_text(attach(operator, dpp_id, cells.sign(
        cells.credential(dpp_id), kid=f"{did_host.did('suppliers', 'cells')}#key-1")), 422)

    # malformed and oversize bodies, wrong content type, unknown passport, unknown access group
    assert "step 1 (compact JWS)" in error_text(attach(operator, dpp_id, "not a token"), 422)
    assert "step 1" in error_text(attach(operator, dpp_id, ""), 422)
    assert error_text(attach(operator, dpp_id, "a" * (MAX_ATTESTATION_BYTES + 1)), 413)
    r = operator.post(f"/api/v1/dpps/{dpp_id}/attestations", json={"credential": good})
    assert error_text(r, 415)
    assert error_text(attach(operator, "urn:uuid:no-such-passport", good), 404)
    assert error_text(attach(operator, dpp_id, good, accessGroup="everyone"), 400)

    assert stored(engine) == 0
    assert operator.get(f"/api/v1/dpps/{dpp_id}/attestations").json()["count"] == 0
    settle_access_log(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT outcome, reason FROM access_log WHERE dpp_id = :d AND action = "
                                 "'attachAttestation'"), {"d": dpp_id}).all()
    assert sorted(r[0] for r in rows) == ["denied", "denied"]  # the anonymous and the recycler, logged


def test_a_credential_of_another_repository_verifies_across(server: ServerThread, client: httpx.Client,
                                                            operator: httpx.Client, anonymous: httpx.Client,
                                                            passport: dict[str, Any]) -> None:
    """The test suite's main server exports a credential; the second repository resolves its did:web over
    loopback HTTP and verifies it (authenticated); for an anonymous caller it does not fetch."""
    dpp_id = client.post("/api/v1/dpps", json=passport).json()["dppId"]
    token = client.get(f"/api/v1/dpps/{dpp_id}/credential").text
    result = operator.post("/api/v1/credentials/verify", content=token, headers=VC).json()
    assert result["verified"] is True, result
    assert result["issuer"] != f"did:web:127.0.0.1%3A{operator.base_url.port}"
    refused = anonymous.post("/api/v1/credentials/verify", content=token, headers=VC).json()
    assert refused["verified"] is False and "anonymous callers" in refused["checks"][4]["detail"]
    # and it may be attached as an attestation: its subject is this very passport (the two share a database)
    r = attach(operator, dpp_id, token)
    assert r.status_code == 201, r.text

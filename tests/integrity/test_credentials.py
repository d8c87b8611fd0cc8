"""Verifiable credential export (VC 2.0 secured with VC-JOSE, application/vc+jwt) and its verification.

Over real HTTP: the exported credential is verified by an independent JOSE library (jwcrypto, with the JWK from
/.well-known/jwks.json), by our verifier resolving the server's did:web document over HTTP, and by the server's
own verify route; the subject is the view the caller may read, the read is logged like a passport read.
Pure: named mutations of a credential are each refused at the right check with an "expected X, got Y" reason.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwcrypto import jwk, jws
from sqlalchemy import text

from conftest import settle_access_log
from dbp.access import service as access
from dbp.access.principal import Role
from dbp.errors import VerificationError
from dbp.integrity import credentials as vc
from dbp.integrity.canonical import canonical_bytes, sha256_hex
from dbp.integrity.signing import b64url, did_of

VC_TYPE = "application/vc+jwt"


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def decode(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return json.loads(_unb64(header)), json.loads(_unb64(payload))


def jwcrypto_verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """Verify with jwcrypto only: the key whose kid is the fragment of the token's kid."""
    header, _ = decode(token)
    fragment = header["kid"].partition("#")[2]
    key = jwk.JWK(**next(k for k in jwks["keys"] if k["kid"] == fragment))
    token_obj = jws.JWS()
    token_obj.deserialize(token)
    token_obj.verify(key, alg="EdDSA")  # raises InvalidJWSSignature otherwise
    assert token_obj.jose_header["typ"] == "vc+jwt"
    payload: dict[str, Any] = json.loads(token_obj.payload)
    return payload


def token_of(http: httpx.Client, dpp: str, headers: dict[str, str] | None = None, **params: Any) -> str:
    r = http.get(f"/api/v1/dpps/{dpp}/credential", params=params, headers=headers or {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == VC_TYPE
    return r.text


# ------------------------------------------------------------------------------------------- over HTTP
def test_export_verifies_with_jwcrypto_with_our_verifier_and_with_the_verify_route(
        server: Any, client: httpx.Client, passport: dict[str, Any]) -> None:
    created = client.post("/api/v1/dpps", json=passport)
    assert created.status_code == 201, created.text
    dpp = created.json()["dppId"]
    token = token_of(client, dpp)
    jwks = httpx.get(f"{server.base_url}/.well-known/jwks.json").json()

    payload = jwcrypto_verify(token, jwks)  # independent library, key from the JWK Set
    did = did_of(server.base_url)
    header, _ = decode(token)
    assert header == {"alg": "EdDSA", "cty": "vc", "kid": header["kid"], "typ": "vc+jwt"}
    assert header["kid"].startswith(f"{did}#")
    assert payload["@context"] == ["https://www.w3.org/ns/credentials/v2"]
    assert payload["type"] == ["VerifiableCredential", "BatteryPassportCredential"]
    assert payload["issuer"] == did
    full = client.get(f"/api/v1/dpps/{dpp}")
    subject = payload["credentialSubject"]
    assert payload["validFrom"] == full.headers["last-modified-at"] == subject["versionCreatedAt"]
    assert subject["id"] == dpp and subject["version"] == 1
    assert subject["passport"] == full.json()  # the operator's agent reads everything
    assert f'"{subject["versionSha256"]}"' == full.headers["etag"]
    assert subject["viewSha256"] == sha256_hex(canonical_bytes(subject["passport"])) == subject["versionSha256"]
    assert subject["accessGroups"] == ["authorities", "legitimateInterest", "legitimateInterestAndAuthorities",
                                       "public"]
    assert token_of(client, dpp) == token  # same view, same version: same credential id and token

    # our verifier, resolving the repository's did:web document over HTTP (loopback: plain http allowed)
    resolver = vc.DidWebResolver(http_hosts=["127.0.0.1"])
    verified = vc.verify_credential(token, resolver)
    assert verified.issuer == did and verified.credential == payload

    r = httpx.post(f"{server.base_url}/api/v1/credentials/verify", content=token,
                   headers={"Content-Type": VC_TYPE})  # anonymous: our own DID needs no network
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verified"] is True and body["issuer"] == did
    assert [c["step"] for c in body["checks"]] == list(range(1, 9))
    assert all(c["verdict"] == "pass" for c in body["checks"])
    assert body["credential"] == payload


def test_subject_is_the_view_the_caller_may_read(server: Any, client: httpx.Client, public: httpx.Client,
                                                 passport: dict[str, Any], session_factory: Any) -> None:
    dpp = client.post("/api/v1/dpps", json=passport).json()["dppId"]
    jwks = public.get("/.well-known/jwks.json").json()

    anonymous = public.get(f"/api/v1/dpps/{dpp}/credential")
    assert anonymous.status_code == 200 and anonymous.headers["x-dpp-access"] == "public"
    subject = jwcrypto_verify(anonymous.text, jwks)["credentialSubject"]
    assert subject["accessGroups"] == ["public"]
    assert subject["passport"] == public.get(f"/api/v1/dpps/{dpp}").json()
    full = client.get(f"/api/v1/dpps/{dpp}")
    assert subject["passport"] != full.json()
    assert f'"{subject["versionSha256"]}"' == full.headers["etag"]  # the logged version it is a view of

    with session_factory.begin() as s:
        org = access.create_org(s, name="Recycler", operator_id="urn:test:vc-recycler", role=Role.recycler)
        issued = access.create_client(s, org_id=org.id, role=Role.recycler)
    token = httpx.post(f"{server.base_url}/api/v1/auth/token", data={
        "grant_type": "client_credentials", "client_id": issued.client_id,
        "client_secret": issued.client_secret}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "X-Purpose": "recycling"}
    r = public.get(f"/api/v1/dpps/{dpp}/credential", headers=headers)
    assert r.status_code == 200, r.text
    recycler = jwcrypto_verify(r.text, jwks)["credentialSubject"]
    assert recycler["accessGroups"] == ["legitimateInterestAndAuthorities", "public"]
    assert recycler["passport"] == public.get(f"/api/v1/dpps/{dpp}", headers=headers).json()
    assert recycler["passport"] not in (subject["passport"], full.json())
    assert recycler["viewSha256"] == sha256_hex(canonical_bytes(recycler["passport"]))
    assert decode(r.text)[1]["id"] != decode(anonymous.text)[1]["id"]  # one credential id per view


def test_versions_refusals_and_the_access_log(client: httpx.Client, public: httpx.Client, passport: dict[str, Any],
                                              engine: Any) -> None:
    dpp = client.post("/api/v1/dpps", json=passport).json()["dppId"]
    patched = client.patch(f"/api/v1/dpps/{dpp}", json={"generalProductInformation": {"batteryStatus": "re-used"}},
                           headers={"Content-Type": "application/merge-patch+json"})
    assert patched.status_code == 200, patched.text
    versions = {v["version"]: v for v in client.get(f"/api/v1/dpps/{dpp}/versions").json()["versions"]}
    first = decode(token_of(client, dpp, version=1))[1]["credentialSubject"]
    assert first["version"] == 1 and first["versionSha256"] == versions[1]["sha256"]
    assert first["passport"] == client.get(f"/api/v1/dpps/{dpp}/versions/1").json()
    assert decode(token_of(client, dpp))[1]["credentialSubject"]["version"] == 2

    # what the passport reads refuse, the credential refuses the same way
    for url, ref in ((f"/api/v1/dpps/{dpp}/credential?version=9", f"/api/v1/dpps/{dpp}/versions/9"),
                     ("/api/v1/dpps/urn:uuid:nothing/credential", "/api/v1/dpps/urn:uuid:nothing")):
        r, expected = public.get(url), public.get(ref)
        assert (r.status_code, r.json()["statusCode"]) == (expected.status_code, expected.json()["statusCode"]) \
            == (404, "ClientErrorResourceNotFound")
    bad = {"Authorization": "Bearer not-a-token"}
    r, expected = public.get(f"/api/v1/dpps/{dpp}/credential", headers=bad), public.get(
        f"/api/v1/dpps/{dpp}", headers=bad)
    assert r.status_code == expected.status_code == 401
    assert r.json()["statusCode"] == expected.json()["statusCode"] == "ClientNotAuthorized"
    assert public.get(f"/api/v1/dpps/{dpp}/credential?version=0").status_code == 400
    assert public.get(f"/api/v1/dpps/{dpp}/credential", headers={"Accept": "text/html"}).status_code == 406

    settle_access_log(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT action, outcome, principal, detail FROM access_log WHERE dpp_id = :d "
                                 "ORDER BY id"), {"d": dpp}).all()
    actions = [(r[0], r[1]) for r in rows]
    assert actions.count(("readVersion", "granted")) >= 2  # the credential of version 1, and /versions/1
    assert ("read", "granted") in actions  # the credential of the current version


def test_verify_route_reports_the_failed_check(server: Any, client: httpx.Client, public: httpx.Client,
                                               passport: dict[str, Any]) -> None:
    dpp = client.post("/api/v1/dpps", json=passport).json()["dppId"]
    token = token_of(public, dpp)
    header, payload, signature = token.split(".")
    claims = json.loads(_unb64(payload))
    claims["credentialSubject"]["passport"]["dppStatus"] = "archived"
    tampered = f"{header}.{b64url(orjson.dumps(claims))}.{signature}"

    def verify(body: str, http: httpx.Client = public) -> dict[str, Any]:
        r = http.post("/api/v1/credentials/verify", content=body, headers={"Content-Type": VC_TYPE})
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    result = verify(tampered)
    assert result["verified"] is False and result["credential"] is None
    verdicts = [c["verdict"] for c in result["checks"]]
    assert verdicts == ["pass"] * 6 + ["fail", "skipped"]
    assert "expected a valid EdDSA signature" in result["checks"][6]["detail"]
    assert [c["verdict"] for c in verify("garbage")["checks"]] == ["fail"] + ["skipped"] * 7

    # a credential of another issuer: anonymous callers do not make the server fetch it
    other = _signed({**_credential("did:web:issuer.example"), "validFrom": "2020-01-01T00:00:00Z"},
                    Ed25519PrivateKey.generate(), "did:web:issuer.example#k")
    checks = verify(other)["checks"]
    assert checks[4]["verdict"] == "fail" and "anonymous callers verify only" in checks[4]["detail"]

    r = public.post("/api/v1/credentials/verify", content=token, headers={"Content-Type": "application/json"})
    assert r.status_code == 415
    r = public.post("/api/v1/credentials/verify", content="x" * (3 * 1024 * 1024), headers={"Content-Type": VC_TYPE})
    assert r.status_code == 413


# ------------------------------------------------------------------------------------------- pure
DID = "did:web:repo.example"
KID = f"{DID}#k1"
NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def _jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))}


def _document(did: str = DID, key: Ed25519PrivateKey = KEY, fragment: str = "k1", **extra: Any) -> dict[str, Any]:
    method = {"id": f"{did}#{fragment}", "type": "JsonWebKey2020", "controller": did, "publicKeyJwk": _jwk(key)}
    return {"id": did, "verificationMethod": [method], "assertionMethod": [f"{did}#{fragment}"], **extra}


def _credential(issuer: str = DID) -> dict[str, Any]:
    return vc.passport_credential(base_url="https://repo.example", issuer=issuer, dpp_id="urn:uuid:0000-1",
                                  version=3, created_at="2027-02-18T10:00:00.000000Z", version_sha256="ab" * 32,
                                  view=b'{"dppStatus":"active"}', access_groups=["public"])


def _signed(credential: dict[str, Any], key: Ed25519PrivateKey = KEY, kid: str = KID,
            header: dict[str, Any] | None = None) -> str:
    h = b64url(orjson.dumps(header if header is not None else vc.credential_header(kid)))
    p = b64url(orjson.dumps(credential))
    return f"{h}.{p}.{b64url(key.sign(f'{h}.{p}'.encode()))}"


RESOLVE = vc.StaticResolver({DID: _document()})


def _fails(token: str | bytes, step: int, needle: str, resolve: Any = RESOLVE) -> None:
    report = vc.examine(token, resolve, now=NOW)
    assert not report.ok
    failure = report.failure
    assert failure is not None and failure.step == step, report.as_json()
    assert needle in failure.detail, failure.detail
    assert all(c.verdict == "skipped" for c in report.checks[step:])
    with pytest.raises(VerificationError, match=f"step {step}"):
        vc.verify_credential(token, resolve, now=NOW)


def test_happy_path_and_jwcrypto_agree() -> None:
    token = vc.sign_credential(_credential(), kid_url=KID, private_key=KEY)
    verified = vc.verify_credential(token, RESOLVE, now=NOW)
    assert verified.kid == KID and verified.issuer == DID
    assert jwcrypto_verify(token, {"keys": [{**_jwk(KEY), "kid": "k1"}]}) == verified.credential
    assert vc.examine(token, RESOLVE, now=NOW).as_json()["verified"] is True


def _tamper_payload() -> str:
    token = vc.sign_credential(_credential(), kid_url=KID, private_key=KEY)
    header, payload, sig = token.split(".")
    claims = json.loads(_unb64(payload))
    claims["credentialSubject"]["version"] = 4
    return f"{header}.{b64url(orjson.dumps(claims))}.{sig}"


def _with(**changes: Any) -> dict[str, Any]:
    return {**_credential(), **changes}


MUTATIONS: dict[str, tuple[Any, int, str]] = {
    "tampered-payload": (_tamper_payload, 7, "expected a valid EdDSA signature"),
    "modified-signature-bit": (lambda: (lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1])(
        vc.sign_credential(_credential(), kid_url=KID, private_key=KEY)), 7, "invalid"),
    "wrong-key": (lambda: _signed(_credential(), Ed25519PrivateKey.generate()), 7, "expected a valid EdDSA"),
    "wrong-typ": (lambda: _signed(_credential(), header={"alg": "EdDSA", "kid": KID, "typ": "JWT"}), 2,
                  "expected typ vc+jwt, got 'JWT'"),
    "draft-typ-vc-ld+jwt": (lambda: _signed(_credential(), header={"alg": "EdDSA", "kid": KID, "typ": "vc-ld+jwt"}),
                            2, "expected typ vc+jwt"),
    "wrong-cty": (lambda: _signed(_credential(), header={**vc.credential_header(KID), "cty": "json"}), 2,
                  "expected cty vc"),
    "alg-none": (lambda: _signed(_credential(), header={"alg": "none", "kid": KID, "typ": "vc+jwt"}), 2,
                 "expected alg EdDSA or ES256, got 'none'"),
    "alg-none-unsigned": (lambda: _signed(_credential(), header={"alg": "none", "typ": "vc+jwt"}).rsplit(".", 1)[0]
                          + ".", 1, "token signature: expected non-empty"),
    "alg-HS256": (lambda: _signed(_credential(), header={"alg": "HS256", "kid": KID, "typ": "vc+jwt"}), 2,
                  "got 'HS256'"),
    "crit": (lambda: _signed(_credential(), header={**vc.credential_header(KID), "crit": ["exp"]}), 2,
             "expected no crit"),
    "embedded-jwk": (lambda: _signed(_credential(), header={**vc.credential_header(KID), "jwk": _jwk(KEY)}), 2,
                     "kid only"),
    "kid-not-a-did-url": (lambda: _signed(_credential(), kid="k1"), 2, "expected a DID URL"),
    "kid-of-another-did": (lambda: _signed(_credential(), kid="did:web:evil.example#k1"), 4,
                           f"expected a key of the issuer {DID}, got one of did:web:evil.example"),
    "duplicate-header-member": (lambda: (lambda h: f"{h}." + _signed(_credential()).split(".", 1)[1])(
        b64url(b'{"alg":"EdDSA","alg":"none","typ":"vc+jwt","kid":"' + KID.encode() + b'"}')), 2,
        "expected unique member names"),
    "expired": (lambda: _signed(_with(validUntil="2027-02-28T00:00:00Z")), 8, "(expired)"),
    "not-yet-valid": (lambda: _signed(_with(validFrom="2027-06-01T00:00:00Z")), 8, "expected a time before now"),
    "validUntil-before-validFrom": (lambda: _signed(_with(validFrom="2027-01-01T00:00:00Z",
                                                          validUntil="2026-01-01T00:00:00Z")), 8, "expired"),
    "date-without-zone": (lambda: _signed(_with(validFrom="2027-01-01T00:00:00")), 3, "with a time zone"),
    "v1-context": (lambda: _signed(_with(**{"@context": ["https://www.w3.org/2018/credentials/v1"]})), 3,
                   "expected @context starting with https://www.w3.org/ns/credentials/v2"),
    "no-VerifiableCredential-type": (lambda: _signed(_with(type=["BatteryPassportCredential"])), 3,
                                     "expected type a list with VerifiableCredential"),
    "vc-claim": (lambda: _signed(_with(vc={"a": 1})), 3, "expected no JWT claim 'vc'"),
    "iss-conflicts": (lambda: _signed(_with(iss="did:web:other.example")), 3, "expected iss equal to the issuer"),
    "issuer-not-a-did": (lambda: _signed(_with(issuer="https://repo.example")), 3, "expected issuer a DID"),
    "no-subject": (lambda: _signed(_with(credentialSubject=[])), 3, "expected credentialSubject one or more"),
    "payload-array": (lambda: (lambda t: t.split(".")[0] + "." + b64url(b"[1,2]") + "." + t.split(".")[2])(
        _signed(_credential())), 3, "expected a JSON object, got list"),
    "payload-NaN": (lambda: (lambda t: t.split(".")[0] + "." + b64url(b'{"a":NaN}') + "." + t.split(".")[2])(
        _signed(_credential())), 3, "invalid JSON"),
    "one-part": (lambda: "abc", 1, "expected a compact JWS of 3 parts"),
    "two-parts": (lambda: "abc.def", 1, "got 2 parts"),
    "four-parts": (lambda: _signed(_credential()) + ".AAAA", 1, "got 4 parts"),
    "trailing-garbage": (lambda: _signed(_credential()) + "!", 1, "unpadded base64url"),
    "padded-base64": (lambda: _signed(_credential()) + "==", 1, "unpadded base64url"),
    "not-ascii": (lambda: "é.é.é".encode(), 1, "expected ASCII"),
    "empty": (lambda: "", 1, "got 1 part"),
    "oversize": (lambda: "a" * (vc.MAX_TOKEN_BYTES + 1), 1, f"expected at most {vc.MAX_TOKEN_BYTES} bytes"),
    "header-not-json": (lambda: b64url(b"nope") + "." + _signed(_credential()).split(".", 1)[1], 2, "invalid JSON"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_named_mutation_is_refused_at_its_check(name: str) -> None:
    make, step, needle = MUTATIONS[name]
    _fails(make(), step, needle)


def test_key_resolution_failures() -> None:
    token = _signed(_credential())
    _fails(token, 5, "expected a known issuer", vc.StaticResolver({}))
    _fails(token, 5, "expected id did:web:repo.example", vc.StaticResolver({DID: _document(did="did:web:x.example")
                                                                             | {"id": "did:web:x.example"}}))
    retired = _document()
    retired["assertionMethod"] = []  # a retired repository key: still published, no longer an assertion method
    _fails(token, 6, "expected did:web:repo.example#k1 among its assertionMethod", vc.StaticResolver({DID: retired}))
    _fails(token, 6, "expected one verification method", vc.StaticResolver({DID: _document(fragment="k2")}))
    private = _document()
    private["verificationMethod"][0]["publicKeyJwk"]["d"] = b64url(bytes(32))
    _fails(token, 6, "got private key members", vc.StaticResolver({DID: private}))
    foreign = _document()
    foreign["verificationMethod"][0]["controller"] = "did:web:evil.example"
    _fails(token, 6, "expected controller did:web:repo.example", vc.StaticResolver({DID: foreign}))
    ec_key = _document()
    ec_key["verificationMethod"][0]["publicKeyJwk"] = {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}
    _fails(token, 6, "expected an OKP Ed25519 key for EdDSA", vc.StaticResolver({DID: ec_key}))
    relative = _document()
    relative["verificationMethod"][0]["id"] = "#k1"
    relative["assertionMethod"] = ["#k1"]
    assert vc.examine(token, vc.StaticResolver({DID: relative}), now=NOW).ok  # relative ids name the same method

    def unreachable(did: str) -> dict[str, Any]:
        raise VerificationError(f"DID document of {did}: expected an answer, got ConnectError")

    _fails(token, 5, "ConnectError", unreachable)


def test_es256_credential_made_by_jwcrypto_verifies() -> None:
    """A supplier's tooling may sign with ES256: made by jwcrypto, checked by us."""
    key = jwk.JWK.generate(kty="EC", crv="P-256")
    did = "did:web:cells.example"
    public = key.export_public(as_dict=True)
    doc = {"id": did, "verificationMethod": [{"id": f"{did}#p256", "type": "JsonWebKey2020", "controller": did,
                                              "publicKeyJwk": public}], "assertionMethod": [f"{did}#p256"]}
    signer = jws.JWS(orjson.dumps(_credential(did)))
    signer.add_signature(key, None, protected=json.dumps({"alg": "ES256", "typ": "vc+jwt", "kid": f"{did}#p256"}))
    token = signer.serialize(compact=True)
    assert vc.verify_credential(token, vc.StaticResolver({did: doc}), now=NOW).issuer == did
    _fails(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"), 7, "expected a valid ES256",
           vc.StaticResolver({did: doc}))


# ------------------------------------------------------------------------------------------- did:web
@pytest.mark.parametrize(("did", "url"), [
    ("did:web:example.com", "https://example.com/.well-known/did.json"),
    ("did:web:Example.COM", "https://example.com/.well-known/did.json"),
    ("did:web:example.com%3A8443", "https://example.com:8443/.well-known/did.json"),
    ("did:web:w3c-ccg.github.io:user:alice", "https://w3c-ccg.github.io/user/alice/did.json"),
    ("did:web:127.0.0.1%3A8000", "http://127.0.0.1:8000/.well-known/did.json"),
])
def test_did_web_url(did: str, url: str) -> None:
    assert vc.did_web_url(did, http_hosts=frozenset({"127.0.0.1"})) == url


@pytest.mark.parametrize("did", ["did:key:z6Mk", "did:web:", "did:web:a%40b.example", "did:web:exa%2Fmple.com",
                                 "did:web:example.com%3A99999", "did:web:example.com:..", "did:web:example.com::x",
                                 "did:web:-bad.example", "did:web:example.com#frag", "did:web:a b"])
def test_did_web_url_refuses_malformed(did: str) -> None:
    with pytest.raises(VerificationError, match="expected"):
        vc.did_web_url(did)


def test_resolver_refuses_local_addresses_redirects_and_oversize() -> None:
    for did in ("did:web:127.0.0.1", "did:web:localhost%3A8000", "did:web:10.1.2.3", "did:web:169.254.169.254"):
        with pytest.raises(VerificationError, match="expected a host on public addresses"):
            vc.DidWebResolver()(did)

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/away/did.json":
            return httpx.Response(302, headers={"Location": "https://elsewhere.example/.well-known/did.json"})
        if path == "/here/did.json":
            return httpx.Response(301, headers={"Location": "/.well-known/did.json"})
        if path == "/big/did.json":
            return httpx.Response(200, content=b" " * (vc.MAX_DID_DOCUMENT_BYTES + 1))
        if path == "/gone/did.json":
            return httpx.Response(404)
        if path == "/loop/did.json":
            return httpx.Response(302, headers={"Location": "/loop/did.json"})
        return httpx.Response(200, json=_document(did="did:web:issuer.example"))

    resolve = vc.DidWebResolver(transport=httpx.MockTransport(answer), check_addresses=False)
    assert resolve("did:web:issuer.example")["id"] == "did:web:issuer.example"
    assert resolve("did:web:issuer.example:here")["id"] == "did:web:issuer.example"  # same origin: followed
    for path, needle in (("away", "expected no redirect to another origin"), ("big", "expected at most"),
                         ("gone", "expected HTTP 200"), ("loop", "expected at most 3 redirects")):
        with pytest.raises(VerificationError, match=needle):
            resolve(f"did:web:issuer.example:{path}")


def test_credential_subject_id_is_a_uri() -> None:
    assert _credential()["credentialSubject"]["id"] == "urn:uuid:0000-1"
    odd = vc.passport_credential(base_url="https://repo.example/", issuer=DID, dpp_id="plain-id", version=1,
                                 created_at="2027-02-18T10:00:00.000000Z", version_sha256="00" * 32,
                                 view=b"{}", access_groups=[])
    assert odd["credentialSubject"]["id"] == "https://repo.example/api/v1/dpps/plain-id"
    assert vc.parse_datetime("2027-02-18T10:00:00.1234567+02:00", "t") == datetime(
        2027, 2, 18, 8, 0, 0, 123456, tzinfo=UTC)
    assert NOW - timedelta(days=1) < vc.parse_datetime("2027-03-01T00:00:00Z", "t") < NOW


def test_a_version_altered_in_the_database_gets_no_credential(client: httpx.Client, public: httpx.Client,
                                                              passport: dict[str, Any], engine: Any) -> None:
    """The repository key never vouches afresh for bytes changed underneath it."""
    dpp = client.post("/api/v1/dpps", json=passport).json()["dppId"]
    with engine.begin() as conn:
        canonical = conn.execute(text("SELECT canonical FROM passport_versions WHERE dpp_id = :d"),
                                 {"d": dpp}).scalar_one()
        assert '"dppStatus":"active"' in canonical
        altered = canonical.replace('"dppStatus":"active"', '"dppStatus":"draft"')
        conn.execute(text("UPDATE passport_versions SET canonical = :c WHERE dpp_id = :d"), {"c": altered, "d": dpp})
    for http in (client, public):
        r = http.get(f"/api/v1/dpps/{dpp}/credential")
        assert r.status_code == 500 and r.json()["statusCode"] == "ServerErrorIntegrity", r.text
        assert "expected stored bytes hashing to" in r.text
    with engine.begin() as conn:  # re-hashed too: the version's own signature still gives it away
        conn.execute(text("UPDATE passport_versions SET sha256 = :s WHERE dpp_id = :d"),
                     {"s": sha256_hex(altered.encode()), "d": dpp})
    r = client.get(f"/api/v1/dpps/{dpp}/credential?version=1")
    assert r.status_code == 500 and "expected a valid EdDSA signature" in r.text, r.text


def test_a_trickling_did_host_is_cut_off_at_the_overall_deadline() -> None:
    """httpx's timeout is per read: a host sending a byte every 0.2 s would hold the resolver for hours without
    the overall deadline (2 × timeout)."""
    import socket
    import threading
    import time as _time

    from dbp.errors import VerificationError
    from dbp.integrity.credentials import DidWebResolver

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
            while not stop.is_set():
                try:
                    conn.sendall(b" ")
                except OSError:
                    return
                _time.sleep(0.2)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    resolver = DidWebResolver(http_hosts=[f"127.0.0.1:{port}"], timeout=0.5, check_addresses=False)
    started = _time.monotonic()
    try:
        with pytest.raises(VerificationError, match="expected it within 1 s"):
            resolver(f"did:web:127.0.0.1%3A{port}")
    finally:
        stop.set()
        listener.close()
    assert _time.monotonic() - started < 5

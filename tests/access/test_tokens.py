"""Credentials that must not work: forged, expired, wrongly signed, ``alg: none``, wrong issuer, garbage
Bearer values, unknown or revoked API keys — every one a 401 with the EN 18222 error object and never
passport data, never a silent downgrade to the public view. And the ones that must: a valid token, a
valid device key, tokens across a key rotation (no downtime).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey
from sqlalchemy import select, update

from conftest import settle_access_log
from dbp.access import service as access
from dbp.access.models import ApiClient, ApiKey, SigningKey
from dbp.access.principal import Principal, PrincipalKind, Role
from dbp.access.secrets import DEVELOPMENT_SECRET, decrypt
from dbp.access.tokens import TokenService, rotate_signing_keys
from dbp.audit.models import AccessLog


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def header_of(token: str) -> dict[str, Any]:
    return dict(orjson.loads(unb64(token.split(".")[0])))


def claims_of(token: str) -> dict[str, Any]:
    return dict(orjson.loads(unb64(token.split(".")[1])))


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(claims))}.{signature}"


class Setup:
    def __init__(self, server: Any, settings: Any, session_factory: Any, doc: dict[str, Any]) -> None:
        self.server = server
        self.session_factory = session_factory
        self.secret = settings.secret_key or DEVELOPMENT_SECRET
        self.tokens: TokenService = server.config.app.state.tokens
        self.http = httpx.Client(base_url=server.base_url, timeout=30)
        with session_factory.begin() as s:
            org = access.create_org(s, name="operator", operator_id=doc["economicOperatorId"],
                                    role=Role.economic_operator)
            self.client = access.create_client(s, org_id=org.id, role=Role.economic_operator)
        self.org_id = org.id
        self.operator_id = doc["economicOperatorId"]
        self.token = self.issue()
        r = self.http.post("/api/v1/dpps", json=doc, headers=self.auth(self.token))
        assert r.status_code == 201, r.text
        self.doc = r.json()
        self.dpp = self.doc["dppId"]
        with session_factory.begin() as s:
            self.key = access.create_api_key(s, org_id=org.id, dpp_ids=[self.dpp])

    def issue(self) -> str:
        r = self.http.post("/api/v1/auth/token", data={"grant_type": "client_credentials",
                                                       "client_id": self.client.client_id,
                                                       "client_secret": self.client.client_secret})
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        return str(r.json()["access_token"])

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def principal(self) -> Principal:
        return Principal(kind=PrincipalKind.client, subject=self.client.client_id, org_id=self.org_id,
                         operator_id=self.operator_id, role=Role.economic_operator)

    def signing_key(self) -> OKPKey:
        """The active signing key, as the server holds it (decrypted from the database)."""
        with self.session_factory() as s:
            row = s.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))
                            .order_by(SigningKey.created_at.desc())).first()
            assert row is not None
            return OKPKey.import_key(decrypt(self.secret, row.private_encrypted), parameters={"kid": row.kid})

    def sign(self, claims: dict[str, Any], *, key: OKPKey | None = None, kid: str | None = None) -> str:
        key = key or self.signing_key()
        return str(jwt.encode({"alg": "Ed25519", "kid": kid or key.kid}, claims, key, algorithms=["Ed25519"]))

    def close(self) -> None:
        self.http.close()


@pytest.fixture()
def setup(server: Any, settings: Any, session_factory: Any, passport: dict[str, Any]) -> Any:
    s = Setup(server, settings, session_factory, passport)
    yield s
    s.close()


def assert_refused(st: Setup, headers: dict[str, str], *, what: str = "") -> None:
    """401 with the EN 18222 error object on every passport path, and no passport data."""
    upi = st.doc["uniqueProductIdentifier"]
    for method, url, kwargs in (
            ("GET", f"/api/v1/dpps/{st.dpp}", {}),  # the hot read path must not downgrade to public either
            ("GET", f"/api/v1/dppsByProductId/{upi.replace('/', '%2F')}", {}),
            ("GET", f"/api/v1/dpps/{st.dpp}/elements/performanceAndDurability/ratedCapacity", {}),
            ("GET", f"/api/v1/dpps/{st.dpp}/versions/1", {}),
            ("GET", "/api/v1/dpps", {"params": {"operator": st.operator_id}}),
            ("PATCH", f"/api/v1/dpps/{st.dpp}", {"json": {"performanceAndDurability": {"ratedCapacity": 1.5}}}),
            ("GET", "/api/v1/access-log", {}),
            ("GET", "/api/v1/auth/me", {}),
    ):
        cid = f"t-{uuid.uuid4().hex}"
        r = st.http.request(method, url, headers={**headers, "X-Correlation-ID": cid}, **kwargs)
        assert r.status_code == 401, f"{what}: {method} {url} → {r.status_code} {r.text[:300]}"
        assert r.headers["x-correlation-id"] == cid
        body = r.json()
        assert set(body) == {"statusCode", "message"} and body["statusCode"] == "ClientNotAuthorized", body
        msg = body["message"][0]
        assert msg["messageType"] == "Error" and msg["text"] and msg["correlationId"] and msg["timestamp"]
        for secret in (upi, st.doc["generalProductInformation"]["serialNumber"], "testReports", "ratedCapacity"):
            assert secret not in r.text, f"{what}: {method} {url} leaks {secret}"
        assert "x-dpp-access" not in r.headers and "etag" not in r.headers
        # the refused attempt is in the access log, denied, with the reason it was given
        settle_access_log(st.session_factory.kw["bind"])
        with st.session_factory() as s:
            rows = list(s.scalars(select(AccessLog).where(AccessLog.request_id == cid)))
        assert len(rows) == 1, f"{what}: {method} {url}: {len(rows)} access-log records"
        assert rows[0].outcome == "denied" and rows[0].reason == msg["text"]
        assert rows[0].principal_kind == "anonymous" and rows[0].org_id is None
    assert st.doc == st.http.get(f"/api/v1/dpps/{st.dpp}", headers=st.auth(st.token)).json()  # nothing changed


# ------------------------------------------------------------------------------------------- valid ones
def test_valid_token_and_device_key_work(setup: Setup) -> None:
    st = setup
    r = st.http.get(f"/api/v1/dpps/{st.dpp}", headers=st.auth(st.token))
    assert r.status_code == 200 and r.json() == st.doc
    assert r.headers["x-dpp-access"] == "authorities, legitimateInterest, legitimateInterestAndAuthorities, public"
    header, claims = header_of(st.token), claims_of(st.token)
    assert header["alg"] == "Ed25519" and header["kid"] == st.signing_key().kid
    assert claims["iss"] == st.tokens.issuer and claims["sub"] == st.client.client_id
    assert claims["exp"] - claims["iat"] == st.tokens.ttl and claims["role"] == "economicOperator"
    me = st.http.get("/api/v1/auth/me", headers=st.auth(st.token)).json()
    assert me["orgId"] == st.org_id and me["operatorId"] == st.operator_id
    device = st.http.get(f"/api/v1/dpps/{st.dpp}/elements/performanceAndDurability/ratedCapacity",
                         headers={"X-API-Key": st.key.api_key})
    assert device.status_code == 200, device.text


def test_wrong_client_secret_gets_no_token(setup: Setup) -> None:
    st = setup
    for form in ({"grant_type": "client_credentials", "client_id": st.client.client_id, "client_secret": "x"},
                 {"grant_type": "client_credentials", "client_id": "dbpc_unknown", "client_secret": "x"},
                 {"grant_type": "client_credentials", "client_id": "", "client_secret": ""}):
        r = st.http.post("/api/v1/auth/token", data=form)
        assert r.status_code == 401 and r.json()["statusCode"] == "ClientNotAuthorized", r.text
        assert "access_token" not in r.text
    with st.session_factory.begin() as s:
        s.execute(update(ApiClient).where(ApiClient.client_id == st.client.client_id)
                  .values(revoked_at="2026-01-01T00:00:00.000000Z"))
    r = st.http.post("/api/v1/auth/token", data={"grant_type": "client_credentials",
                                                 "client_id": st.client.client_id,
                                                 "client_secret": st.client.client_secret})
    assert r.status_code == 401, r.text  # a revoked client gets no new token


# ------------------------------------------------------------------------------------------ refused ones
def test_forged_token_signed_by_another_key(setup: Setup) -> None:
    st = setup
    claims = claims_of(st.token)
    real_kid = header_of(st.token)["kid"]
    attacker = OKPKey.generate_key("Ed25519", parameters={"kid": real_kid})
    assert_refused(st, st.auth(st.sign(claims, key=attacker, kid=real_kid)), what="forged, same kid")
    assert_refused(st, st.auth(st.sign(claims, key=attacker, kid="k-attacker")), what="forged, own kid")
    commission = {**claims, "role": "commission", "jti": uuid.uuid4().hex}
    assert_refused(st, st.auth(st.sign(commission, key=attacker, kid=real_kid)), what="forged authority")


def test_expired_token(setup: Setup) -> None:
    st = setup
    expired, _ = st.tokens.issue(st.principal(), now=time.time() - st.tokens.ttl - 5)
    assert claims_of(expired)["exp"] < time.time()
    assert_refused(st, st.auth(expired), what="expired")


def test_token_expires_even_when_cached(setup: Setup) -> None:
    """A verified token is cached; the cache must still honour its expiry."""
    st = setup
    short, _ = st.tokens.issue(st.principal(), now=time.time() - st.tokens.ttl + 2)
    r = st.http.get(f"/api/v1/dpps/{st.dpp}", headers=st.auth(short))
    assert r.status_code == 200, r.text
    time.sleep(max(0.0, claims_of(short)["exp"] - time.time()) + 0.5)
    r = st.http.get(f"/api/v1/dpps/{st.dpp}", headers=st.auth(short))
    assert r.status_code == 401 and "expired" in r.json()["message"][0]["text"], r.text


def test_wrong_signature(setup: Setup) -> None:
    st = setup
    head, payload, sig = st.token.split(".")
    raw = bytearray(unb64(sig))
    raw[len(raw) // 2] ^= 0x01
    assert_refused(st, st.auth(f"{head}.{payload}.{b64(bytes(raw))}"), what="flipped signature bit")
    assert_refused(st, st.auth(f"{head}.{payload}."), what="signature removed")
    # the claims changed, the signature kept: another role, another operator, a later expiry
    for change in ({"role": "commission"}, {"opid": "urn:dbp:test:someone-else"}, {"exp": claims_of(st.token)["exp"]
                                                                                     + 86400}):
        tampered = {**claims_of(st.token), **change}
        assert_refused(st, st.auth(f"{head}.{b64(orjson.dumps(tampered))}.{sig}"), what=f"tampered {change}")


def test_alg_none_and_algorithm_confusion(setup: Setup) -> None:
    st = setup
    header, claims = header_of(st.token), claims_of(st.token)
    for alg in ("none", "None", "NONE", ""):
        assert_refused(st, st.auth(unsigned({**header, "alg": alg}, claims)), what=f"alg {alg!r}")
    assert_refused(st, st.auth(unsigned({"alg": "none"}, claims)), what="alg none without kid")
    # HS256 keyed with the public key (the classic confusion of asymmetric and symmetric algorithms)
    public_x = st.signing_key().as_dict(private=False)["x"]
    for secret in (public_x.encode(), unb64(public_x)):
        signing_input = f"{b64(orjson.dumps({**header, 'alg': 'HS256'}))}.{b64(orjson.dumps(claims))}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert_refused(st, st.auth(f"{signing_input}.{b64(mac)}"), what="HS256 with the public key")


def test_wrong_issuer_and_missing_claims(setup: Setup) -> None:
    st = setup
    elsewhere = TokenService(st.session_factory, issuer="https://evil.example", secret_key=st.secret,
                             ttl_seconds=600)
    token, _ = elsewhere.issue(st.principal())  # our own key, another issuer
    assert header_of(token)["kid"] == header_of(st.token)["kid"]
    assert_refused(st, st.auth(token), what="wrong issuer")
    claims = claims_of(st.token)
    for name in ("iss", "exp", "sub"):
        partial = {k: v for k, v in claims.items() if k != name}
        assert_refused(st, st.auth(st.sign(partial)), what=f"no {name}")
    assert_refused(st, st.auth(st.sign({**claims, "role": "emperor"})), what="unknown role")
    assert_refused(st, st.auth(st.sign({**claims, "kind": "root"})), what="unknown kind")
    assert_refused(st, st.auth(st.sign({**claims, "exp": "never"})), what="exp not a number")


@pytest.mark.parametrize("value", [
    "Bearer", "Bearer  x", "bearer garbage", "Bearer garbage", "Bearer a.b.c", "Bearer ..",
    "Bearer a.b", "Bearer a.b.c.d", "Bearer !!!.@@@.###", "Bearer eyJhbGciOiJFZDI1NTE5In0.e30.",
    "Bearer " + "a" * 5000, "Bearer " + "A" * 1500 + "." + "B" * 1500 + "." + "C" * 1500, "Basic dXNlcjpwYXNz",
    "Token abc", "abc", "Bearer null", "Bearer undefined", "Bearer {}",
], ids=lambda v: v[:24])
def test_garbage_bearer_values(setup: Setup, value: str) -> None:
    assert_refused(setup, {"Authorization": value}, what=value[:40])


def test_valid_token_with_trailing_garbage(setup: Setup) -> None:
    st = setup
    assert_refused(st, {"Authorization": f"Bearer {st.token} extra"}, what="trailing garbage")
    assert_refused(st, {"Authorization": f"Bearer {st.token}x"}, what="one character more")
    assert_refused(st, {"Authorization": f"Bearer {st.token[:-1]}"}, what="one character less")


def test_unknown_malformed_and_revoked_api_keys(setup: Setup) -> None:
    st = setup
    for key in ("garbage", "dbpk_", "dbpk_0123456789abcdef_wrong", f"dbpk_{st.key.key_id}_wrong-secret",
                f"dbpk_{'0' * 16}_{st.key.api_key.split('_', 2)[2]}", st.key.api_key + "x", "x" * 3000):
        assert_refused(st, {"X-API-Key": key}, what=f"API key {key[:30]}")
    ok = st.http.get(f"/api/v1/dpps/{st.dpp}/versions", headers={"X-API-Key": st.key.api_key})
    assert ok.status_code == 200
    with st.session_factory.begin() as s:
        s.execute(update(ApiKey).where(ApiKey.key_id == st.key.key_id).values(revoked_at="2026-01-01T00:00:00.000000Z"))
    assert_refused(st, {"X-API-Key": st.key.api_key}, what="revoked API key")


def test_bad_token_with_good_api_key_is_still_refused(setup: Setup) -> None:
    """A bad Authorization header is not rescued by another credential (nor by being absent)."""
    st = setup
    assert_refused(st, {"Authorization": "Bearer garbage", "X-API-Key": st.key.api_key}, what="bad bearer + key")


def test_refused_credentials_on_a_passport_read_are_logged(setup: Setup) -> None:
    st = setup
    forged = st.sign(claims_of(st.token), key=OKPKey.generate_key("Ed25519"), kid=header_of(st.token)["kid"])
    cid = f"t-{uuid.uuid4().hex}"
    r = st.http.get(f"/api/v1/dpps/{st.dpp}", headers={**st.auth(forged), "X-Correlation-ID": cid})
    assert r.status_code == 401
    settle_access_log(st.session_factory.kw["bind"])
    with st.session_factory() as s:
        rows = list(s.scalars(select(AccessLog).where(AccessLog.request_id == cid)))
    assert len(rows) == 1 and rows[0].outcome == "denied" and rows[0].dpp_id == st.dpp
    assert rows[0].reason == r.json()["message"][0]["text"]


# ------------------------------------------------------------------------------------------- key rotation
def test_key_rotation_without_downtime(setup: Setup) -> None:
    st = setup
    old_token = st.token
    old_kid = header_of(old_token)["kid"]
    with st.session_factory.begin() as s:
        new_kid = rotate_signing_keys(s, secret_key=st.secret)
    st.tokens.reload()
    assert new_kid != old_kid
    r = st.http.get(f"/api/v1/dpps/{st.dpp}", headers=st.auth(old_token))
    assert r.status_code == 200 and r.json() == st.doc, r.text  # tokens of the retired key keep working
    new_token = st.issue()
    assert header_of(new_token)["kid"] == new_kid
    r = st.http.get(f"/api/v1/dpps/{st.dpp}", headers=st.auth(new_token))
    assert r.status_code == 200 and r.json() == st.doc, r.text
    kids = {k["kid"] for k in st.http.get("/api/v1/auth/jwks").json()["keys"]}
    assert {old_kid, new_kid} <= kids
    assert all("d" not in k for k in st.http.get("/api/v1/auth/jwks").json()["keys"])  # public keys only
    # forging with the retired kid still fails
    forged = st.sign(claims_of(old_token), key=OKPKey.generate_key("Ed25519"), kid=old_kid)
    assert_refused(st, st.auth(forged), what="forged with the retired kid")


def test_rotation_in_another_process_is_picked_up(setup: Setup) -> None:
    """Another process rotates and issues; this server verifies the new kid without being told."""
    st = setup
    other = TokenService(st.session_factory, issuer=st.tokens.issuer, secret_key=st.secret, ttl_seconds=600)
    with st.session_factory.begin() as s:
        new_kid = rotate_signing_keys(s, secret_key=st.secret)
    token, _ = other.issue(st.principal())
    assert header_of(token)["kid"] == new_kid
    r = st.http.get(f"/api/v1/dpps/{st.dpp}", headers=st.auth(token))
    assert r.status_code == 200, r.text
    r = st.http.get(f"/api/v1/dpps/{st.dpp}", headers=st.auth(st.token))  # and the older token still works
    assert r.status_code == 200, r.text

"""Tokens from an external OpenID Connect provider: its keys fetched over real HTTP from a JWKS URL."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey

from conftest import ServerThread, _free_port
from dbp.access import service as access
from dbp.access.principal import Role
from dbp.app import create_app
from dbp.config import Settings
from dbp.passports import service as passports

ISSUER = "https://idp.example.test"
IDP_KEY = OKPKey.generate_key("Ed25519", parameters={"kid": "idp-1"})


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    body = orjson.dumps(KeySet([IDP_KEY]).as_dict(private=False))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks"
    server.shutdown()


@pytest.fixture()
def oidc_server(settings: Settings, jwks_url: str) -> Iterator[str]:
    s = Settings(database_url=settings.database_url, environment="test", port=_free_port(), oidc_issuer=ISSUER,
                 oidc_jwks_url=jwks_url)
    with ServerThread(create_app(s), s.port) as srv:
        yield srv.base_url


def idp_token(**claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"alg": "Ed25519", "kid": "idp-1"},
                      {"iss": ISSUER, "sub": "alice", "iat": now, "exp": now + 300, **claims}, IDP_KEY,
                      algorithms=["Ed25519"])


def test_provider_token_reads_as_the_registered_organisation(
        oidc_server: str, session_factory: Any, passport: dict[str, Any]) -> None:
    with session_factory.begin() as s:
        access.create_org(s, name="IdP recycler", operator_id="urn:dbp:test:idp-recycler", role=Role.recycler)
        dpp = passports.create_passport(s, body=orjson.dumps(passport)).dpp_id
    url = f"{oidc_server}/api/v1/dpps/{dpp}"
    ok = httpx.get(url, headers={"Authorization": f"Bearer {idp_token(dbp_org='urn:dbp:test:idp-recycler')}",
                                 "X-Purpose": "dismantling"})
    assert ok.status_code == 200, ok.text
    assert "legitimateInterestAndAuthorities" in ok.headers["x-dpp-access"]
    assert "dismantlingInformation" in ok.json()["circularity"]
    unknown_org = httpx.get(url, headers={"Authorization": f"Bearer {idp_token(dbp_org='urn:nobody')}"})
    assert unknown_org.status_code == 401 and "not registered" in unknown_org.text
    no_org = httpx.get(url, headers={"Authorization": f"Bearer {idp_token()}"})
    assert no_org.status_code == 401 and "dbp_org" in no_org.text
    other_key = OKPKey.generate_key("Ed25519", parameters={"kid": "idp-1"})
    forged = jwt.encode({"alg": "Ed25519", "kid": "idp-1"}, {"iss": ISSUER, "sub": "mallory", "exp": int(time.time())
                        + 60, "dbp_org": "urn:dbp:test:idp-recycler"}, other_key, algorithms=["Ed25519"])
    assert httpx.get(url, headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    expired = idp_token(dbp_org="urn:dbp:test:idp-recycler", exp=int(time.time()) - 10)
    assert httpx.get(url, headers={"Authorization": f"Bearer {expired}"}).status_code == 401

"""Hardening: rate limits (429 + Retry-After), URL and header limits, security headers, CORS, secrets.

Unit tests drive the ASGI middleware directly with a fake clock; the rest talk real HTTP to uvicorn —
the session server (``server``/``client``: default headers, no CORS) and a second server on the same
database with low limits and a CORS allow-list.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from conftest import ServerThread, _free_port
from dbp.app import create_app
from dbp.config import Settings
from dbp.hardening import DOCS_CSP, HTML_CSP, Hardening, constant_time_equals
from dbp.passports.reads import FastCurrentReads
from dbp.passports.service import StoredVersion, create_passport

API = "/api/v1"
ALLOWED = "https://app.example"
OTHER = "https://evil.example"
SECURITY = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "x-frame-options": "DENY"}
GOOD_SECRET = "kP3v9-Qz_7sLw2XbN0rTyE5uJm8HcD4aGfV6"


class FakeClock:
    def __init__(self) -> None:
        self.now = 4_000_000.0  # a host up for ~46 days: float rounding must not cost a token

    def __call__(self) -> float:
        return self.now


def settings_for(**overrides: Any) -> Settings:
    return Settings(environment="test", database_url="sqlite://", **overrides)


class Result:
    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.raw, self.body = status, headers, body

    def get_list(self, name: str) -> list[str]:
        return [v.decode() for k, v in self.raw if k.decode().lower() == name]

    def get(self, name: str) -> str | None:
        values = self.get_list(name)
        assert len(values) <= 1, (name, values)
        return values[0] if values else None

    def json(self) -> Any:
        return orjson.loads(self.body)


def inner_app(content_type: bytes = b"application/json", extra: list[tuple[bytes, bytes]] | None = None) -> Any:
    calls: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope)
        headers = [(b"content-type", content_type), (b"content-length", b"2"), *(extra or [])]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    app.calls = calls  # type: ignore[attr-defined]
    return app


def call(mw: Any, method: str = "GET", path: str = "/api/v1/dpps/x", headers: dict[str, str] | None = None,
         client: str = "10.0.0.1", query: bytes = b"",
         raw_headers: list[tuple[bytes, bytes]] | None = None) -> Result:
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": query,
             "client": (client, 40000), "headers": raw_headers if raw_headers is not None else
             [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(mw(scope, receive, send))
    start = sent[0]
    assert start["type"] == "http.response.start"
    return Result(start["status"], list(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:]))


def assert_result_object(r: Result | httpx.Response, status: int, status_code: str, cid: str | None = None) -> None:
    assert (r.status_code if isinstance(r, httpx.Response) else r.status) == status
    body = r.json()
    assert body["statusCode"] == status_code
    (message,) = body["message"]
    assert message["messageType"] == "Error" and message["text"] and message["timestamp"]
    if isinstance(r, httpx.Response):
        assert r.status_code == status
        assert r.headers.get_list("x-correlation-id") == [message["correlationId"]]
        assert r.headers["content-type"].startswith("application/json")
    else:
        assert r.get_list("x-correlation-id") == [message["correlationId"]]
    if cid is not None:
        assert message["correlationId"] == cid


# --- rate limits (fake clock) -------------------------------------------------------------------------------------


def test_address_limit_refuses_after_the_burst_and_refills() -> None:
    clock = FakeClock()
    mw = Hardening(inner_app(), settings_for(rate_limit_per_address=10, rate_limit_per_address_burst=5), clock=clock)
    assert [call(mw).status for _ in range(5)] == [200] * 5
    refused = call(mw, headers={"X-Correlation-ID": "limit-1"})
    assert_result_object(refused, 429, "ClientErrorTooManyRequests", "limit-1")
    assert refused.get("retry-after") == "1"
    for name, value in SECURITY.items():  # a refusal is a response like any other
        assert refused.get(name) == value
    assert call(mw, client="10.0.0.2").status == 200  # another address has its own bucket
    clock.now += 0.1  # one token back (10 per second)
    assert call(mw).status == 200
    assert call(mw).status == 429
    clock.now += 0.5
    assert [call(mw).status for _ in range(6)] == [200] * 5 + [429]


def test_retry_after_is_whole_seconds_until_a_token_is_back() -> None:
    clock = FakeClock()
    mw = Hardening(inner_app(), settings_for(rate_limit_per_address=0.1, rate_limit_per_address_burst=1), clock=clock)
    assert call(mw).status == 200
    assert call(mw).get("retry-after") == "10"
    clock.now += 7.5
    assert call(mw).get("retry-after") == "3"  # 2.5 s, rounded up
    clock.now += 2.5
    assert call(mw).status == 200


def test_principals_from_one_address_are_limited_separately() -> None:
    clock = FakeClock()
    app = inner_app()
    mw = Hardening(app, settings_for(rate_limit_per_principal=1, rate_limit_per_principal_burst=3), clock=clock)
    alice, bob = {"Authorization": "Bearer alice-token"}, {"Authorization": "Bearer bob-token"}
    assert [call(mw, headers=alice).status for _ in range(4)] == [200, 200, 200, 429]
    assert call(mw, headers=alice).get("retry-after") == "1"
    assert [call(mw, headers=bob).status for _ in range(3)] == [200] * 3  # same address, own bucket
    assert call(mw, headers=bob).status == 429
    device = {"X-API-Key": "dbpk_device-1"}
    assert [call(mw, headers=device).status for _ in range(4)] == [200, 200, 200, 429]
    assert call(mw).status == 200  # anonymous: only the address bucket, which is far from empty
    assert call(mw, headers=alice, client="10.9.9.9").status == 429  # the credential's bucket, from anywhere
    clock.now += 1.0
    assert call(mw, headers=alice).status == 200
    assert call(mw, headers=alice).status == 429
    assert len(app.calls) == 3 + 3 + 3 + 1 + 1


def test_credentials_do_not_escape_the_address_limit() -> None:
    mw = Hardening(inner_app(), settings_for(rate_limit_per_address=1, rate_limit_per_address_burst=4),
                   clock=FakeClock())
    statuses = [call(mw, headers={"Authorization": f"Bearer forged-{i}"}).status for i in range(6)]
    assert statuses == [200] * 4 + [429] * 2


def test_a_refused_principal_does_not_use_up_the_address() -> None:
    mw = Hardening(inner_app(), settings_for(rate_limit_per_address=1, rate_limit_per_address_burst=3,
                                             rate_limit_per_principal=1, rate_limit_per_principal_burst=1),
                   clock=FakeClock())
    assert call(mw, headers={"X-API-Key": "k"}).status == 200
    assert [call(mw, headers={"X-API-Key": "k"}).status for _ in range(5)] == [429] * 5
    assert [call(mw).status for _ in range(3)] == [200, 200, 429]


def test_bucket_memory_is_bounded() -> None:
    clock = FakeClock()
    mw = Hardening(inner_app(), settings_for(rate_limit_max_keys=100), clock=clock)
    for i in range(1000):
        assert call(mw, client=f"10.1.{i // 256}.{i % 256}", headers={"Authorization": f"Bearer {i}"}).status == 200
    assert len(mw.by_address) == 100 and len(mw.by_principal) == 100


def test_ipv6_clients_are_limited_per_64_prefix() -> None:
    mw = Hardening(inner_app(), settings_for(rate_limit_per_address=1, rate_limit_per_address_burst=2),
                   clock=FakeClock())
    assert call(mw, client="2001:db8:1:2::1").status == 200
    assert call(mw, client="2001:db8:1:2:ffff::9").status == 200
    assert call(mw, client="2001:0db8:0001:0002:0000:0000:0000:0042").status == 429  # same /64
    assert call(mw, client="2001:db8:1:3::1").status == 200  # the next /64
    assert call(mw, client="::ffff:192.0.2.7").status == 200  # IPv4-mapped: the IPv4 address's bucket
    assert call(mw, client="192.0.2.7").status == 200
    assert call(mw, client="192.0.2.7").status == 429


def test_trusted_proxies_name_the_client() -> None:
    mw = Hardening(inner_app(), settings_for(rate_limit_per_address=1, rate_limit_per_address_burst=1,
                                             trusted_proxies="10.0.0.0/8, 192.0.2.1"), clock=FakeClock())

    def via(peer: str, forwarded: str | None) -> int:
        return call(mw, client=peer, headers={"X-Forwarded-For": forwarded} if forwarded else {}).status

    assert via("10.0.0.5", "198.51.100.1") == 200
    assert via("10.0.0.6", "198.51.100.1") == 429  # the same client through another proxy
    assert via("10.0.0.5", "198.51.100.2") == 200  # another client through the same proxy
    assert via("10.0.0.5", "1.1.1.1, 198.51.100.3, 10.9.9.9") == 200  # right-most untrusted hop: .3
    assert via("10.0.0.5", "2.2.2.2, 198.51.100.3") == 429  # a spoofed left part does not help
    assert via("198.51.100.9", "203.0.113.1") == 200  # not a proxy: its header is ignored
    assert via("198.51.100.9", "203.0.113.2") == 429
    assert via("192.0.2.1", None) == 200  # a proxy without the header is itself the client
    assert via("192.0.2.1", None) == 429
    with pytest.raises(ValueError, match="DBP_TRUSTED_PROXIES"):
        settings_for(trusted_proxies="10.0.0.0/8, proxy.internal")


def test_limits_can_be_switched_off() -> None:
    mw = Hardening(inner_app(), settings_for(rate_limit_enabled=False, rate_limit_per_address_burst=1),
                   clock=FakeClock())
    assert {call(mw).status for _ in range(20)} == {200}


# --- URL and header limits ----------------------------------------------------------------------------------------


def test_overlong_url_is_414_and_many_headers_431() -> None:
    app = inner_app()
    mw = Hardening(app, settings_for(max_url_bytes=1024, max_header_count=20, max_header_bytes=4096))
    assert call(mw, path="/" + "a" * 1023).status == 200
    assert_result_object(call(mw, path="/" + "a" * 1024), 414, "ClientErrorUriTooLong")
    assert_result_object(call(mw, path="/a", query=b"q=" + b"x" * 1022), 414, "ClientErrorUriTooLong")
    assert call(mw, raw_headers=[(f"x-h{i}".encode(), b"v") for i in range(20)]).status == 200
    assert_result_object(call(mw, raw_headers=[(f"x-h{i}".encode(), b"v") for i in range(21)]), 431,
                         "ClientErrorRequestHeaderFieldsTooLarge")
    assert_result_object(call(mw, raw_headers=[(b"x-big", b"v" * 4096)]), 431, "ClientErrorRequestHeaderFieldsTooLarge")
    assert len(app.calls) == 2


# --- security headers ---------------------------------------------------------------------------------------------


def test_security_headers_json_html_and_no_duplicates() -> None:
    mw = Hardening(inner_app(), settings_for())
    r = call(mw)
    for name, value in SECURITY.items():
        assert r.get(name) == value
    assert r.get("cross-origin-resource-policy") == "same-site"
    assert r.get("content-security-policy") is None  # JSON is not rendered
    assert r.get("strict-transport-security") is None  # not served over https
    assert r.get("access-control-allow-origin") is None and r.get("vary") is None  # no CORS configured

    html = call(Hardening(inner_app(b"text/html; charset=utf-8"), settings_for()))
    assert html.get("content-security-policy") == HTML_CSP
    docs = call(Hardening(inner_app(b"text/html; charset=utf-8"), settings_for()), path="/docs")
    assert docs.get("content-security-policy") == DOCS_CSP

    own = [(b"X-Frame-Options", b"SAMEORIGIN"), (b"content-security-policy", b"default-src 'none'")]
    r = call(Hardening(inner_app(b"text/html", own), settings_for()))
    assert r.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert r.get("content-security-policy") == "default-src 'none'"


def test_hsts_only_behind_https() -> None:
    r = call(Hardening(inner_app(), settings_for(public_base_url="https://dpp.example")))
    assert r.get("strict-transport-security") == "max-age=31536000"


def test_shared_header_lists_are_not_mutated() -> None:
    shared = [(b"etag", b'"x"')]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": shared})
        await send({"type": "http.response.body", "body": b""})

    mw = Hardening(app, settings_for())
    call(mw)
    call(mw)
    assert shared == [(b"etag", b'"x"')]


# --- CORS (unit) --------------------------------------------------------------------------------------------------


def test_cors_allow_list() -> None:
    app = inner_app()
    mw = Hardening(app, settings_for(cors_origins=f"{ALLOWED}, https://other.example:8443/"))
    pre = call(mw, "OPTIONS", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "PATCH",
                                       "Access-Control-Request-Headers": "authorization, if-match"})
    assert pre.status == 204 and pre.body == b"" and not app.calls
    assert pre.get("access-control-allow-origin") == ALLOWED
    methods = {m.strip() for m in (pre.get("access-control-allow-methods") or "").split(",")}
    assert methods == {"GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"}
    allowed = {h.strip().lower() for h in (pre.get("access-control-allow-headers") or "").split(",")}
    assert allowed == {"authorization", "content-type", "if-match", "if-none-match", "x-api-key",
                       "x-correlation-id", "x-purpose"}
    assert pre.get("access-control-max-age") == "600" and pre.get("vary") == "Origin"

    simple = call(mw, headers={"Origin": "https://other.example:8443"})
    assert simple.get("access-control-allow-origin") == "https://other.example:8443"
    exposed = {h.strip().lower() for h in (simple.get("access-control-expose-headers") or "").split(",")}
    assert exposed == {"etag", "x-dpp-version", "x-correlation-id", "location", "retry-after"}
    assert simple.get("vary") == "Origin" and simple.get("cross-origin-resource-policy") == "cross-origin"

    for origin in (OTHER, "null", "https://app.example.evil.example", "http://app.example"):
        r = call(mw, headers={"Origin": origin})
        assert r.status == 200 and r.get("access-control-allow-origin") is None
        assert r.get("access-control-expose-headers") is None
        assert r.get("cross-origin-resource-policy") == "same-site" and r.get("vary") == "Origin"
    refused = call(mw, "OPTIONS", headers={"Origin": OTHER, "Access-Control-Request-Method": "GET"})
    assert refused.get("access-control-allow-origin") is None and len(app.calls) == 6  # passed on, not answered


def test_cors_vary_merges_with_the_apps_vary() -> None:
    mw = Hardening(inner_app(extra=[(b"vary", b"Accept, Origin")]), settings_for(cors_origins=ALLOWED))
    assert call(mw, headers={"Origin": ALLOWED}).get_list("vary") == ["Accept, Origin"]
    mw = Hardening(inner_app(extra=[(b"vary", b"Accept")]), settings_for(cors_origins=ALLOWED))
    assert call(mw, headers={"Origin": ALLOWED}).get_list("vary") == ["Accept", "Origin"]


def test_cors_wildcard_for_public_reads() -> None:
    mw = Hardening(inner_app(), settings_for(cors_origins="*"))
    for headers in ({"Origin": OTHER}, {}):
        r = call(mw, headers=headers)
        assert r.get("access-control-allow-origin") == "*" and r.get("vary") is None
        assert r.get("cross-origin-resource-policy") == "cross-origin"
    pre = call(mw, "OPTIONS", headers={"Origin": OTHER, "Access-Control-Request-Method": "GET"})
    assert pre.status == 204 and pre.get("access-control-allow-origin") == "*"


def test_a_429_is_readable_by_an_allowed_origin() -> None:
    mw = Hardening(inner_app(), settings_for(cors_origins=ALLOWED, rate_limit_per_address_burst=1), clock=FakeClock())
    call(mw)
    r = call(mw, headers={"Origin": ALLOWED})
    assert r.status == 429 and r.get("access-control-allow-origin") == ALLOWED
    assert "retry-after" in (r.get("access-control-expose-headers") or "").lower()


def test_no_origin_header_means_no_cors_headers_even_when_configured() -> None:
    r = call(Hardening(inner_app(), settings_for(cors_origins=ALLOWED)))
    assert r.get("access-control-allow-origin") is None and r.get("vary") == "Origin"


# --- settings -----------------------------------------------------------------------------------------------------


PG = "postgresql://dbp@db.internal:5432/dbp"


@pytest.mark.parametrize("key", [None, "", "short-but-random-Xy7", "x" * 64, "changeme" * 4,
                                 "please-change-me-please-change-me-now", "CHANGE-ME-0123456789-abcdefghijklmnop",
                                 "insecure-development-key-do-not-use-in-production", "ab" * 20,
                                 "0123456789abcdef0123456789abcdef"])
def test_production_refuses_missing_short_or_default_secret_keys(key: str | None) -> None:
    with pytest.raises(ValueError, match="DBP_SECRET_KEY"):
        Settings(environment="production", database_url=PG, secret_key=key)


def test_production_refuses_the_development_secret_the_code_falls_back_to() -> None:
    from dbp.access.secrets import DEVELOPMENT_SECRET

    with pytest.raises(ValueError, match="DBP_SECRET_KEY"):
        Settings(environment="production", database_url=PG, secret_key=DEVELOPMENT_SECRET)


def test_production_accepts_a_real_secret_key_and_development_needs_none(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(environment="production", database_url=PG, secret_key=GOOD_SECRET)
    assert s.secret_key == GOOD_SECRET and GOOD_SECRET not in repr(s)
    assert Settings(environment="development").secret_key is None
    monkeypatch.setenv("DBP_ENVIRONMENT", "production")
    monkeypatch.setenv("DBP_DATABASE_URL", PG)
    with pytest.raises(ValueError, match="DBP_SECRET_KEY"):
        Settings()
    monkeypatch.setenv("DBP_SECRET_KEY", GOOD_SECRET)
    assert Settings().secret_key == GOOD_SECRET


def test_cors_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBP_CORS_ORIGINS", " https://App.example/ ,http://localhost:5173,, ")
    assert Settings().cors_origins == ["https://app.example", "http://localhost:5173"]
    monkeypatch.setenv("DBP_CORS_ORIGINS", "*")
    assert Settings().cors_origins == ["*"]
    monkeypatch.delenv("DBP_CORS_ORIGINS")
    assert Settings().cors_origins == []
    for bad in ("app.example", "https://app.example/path", "https://user@app.example"):
        with pytest.raises(ValueError, match="DBP_CORS_ORIGINS"):
            Settings(cors_origins=bad)


def test_constant_time_equals() -> None:
    assert constant_time_equals("s3cret", "s3cret") and constant_time_equals(b"s3cret", "s3cret")
    assert not constant_time_equals("s3cret", "s3creT") and not constant_time_equals("s3cret", "s3cret2")
    assert not constant_time_equals("", "x") and constant_time_equals("", b"")
    assert constant_time_equals("clé", "clé".encode()) and not constant_time_equals("clé", "cle")


# --- cost ---------------------------------------------------------------------------------------------------------


def test_overhead_is_a_few_microseconds() -> None:
    """Hardening around a trivial ASGI app vs the bare app; printed, and bounded loosely for slow CI hosts."""

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    # limits high enough to admit every request: the limiter runs but never refuses
    wrapped = Hardening(bare, settings_for(cors_origins=ALLOWED, rate_limit_per_address=1e9,
                                           rate_limit_per_address_burst=10**9))
    scope = {"type": "http", "method": "GET", "path": "/api/v1/dpps/urn:uuid:x", "raw_path": b"/api/v1/dpps/urn:uuid:x",
             "query_string": b"", "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench/1"), (b"accept", b"*/*"),
                         (b"accept-encoding", b"gzip"), (b"connection", b"keep-alive")]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        pass

    async def run(app: Any, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await app(scope, receive, send)
        return (time.perf_counter() - t0) / n

    async def measure() -> float:
        await run(wrapped, 2000)
        return min([await run(wrapped, 20000) - await run(bare, 20000) for _ in range(3)])

    overhead_us = asyncio.run(measure()) * 1e6
    print(f"Hardening overhead: {overhead_us:.2f} µs per request")
    assert overhead_us < 30


# --- real HTTP ----------------------------------------------------------------------------------------------------


def assert_hardened(r: httpx.Response) -> None:
    for name, value in SECURITY.items():
        assert r.headers.get_list(name) == [value], (name, r.headers)
    assert r.headers.get_list("cross-origin-resource-policy") == ["same-site"]
    assert "strict-transport-security" not in r.headers


def test_the_app_is_wrapped_outermost(server: ServerThread) -> None:
    stack = server.config.app.build_middleware_stack()  # type: ignore[union-attr]
    assert isinstance(stack, Hardening) and isinstance(stack.fast, FastCurrentReads)


def test_fast_path_headers_are_the_routes_headers() -> None:
    version = StoredVersion("urn:uuid:x", 12, "2027-02-18T10:00:00.000000Z", "ab" * 32, b"{}", "EO-1")
    assert version.raw_headers() == [(k.lower().encode(), v.encode()) for k, v in version.headers().items()]


def test_headers_on_every_kind_of_response(server: ServerThread, session_factory: Any,
                                           passport: dict[str, Any]) -> None:
    with session_factory.begin() as session:  # stored directly: writing over HTTP needs credentials
        dpp = create_passport(session, body=orjson.dumps(passport)).dpp_id
    with httpx.Client(base_url=server.base_url, timeout=30) as client:  # anonymous: the fast path serves it
        fast = client.get(f"{API}/dpps/{dpp}")  # plain JSON read without a query or credentials: the fast path
        assert fast.status_code == 200 and fast.headers["content-type"] == "application/json"
        assert_hardened(fast)
        assert "content-security-policy" not in fast.headers
        anonymous_write = client.post(f"{API}/dpps", json=passport)
        assert anonymous_write.status_code >= 400
        assert_hardened(anonymous_write)
        assert_hardened(client.get(f"{API}/dpps/{dpp}/versions"))  # a FastAPI route
        page = client.get(f"{API}/dpps/{dpp}", headers={"Accept": "text/html"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert_hardened(page)
        assert page.headers.get_list("content-security-policy") == [HTML_CSP]
        missing = client.get(f"{API}/dpps/urn:uuid:00000000-0000-0000-0000-000000000000")
        assert missing.status_code == 404
        assert_hardened(missing)
        assert_hardened(client.get("/health"))
        docs = client.get("/docs")
        assert docs.status_code == 200
        assert_hardened(docs)
        assert docs.headers["content-security-policy"] == DOCS_CSP
        assert "access-control-allow-origin" not in client.get("/health", headers={"Origin": ALLOWED}).headers


def test_overlong_url_over_http(client: httpx.Client) -> None:
    r = client.get(f"{API}/dpps", params={"q": "x" * 9000}, headers={"X-Correlation-ID": "long-url"})
    assert_result_object(r, 414, "ClientErrorUriTooLong", "long-url")
    assert_hardened(r)
    assert client.get("/health", params={"pad": "x" * 7000}).status_code == 200


@pytest.fixture(scope="module")
def limited(settings: Settings) -> Iterator[httpx.Client]:
    """A second server on the session database: low limits and a CORS allow-list."""
    s = Settings(database_url=settings.database_url, environment="test", port=_free_port(), cors_origins=ALLOWED,
                 rate_limit_per_address=0.5, rate_limit_per_address_burst=10,
                 rate_limit_per_principal=0.5, rate_limit_per_principal_burst=3)
    with ServerThread(create_app(s), s.port) as srv, httpx.Client(base_url=srv.base_url, timeout=30) as c:
        yield c


def test_cors_and_rate_limits_over_http(limited: httpx.Client) -> None:
    pre = limited.options(f"{API}/dpps", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST",
                                                  "Access-Control-Request-Headers": "content-type, authorization"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "Authorization" in pre.headers["access-control-allow-headers"]
    simple = limited.get("/health", headers={"Origin": ALLOWED})
    assert simple.status_code == 200 and simple.headers["access-control-allow-origin"] == ALLOWED
    assert simple.headers["vary"] == "Origin" and "X-Correlation-ID" in simple.headers["access-control-expose-headers"]
    other = limited.get("/health", headers={"Origin": OTHER})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in limited.options(
        "/health", headers={"Origin": OTHER, "Access-Control-Request-Method": "GET"}).headers
    # 4 requests of the address's 10 spent; a principal gets 3
    alice = [limited.get("/health", headers={"Authorization": "Bearer alice"}) for _ in range(4)]
    assert [r.status_code for r in alice] == [200, 200, 200, 429]
    assert_result_object(alice[3], 429, "ClientErrorTooManyRequests")
    assert int(alice[3].headers["retry-after"]) >= 1
    bob = [limited.get("/health", headers={"X-API-Key": "bob"}).status_code for _ in range(3)]
    assert bob == [200, 200, 200]  # same address, its own bucket
    # 10 of the address's 10 spent
    anonymous = limited.get("/health", headers={"Origin": ALLOWED, "X-Correlation-ID": "over"})
    assert_result_object(anonymous, 429, "ClientErrorTooManyRequests", "over")
    assert anonymous.headers["retry-after"] in ("1", "2")  # a token every 2 s
    assert anonymous.headers["access-control-allow-origin"] == ALLOWED
    assert_hardened_cors(anonymous)


def assert_hardened_cors(r: httpx.Response) -> None:
    for name, value in SECURITY.items():
        assert r.headers.get_list(name) == [value]
    assert r.headers["cross-origin-resource-policy"] == "cross-origin"


SWAGGER_STUB = """window.SwaggerUIBundle = function (cfg) {
  fetch(cfg.url).then(r => r.json()).then(s => { document.getElementById('swagger-ui').textContent = s.info.title; });
};
SwaggerUIBundle.presets = {apis: {}};
SwaggerUIBundle.SwaggerUIStandalonePreset = {};"""


@pytest.mark.browser
def test_docs_csp_lets_swagger_ui_start_in_chromium(server: ServerThread) -> None:
    """/docs loads Swagger UI from a CDN and starts it with an inline script: DOCS_CSP must allow both (the
    strict HTML_CSP would not). The CDN is replaced by a stub, so this runs offline."""
    from playwright.sync_api import Route, expect, sync_playwright

    def cdn(route: Route) -> None:
        if route.request.url.endswith(".js"):
            route.fulfill(status=200, content_type="application/javascript", body=SWAGGER_STUB)
        else:
            route.fulfill(status=200, content_type="text/css", body="")

    def with_strict_csp(route: Route) -> None:
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "content-security-policy": HTML_CSP})

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            violations: list[str] = []
            page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
            page.route("https://cdn.jsdelivr.net/**", cdn)
            page.route("https://fastapi.tiangolo.com/**", lambda route: route.abort())
            response = page.goto(f"{server.base_url}/docs")
            assert response is not None and response.headers["content-security-policy"] == DOCS_CSP
            expect(page.locator("#swagger-ui")).to_have_text("dbp — Digital Battery Passport", timeout=10_000)
            assert violations == []

            strict = browser.new_page()
            strict.route("https://cdn.jsdelivr.net/**", cdn)
            strict.route(f"{server.base_url}/docs", with_strict_csp)
            refused: list[str] = []
            strict.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
            strict.goto(f"{server.base_url}/docs")
            strict.wait_for_timeout(300)
            assert refused  # what the strict policy would do to /docs: the CDN and the inline script refused
            assert strict.locator("#swagger-ui").inner_text() == ""
        finally:
            browser.close()

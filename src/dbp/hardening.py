"""The outermost layer: rate limits, URL and header sanity, security headers and CORS.

``Hardening(app, settings, fast=…)`` is a pure ASGI middleware that wraps everything else, so every
request passes through it and every response leaves through it. The hot-read fast path (``fast``, or
for a GET under one of the ``fast_by_prefix`` path prefixes that prefix's responder, e.g. the log's proofs)
is asked first, once the request passed the limits below; its answers get the security headers appended
directly (they are JSON or plain text, never HTML, and set none of them), without the per-response header
scan. It costs a few microseconds per request (``tests/test_hardening.py`` measures it): one pass over the
request headers, one dictionary update per rate-limit bucket, one pass over the response headers.

**Rate limits.** Two families of token buckets, each ``rate`` requests per second with ``burst``
capacity: one per client address and one per principal. The address is ``scope["client"]``; an IPv6
client is limited per /64 (what one end site gets, so a host cannot dodge the limit by rotating
addresses); when the peer is one of ``trusted_proxies`` the client is the right-most
``X-Forwarded-For`` hop that is not a trusted proxy (``dbp serve`` runs uvicorn without proxy headers,
so behind a reverse proxy set ``DBP_TRUSTED_PROXIES`` or every client shares the proxy's bucket).
The principal key is a 16-byte BLAKE2b of the ``Authorization`` (or, without one, ``X-API-Key``)
header value, derived *without* verifying the credential: this layer must stay cheap
and must not learn secrets; a forged credential only buys its sender its own bucket, and the address
bucket still applies to it. Anonymous requests use the address bucket only; authenticated ones must
pass both, so random credentials from one address cannot escape the address limit. Buckets are kept
as GCRA "theoretical arrival times" (one float per key, exactly a token bucket of ``burst`` tokens
refilled at ``rate``) in an insertion-ordered dict used as an LRU capped at ``rate_limit_max_keys``;
an evicted key is one that has been idle longest and is, as a rule, full again, so evicting it loses
nothing. Over the limit: ``429`` as an EN 18222 result object with ``Retry-After`` (whole seconds,
at least 1). The limits are per process: with N workers a client gets up to N times the rate.

**Sanity.** A URL (path plus query) longer than ``max_url_bytes`` is refused with ``414``; more than
``max_header_count`` request headers or more than ``max_header_bytes`` of them with ``431``. (Body
size is ``CorrelationAndLimits``' job, ``413``.)

**Security headers** on every response, unless the application already set them:
``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY``,
``Cross-Origin-Resource-Policy`` (``same-site``; ``cross-origin`` when CORS admits the caller's
origin), ``Strict-Transport-Security`` when the public base URL is https, and on ``text/html`` a
``Content-Security-Policy``. The passport page gets the strict :data:`HTML_CSP` (it has no script and
one inline ``<style>``). The interactive API documentation (``/docs``, ``/redoc``) is FastAPI's
Swagger UI / ReDoc page, which loads its script and styles from a CDN and starts it with an inline
script; rather than allow-listing a CDN and inline script (and breaking whenever FastAPI changes its
CDN), those pages get :data:`DOCS_CSP`, which only forbids framing, ``<base>`` and plugins — they show
no passport data.

**CORS** (``cors_origins``): a preflight (``OPTIONS`` with ``Origin`` and
``Access-Control-Request-Method``) from an allowed origin is answered here with ``204``; other
requests from it get ``Access-Control-Allow-Origin`` and ``Access-Control-Expose-Headers``. With a
list of origins the allowed origin is echoed and every response carries ``Vary: Origin`` (so a cache
never serves one origin's answer to another); with ``*`` every response carries
``Access-Control-Allow-Origin: *`` — fine for public reads, as browsers then never send cookies, and
the API authenticates by ``Authorization`` / ``X-API-Key`` headers, not cookies. An origin that is
not allowed gets no CORS headers at all (not an error: the browser enforces the refusal).
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from hashlib import blake2b
from ipaddress import IPv6Address, ip_address, ip_network
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dbp.config import Settings
from dbp.errors import DbpError, HeadersTooLarge, TooManyRequests, UriTooLong
from dbp.http import client_correlation_id, new_correlation_id, result_response

Headers = list[tuple[bytes, bytes]]

HTML_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
DOCS_CSP = "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
HSTS = "max-age=31536000"

CORS_METHODS = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"
CORS_REQUEST_HEADERS = "Authorization, Content-Type, If-Match, If-None-Match, X-API-Key, X-Correlation-ID, X-Purpose"
CORS_EXPOSE_HEADERS = "ETag, X-DPP-Version, X-Correlation-ID, Location, Retry-After"


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Compare two secrets without leaking, through timing, how long a prefix matched."""
    return hmac.compare_digest(a.encode() if isinstance(a, str) else a, b.encode() if isinstance(b, str) else b)


class FastResponder(Protocol):
    """Answers a request on its own — ``(headers, body)`` of a ``200`` — or returns None to let the
    application answer it (see ``dbp.passports.reads.FastCurrentReads``)."""

    async def __call__(self, scope: Scope) -> tuple[Headers, bytes] | None: ...


class Clock(Protocol):
    """Seconds from an arbitrary origin that never go backwards (``time.monotonic``)."""

    def __call__(self) -> float: ...


class RateLimiter:
    """Token buckets of ``burst`` tokens refilled at ``rate`` per second, one per key (GCRA form).

    ``tat[key]`` is the theoretical arrival time: the moment the bucket would be full again. A request
    at ``now`` is admitted when ``max(tat, now) + 1/rate - now <= burst/rate``.
    """

    __slots__ = ("interval", "max_keys", "tat", "tolerance")

    def __init__(self, rate: float, burst: int, max_keys: int) -> None:
        self.interval = 1.0 / rate
        # a thousandth of a token of slack so that float rounding never refuses the last request of a burst
        self.tolerance = (burst + 1e-3) * self.interval
        self.max_keys = max_keys
        self.tat: dict[object, float] = {}

    def check(self, key: object, now: float) -> float:
        """The new arrival time when admitted (commit it with :meth:`commit`); otherwise minus the wait."""
        tat = self.tat.get(key, now)
        new = (tat if tat > now else now) + self.interval
        if new - now > self.tolerance:
            return now - (new - self.tolerance)  # negative: seconds until one token is back
        return new

    def commit(self, key: object, tat: float) -> None:
        buckets = self.tat
        buckets.pop(key, None)  # re-insert at the end: the dict's order is least recently used first
        buckets[key] = tat
        if len(buckets) > self.max_keys:
            del buckets[next(iter(buckets))]

    def __len__(self) -> int:
        return len(self.tat)


def _header_list(pairs: list[tuple[str, str]]) -> Headers:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs]


class Hardening:
    """Outermost ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, settings: Settings, *, clock: Clock = time.monotonic,
                 fast: FastResponder | None = None,
                 fast_by_prefix: Sequence[tuple[str, FastResponder]] = ()) -> None:
        self.app = app
        self.fast = fast
        # GET requests under one of these path prefixes go to its responder instead of ``fast``
        self.fast_by_prefix = tuple(fast_by_prefix)
        self.clock = clock
        self.limits = settings.rate_limit_enabled
        self.by_address = RateLimiter(settings.rate_limit_per_address, settings.rate_limit_per_address_burst,
                                      settings.rate_limit_max_keys)
        self.by_principal = RateLimiter(settings.rate_limit_per_principal, settings.rate_limit_per_principal_burst,
                                        settings.rate_limit_max_keys)
        self.proxies = tuple(ip_network(p) for p in settings.trusted_proxies)
        self.is_proxy = lru_cache(maxsize=1024)(self._is_proxy)
        self.max_url = settings.max_url_bytes
        self.max_header_count = settings.max_header_count
        self.max_header_bytes = settings.max_header_bytes

        base = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                ("X-Frame-Options", "DENY")]
        if settings.base_url.startswith("https://"):
            base.append(("Strict-Transport-Security", HSTS))
        origins = settings.cors_origins
        self.cors_any = "*" in origins
        self.cors_origins = frozenset(o.encode("latin-1") for o in origins if o != "*")
        # Precomputed header sets; only an echoed origin is built per request.
        self.plain = _header_list([*base, ("Cross-Origin-Resource-Policy", "same-site")])
        self.allowed = _header_list([*base, ("Cross-Origin-Resource-Policy", "cross-origin"),
                                     ("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS)])
        if self.cors_any:
            self.allowed.append((b"access-control-allow-origin", b"*"))
            self.plain = self.allowed
        elif self.cors_origins:
            self.plain.append((b"vary", b"Origin"))
            self.allowed.append((b"vary", b"Origin"))
        self.preflight = _header_list([("Access-Control-Allow-Methods", CORS_METHODS),
                                       ("Access-Control-Allow-Headers", CORS_REQUEST_HEADERS),
                                       ("Access-Control-Max-Age", str(settings.cors_max_age)),
                                       ("Content-Length", "0")])
        self.html_csp = HTML_CSP.encode()
        self.docs_csp = DOCS_CSP.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: Headers = scope["headers"]
        origin = principal = None
        preflight = False
        size = 0
        for name, value in headers:
            size += len(name) + len(value)
            if name == b"authorization":
                principal = value
            elif name == b"x-api-key":
                if principal is None:
                    principal = value
            elif name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight = True

        extra = self.plain
        if origin is not None and not self.cors_any:
            if origin in self.cors_origins:
                extra = [*self.allowed, (b"access-control-allow-origin", origin)]
            else:
                origin = None  # no CORS for it: treated as if absent
        csp = self.docs_csp if scope["path"] in DOCS_PATHS else self.html_csp

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = _decorate(message, extra, csp)
            await send(message)

        if self.limits:
            wait = self._admit(scope, principal)
            if wait:
                await self._refuse(scope, receive, send_hardened,
                                   TooManyRequests("too many requests; retry after the time in Retry-After"),
                                   [(b"retry-after", str(wait).encode())])
                return
        if len(scope.get("raw_path") or scope["path"]) + len(scope["query_string"]) > self.max_url:
            await self._refuse(scope, receive, send_hardened,
                               UriTooLong(f"the request URL exceeds {self.max_url} bytes"))
            return
        if len(headers) > self.max_header_count or size > self.max_header_bytes:
            await self._refuse(scope, receive, send_hardened, HeadersTooLarge(
                f"at most {self.max_header_count} request headers of {self.max_header_bytes} bytes in all"))
            return
        if preflight and origin is not None and scope["method"] == "OPTIONS":
            await send_hardened({"type": "http.response.start", "status": 204, "headers": self.preflight})
            await send({"type": "http.response.body", "body": b""})
            return
        fast = self.fast
        for prefix, responder in self.fast_by_prefix:
            if scope["path"].startswith(prefix):
                fast = responder
                break
        if fast is not None and scope["method"] == "GET":
            answer = await fast(scope)
            if answer is not None:  # JSON that sets none of our headers: add them without looking
                headers, body = answer
                await send({"type": "http.response.start", "status": 200, "headers": headers + extra})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send_hardened)

    def _admit(self, scope: Scope, principal: bytes | None) -> int:
        """0 when the request may pass (and both buckets are charged); else whole seconds to wait."""
        now = self.clock()
        client = scope.get("client")
        address: str = client[0] if client else ""
        if self.proxies and self.is_proxy(address):
            address = _forwarded_client(scope["headers"], address, self.is_proxy)
        key: str | bytes = _ipv6_key(address) if ":" in address else address
        by_address = self.by_address.check(key, now)
        if principal is None:
            if by_address < 0:
                return max(1, math.ceil(-by_address))
            self.by_address.commit(key, by_address)
            return 0
        credential = blake2b(principal, digest_size=16).digest()
        by_principal = self.by_principal.check(credential, now)
        if by_address < 0 or by_principal < 0:
            return max(1, math.ceil(-min(by_address, by_principal, 0.0)))
        self.by_address.commit(key, by_address)
        self.by_principal.commit(credential, by_principal)
        return 0

    def _is_proxy(self, address: str) -> bool:
        try:
            ip = ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.proxies)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, exc: DbpError,
                      headers: Headers | None = None) -> None:
        cid = client_correlation_id(scope["headers"]) or new_correlation_id()
        response = result_response(http_status=exc.http_status, status_code=exc.status_code, text=exc.message,
                                   correlation=cid)
        if headers:
            response.raw_headers.extend(headers)
        await response(scope, receive, send)


def _forwarded_client(headers: Headers, peer: str, is_proxy: Callable[[str], bool]) -> str:
    """The client a chain of trusted proxies reports: the right-most X-Forwarded-For hop that is not one of them."""
    hops = [hop.strip() for name, value in headers if name == b"x-forwarded-for"
            for hop in value.decode("latin-1").split(",")]
    for hop in reversed(hops):
        if hop and not is_proxy(hop):
            return hop
    return hops[0] if hops and hops[0] else peer


@lru_cache(maxsize=4096)
def _ipv6_key(address: str) -> str | bytes:
    """One bucket per /64 — what one end site gets — so a host cannot dodge its limit by changing address."""
    try:
        ip = IPv6Address(address)
    except ValueError:
        return address
    return str(ip.ipv4_mapped) if ip.ipv4_mapped else ip.packed[:8]


def _decorate(message: Message, extra: Headers, csp: bytes) -> Message:
    """``message`` with the ``extra`` headers it does not already have (and CSP when it is HTML)."""
    headers = message.get("headers") or ()
    present: set[bytes] = set()
    html = has_vary_origin = False
    for name, value in headers:
        name = name.lower()
        present.add(name)
        if name == b"content-type":
            html = value[:9].lower() == b"text/html"
        elif name == b"vary":
            has_vary_origin = has_vary_origin or b"origin" in value.lower()
    out = list(headers)
    for pair in extra:
        name = pair[0]
        if name == b"vary":
            if not has_vary_origin:
                out.append(pair)
        elif name not in present:
            out.append(pair)
    if html and b"content-security-policy" not in present:
        out.append((b"content-security-policy", csp))
    return {**message, "headers": out}

"""The resolver's hot path: GS1 Digital Link paths (``/01/…``, ``/414/…``, ``/8013/…``) and
``/.well-known/gs1resolver``, answered in plain ASGI before FastAPI (ARCHITECTURE.md §6).

:class:`ResolverApp` wraps the application inside ``Hardening`` (so rate limits, URL and header limits and the
security headers apply) and answers, following the GS1-Conformant Resolver standard 1.2 (ISO/IEC 18975):

* ``GET``/``HEAD`` of an identifier path → **307** to the default link — the current passport on the
  repository its registration routes to (``dbp.registry.routing``: successors followed, a gone repository
  replaced by its backup) — with the request's query string passed on (minus ``linkType``), a ``Link`` header
  listing every link and the linkset's URL (``rel="linkset"``), ``owl:sameAs`` the canonical URI when the
  request was written otherwise (GTIN-13, escapes, trailing slash), ``Vary: Accept`` and ``Cache-Control:
  no-cache`` (a route changes when an operator exits: caches must ask again). The same URL serves the passport
  as JSON or as its HTML page; the repository negotiates on ``Accept``, which a 307 keeps.
* ``?linkType=gs1:…`` (a CURIE or a GS1 vocabulary URI) → 307 to that link when the passport has one; a type it
  does not have, or an unknown value → 307 to the default link (GS1: redirect to the default link unless the
  request can be matched better).
* ``?linkType=linkset`` / ``all``, or ``Accept: application/linkset+json`` → **200** with the RFC 9264 linkset
  (``application/linkset+json``; ``application/json`` when only that was accepted) and the GS1 JSON-LD context
  in a ``Link`` header.
* a malformed identifier (syntax, AI characters or lengths, check digit, qualifier order; a compressed URI —
  one base64url segment at the root, or a compressed part after a key — is refused rather than decompressed)
  → **400**, the EN 18222 error object naming the rule (``gs1.checkDigit``…); an unregistered one → **404**;
  a retired registration → **410**; a passport whose repository and backup are both gone → **503** with
  ``Retry-After``; another method → **405**. Never 200 for an error.
* ``OPTIONS`` → **204** with ``Allow``; every answer carries ``Access-Control-Allow-Origin: *`` and exposes
  ``Link`` and ``Location`` (a CORS preflight from an origin ``DBP_CORS_ORIGINS`` allows is answered by
  ``Hardening`` itself).

**Identifier forms.** Only the uncompressed path with the primary key first (the resolver root has no path
prefix); a GTIN-8/12/13 or percent-escapes resolve like the canonical form (with ``owl:sameAs``). An item path
that carries a lot or CPV as well as a serial (``/01/…/10/…/21/…``) is looked up as written and, when no
registration holds that, as GTIN + serial (the battery's unique identifier).

**Cost.** A path's parse (~20 µs) is kept per raw path; a product key's whole answer (route, links, Link header,
linkset bytes) is kept on SQLite until ``PRAGMA data_version`` of the resolver's own connection changes — any
commit by another connection, so a routing change counts at the next request. PostgreSQL: every request runs
the route and link queries in a worker thread of our own on its own autocommit connection. Per redirect, on
SQLite: one pragma, two dictionary lookups, the header list.

**Access logging.** A resolver hit reads no passport data (identifiers are public, Annex XIII point 1): it is
not recorded in the access log. The read happens at the redirect target, which records it.
"""

from __future__ import annotations

import logging
import re
from typing import Any, TypeVar

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from dbp.config import Settings
from dbp.errors import BadRequest, DbpError, FieldError, Gone, MethodNotAllowed, NotFound, ServiceUnavailable
from dbp.http import new_correlation_id, result_response
from dbp.identifiers import Identifier, IdentifierError, Scheme
from dbp.identifiers.gs1 import DEFAULT_RESOLVER, PRIMARY_KEYS, Gs1Identifier, parse_digital_link
from dbp.rawreads import Query, RawReads
from dbp.registry import routing
from dbp.resolver import linkset, service
from dbp.resolver.linkset import LINKSET

log = logging.getLogger("dbp.resolver")
T = TypeVar("T")
Headers = list[tuple[bytes, bytes]]

WELL_KNOWN = "/.well-known/gs1resolver"
PATH_KEYS = frozenset(PRIMARY_KEYS)
ALLOW = b"GET, HEAD, OPTIONS"
CORS: Headers = [(b"access-control-allow-origin", b"*"), (b"access-control-allow-methods", ALLOW),
                 (b"access-control-expose-headers", b"Link, Location, Content-Type, X-Correlation-ID, Retry-After")]
_REDIRECT: Headers = [(b"vary", b"Accept"), (b"cache-control", b"no-cache"), (b"content-length", b"0"), *CORS]
_LINKSET_CONTEXT = (f'<{linkset.LINKSET_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; '
                    'type="application/ld+json"').encode()
RETRY_AFTER = b"60"  # seconds: an operator's exit or a backup's take-over is not a matter of milliseconds
MAX_CACHED = 100_000
# GS1 DL compression: one base64url segment at the root; at least 12 characters keeps the app's own paths out
_COMPRESSED = re.compile(r"/[A-Za-z0-9_-]{12,2048}/?")


class _Parsed:
    """What a raw request path names: the product key, a fallback key (GTIN + serial) and the canonical path."""

    __slots__ = ("canonical", "fallback", "key", "same")

    def __init__(self, key: str, fallback: str | None, canonical: str, same: bool) -> None:
        self.key, self.fallback, self.canonical, self.same = key, fallback, canonical, same


def parse_path(raw: str) -> _Parsed:
    """The identifier a request path names; IdentifierError (400) with the broken rule."""
    gid = parse_digital_link("https://resolver.invalid" + raw)
    path = raw[:-1] if raw.endswith("/") else raw
    pairs = gid.pairs()
    if path.count("/") != 2 * len(pairs) or path[1:].split("/", 1)[0] != gid.primary_ai:
        raise IdentifierError("gs1.syntax", "expected the primary key first: this resolver's root has no path prefix")
    canonical = gid.canonical()[len(DEFAULT_RESOLVER):]
    fallback = None
    if gid.serial and len(pairs) > 2:
        fallback = Identifier(Scheme.GS1, Gs1Identifier(gid.primary_ai, gid.primary_value,
                                                        (("21", gid.serial),))).key()
    return _Parsed(Identifier(Scheme.GS1, gid).key(), fallback, canonical, canonical == path)


def description(settings: Settings) -> bytes:
    """``/.well-known/gs1resolver`` (GS1-Conformant Resolver 1.2 resolver description file)."""
    return orjson.dumps({
        "name": "dbp resolver — EU Digital Battery Passport registry",
        "resolverRoot": settings.base_url,
        "supportedPrimaryKeys": sorted(PRIMARY_KEYS, key=int),
        "supportedLinkType": [{"namespace": linkset.VOCAB, "prefix": "gs1:"}],
        "linkTypeDefaultCanBeLinkset": False,
        "linkTypeDefaultCanBeAll": False,
        "supportedContextValuesEnumerated": [],
        "jsonLdContextLocation": linkset.LINKSET_CONTEXT,
    })


class ResolverApp:
    """ASGI: the resolver's paths (module docstring) answered here, everything else passed to ``app``."""

    def __init__(self, app: ASGIApp, state: Any, settings: Settings) -> None:
        self.app = app
        self.state = state
        self.root = settings.base_url
        self.store: RawReads | None = None
        self._parsed: dict[str, _Parsed] = {}
        self._answers: dict[str, service.Resolution | DbpError] = {}
        self._version: int | None = None
        self._description = description(settings)
        self._description_headers: Headers = [
            (b"content-type", b"application/json"), (b"content-length", str(len(self._description)).encode()),
            (b"cache-control", b"public, max-age=3600"), *CORS]

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 2 and path[1].isdigit():
                end = path.find("/", 1)
                if (path[1:] if end < 0 else path[1:end]) in PATH_KEYS:
                    await self._identifier(scope, send)
                    return
            elif path == WELL_KNOWN:
                await self._well_known(scope, send)
                return
            elif _COMPRESSED.fullmatch(path):  # a compressed GS1 Digital Link at the root: refused, not decompressed
                await self._error(send, IdentifierError(
                    "gs1.compressed", "expected an uncompressed GS1 Digital Link URI; this resolver does not "
                    "decompress"), _correlation(None), head=scope["method"] == "HEAD")
                return
        await self.app(scope, receive, send)

    # --- the identifier paths ---------------------------------------------------------------------------------

    async def _identifier(self, scope: Scope, send: Send) -> None:
        method = scope["method"]
        accept = accept_language = cid = None
        for name, value in scope["headers"]:
            if name == b"accept":
                if accept is None:
                    accept = value
            elif name == b"accept-language":
                accept_language = value
            elif name == b"x-correlation-id":
                cid = value
        correlation = _correlation(cid)
        if method == "OPTIONS":
            await _send(send, 204, _options(), b"", head=True)
            return
        head = method == "HEAD"
        if method != "GET" and not head:
            await self._error(send, MethodNotAllowed(f"{method} is not allowed here; use GET, HEAD or OPTIONS"),
                              correlation, head=False, extra=[(b"allow", ALLOW)])
            return
        try:
            parsed = self._parse(scope)
            answer = await self._answer(parsed)
        except DbpError as exc:
            answer = exc
        except Exception:
            log.exception("resolver failure, correlation id %s", correlation.decode())
            await self._error(send, ServiceUnavailable("the resolver cannot read the registry now; retry shortly"),
                              correlation, head=head, extra=[(b"retry-after", b"1")])
            return
        if isinstance(answer, DbpError):  # cached errors are answered, never raised again (tracebacks would grow)
            retry = [(b"retry-after", RETRY_AFTER)] if isinstance(answer, ServiceUnavailable) else None
            await self._error(send, answer, correlation, head=head, extra=retry)
            return
        query, link_type = service.query_without_link_type(scope["query_string"])
        term = linkset.link_term(link_type) if link_type is not None else None
        same_as = [] if parsed.same else [(b"link", f'<{self.root}{parsed.canonical}>; rel="owl:sameAs"'.encode())]
        if term == LINKSET or (link_type is None and accept is not None and b"application/linkset+json" in accept):
            json_only = accept is not None and b"application/json" in accept and b"linkset+json" not in accept
            body = answer.linkset
            headers = [(b"content-type", b"application/json" if json_only else b"application/linkset+json"),
                       (b"content-length", str(len(body)).encode()), (b"link", _LINKSET_CONTEXT), *same_as,
                       (b"vary", b"Accept"), (b"cache-control", b"no-cache"), *CORS,
                       (b"x-correlation-id", correlation)]
            await _send(send, 200, headers, body, head=head)
            return
        candidates = answer.by_term.get(term) if term is not None else None
        target = answer.default if not candidates else service.choose(
            candidates, accept_language.decode("latin-1") if accept_language else None)
        location = target.href
        if query:
            location += ("&" if "?" in location else "?") + service.passthrough(query)
        await _send(send, 307, [(b"location", location.encode("latin-1")), (b"link", answer.link_header), *same_as,
                                *_REDIRECT, (b"x-correlation-id", correlation)], b"", head=head)

    def _parse(self, scope: Scope) -> _Parsed:
        raw_bytes: bytes | None = scope.get("raw_path")
        if raw_bytes is None:
            raw_bytes = scope["path"].encode("utf-8")
        try:
            raw = raw_bytes.decode("ascii")
        except UnicodeDecodeError:
            raise IdentifierError("gs1.charset", "expected an ASCII path (percent-encode other characters)") from None
        parsed = self._parsed.get(raw)
        if parsed is None:
            parsed = parse_path(raw)
            if len(self._parsed) >= MAX_CACHED:
                self._parsed.clear()
            self._parsed[raw] = parsed
        return parsed

    async def _answer(self, parsed: _Parsed) -> service.Resolution | DbpError:
        store = self.store or self._open()
        version = store.data_version()
        if version is not None:
            if version != self._version:
                self._answers.clear()
                self._version = version
            cached = self._answers.get(parsed.key)
            if cached is None:
                cached = await store.run(lambda q: self._lookup(q, parsed))
                if len(self._answers) >= MAX_CACHED:
                    self._answers.clear()
                self._answers[parsed.key] = cached
            return cached
        return await store.run(lambda q: self._lookup(q, parsed))

    def _open(self) -> RawReads:
        self.store = RawReads(
            self.state.engine, name="resolver", closed=lambda: ServiceUnavailable("the resolver is shutting down"),
            unsupported=lambda d: BadRequest(f"the resolver does not support the database {d}"))
        return self.store

    def _lookup(self, query: Query, parsed: _Parsed) -> service.Resolution | DbpError:
        """The answer for a parsed identifier; an error object for a miss, a retired or an unavailable route."""
        route = routing.route(query, key=parsed.key)
        if route is None and parsed.fallback is not None:
            route = routing.route(query, key=parsed.fallback)
        uri = self.root + parsed.canonical
        if route is None:
            return NotFound(f"no passport is registered for {uri}",
                            details=[FieldError("identifier", "resolver.unknown", "not registered")])
        if route.status == routing.RETIRED:
            return Gone(f"the registration of {uri} is retired",
                                details=[FieldError("identifier", "resolver.retired", route.registration_id)])
        if route.endpoint is None:
            return ServiceUnavailable(f"passport temporarily unavailable: {route.unavailable}",
                                      details=[FieldError("identifier", "resolver.unavailable",
                                                          route.unavailable or "")])
        rows = query(service.LINKS_SQL, (route.operator_id,))
        return service.resolution(route, rows, anchor=uri, root=self.root)

    async def _error(self, send: Send, exc: DbpError, correlation: bytes, *, head: bool,
                     extra: Headers | None = None) -> None:
        response = result_response(http_status=exc.http_status, status_code=exc.status_code, text=exc.message,
                                   correlation=correlation.decode(), details=[d.as_dict() for d in exc.details])
        headers = [*response.raw_headers, (b"vary", b"Accept"), (b"cache-control", b"no-store"), *CORS,
                   *(extra or [])]
        await _send(send, exc.http_status, headers, bytes(response.body), head=head)

    # --- /.well-known/gs1resolver ----------------------------------------------------------------------------

    async def _well_known(self, scope: Scope, send: Send) -> None:
        method = scope["method"]
        if method == "OPTIONS":
            await _send(send, 204, _options(), b"", head=True)
        elif method in ("GET", "HEAD"):
            await _send(send, 200, self._description_headers, self._description, head=method == "HEAD")
        else:
            correlation = _correlation(None)
            await self._error(send, MethodNotAllowed(f"{method} is not allowed here; use GET, HEAD or OPTIONS"),
                              correlation, head=False, extra=[(b"allow", ALLOW)])


def _correlation(given: bytes | None) -> bytes:
    if given is not None and 0 < len(given) <= 128 and all(0x20 <= b <= 0x7E for b in given):
        return given
    return new_correlation_id().encode()


def _options() -> Headers:
    return [(b"allow", ALLOW), (b"access-control-allow-headers", b"Accept, Accept-Language, X-Correlation-ID"),
            (b"access-control-max-age", b"86400"), *CORS]


async def _send(send: Send, status: int, headers: Headers, body: bytes, *, head: bool) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})



"""How the registry reads a passport at a repository's endpoint: ``GET {endpoint}/api/v1/dpps/{dppId}``,
anonymously, ``Accept: application/json``.

``PassportFetcher`` is the peer Protocol; ``HttpFetcher`` reads over the network, ``AsgiFetcher`` in-process
(``httpx.ASGITransport`` on an app: the embedded all-roles process reading its own repository), ``NodeFetcher``
picks the in-process one for this node's own base URL and the network for every other endpoint.

**Server-side request forgery.** A registration names a URL this server then fetches, so (``check_endpoint``)
an endpoint is an absolute ``https`` URL without user info, query or fragment; ``http`` and hosts on loopback,
private, link-local or otherwise non-global addresses only for the hosts listed in
``DBP_REGISTRY_ENDPOINT_HTTP_HOSTS``. The host checked is the one httpx connects to (``dbp.netguard``: IDNA
2008 A-label or IP literal; numeric IPv4 forms refused; IPv4 addresses embedded in IPv6 ones judged too).
``HttpFetcher`` resolves the host again right before connecting and refuses any address that is not allowed
(the client is told only "the endpoint's address is not allowed"; the details are logged), asks for
``Accept-Encoding: identity`` and refuses an encoded answer (the size cap holds: nothing is inflated), follows
no redirect, reads at most ``max_bytes`` and gives up after ``timeout`` seconds (a trickle counts against one
overall deadline). Endpoints are stored normalised (``normalise_endpoint``) so that the resolver's join of
registrations and nodes compares one spelling. Known limit, as for did:web: the check and the connection resolve
the name separately and the connection is not pinned to the checked address, so a DNS answer that changes in
between (rebinding) is not caught.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx

from dbp import netguard
from dbp.errors import BadRequest, FieldError

MAX_PASSPORT_BYTES = 1024 * 1024 + 64 * 1024  # the largest passport a repository stores, plus headroom
TIMEOUT = 5.0


class FetchFailed(Exception):
    """The passport could not be read (network, status, size, time): ``reason`` says which, for the client."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(reason)
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class Fetched:
    """What the repository answered: status, the exact bytes, and the headers the registry relies on."""

    url: str
    status: int
    body: bytes
    content_type: str
    etag: str | None
    version: str | None


class PassportFetcher(Protocol):
    async def fetch(self, endpoint: str, dpp_id: str) -> Fetched: ...


def passport_url(endpoint: str, dpp_id: str) -> str:
    return f"{endpoint.rstrip('/')}/api/v1/dpps/{quote(dpp_id, safe=':')}"


def _allowed(host: str, netloc: str, http_hosts: Iterable[str]) -> bool:
    hosts = set(http_hosts)
    return host in hosts or netloc in hosts


DEFAULT_PORTS = {"https": 443, "http": 80}


def normalise_endpoint(endpoint: str) -> str:
    """The one spelling of an endpoint that is stored and compared: scheme and host lower case, the scheme's
    default port dropped, no trailing slash (the path as written). Text that is not a URL comes back stripped."""
    text = endpoint.strip().rstrip("/")
    parts = urlsplit(text)
    if not parts.scheme or not parts.hostname:
        return text
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    try:
        port = parts.port
    except ValueError:
        return text
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def check_endpoint(endpoint: str, *, http_hosts: Iterable[str] = (), own: str | None = None,
                   field: str = "$.endpoint") -> str:
    """The endpoint normalised (``normalise_endpoint``), or ``BadRequest`` naming the rule it breaks. ``own``
    (this node's base URL) is always accepted: it is read in-process. Does no DNS lookup (``HttpFetcher`` does)."""
    text = endpoint.strip().rstrip("/")
    if own is not None and normalise_endpoint(text) == normalise_endpoint(own):
        return normalise_endpoint(text)
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("https", "http") or not parts.hostname:
        raise _refuse(field, "endpoint.scheme", f"expected an absolute https URL, got {endpoint!r:.120}")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment or "#" in text:
        raise _refuse(field, "endpoint.form", "expected scheme://host[:port][/path] without user info, query or "
                                              "fragment")
    try:
        port = parts.port
    except ValueError:
        raise _refuse(field, "endpoint.port", f"expected a port 1..65535, got {parts.netloc!r:.80}") from None
    try:
        host = netguard.connect_host(text)  # what httpx connects to: IDNA A-label or bare IP literal
    except ValueError as exc:
        raise _refuse(field, "endpoint.form", f"expected a valid URL, got {exc}") from None
    scheme = parts.scheme.lower()
    written = parts.hostname.lower()
    netlocs = {f"{h}:{port}" if port else h for h in (host, written)}
    listed = any(_allowed(h, n, http_hosts) for h in (host, written) for n in netlocs)
    if scheme == "http" and not listed:
        raise _refuse(field, "endpoint.https", f"expected https, got http://{next(iter(netlocs))} (plain http only "
                                               "for the hosts in DBP_REGISTRY_ENDPOINT_HTTP_HOSTS)")
    if not listed:
        reason = netguard.literal_refusal(host)
        if reason is not None:
            raise _refuse(field, "endpoint.address", f"{reason} (loopback, private, link-local: "
                                                     "DBP_REGISTRY_ENDPOINT_HTTP_HOSTS only)")
        if host in ("localhost",) or host.endswith((".localhost", ".local", ".internal")):
            raise _refuse(field, "endpoint.address", f"expected a public host name, got {host!r}")
    return normalise_endpoint(text)


def _refuse(field: str, rule: str, message: str) -> BadRequest:
    return BadRequest(f"the endpoint is not one the registry reads: {message}",
                      details=[FieldError(field, rule, message)])


def _public_addresses(host: str) -> None:
    """Refuse a host that is, or resolves to, anything but allowed addresses (blocking: call in a thread). The
    reason given is generic; ``dbp.netguard`` logs the details."""
    try:
        netguard.check_resolved(host)
    except netguard.AddressRefused:
        raise FetchFailed(host, netguard.NOT_ALLOWED) from None


async def _read(client: httpx.AsyncClient, url: str, *, max_bytes: int, timeout: float) -> Fetched:
    deadline = time.monotonic() + 2 * timeout

    async def run() -> Fetched:
        async with client.stream("GET", url, headers={"Accept": "application/json",
                                                      "Accept-Encoding": "identity"}) as response:
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):  # the size cap holds for the bytes as sent: nothing inflated
                raise FetchFailed(url, f"expected an unencoded answer (Accept-Encoding: identity), got "
                                       f"Content-Encoding {encoding[:40]!r}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():  # identity only (checked above): the bytes the ETag names
                size += len(chunk)
                if size > max_bytes:
                    raise FetchFailed(url, f"expected a passport of at most {max_bytes} bytes, got more")
                if time.monotonic() > deadline:
                    raise FetchFailed(url, f"expected the passport within {2 * timeout:.0f} s, got a slower answer")
                chunks.append(chunk)
            return Fetched(url, response.status_code, b"".join(chunks),
                           response.headers.get("content-type", ""), response.headers.get("etag"),
                           response.headers.get("x-dpp-version"))

    try:
        return await asyncio.wait_for(run(), 2 * timeout)
    except FetchFailed:
        raise
    except TimeoutError:
        raise FetchFailed(url, f"expected an answer within {2 * timeout:.0f} s, got none") from None
    except httpx.HTTPError as exc:
        raise FetchFailed(url, f"expected the repository to answer, got {type(exc).__name__}: {exc}") from None


class HttpFetcher:
    """Reads over the network (see the module docstring); ``transport`` may be injected (tests)."""

    def __init__(self, *, http_hosts: Iterable[str] = (), timeout: float = TIMEOUT,
                 max_bytes: int = MAX_PASSPORT_BYTES, transport: httpx.AsyncBaseTransport | None = None,
                 check_addresses: bool = True) -> None:
        self.http_hosts = frozenset(h.strip().lower() for h in http_hosts if h.strip())
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.transport = transport
        self.check_addresses = check_addresses

    async def fetch(self, endpoint: str, dpp_id: str) -> Fetched:
        url = passport_url(check_endpoint(endpoint, http_hosts=self.http_hosts), dpp_id)
        parts = urlsplit(url)
        host = netguard.connect_host(url)
        port = parts.port
        netloc = f"{host}:{port}" if port else host
        written = (parts.hostname or "").lower()
        listed = _allowed(host, netloc, self.http_hosts) or _allowed(written, parts.netloc.lower(), self.http_hosts)
        if self.check_addresses and not listed:
            await asyncio.to_thread(_public_addresses, host)
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False, transport=self.transport,
                                     trust_env=False) as client:
            return await _read(client, url, max_bytes=self.max_bytes, timeout=self.timeout)


class AsgiFetcher:
    """Reads from an ASGI app in this process (no network): the embedded registry and its own repository."""

    def __init__(self, app: Any, *, base_url: str, max_bytes: int = MAX_PASSPORT_BYTES,
                 timeout: float = TIMEOUT) -> None:
        self.transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 0))
        self.base_url = base_url.rstrip("/")
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def fetch(self, endpoint: str, dpp_id: str) -> Fetched:
        url = passport_url(endpoint, dpp_id)
        async with httpx.AsyncClient(transport=self.transport, base_url=self.base_url,
                                     follow_redirects=False) as client:
            return await _read(client, url, max_bytes=self.max_bytes, timeout=self.timeout)


class NodeFetcher:
    """This node's own base URL in-process, every other endpoint over the network."""

    def __init__(self, *, own: str, local: PassportFetcher, remote: PassportFetcher) -> None:
        self.own = own.rstrip("/")
        self.local = local
        self.remote = remote

    async def fetch(self, endpoint: str, dpp_id: str) -> Fetched:
        if normalise_endpoint(endpoint) == normalise_endpoint(self.own):
            return await self.local.fetch(endpoint, dpp_id)
        return await self.remote.fetch(endpoint, dpp_id)

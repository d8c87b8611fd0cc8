"""Server-side request forgery guard: is a host this server is about to connect to on public addresses only?

Domain-free; used by the registry's passport reader (``dbp.registry.fetch``) and the did:web resolver
(``dbp.integrity.credentials``). What it guarantees:

* **The host httpx connects to.** :func:`connect_host` is ``httpx.URL(url).raw_host`` decoded: the IDNA 2008
  A-label of a name, or the bare IP literal — the very text httpx hands to the resolver, so the check and the
  connection cannot disagree on what the host is.
* **No numeric IPv4 tricks.** A host whose last label is all digits or ``0x``-hex (``2130706433``, ``0x7f.1``,
  ``017700000001``, ``127.1``) is not a DNS name: ``inet_aton`` would read it as an IPv4 address. Only the
  canonical dotted quad is taken as IPv4; the other forms are refused outright (:func:`numeric_ipv4_form`).
* **Embedded IPv4 addresses.** IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), 6to4
  (``2002::/16``), Teredo (``2001::/32``, server and client) and NAT64 (``64:ff9b::/96``, ``64:ff9b:1::/48``)
  addresses are judged by the IPv4 addresses they carry as well as by themselves (:func:`address_allowed`):
  ``::127.0.0.1`` and ``64:ff9b::7f00:1`` count as global to ``ipaddress`` but reach loopback.
* **Every resolved address.** :func:`check_resolved` resolves the host and refuses it when any address is not
  allowed; the reason returned to callers is generic (:data:`NOT_ALLOWED`), the details are logged.

Known limit: the check and the connection resolve the name separately, so a DNS answer that changes in between
(DNS rebinding) is not caught; the connection is not pinned to the checked address.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket

import httpx

log = logging.getLogger("dbp.netguard")

NOT_ALLOWED = "the endpoint's address is not allowed"
IP = ipaddress.IPv4Address | ipaddress.IPv6Address

_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)
_COMPAT = ipaddress.IPv6Network("::/96")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


class AddressRefused(Exception):
    """The host is not, or does not resolve only to, allowed addresses. ``detail`` is for the log only."""

    def __init__(self, host: str, detail: str) -> None:
        super().__init__(NOT_ALLOWED)
        self.host = host
        self.detail = detail


def connect_host(url: str) -> str:
    """The host httpx will connect to for ``url``, lower case (``ValueError`` for a URL httpx refuses)."""
    try:
        raw = httpx.URL(url).raw_host
    except httpx.InvalidURL as exc:
        raise ValueError(str(exc)) from None
    return raw.decode("ascii").lower()


def numeric_ipv4_form(host: str) -> bool:
    """Does ``host`` look like an IPv4 address in a form other than the canonical dotted quad (decimal, octal,
    hex, fewer than four parts)? A name whose last label is numeric is never a DNS name (WHATWG URL §3.5)."""
    labels = host.rstrip(".").split(".")
    if not labels or not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return False
    try:
        return str(ipaddress.IPv4Address(host.rstrip("."))) != host.rstrip(".")
    except ValueError:
        return True


def ip_literal(host: str) -> IP | None:
    """The IP address ``host`` is written as (brackets and zone id dropped), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def embedded(ip: IP) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, 6to4, Teredo, NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    out: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        out.append(ip.ipv4_mapped)
    if ip in _COMPAT and int(ip) > 1:
        out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        out.append(ip.sixtofour)
    if ip.teredo is not None:
        out.extend(ip.teredo)
    if any(ip in net for net in _NAT64):
        out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return out


def address_allowed(ip: IP) -> bool:
    """Global itself, and every IPv4 address it carries global too."""
    return ip.is_global and all(v4.is_global for v4 in embedded(ip))


def literal_refusal(host: str) -> str | None:
    """Why ``host`` (as :func:`connect_host` gives it) is refused without any DNS lookup, or None."""
    if numeric_ipv4_form(host):
        return f"expected a host name or a dotted-quad IPv4 address, got the numeric form {host!r:.80}"
    ip = ip_literal(host)
    if ip is not None and not address_allowed(ip):
        return f"expected a host on public addresses, got {ip}"
    return None


def check_resolved(host: str) -> None:
    """Refuse ``host`` (a literal, or a name resolved now) unless every address is allowed: ``AddressRefused``,
    its detail logged. Blocking: call in a thread from async code."""
    reason = literal_refusal(host)
    if reason is not None:
        log.warning("refused connecting to %r: %s", host, reason)
        raise AddressRefused(host, reason)
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        log.warning("refused connecting to %r: does not resolve (%s)", host, exc)
        raise AddressRefused(host, f"expected a resolvable host, got {host!r} ({exc})") from None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address_allowed(ip):
            log.warning("refused connecting to %r: resolves to %s", host, ip)
            raise AddressRefused(host, f"expected a host on public addresses, got {host!r} at {ip}")

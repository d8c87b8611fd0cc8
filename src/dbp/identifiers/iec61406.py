"""IEC 61406 identification links: an absolute https URL, chosen by the operator, naming one item.

IEC 61406-1 leaves the path to the operator, so the only normalisation done is the one RFC 3986 §6
allows without knowing the server: lower-case scheme and host, no default port, upper-case
percent-escape hex digits, unreserved characters decoded, an empty path written ``/``. Path and
query case are kept (they are the operator's). Refusals carry rules starting with ``iec61406.``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from dbp.identifiers.common import IdentifierError, shown

# dbp's own bound, not a figure from IEC 61406: a link this long still fits a small QR code and
# every URL and database limit we meet, and longer identifiers are almost surely not identifiers.
MAX_LENGTH = 255
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# RFC 3986 characters that may appear literally in a path or query (plus '%' for escapes).
_URI_CHARS = _UNRESERVED | frozenset("!$&'()*+,;=:@/?%")


@dataclass(frozen=True)
class IdentificationLink:
    """A normalised IEC 61406 link; two spellings of the same link give equal objects."""

    url: str

    def canonical(self) -> str:
        return self.url

    def key(self) -> str:
        return self.url


def _normalise_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else f"%{match.group(1).upper()}"


def parse_identification_link(text: str) -> IdentificationLink:
    if len(text) > MAX_LENGTH:
        raise IdentifierError("iec61406.length", f"expected at most {MAX_LENGTH} characters, got {len(text)}")
    if not text.isascii() or any(c.isspace() or ord(c) < 0x20 for c in text):
        raise IdentifierError(
            "iec61406.charset", f"expected printable ASCII without spaces (IDNs in punycode), got {shown(text)}"
        )
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme != "https":
        raise IdentifierError("iec61406.scheme", f"expected an absolute https:// URL, got {shown(text)}")
    if "#" in text:
        raise IdentifierError("iec61406.fragment", f"expected no fragment (#…), got {shown('#' + parts.fragment)}")
    if "@" in parts.netloc:
        raise IdentifierError("iec61406.userinfo", f"expected no user name or password in the URL, got {shown(text)}")
    host = (parts.hostname or "").lower()
    if not _HOST.fullmatch(host):
        raise IdentifierError("iec61406.host", f"expected a DNS host name, got {shown(parts.netloc)}")
    try:
        port = parts.port
    except ValueError:
        raise IdentifierError("iec61406.host", f"expected a port number, got {shown(parts.netloc)}") from None
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    bad = next((c for c in tail if c not in _URI_CHARS), None)
    if bad is not None or re.search(r"%(?![0-9A-Fa-f]{2})", tail):
        found = repr(bad) if bad is not None else "a broken %-escape"
        raise IdentifierError("iec61406.charset", f"expected RFC 3986 path and query characters, got {found}")
    netloc = host + (f":{port}" if port and port != 443 else "")
    path = _ESCAPE.sub(_normalise_escape, parts.path) or "/"
    query = f"?{_ESCAPE.sub(_normalise_escape, parts.query)}" if parts.query else ""
    return IdentificationLink(f"https://{netloc}{path}{query}")

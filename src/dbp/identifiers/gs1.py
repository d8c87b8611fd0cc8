"""GS1 Digital Link URIs and GS1 element strings: parse, validate, normalise, convert.

Follows the GS1 Digital Link URI Syntax (conformant with ISO/IEC 18975, regulation.md ID-3) for the
keys a battery passport needs: GTIN (AI 01) with its qualifiers CPV (22), batch/lot (10) and serial
(21); GLN (414) with its extension (254); global model number (8013). Guarantees of a parsed
``Gs1Identifier``: every value has a valid length and character set (GS1 AI encodable character
set 82), GTINs are 14 digits with a correct check digit, GLNs 13 digits with a correct check digit,
and qualifiers are exactly those allowed for the primary key, in the standard's order. Every
refusal is an ``IdentifierError`` whose ``rule`` starts with ``gs1.``.

Only the uncompressed URI form is read: a compressed link is refused (``gs1.compressed``) rather
than guessed at. The query string (data attributes such as ``?17=…``, ``linkType``) and fragment are
not part of the identifier and are ignored here; the resolver reads them from the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote, unquote, urlsplit

from dbp.identifiers.common import IdentifierError, shown

DEFAULT_RESOLVER = "https://id.gs1.org"
MAX_URI_LENGTH = 2048  # far above any real link; bounds the work done on hostile input

# GS1 General Specifications §7.11, figure 7.11-1: the 82 characters allowed in alphanumeric AIs.
AI82 = frozenset("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")


class AiSpec(NamedTuple):
    title: str
    numeric: bool  # digits only (N) rather than AI 82 characters (X)
    max_length: int
    check_digit: bool  # the last digit is a GS1 mod-10 check digit


AIS: dict[str, AiSpec] = {
    "01": AiSpec("GTIN", True, 14, True),
    "414": AiSpec("GLN", True, 13, True),
    "8013": AiSpec("GMN", False, 25, False),
    "22": AiSpec("CPV", False, 20, False),
    "10": AiSpec("BATCH/LOT", False, 20, False),
    "21": AiSpec("SERIAL", False, 20, False),
    "254": AiSpec("GLN EXTENSION COMPONENT", False, 20, False),
}

# Primary key → its key qualifiers in the order the URI path must give them (GS1 DL URI Syntax,
# e.g. /01/{gtin}/22/{cpv}/10/{lot}/21/{ser}); each qualifier is optional.
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {"01": ("22", "10", "21"), "414": ("254",), "8013": ()}

GTIN_LENGTHS = (8, 12, 13, 14)  # GTIN-8/12/13 are written right-aligned in 14 digits (leading zeros)
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ELEMENT_AI = re.compile(r"\((\d{2,4})\)")


def check_digit(body: str) -> int:
    """GS1 mod-10 check digit of ``body`` (all digits but the check digit), General Specs §7.9."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def validate_value(ai: str, value: str) -> str:
    """The value of ``ai`` in normal form (GTINs padded to 14 digits); refuses anything else."""
    spec = AIS.get(ai)
    if spec is None:
        raise IdentifierError("gs1.unknownAi", f"expected one of the AIs {', '.join(AIS)}, got AI {ai!r}")
    label = f"AI {ai} ({spec.title})"
    if not value:
        raise IdentifierError("gs1.length", f"{label}: expected a value, got an empty one")
    if spec.numeric:
        if not (value.isascii() and value.isdigit()):
            raise IdentifierError("gs1.charset", f"{label}: expected digits only, got {shown(value)}")
        allowed = GTIN_LENGTHS if ai == "01" else (spec.max_length,)
        if len(value) not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise IdentifierError("gs1.length", f"{label}: expected {want} digits, got {len(value)} in {shown(value)}")
        value = value.zfill(spec.max_length)
        if spec.check_digit:
            expected = check_digit(value[:-1])
            if int(value[-1]) != expected:
                raise IdentifierError(
                    "gs1.checkDigit", f"{label}: expected check digit {expected} for {value[:-1]}, got {value[-1]}"
                )
        return value
    if len(value) > spec.max_length:
        raise IdentifierError(
            "gs1.length", f"{label}: expected at most {spec.max_length} characters, got {len(value)} in {shown(value)}"
        )
    for position, char in enumerate(value):
        if char not in AI82:
            raise IdentifierError(
                "gs1.charset",
                f"{label}: expected GS1 AI encodable character set 82, got {char!r} at position {position + 1}"
                f" of {shown(value)}",
            )
    return value


@dataclass(frozen=True)
class Gs1Identifier:
    """A validated GS1 key with its qualifiers in canonical order; equal keys compare equal.

    The resolver domain is deliberately not part of it: the same GTIN and serial behind two
    domains name the same battery.
    """

    primary_ai: str
    primary_value: str
    qualifiers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # Direct construction gets the same guarantees as parsing: fail closed on any bad part.
        if self.primary_ai not in PRIMARY_KEYS:
            raise IdentifierError(
                "gs1.primaryKey", f"expected a primary key AI ({', '.join(PRIMARY_KEYS)}), got {self.primary_ai!r}"
            )
        if validate_value(self.primary_ai, self.primary_value) != self.primary_value:
            raise IdentifierError("gs1.length", f"expected a 14-digit GTIN, got {self.primary_value!r}")
        _check_qualifier_order(self.primary_ai, [ai for ai, _ in self.qualifiers])
        for ai, value in self.qualifiers:
            validate_value(ai, value)

    def get(self, ai: str) -> str | None:
        if ai == self.primary_ai:
            return self.primary_value
        return next((value for q, value in self.qualifiers if q == ai), None)

    @property
    def gtin(self) -> str | None:
        return self.get("01")

    @property
    def serial(self) -> str | None:
        return self.get("21")

    @property
    def lot(self) -> str | None:
        return self.get("10")

    @property
    def granularity(self) -> str:
        """``item`` (serialised), ``batch``, ``model`` (GTIN or GMN only) or ``facility`` (GLN)."""
        if self.primary_ai == "414":
            return "facility"
        return "item" if self.serial else "batch" if self.lot else "model"

    def pairs(self) -> tuple[tuple[str, str], ...]:
        return ((self.primary_ai, self.primary_value), *self.qualifiers)

    def canonical(self, resolver: str | None = None) -> str:
        """The uncompressed URI on ``resolver`` (a host or an https base URL; default id.gs1.org).

        Values are percent-encoded except RFC 3986 unreserved characters, so one value has one
        spelling and canonical strings can be compared as strings.
        """
        base = normalise_resolver(resolver) if resolver else DEFAULT_RESOLVER
        return base + "".join(f"/{ai}/{quote(value, safe='')}" for ai, value in self.pairs())

    def element_string(self) -> str:
        """The human-readable element string, e.g. ``(01)09506000134352(21)ABC``."""
        return "".join(f"({ai}){value}" for ai, value in self.pairs())

    def key(self) -> str:
        """Equal for equal identifiers whatever the domain or spelling they were written with."""
        return self.element_string()


def _check_qualifier_order(primary: str, ais: list[str]) -> None:
    allowed = PRIMARY_KEYS[primary]
    order = "/".join(f"{ai}/…" for ai in (primary, *allowed))
    last = -1
    for ai in ais:
        if ai not in allowed:
            expected = f"one of {', '.join(allowed)}" if allowed else "none"
            raise IdentifierError(
                "gs1.qualifier",
                f"expected key qualifiers of AI {primary}: {expected}, got AI {ai}"
                " (data attributes belong in the query string)",
            )
        index = allowed.index(ai)
        if index == last:
            raise IdentifierError("gs1.duplicateAi", f"expected AI {ai} at most once, got it twice")
        if index < last:
            raise IdentifierError(
                "gs1.qualifierOrder", f"expected the order /{order}, got AI {ai} after AI {allowed[last]}"
            )
        last = index


def normalise_resolver(resolver: str) -> str:
    """``example.com`` or ``https://Example.com/dl/`` → ``https://example.com/dl`` (no trailing slash)."""
    text = resolver if "://" in resolver else f"https://{resolver}"
    parts = urlsplit(text)
    if parts.scheme.lower() != "https" or not parts.hostname or parts.query or parts.fragment or "@" in parts.netloc:
        raise IdentifierError(
            "gs1.resolver", f"expected a resolver host or https base URL without query, got {shown(resolver)}"
        )
    host = parts.hostname.lower() + (f":{parts.port}" if parts.port and parts.port != 443 else "")
    return f"https://{host}{parts.path.rstrip('/')}"


def _decode(segment: str, ai: str) -> str:
    if _BAD_PERCENT.search(segment):
        raise IdentifierError("gs1.percentEncoding", f"expected %XX escapes in AI {ai}, got {shown(segment)}")
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise IdentifierError("gs1.charset", f"AI {ai}: expected ASCII characters, got {shown(segment)}") from None


def _looks_compressed(segment: str) -> bool:
    return bool(_B64URL.fullmatch(segment)) and not segment.isdigit()


def parse_digital_link(uri: str) -> Gs1Identifier:
    """Parse an uncompressed GS1 Digital Link URI (``https://{domain}[/prefix]/01/{GTIN}/21/{serial}``).

    Accepts any domain and path prefix before the primary key, upper-case scheme and host, GTIN-8/12/13
    (padded to 14 digits), percent-encoded values and one trailing slash.
    """
    if len(uri) > MAX_URI_LENGTH:
        raise IdentifierError("gs1.length", f"expected a URI of at most {MAX_URI_LENGTH} characters, got {len(uri)}")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme != "https":
        raise IdentifierError("gs1.scheme", f"expected an https:// URI, got {shown(scheme + ':' if scheme else uri)}")
    if not parts.hostname or "@" in parts.netloc:
        raise IdentifierError("gs1.syntax", f"expected https://{{domain}}/…, got {shown(uri)}")
    path = parts.path[:-1] if parts.path.endswith("/") else parts.path
    segments = path.split("/")[1:] if path else []
    starts = [i for i, seg in enumerate(segments) if seg in PRIMARY_KEYS]
    # A path prefix may itself contain "01"; the key is where the rest reads as AI/value pairs.
    even = [i for i in starts if (len(segments) - i) % 2 == 0]
    even = [i for i in even if not AIS[segments[i]].numeric or segments[i + 1].isdigit()] or even
    if not starts:
        if segments and _looks_compressed(segments[-1]):
            raise IdentifierError(
                "gs1.compressed", f"expected an uncompressed GS1 Digital Link URI, got a compressed path {shown(path)}"
            )
        raise IdentifierError(
            "gs1.primaryKey", f"expected a primary key path such as /01/{{GTIN}} or /414/{{GLN}}, got {shown(path)}"
        )
    rest = segments[(even or starts)[0] :]
    if len(rest) % 2:
        last = rest[-1]
        if _looks_compressed(last):
            raise IdentifierError(
                "gs1.compressed", f"expected an uncompressed GS1 Digital Link URI, got a compressed part {shown(last)}"
            )
        raise IdentifierError("gs1.length", f"expected a value after AI {last}, got none")
    pairs: list[tuple[str, str]] = []
    for k in range(0, len(rest), 2):
        ai = rest[k]
        if not ai.isdigit():
            rule = "gs1.compressed" if _looks_compressed(ai) else "gs1.syntax"
            raise IdentifierError(rule, f"expected an AI (digits) at path segment {shown(ai)} of {shown(path)}")
        if k and ai not in AIS:
            _check_qualifier_order(rest[0], [ai])  # raises gs1.qualifier for an AI that is no qualifier
        pairs.append((ai, _decode(rest[k + 1], ai)))
    return _build(pairs)


def _build(pairs: list[tuple[str, str]]) -> Gs1Identifier:
    (primary, key), *qualifiers = pairs
    _check_qualifier_order(primary, [ai for ai, _ in qualifiers])
    return Gs1Identifier(
        primary, validate_value(primary, key), tuple((ai, validate_value(ai, value)) for ai, value in qualifiers)
    )


def parse_element_string(text: str) -> Gs1Identifier:
    """Parse a bracketed element string such as ``(01)09506000134352(10)L1(21)ABC``.

    The AIs may come in any order (element strings have no path order); the result is canonical.
    A value is read up to the next ``(digits)``, so a value that itself contains such a sequence
    cannot be written in this human-readable form (GS1 uses FNC1 in the barcode); AIs outside the
    table above (data attributes such as ``(17)``) are refused as ``gs1.unknownAi``.
    """
    if len(text) > MAX_URI_LENGTH:
        raise IdentifierError("gs1.length", f"expected at most {MAX_URI_LENGTH} characters, got {len(text)}")
    marks = list(_ELEMENT_AI.finditer(text))
    if not marks or marks[0].start() != 0:
        raise IdentifierError("gs1.syntax", f"expected an element string starting with (AI), got {shown(text)}")
    pairs = [
        (m.group(1), text[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)])
        for i, m in enumerate(marks)
    ]
    for ai, _ in pairs:
        if ai not in AIS:
            validate_value(ai, "")  # raises gs1.unknownAi
    primaries = [ai for ai, _ in pairs if ai in PRIMARY_KEYS]
    if len(primaries) != 1:
        raise IdentifierError(
            "gs1.primaryKey",
            f"expected exactly one primary key AI ({', '.join(PRIMARY_KEYS)}), got {primaries or 'none'}",
        )
    primary = primaries[0]
    allowed = PRIMARY_KEYS[primary]
    seen: set[str] = set()
    for ai, _ in pairs:
        if ai in seen:
            raise IdentifierError("gs1.duplicateAi", f"expected AI {ai} at most once, got it twice")
        seen.add(ai)
    head = next(p for p in pairs if p[0] == primary)
    rest = [p for p in pairs if p[0] != primary]
    rest.sort(key=lambda p: allowed.index(p[0]) if p[0] in allowed else -1)
    return _build([head, *rest])

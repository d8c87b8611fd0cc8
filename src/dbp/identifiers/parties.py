"""Operator and facility identifiers (ESPR Art. 12, Annex III (g)-(k); regulation.md ESPR-ART12, ESPR-ANX3).

Pure functions, no database. Two entry points per role:

- ``parse_operator_identifier`` / ``parse_facility_identifier`` read any written form of a
  supported scheme, or an absolute URI (scheme ``uri``, opaque), and refuse everything else
  (``party.scheme``);
- ``recognise_operator_identifier`` / ``recognise_facility_identifier`` are the lenient checks for
  stored data (passports): they return ``None`` for an identifier that claims no scheme (``urn:…``,
  ``did:web:…``, ``https://…`` without a GLN key, ``EO-A``, the empty string) and raise only when a
  text clearly claims a scheme and breaks its rules.

Schemes (``PartyScheme``; a separate enum from the product ``Scheme`` because a GLN, LEI or EORI
never names a product and ``Identifier.scheme`` must not admit them):

- ``gln`` — GS1 Global Location Number: 13 digits, GS1 mod-10 check digit (``gs1.check_digit``).
  Written bare, ``gln:{13}``, as an element string, a GS1 Digital Link (any https domain, any path
  prefix, query and fragment ignored) or a GS1 EPC pure-identity URN. AI 417 (party GLN) and
  ``urn:epc:id:pgln:`` name an operator; AI 414 (physical location GLN) and ``urn:epc:id:sgln:`` name a
  facility, optionally with the GLN extension component (AI 254, 1-20 characters of GS1 set 82);
  the other role is refused (``gln.role``). A bare GLN serves both roles (GS1 lets one GLN name a
  party and a location), so ``key()`` is ``gln:{13 digits}`` whatever AI wrote it. ``gs1.py`` reads
  AI 414 but not AI 417, hence the small GLN reader here (same check digit, same character set).
- ``lei`` — ISO 17442 Legal Entity Identifier: 18 characters A-Z 0-9 and two check digits, ISO 7064
  MOD 97-10 (letters A=10 … Z=35; the 20-character number mod 97 is 1, and the check digits must be
  exactly the computed pair 02-98, so ``…99`` for ``…02`` is refused). Written bare (upper case only)
  or ``lei:`` (any case, normalised to upper case). Operator only (``lei.role`` for a facility).
- ``eori`` — Economic Operator Registration and Identification number: a country code of an EU
  member state (Greece as GR or EL, sources differ) or XI (Northern Ireland), then 1-15 characters
  A-Z 0-9. GB EORI numbers are issued by the UK but are not valid in EU customs since 1 January 2021,
  so ``eori:GB…`` is refused (``eori.country``) and a bare ``GB…`` is opaque. Written ``eori:`` (any
  case, normalised) or bare. Operator only.
- ``iso15459`` — ISO/IEC 15459 company identification: ``iso15459:{IAC}:{company}`` (the product
  form of ``iso15459.py`` without its serial part), for a facility optionally
  ``iso15459:{IAC}:{company}:{location}`` (a location code the company assigns under its CIN, as a
  GLN's location reference). Characters and lengths as in ``iso15459.py``; as there, uniqueness is
  of the concatenation, so the key joins the parts.
- ``uri`` — any other absolute URI (``urn:``, ``did:web:``, ``https:``): opaque, its key is the text
  with the URI scheme name in lower case (RFC 3986 §3.1); nothing else is folded.

VAT numbers are left out: 27 national formats with partly unpublished checksums, VIES as the only
authority, and a bare VAT number is often an EORI (``DE123456789``), so it would be read as one.

Precedence and ambiguity of bare texts (no prefix), first match wins:

1. exactly 13 ASCII digits → GLN (a national 13-digit register number cannot be told apart);
2. exactly 20 characters, A-Z 0-9 and two final digits → LEI (operators only);
3. an EU/XI country code, then A-Z 0-9 with at least one digit → EORI (operators only); a longer
   text of this shape is refused as ``eori.length``; a text without a digit is opaque.

An EORI holds at most 17 characters, so no valid EORI has the LEI shape; a 20-character
EORI-looking text is judged as an LEI. Lower-case bare texts claim nothing (``lei:``/``eori:`` do).
In a facility only rule 1 applies: a facility code such as ``FR01`` stays opaque. A claimed text with
surrounding whitespace or control characters is refused (``party.whitespace``), never trimmed.

Every refusal is an ``IdentifierError`` (a 400) whose message reads ``expected …, got …`` with the
value cut by ``shown()``; any text over ``MAX_LENGTH`` characters is refused first (``party.length``),
so a hostile 10 MB input costs one ``len``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from dbp.identifiers.common import IdentifierError, shown
from dbp.identifiers.gs1 import AI82, check_digit
from dbp.identifiers.iso15459 import CHARSET as ISO15459_CHARSET
from dbp.identifiers.iso15459 import MAX_LENGTH as ISO15459_MAX_LENGTH
from dbp.identifiers.iso15459 import PREFIX as ISO15459_PREFIX

__all__ = [
    "EORI_COUNTRIES",
    "PartyIdentifier",
    "PartyScheme",
    "lei_check_digits",
    "parse_facility_identifier",
    "parse_operator_identifier",
    "recognise_facility_identifier",
    "recognise_operator_identifier",
]

MAX_LENGTH = 2048  # the longest written form read here (a GS1 Digital Link); passports cap at 512


class PartyScheme(StrEnum):
    GLN = "gln"  # GS1 Global Location Number (AI 417 party, AI 414 location)
    LEI = "lei"  # ISO 17442 Legal Entity Identifier
    EORI = "eori"  # EU customs Economic Operator Registration and Identification number
    ISO15459 = "iso15459"  # ISO/IEC 15459 issuing agency code + company identification
    URI = "uri"  # any other absolute URI, opaque


class Role(StrEnum):
    operator = "operator"
    facility = "facility"


# EU member states (ISO 3166-1 alpha-2, plus EL: Greek EORIs are written both ways) and XI.
EORI_COUNTRIES = frozenset(
    (
        *("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "EL", "ES", "FI", "FR", "GR", "HR", "HU"),
        *("IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "XI"),
    )
)
EORI_MAX_BODY = 15

_GLN = re.compile(r"[0-9]{13}", re.ASCII)
_LEI_SHAPE = re.compile(r"[A-Z0-9]{18}[0-9]{2}", re.ASCII)
_LEI_BODY = re.compile(r"[A-Z0-9]{18}", re.ASCII)
_EORI_SHAPE = re.compile(r"[A-Z]{2}[A-Z0-9]*[0-9][A-Z0-9]*", re.ASCII)
_ALNUM = re.compile(r"[A-Z0-9]+", re.ASCII)
_IAC = re.compile(r"[A-Z0-9]{1,3}", re.ASCII)
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\x00-\x1f\x7f]+", re.ASCII)
_ELEMENT = re.compile(r"\((\d{2,4})\)", re.ASCII)
_PAD = "".join(map(chr, range(33))) + "\x7f"
_EPC = {"urn:epc:id:pgln:": Role.operator, "urn:epc:id:sgln:": Role.facility}
_GLN_AI = {"417": Role.operator, "414": Role.facility}
_ROLE_AI = {Role.operator: "417", Role.facility: "414"}
_A = {Role.operator: "an operator", Role.facility: "a facility"}
_EXTENSION = "254"


@dataclass(frozen=True)
class PartyIdentifier:
    """A validated operator or facility identifier; equal identifiers compare equal.

    Made by the parse and recognise functions, which are what validates; unlike ``Gs1Identifier``,
    direct construction does not re-check the fields, so build one only from those functions.

    ``value`` is the scheme's normal form: 13 digits (GLN), 20 upper-case characters (LEI), the
    upper-case EORI, ``{IAC}:{company}[:{location}]`` (15459) or the URI; ``extension`` is a GLN
    extension component (facilities only).
    """

    scheme: PartyScheme
    value: str
    extension: str | None = None

    def canonical(self) -> str:
        """The normalised written form; parsing it gives back this identifier.

        Self-checking numbers (GLN, LEI) are written bare, as their standards do; an EORI has no
        check digit and looks like other country-prefixed numbers, so it keeps ``eori:``.
        """
        if self.scheme is PartyScheme.GLN:
            return f"(414){self.value}(254){self.extension}" if self.extension else self.value
        if self.scheme is PartyScheme.LEI:
            return self.value
        if self.scheme is PartyScheme.URI:
            return self.value
        return f"{self.scheme}:{self.value}"

    def key(self) -> str:
        """``{scheme}:{normal form}`` — equal exactly when two written forms name the same party or
        place in the same scheme (``(417)4012345000009`` and ``4012345000009``; ``lei:`` in any case)."""
        if self.scheme is PartyScheme.ISO15459:
            return f"{self.scheme}:{self.value.replace(':', '')}"  # 15459 uniqueness is of the concatenation
        if self.extension:
            return f"{self.scheme}:{self.value}(254){self.extension}"
        return f"{self.scheme}:{self.value}"


# ------------------------------------------------------------------------------------ check digits
def lei_check_digits(body: str) -> str:
    """The two ISO 7064 MOD 97-10 check digits of an 18-character LEI body (ISO 17442 §4)."""
    number = int("".join(str(int(c, 36)) for c in body) + "00")
    return f"{98 - number % 97:02d}"


# ------------------------------------------------------------------------------------------ schemes
def _gln(digits: str, where: str = "") -> str:
    label = f"GLN{where}"
    bad = next((c for c in digits if not "0" <= c <= "9"), None)
    if bad is not None:
        raise IdentifierError("gln.characters", f"{label}: expected 13 digits, got {bad!r} in {shown(digits)}")
    if len(digits) != 13:
        raise IdentifierError("gln.length", f"{label}: expected 13 digits, got {len(digits)} in {shown(digits)}")
    expected = check_digit(digits[:-1])
    if int(digits[-1]) != expected:
        raise IdentifierError(
            "gln.checkDigit", f"{label}: expected check digit {expected} for {digits[:-1]}, got {digits[-1]}"
        )
    return digits


def _extension(value: str) -> str:
    if not 1 <= len(value) <= 20:
        raise IdentifierError(
            "gln.extension", f"expected a GLN extension component of 1-20 characters, got {len(value)}"
        )
    bad = next((c for c in value if c not in AI82), None)
    if bad is not None:
        raise IdentifierError(
            "gln.extension", f"expected GS1 AI encodable character set 82 in the GLN extension, got {bad!r}"
        )
    return value


def _gln_for(role: Role, ai: str, digits: str, extension: str | None = None) -> PartyIdentifier:
    if _GLN_AI[ai] is not role:
        other = "a party" if ai == "417" else "a physical location"
        raise IdentifierError(
            "gln.role", f"expected the {role} GLN as AI {_ROLE_AI[role]}, got AI {ai}, which names {other}"
        )
    gln = _gln(digits, f" (AI {ai})")
    return PartyIdentifier(PartyScheme.GLN, gln, _extension(extension) if extension is not None else None)


def _element_string(text: str, role: Role) -> PartyIdentifier:
    marks = list(_ELEMENT.finditer(text))
    if not marks or marks[0].start() != 0:
        raise IdentifierError(
            "gln.syntax", f"expected an element string (417){{GLN}} or (414){{GLN}}, got {shown(text)}"
        )
    pairs = [
        (m.group(1), text[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)])
        for i, m in enumerate(marks)
    ]
    ai, digits = pairs[0]
    if ai not in _GLN_AI:
        raise IdentifierError("gln.ai", f"expected AI {_ROLE_AI[role]} for {_A[role]}, got AI {ai}")
    rest = pairs[1:]
    if ai == "414" and len(rest) == 1 and rest[0][0] == _EXTENSION:
        return _gln_for(role, ai, digits, rest[0][1])
    if rest:
        allowed = "(254) only" if ai == "414" else "none"
        raise IdentifierError("gln.ai", f"expected qualifiers after AI {ai}: {allowed}, got AI {rest[0][0]}")
    return _gln_for(role, ai, digits)


def _has_gln_segment(text: str) -> bool:
    return any(seg in _GLN_AI for seg in urlsplit(text).path.split("/"))


def _digital_link(text: str, role: Role) -> PartyIdentifier:
    """``https://{domain}[/prefix]/417/{GLN}`` or ``…/414/{GLN}[/254/{ext}]``; query and fragment ignored."""
    parts = urlsplit(text)
    if parts.scheme.lower() != "https":
        raise IdentifierError("gln.scheme", f"expected an https:// GS1 Digital Link, got {shown(parts.scheme + ':')}")
    if not parts.hostname or "@" in parts.netloc:
        raise IdentifierError("gln.syntax", f"expected https://{{domain}}/…, got {shown(text)}")
    path = parts.path[:-1] if parts.path.endswith("/") else parts.path
    segments = path.split("/")[1:]
    # The key is the last 417/414 segment whose remainder reads as AI/value pairs (a prefix may hold "414").
    starts = [i for i, seg in enumerate(segments) if seg in _GLN_AI and (len(segments) - i) % 2 == 0]
    if not starts:
        raise IdentifierError("gln.syntax", f"expected /417/{{GLN}} or /414/{{GLN}}[/254/{{ext}}], got {shown(path)}")
    rest = segments[starts[0] :]
    ai, digits = rest[0], unquote(rest[1])
    if len(rest) == 4 and ai == "414" and rest[2] == _EXTENSION:
        return _gln_for(role, ai, digits, unquote(rest[3]))
    if len(rest) > 2:
        raise IdentifierError("gln.ai", f"expected no qualifier but /254/ after /{ai}/{{GLN}}, got /{rest[2]}/")
    return _gln_for(role, ai, digits)


def _epc_urn(text: str, role: Role) -> PartyIdentifier:
    """GS1 EPC Tag Data Standard pure identities ``urn:epc:id:pgln:{prefix}.{party}`` and
    ``urn:epc:id:sgln:{prefix}.{location}.{extension}`` (extension ``0`` = none)."""
    head = text[:16].lower()
    ai = "417" if head.endswith("pgln:") else "414"
    parts = text[16:].split(".")
    want = 2 if ai == "417" else 3
    if len(parts) != want or not all(p.isascii() and p.isdigit() for p in parts[:2]):
        form = "{prefix}.{party}" if ai == "417" else "{prefix}.{location}.{extension}"
        raise IdentifierError("gln.syntax", f"expected {head}{form} with digits, got {shown(text)}")
    prefix, reference = parts[:2]
    if not 6 <= len(prefix) <= 12 or len(prefix) + len(reference) != 12:
        raise IdentifierError(
            "gln.length",
            f"expected a 6-12 digit company prefix and a reference of 12 digits together, got {shown(text)}",
        )
    body = prefix + reference
    extension = None if ai == "417" or parts[2] == "0" else unquote(parts[2])
    return _gln_for(role, ai, body + str(check_digit(body)), extension)


def _lei(value: str) -> PartyIdentifier:
    if len(value) != 20:
        raise IdentifierError("lei.length", f"expected 20 characters in an LEI, got {len(value)} in {shown(value)}")
    upper = value.upper()
    if not _LEI_BODY.fullmatch(upper[:18]):
        bad = next(c for c in upper[:18] if not _ALNUM.fullmatch(c))
        raise IdentifierError(
            "lei.characters", f"expected A-Z 0-9 in the first 18 characters, got {bad!r} in {shown(value)}"
        )
    if not (upper[18:].isascii() and upper[18:].isdigit()):
        raise IdentifierError("lei.characters", f"expected two check digits at the end, got {shown(value[18:])}")
    expected = lei_check_digits(upper[:18])
    if upper[18:] != expected:
        raise IdentifierError("lei.checkDigits", f"expected check digits {expected} for {upper[:18]}, got {upper[18:]}")
    return PartyIdentifier(PartyScheme.LEI, upper)


def _eori(value: str) -> PartyIdentifier:
    upper = value.upper()
    country, body = upper[:2], upper[2:]
    if country not in EORI_COUNTRIES:
        hint = " (GB EORIs are not valid in EU customs since 2021; Northern Ireland is XI)" if country == "GB" else ""
        raise IdentifierError("eori.country", f"expected an EU member state code or XI{hint}, got {shown(value[:2])}")
    if not 1 <= len(body) <= EORI_MAX_BODY:
        raise IdentifierError(
            "eori.length",
            f"expected 1-{EORI_MAX_BODY} characters after the country code, got {len(body)} in {shown(value)}",
        )
    if not _ALNUM.fullmatch(body):
        bad = next(c for c in body if not _ALNUM.fullmatch(c))
        raise IdentifierError(
            "eori.characters", f"expected A-Z 0-9 after the country code, got {bad!r} in {shown(value)}"
        )
    return PartyIdentifier(PartyScheme.EORI, upper)


def _iso15459(text: str, role: Role) -> PartyIdentifier:
    parts = text[len(ISO15459_PREFIX) :].split(":")
    want = "IAC:company" if role is Role.operator else "IAC:company or IAC:company:location"
    if len(parts) != 2 and not (role is Role.facility and len(parts) == 3):
        raise IdentifierError(
            "iso15459.syntax", f"expected {want} for {_A[role]}, got {len(parts)} parts in {shown(text)}"
        )
    agency, *rest = parts
    if not _IAC.fullmatch(agency):
        raise IdentifierError(
            "iso15459.agency", f"expected an issuing agency code of 1-3 of A-Z 0-9, got {shown(agency)}"
        )
    for name, part in zip(("company", "location"), rest, strict=False):
        if not part:
            raise IdentifierError("iso15459.length", f"expected a non-empty {name} part, got an empty one")
        bad = next((c for c in part if c not in ISO15459_CHARSET), None)
        if bad is not None:
            raise IdentifierError(
                "iso15459.charset", f"expected A-Z 0-9 - . / in the {name} part, got {bad!r} in {shown(part)}"
            )
    total = sum(map(len, parts))
    if total > ISO15459_MAX_LENGTH:
        raise IdentifierError(
            "iso15459.length", f"expected at most {ISO15459_MAX_LENGTH} characters in all, got {total}"
        )
    return PartyIdentifier(PartyScheme.ISO15459, ":".join(parts))


def _not_for_facility(scheme: str, text: str) -> IdentifierError:
    what = "an LEI names a legal entity" if scheme == "lei" else "an EORI names an economic operator"
    return IdentifierError(
        f"{scheme}.role", f"expected a facility identifier (GLN, ISO/IEC 15459 or a URI), got {shown(text)}: {what}"
    )


# -------------------------------------------------------------------------------------- recognition
def _claim(text: str, role: Role) -> PartyIdentifier | None:
    """The identifier ``text`` claims to be (validated), or ``None`` when it claims no scheme."""
    lowered = text[:16].lower()
    if lowered.startswith("lei:"):
        if role is Role.facility:
            raise _not_for_facility("lei", text)
        return _lei(text[4:])
    if lowered.startswith("eori:"):
        if role is Role.facility:
            raise _not_for_facility("eori", text)
        return _eori(text[5:])
    if lowered.startswith("gln:"):
        return PartyIdentifier(PartyScheme.GLN, _gln(text[4:]))
    if lowered.startswith(ISO15459_PREFIX):
        return _iso15459(text, role)
    if lowered in _EPC:
        return _epc_urn(text, role)
    if _ELEMENT.match(text):
        return _element_string(text, role)
    if lowered.startswith(("https://", "http://")) and _has_gln_segment(text):
        return _digital_link(text, role)
    if _GLN.fullmatch(text):
        return PartyIdentifier(PartyScheme.GLN, _gln(text))
    if role is Role.facility:
        return None
    if _LEI_SHAPE.fullmatch(text):
        return _lei(text)
    if _EORI_SHAPE.fullmatch(text) and text[:2] in EORI_COUNTRIES:
        return _eori(text)
    return None


def _recognise(text: object, role: Role) -> PartyIdentifier | None:
    if not isinstance(text, str):
        raise IdentifierError("party.type", f"expected a string {role} identifier, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise IdentifierError(
            "party.length", f"expected {_A[role]} identifier of at most {MAX_LENGTH} characters, got {shown(text)}"
        )
    core = text.strip(_PAD).strip()
    if core != text and core:
        try:
            claims = _claim(core, role) is not None
        except IdentifierError:
            claims = True  # a broken claim is still a claim: the padding is the first thing to report
        if claims:
            raise IdentifierError(
                "party.whitespace",
                f"expected no surrounding whitespace or control characters around {_A[role]} identifier,"
                f" got {shown(text)}",
            )
    return _claim(text, role)


def recognise_operator_identifier(text: str) -> PartyIdentifier | None:
    """The operator identifier ``text`` claims to be, or ``None`` for an opaque one (a ``urn:``,
    ``did:web:`` or https URI without a GLN key, a free-form code, the empty string). Raises
    ``IdentifierError`` when the text claims a scheme (module docstring: prefixes, 13 digits, the LEI
    and EORI shapes, GS1 forms) and breaks its rules, or is longer than ``MAX_LENGTH``."""
    return _recognise(text, Role.operator)


def recognise_facility_identifier(text: str) -> PartyIdentifier | None:
    """As ``recognise_operator_identifier`` for a facility: GLN (AI 414, sgln URN, bare 13 digits),
    ``iso15459:`` with an optional location part; ``lei:``/``eori:`` are refused (``….role``), and bare
    LEI- or EORI-shaped codes are opaque."""
    return _recognise(text, Role.facility)


def _parse(text: str, role: Role) -> PartyIdentifier:
    found = _recognise(text, role)
    if found is not None:
        return found
    if _URI.fullmatch(text):
        scheme, rest = text.split(":", 1)
        return PartyIdentifier(PartyScheme.URI, f"{scheme.lower()}:{rest}")
    schemes = "GLN, lei:, eori:, iso15459:IAC:company" if role is Role.operator else "GLN, iso15459:IAC:company"
    raise IdentifierError(
        "party.scheme", f"expected {_A[role]} identifier ({schemes} or an absolute URI), got {shown(text)}"
    )


def parse_operator_identifier(text: str) -> PartyIdentifier:
    """Parse an operator identifier: a recognised scheme (see ``recognise_operator_identifier``) or an
    absolute URI (scheme ``uri``); anything else is refused as ``party.scheme``."""
    return _parse(text, Role.operator)


def parse_facility_identifier(text: str) -> PartyIdentifier:
    """Parse a facility identifier: GLN, ISO/IEC 15459 or an absolute URI; else ``party.scheme``."""
    return _parse(text, Role.facility)

"""Product, operator and facility identifiers: recognise the scheme, validate, normalise.

Pure functions, no database. ``parse_identifier`` reads any supported written form and returns an
``Identifier`` whose ``key()`` is equal for equal identifiers of the same scheme, however they were
spelled (domain, GTIN-13 vs GTIN-14, percent-encoding, host case, element string vs URI).

Cross-scheme aliasing — one battery written as a GS1 Digital Link and as an IEC 61406 link or a
15459 identifier — cannot be decided from the text alone; it is the registry's concern (it records
one canonical product identifier per battery and the others as aliases, and refuses a key already
bound to another battery whatever its scheme).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from dbp.identifiers.common import IdentifierError, Scheme, shown
from dbp.identifiers.gs1 import PRIMARY_KEYS, Gs1Identifier, check_digit, parse_digital_link, parse_element_string
from dbp.identifiers.iec61406 import IdentificationLink, parse_identification_link
from dbp.identifiers.iso15459 import PREFIX as ISO15459_PREFIX
from dbp.identifiers.iso15459 import Iso15459Id, parse_iso15459
from dbp.identifiers.parties import (
    PartyIdentifier,
    PartyScheme,
    parse_facility_identifier,
    parse_operator_identifier,
    recognise_facility_identifier,
    recognise_operator_identifier,
)

__all__ = [
    "Gs1Identifier",
    "IdentificationLink",
    "Identifier",
    "IdentifierError",
    "Iso15459Id",
    "PartyIdentifier",
    "PartyScheme",
    "Scheme",
    "parse_facility_identifier",
    "parse_identifier",
    "parse_operator_identifier",
    "product_key",
    "recognise_facility_identifier",
    "recognise_operator_identifier",
]

# A link on GS1's own resolver is GS1 even when it does not parse, so that a compressed or broken
# GS1 link is refused with the GS1 reason instead of being taken for an IEC 61406 link.
GS1_HOSTS = frozenset({"id.gs1.org"})


@dataclass(frozen=True)
class Identifier:
    """A parsed identifier and its scheme; ``value`` keeps the scheme's own fields."""

    scheme: Scheme
    value: Gs1Identifier | IdentificationLink | Iso15459Id

    def canonical(self) -> str:
        """The normalised written form (GS1: the URI on id.gs1.org; use ``value.canonical(domain)``)."""
        return self.value.canonical()

    def key(self) -> str:
        """``{scheme}:{scheme key}`` — equal exactly when the two identifiers are equal in their scheme."""
        return f"{self.scheme}:{self.value.key()}"


def _is_gs1_link(text: str) -> bool:
    parts = urlsplit(text)
    if (parts.hostname or "").lower() in GS1_HOSTS:
        return True
    return any(seg in PRIMARY_KEYS for seg in parts.path.split("/")[1:])


def parse_identifier(text: str) -> Identifier:
    """Recognise the scheme of ``text`` and parse it; raises ``IdentifierError`` with the rule broken.

    - ``(01)…`` → GS1 element string;
    - ``http(s)://…`` whose path holds a GS1 primary key (``/01/``, ``/414/``, ``/8013/``), or on
      id.gs1.org → GS1 Digital Link (http is refused by the GS1 rules);
    - any other ``http(s)://…`` → IEC 61406 identification link;
    - ``iso15459:{IAC}:{company}:{serial}`` → ISO/IEC 15459.
    """
    if not isinstance(text, str) or not text:
        raise IdentifierError("identifier.scheme", f"expected a non-empty identifier, got {text!r:.40}")
    if text.startswith("("):
        return Identifier(Scheme.GS1, parse_element_string(text))
    lowered = text[:10].lower()
    if lowered.startswith(("https://", "http://")):
        if _is_gs1_link(text):
            return Identifier(Scheme.GS1, parse_digital_link(text))
        return Identifier(Scheme.IEC61406, parse_identification_link(text))
    if lowered.startswith(ISO15459_PREFIX):
        return Identifier(Scheme.ISO15459, parse_iso15459(text))
    raise IdentifierError(
        "identifier.scheme",
        "expected a GS1 Digital Link or element string, an https identification link or"
        f" iso15459:IAC:company:serial, got {shown(text)}",
    )


def product_key(text: str) -> str:
    """The uniqueness key of a battery's product identifier: one battery written two ways is one key.

    - GS1 (a Digital Link on any domain, an element string, GTIN-8/12/13): ``parse_identifier(text).key()``; a
      serialised item is its GTIN + serial whatever other qualifiers (lot, CPV) the link carries, since GTIN +
      serial alone names the item (``gs1:(01){GTIN-14}(21){serial}``);
    - an EPC SGTIN URN (``urn:epc:id:sgtin:{company}.{indicator+item}.{serial}``): the same GS1 item key;
    - any other URN (RFC 8141: ``urn:{NID}:{NSS}``, which the passport model admits and no parser here reads): the
      URN with ``urn:`` and the namespace id in lower case (both are case-insensitive), the rest as written;
    - IEC 61406 and ISO/IEC 15459: their scheme keys.

    Raises ``IdentifierError`` (a 400) with the broken rule for anything else that does not parse."""
    if text[:4].lower() == "urn:":
        return _urn_key(text)
    parsed = parse_identifier(text)
    if isinstance(parsed.value, Gs1Identifier):
        return _gs1_key(parsed.value)
    return parsed.key()


def _gs1_key(value: Gs1Identifier) -> str:
    if value.gtin is not None and value.serial is not None:
        return f"{Scheme.GS1}:(01){value.gtin}(21){value.serial}"
    return f"{Scheme.GS1}:{value.key()}"


_URN = re.compile(r"urn:([A-Za-z0-9][A-Za-z0-9-]{0,30}[A-Za-z0-9]):([!-~]+)", re.IGNORECASE)
_SGTIN = re.compile(r"(\d{6,12})\.(\d{1,7})\.([!-~]{1,60})")


def _urn_key(text: str) -> str:
    m = _URN.fullmatch(text)
    if m is None:
        raise IdentifierError("urn.syntax", f"expected urn:{{namespace id}}:{{specific string}} (RFC 8141), got "
                                            f"{shown(text)}")
    nid, nss = m.group(1).lower(), m.group(2)
    if nid == "epc" and nss.lower().startswith("id:sgtin:"):
        return _gs1_key(_sgtin(nss[len("id:sgtin:"):], text))
    return f"urn:{nid}:{nss}"


def _sgtin(body: str, text: str) -> Gs1Identifier:
    """An EPC Tag Data Standard SGTIN pure-identity URN body as the GS1 item it names (GTIN-14 + serial)."""
    m = _SGTIN.fullmatch(body)
    if m is None or len(m.group(1)) + len(m.group(2)) != 13:
        raise IdentifierError("epc.sgtin", "expected urn:epc:id:sgtin:{company prefix}.{indicator + item reference}"
                                           f".{{serial}} with 13 digits in the first two parts, got {shown(text)}")
    company, item, serial = m.groups()
    body13 = item[0] + company + item[1:]
    gtin = body13 + str(check_digit(body13))
    try:
        serial = unquote(serial, errors="strict")
    except UnicodeDecodeError:
        raise IdentifierError("epc.sgtin", f"expected %XX escapes of UTF-8 in the serial, got {shown(text)}") from None
    return Gs1Identifier("01", gtin, (("21", serial),))

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

from dataclasses import dataclass
from urllib.parse import urlsplit

from dbp.identifiers.common import IdentifierError, Scheme, shown
from dbp.identifiers.gs1 import PRIMARY_KEYS, Gs1Identifier, parse_digital_link, parse_element_string
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
    """The uniqueness key of a passport's ``uniqueProductIdentifier``: ``parse_identifier(text).key()``, so
    that one battery written two ways (another GS1 domain, GTIN-13 vs GTIN-14, an element string,
    percent-encoding) is one key; a URN (``urn:epc:id:sgtin:…``, which the passport model admits and no
    parser here reads) is its own key, with the URN scheme's case-insensitive ``urn:`` prefix folded.
    Raises ``IdentifierError`` (a 400) with the broken rule for anything else that does not parse."""
    if text[:4].lower() == "urn:":
        return "urn:" + text[4:]
    return parse_identifier(text).key()

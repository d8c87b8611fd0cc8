"""ISO/IEC 15459 unique identifiers: issuing agency code (IAC) + company identification + serial.

Uniqueness in ISO/IEC 15459 is of the whole concatenated string, so two identifiers whose parts
split differently but concatenate to the same characters are the same identifier (``key()``).
The written form read here is ``iso15459:{IAC}:{company}:{serial}``: the parts have agency-specific
lengths and no separator of their own, and ``:`` is outside the character set, so the split is
never guessed. Whether an IAC is registered (ISO/IEC 15459-2, kept by NEN) is not checked here.
Refusals carry rules starting with ``iso15459.``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dbp.identifiers.common import IdentifierError, shown

PREFIX = "iso15459:"
MAX_LENGTH = 50  # IAC + company identification + serial, ISO/IEC 15459-4
CHARSET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-./")
_IAC = re.compile(r"[A-Z0-9]{1,3}")


@dataclass(frozen=True)
class Iso15459Id:
    """A validated 15459 identifier; construction checks the same rules as parsing."""

    agency: str
    company: str
    serial: str

    def __post_init__(self) -> None:
        if not _IAC.fullmatch(self.agency):
            raise IdentifierError(
                "iso15459.agency", f"expected an issuing agency code of 1-3 of A-Z 0-9, got {shown(self.agency)}"
            )
        for name, part in (("company", self.company), ("serial", self.serial)):
            if not part:
                raise IdentifierError("iso15459.length", f"expected a non-empty {name} part, got an empty one")
            bad = next((c for c in part if c not in CHARSET), None)
            if bad is not None:
                raise IdentifierError(
                    "iso15459.charset", f"expected A-Z 0-9 - . / in the {name} part, got {bad!r} in {shown(part)}"
                )
        total = len(self.agency) + len(self.company) + len(self.serial)
        if total > MAX_LENGTH:
            raise IdentifierError("iso15459.length", f"expected at most {MAX_LENGTH} characters in all, got {total}")

    def canonical(self) -> str:
        return f"{PREFIX}{self.agency}:{self.company}:{self.serial}"

    def key(self) -> str:
        return self.agency + self.company + self.serial


def parse_iso15459(text: str) -> Iso15459Id:
    """Parse ``iso15459:{IAC}:{company}:{serial}`` (prefix case-insensitive, parts case-sensitive)."""
    if len(text) > 4 * MAX_LENGTH:  # bounds the work on hostile input; the exact limit is checked below
        raise IdentifierError(
            "iso15459.length", f"expected at most {MAX_LENGTH} characters in all, got a text of {len(text)}"
        )
    if text[: len(PREFIX)].lower() != PREFIX:
        raise IdentifierError("iso15459.syntax", f"expected {PREFIX}{{IAC}}:{{company}}:{{serial}}, got {shown(text)}")
    parts = text[len(PREFIX) :].split(":")
    if len(parts) != 3:
        raise IdentifierError(
            "iso15459.syntax", f"expected three parts IAC:company:serial, got {len(parts)} in {shown(text)}"
        )
    return Iso15459Id(*parts)

"""What every identifier scheme shares: the refusal type and the scheme names.

The error subclasses ``BadRequest`` so that a malformed identifier reaches a client as a 400 result
object through the one mapping in ``app.py``; ``rule`` names the broken rule (``gs1.checkDigit``)
so that tests, the resolver and the registry can tell refusals apart without parsing messages.
"""

from __future__ import annotations

from enum import StrEnum

from dbp.errors import BadRequest, FieldError


class Scheme(StrEnum):
    GS1 = "gs1"  # GS1 Digital Link / element strings (ISO/IEC 18975, GS1 DL URI Syntax)
    IEC61406 = "iec61406"  # IEC 61406 identification link
    ISO15459 = "iso15459"  # ISO/IEC 15459 unique identifier


class IdentifierError(BadRequest):
    """An identifier was refused. The message reads ``{rule}: expected …, got …``."""

    def __init__(self, rule: str, message: str, *, path: str = "identifier") -> None:
        super().__init__(f"{rule}: {message}", details=[FieldError(path=path, rule=rule, message=message)])
        self.rule = rule


def shown(value: str, limit: int = 60) -> str:
    """A refused value quoted for a message, cut so that a hostile 10 MB input is not echoed back."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"… ({len(value)} characters)"

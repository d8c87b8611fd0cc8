"""Constrained value types shared by the passport clusters.

Strings refuse control characters (C0 and DEL; free text may hold tab and newlines) and have
bounded length, so hostile or binary input fails at the schema layer with a path and a rule.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
_TEXT_CONTROL = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"

ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=_NO_CONTROL)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=_NO_CONTROL)]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=20000, pattern=_TEXT_CONTROL)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^[^\s\x00-\x1f\x7f]+$")]
Url = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s\x00-\x1f\x7f]+$")]
Email = Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
# ISO 8601 calendar date or year-month; the semantic layer checks that it is a real date.
DateOrMonth = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}(-\d{2})?$")]
Date = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]
# ISO 8601 UTC or offset timestamp; the semantic layer checks the calendar and clock.
Timestamp = Annotated[
    str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
]
CasNumber = Annotated[str, StringConstraints(pattern=r"^\d{2,7}-\d{2}-\d$")]

Percent = Annotated[float, Field(ge=0, le=100)]
NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0, le=10**12)]
Temperature = Annotated[float, Field(ge=-273.15, le=1000)]
Voltage = Annotated[float, Field(ge=0, le=100000)]


class Strict(BaseModel):
    """Base of every passport object: strict types (``false`` is not 0), unknown keys refused."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=False)


class Address(Strict):
    street: Name | None = None
    postalCode: ShortText | None = None
    city: Name | None = None
    country: CountryCode | None = None


class Party(Strict):
    """An economic operator, manufacturer or contact: identifier plus Annex VI Part A(1) contact data."""

    identifier: Identifier | None = None
    name: Name
    registeredTradeName: Name | None = None
    postalAddress: Address | None = None
    email: Email | None = None
    website: Url | None = None
    phone: Annotated[str, StringConstraints(max_length=40, pattern=r"^\+?[0-9 ()/-]{3,40}$")] | None = None


class DocumentRef(Strict):
    """A document linked rather than embedded (Battery Pass BP-12), optionally pinned by hash."""

    url: Url
    title: Name | None = None
    documentType: ShortText | None = None
    language: Annotated[str, StringConstraints(pattern=r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*$")] | None = None
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None
    issuedOn: Date | None = None


class DynamicNumber(Strict):
    """A dynamic value with the time it was measured (Battery Pass BP-5: a timestamp on each)."""

    value: float
    timestamp: Timestamp


class DynamicPercent(Strict):
    value: Percent
    timestamp: Timestamp


class DynamicNonNegative(Strict):
    value: NonNegative
    timestamp: Timestamp


class DynamicCount(Strict):
    value: Count
    timestamp: Timestamp

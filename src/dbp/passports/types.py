"""Constrained value types shared by the passport clusters.

Strings refuse control characters (C0 and DEL; free text may hold tab and newlines) and have
bounded length, so hostile or binary input fails at the schema layer with a path and a rule.
"""

from __future__ import annotations

import calendar
from datetime import datetime
from functools import lru_cache
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints
from pydantic_core import PydanticCustomError

_NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"  # C0, DEL and C1 control characters
_TEXT_CONTROL = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"  # free text keeps tab, LF, CR

ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=_NO_CONTROL)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=_NO_CONTROL)]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=20000, pattern=_TEXT_CONTROL)]
# Identifiers and links refuse invisible format characters too (zero-width, bidi overrides, BOM):
# they make two different identifiers look the same (spoofing) and a link point elsewhere than shown.
_INVISIBLE = r"\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=512, pattern=rf"^[^\s\x00-\x1f\x7f{_INVISIBLE}]+$")
]
Url = Annotated[str, StringConstraints(max_length=2048, pattern=rf"^https?://[^\s\x00-\x1f\x7f{_INVISIBLE}]+$")]
Email = Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]

MIN_YEAR, MAX_YEAR = 1900, 2200  # anything outside is a data-entry error (e.g. "7172-75-08")


@lru_cache(maxsize=8192)  # pure; passports repeat the same dates and substances many times over
def _real_date(value: str) -> str:
    """Year-month or full date that exists on the calendar, within MIN_YEAR..MAX_YEAR."""
    year, month = int(value[0:4]), int(value[5:7])
    day = int(value[8:10]) if len(value) == 10 else 1
    if not (MIN_YEAR <= year <= MAX_YEAR):
        raise PydanticCustomError("date.plausibleYear", f"year {year} is outside {MIN_YEAR}..{MAX_YEAR}")
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise PydanticCustomError("date.calendar", f"{value} is not a real calendar date")
    return value


@lru_cache(maxsize=8192)
def _real_timestamp(value: str) -> str:
    _real_date(value[:10])
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise PydanticCustomError("date.calendar", f"{value} is not a real date and time") from exc
    return value


def cas_check_digit_ok(cas: str) -> bool:
    """CAS Registry Number check digit: sum of digits weighted 1,2,3... from the right, mod 10."""
    digits = cas.replace("-", "")
    body, check = digits[:-1], int(digits[-1])
    return sum(i * int(d) for i, d in enumerate(reversed(body), start=1)) % 10 == check


@lru_cache(maxsize=8192)
def _cas(value: str) -> str:
    if not int(value.replace("-", "")[:-1]):  # 00-00-0 passes the check digit but names no substance
        raise PydanticCustomError("cas.registryNumber", f"{value} is not a CAS Registry Number (all zeros)")
    if not cas_check_digit_ok(value):
        raise PydanticCustomError("cas.checkDigit", f"{value} fails the CAS check digit")
    return value


# Patterns use [0-9], never \d: \d also matches other scripts' digits ("٢٠٢٦-٠٢-٢٨"), which int() then reads.
# ISO 8601 calendar date or year-month that exists.
DateOrMonth = Annotated[
    str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}(-[0-9]{2})?$"), AfterValidator(_real_date)
]
Date = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"), AfterValidator(_real_date)]
# ISO 8601 timestamp with Z or an offset, on a real date and clock.
Timestamp = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"),
    AfterValidator(_real_timestamp),
]
# CAS Registry Number, no stray spaces, correct check digit.
CasNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{2,7}-[0-9]{2}-[0-9]$"), AfterValidator(_cas)]



def _jcs_number(value: float) -> float | int:
    """Integral floats serialise as integers, as RFC 8785 writes them (60.0 → 60).

    Without this every JSON ``60`` read into a float field would come out as ``60.0`` and send the
    document down the slow canonicalisation path (``integrity.canonical``).
    """
    return int(value) if value.is_integer() and -(2**53) <= value <= 2**53 else value


Number = Annotated[float, PlainSerializer(_jcs_number, when_used="json")]
Percent = Annotated[Number, Field(ge=0, le=100)]
NonNegative = Annotated[Number, Field(ge=0)]
Count = Annotated[int, Field(ge=0, le=10**12)]
Temperature = Annotated[Number, Field(ge=-273.15, le=1000)]
Voltage = Annotated[Number, Field(ge=0, le=100000)]


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

    value: Number
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

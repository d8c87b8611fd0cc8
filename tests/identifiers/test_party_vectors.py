"""Operator and facility identifier vectors (party_vectors.json) and property checks of the check digits."""

from __future__ import annotations

import json
import random
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dbp.errors import BadRequest
from dbp.identifiers.common import IdentifierError
from dbp.identifiers.gs1 import check_digit
from dbp.identifiers.parties import (
    PartyIdentifier,
    PartyScheme,
    lei_check_digits,
    parse_facility_identifier,
    parse_operator_identifier,
    recognise_facility_identifier,
    recognise_operator_identifier,
)

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "party_vectors.json").read_text(encoding="utf-8"))
PARSE: dict[str, Callable[[str], PartyIdentifier]] = {
    "operator": parse_operator_identifier,
    "facility": parse_facility_identifier,
}
RECOGNISE: dict[str, Callable[[str], PartyIdentifier | None]] = {
    "operator": recognise_operator_identifier,
    "facility": recognise_facility_identifier,
}


def by_name(group: str) -> Any:
    return pytest.mark.parametrize("vector", VECTORS[group], ids=[v["name"] for v in VECTORS[group]])


def text_of(vector: dict[str, Any]) -> str:
    text: str = vector["input"]
    if "repeat" in vector:
        chunk, times = vector["repeat"]
        text += chunk * times
    return text


def assert_refusal(error: IdentifierError, rule: str) -> None:
    assert error.rule == rule, error.message
    # Every refusal names its rule and says what was expected and what was found, briefly.
    assert error.message.startswith(rule + ": ")
    assert "expected" in error.message and "got" in error.message
    assert len(error.message) < 300
    assert isinstance(error, BadRequest) and error.http_status == 400
    assert [d.rule for d in error.details] == [rule]


@by_name("valid")
def test_valid_vector(vector: dict[str, str]) -> None:
    ident = PARSE[vector["role"]](vector["input"])
    assert ident.scheme == vector["scheme"]
    assert ident.canonical() == vector["canonical"]
    assert ident.key() == vector["key"]
    # The canonical form reads back as the same identifier.
    assert PARSE[vector["role"]](ident.canonical()) == ident
    # recognise_* agrees with parse_*, except that an opaque URI claims no scheme.
    recognised = RECOGNISE[vector["role"]](vector["input"])
    assert recognised == (None if ident.scheme is PartyScheme.URI else ident)


@by_name("invalid")
def test_invalid_vector(vector: dict[str, Any]) -> None:
    text = text_of(vector)
    for call in (PARSE[vector["role"]], RECOGNISE[vector["role"]]):
        started = time.perf_counter()
        with pytest.raises(IdentifierError) as caught:
            call(text)
        assert time.perf_counter() - started < 0.5
        assert_refusal(caught.value, vector["rule"])


@by_name("unparsable")
def test_unparsable_vector(vector: dict[str, str]) -> None:
    with pytest.raises(IdentifierError) as caught:
        PARSE[vector["role"]](vector["input"])
    assert_refusal(caught.value, vector["rule"])
    assert RECOGNISE[vector["role"]](vector["input"]) is None


@by_name("opaque")
def test_opaque_vector(vector: dict[str, str]) -> None:
    assert RECOGNISE[vector["role"]](vector["input"]) is None


@pytest.mark.parametrize("group", VECTORS["sameKey"], ids=lambda g: g[1][:30])
def test_same_identifier_same_key(group: list[str]) -> None:
    role, *texts = group
    parsed = [PARSE[role](text) for text in texts]
    assert len({p.key() for p in parsed}) == 1, [p.key() for p in parsed]
    assert len({p.scheme for p in parsed}) == 1


@pytest.mark.parametrize("pair", VECTORS["differentKey"], ids=lambda g: g[1][:30])
def test_different_identifiers_different_keys(pair: list[str]) -> None:
    role, first, second = pair
    assert PARSE[role](first).key() != PARSE[role](second).key()


def test_vector_counts() -> None:
    # Guards against a vector file that silently lost its refusal cases.
    total = sum(len(VECTORS[g]) for g in ("valid", "invalid", "unparsable", "opaque"))
    assert total >= 60
    rules = {v["rule"] for v in VECTORS["invalid"]}
    for rule in (
        "gln.checkDigit",
        "gln.length",
        "gln.characters",
        "gln.role",
        "lei.checkDigits",
        "lei.length",
        "lei.characters",
        "eori.country",
        "eori.length",
        "eori.characters",
        "party.whitespace",
        "party.length",
        "iso15459.syntax",
    ):
        assert rule in rules


def test_existing_operator_ids_stay_opaque() -> None:
    # The operator ids the rest of the test suite writes passports for must never be refused.
    from conftest import TEST_OPERATORS

    for text in (*TEST_OPERATORS, "urn:dbp:test:service-provider", "EO-A", "EO-B"):
        assert recognise_operator_identifier(text) is None


def test_demo_fleet_identifiers_are_valid_glns(fleet: list[dict[str, Any]]) -> None:
    for doc in fleet:
        assert recognise_operator_identifier(doc["economicOperatorId"]) is not None
        if doc.get("facilityId"):
            assert recognise_facility_identifier(doc["facilityId"]) is not None


# ---------------------------------------------------------------------------------------- properties
def _flips(text: str, alphabet: str) -> list[str]:
    return [text[:i] + c + text[i + 1 :] for i in range(len(text)) for c in alphabet if c != text[i]]


def test_random_glns_round_trip_and_every_single_digit_change_is_refused() -> None:
    rng = random.Random(17)
    for _ in range(200):
        body = "".join(rng.choice(string.digits) for _ in range(12))
        gln = body + str(check_digit(body))
        for parse in (parse_operator_identifier, parse_facility_identifier):
            ident = parse(gln)
            assert (ident.scheme, ident.value) == (PartyScheme.GLN, gln)
            assert parse(ident.canonical()) == ident
        # GS1 mod-10 detects every single-digit substitution.
        for wrong in _flips(gln, string.digits):
            with pytest.raises(IdentifierError) as caught:
                recognise_operator_identifier(wrong)
            assert caught.value.rule == "gln.checkDigit"


def test_random_leis_round_trip_and_every_single_character_change_is_refused() -> None:
    rng = random.Random(23)
    alphabet = string.ascii_uppercase + string.digits
    for _ in range(100):
        body = "".join(rng.choice(alphabet) for _ in range(18))
        lei = body + lei_check_digits(body)
        ident = parse_operator_identifier(lei)
        assert (ident.scheme, ident.value) == (PartyScheme.LEI, lei)
        assert parse_operator_identifier(ident.canonical()) == ident
        assert parse_operator_identifier("lei:" + lei.lower()) == ident
        # MOD 97-10 detects every substitution of a digit by a digit and of a letter by a letter (the
        # change is d * 10^k with 0 < |d| < 97); the check digits stay digits.
        for i in range(20):
            same_class = string.digits if lei[i].isdigit() else string.ascii_uppercase
            for c in same_class:
                if c == lei[i]:
                    continue
                with pytest.raises(IdentifierError) as caught:
                    recognise_operator_identifier(lei[:i] + c + lei[i + 1 :])
                assert caught.value.rule == "lei.checkDigits"


def test_lei_letter_digit_substitution_can_go_undetected() -> None:
    # A known limit of ISO 17442: a letter is expanded to two digits before MOD 97-10, so a letter
    # replaced by a digit (or the reverse) shifts the number and is missed about once in a hundred.
    # Both are well-formed LEIs with correct check digits; only the GLEIF index can tell them apart.
    assert (
        parse_operator_identifier("SFBT1Y7WIMR2AO3BGF11").key()
        != parse_operator_identifier("SFB71Y7WIMR2AO3BGF11").key()
    )


def test_lei_check_digits_match_published_leis() -> None:
    # GLEIF's example LEI and two published LEIs (ISO 17442 / ISO 7064 MOD 97-10).
    for lei in ("5493001KJTIIGC8Y1R12", "7LTWFZYICNSX8D621K86", "529900T8BM49AURSDO55"):
        assert lei_check_digits(lei[:18]) == lei[18:]
        assert int("".join(str(int(c, 36)) for c in lei)) % 97 == 1


def test_hostile_input_is_refused_quickly_with_a_short_message() -> None:
    hostile = "(417)" + "4" * 10_000_000
    for call in (parse_operator_identifier, recognise_facility_identifier):
        started = time.perf_counter()
        with pytest.raises(IdentifierError) as caught:
            call(hostile)
        assert time.perf_counter() - started < 0.1
        assert caught.value.rule == "party.length" and len(caught.value.message) < 200


def test_non_string_is_refused() -> None:
    with pytest.raises(IdentifierError) as caught:
        recognise_operator_identifier(4012345000009)  # type: ignore[arg-type]
    assert caught.value.rule == "party.type"

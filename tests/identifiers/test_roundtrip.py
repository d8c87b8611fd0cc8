"""Round trips: parse → canonical → parse is identity; element string ↔ URI; any resolver domain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbp.identifiers import IdentifierError, Scheme, parse_identifier
from dbp.identifiers.gs1 import Gs1Identifier, check_digit, parse_digital_link, parse_element_string
from dbp.identifiers.iec61406 import parse_identification_link
from dbp.identifiers.iso15459 import Iso15459Id

VALID = json.loads((Path(__file__).parent / "vectors.json").read_text(encoding="utf-8"))["valid"]
GS1 = [v for v in VALID if v["scheme"] == "gs1"]


def names(vectors: list[dict[str, str]]) -> list[str]:
    return [v["name"] for v in vectors]


@pytest.mark.parametrize("vector", VALID, ids=names(VALID))
def test_canonical_is_a_fixed_point(vector: dict[str, str]) -> None:
    first = parse_identifier(vector["input"])
    again = parse_identifier(first.canonical())
    assert again == first
    assert again.canonical() == first.canonical()


@pytest.mark.parametrize("vector", GS1, ids=names(GS1))
def test_element_string_and_uri_round_trip(vector: dict[str, str]) -> None:
    ident = parse_identifier(vector["input"]).value
    assert isinstance(ident, Gs1Identifier)
    assert parse_element_string(ident.element_string()) == ident
    assert parse_digital_link(ident.canonical()) == ident
    assert parse_element_string(ident.element_string()).canonical() == ident.canonical()


@pytest.mark.parametrize("vector", GS1, ids=names(GS1))
def test_canonical_on_operator_domain(vector: dict[str, str]) -> None:
    ident = parse_identifier(vector["input"]).value
    assert isinstance(ident, Gs1Identifier)
    uri = ident.canonical("Battery.Example.com/dl/")
    assert uri == vector["canonical"].replace("https://id.gs1.org", "https://battery.example.com/dl")
    assert parse_digital_link(uri) == ident


@pytest.mark.parametrize(
    ("resolver", "base"),
    [
        ("example.com", "https://example.com"),
        ("https://EXAMPLE.com/", "https://example.com"),
        ("https://example.com:443/r", "https://example.com/r"),
        ("https://example.com:8443", "https://example.com:8443"),
    ],
)
def test_resolver_forms(resolver: str, base: str) -> None:
    ident = parse_element_string("(01)09506000134352(21)1")
    assert ident.canonical(resolver) == base + "/01/09506000134352/21/1"


@pytest.mark.parametrize(
    "resolver", ["http://example.com", "https://example.com/?x=1", "https://u@example.com", "https://"]
)
def test_bad_resolver_refused(resolver: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        parse_element_string("(01)09506000134352").canonical(resolver)
    assert caught.value.rule == "gs1.resolver"


def test_published_check_digits() -> None:
    # GS1's example GTIN and GLN, a GTIN-13 (EAN), a GTIN-12 (UPC-A) and a GTIN-8.
    assert check_digit("0950600013435") == 2
    assert check_digit("950600013437") == 6
    assert check_digit("590123412345") == 7
    assert check_digit("03600029145") == 2
    assert check_digit("9638507") == 4


def test_accessors_and_granularity() -> None:
    item = parse_identifier("https://id.gs1.org/01/09506000134352/10/L1/21/S1").value
    assert isinstance(item, Gs1Identifier)
    assert (item.gtin, item.lot, item.serial, item.granularity) == ("09506000134352", "L1", "S1", "item")
    assert parse_element_string("(01)09506000134352(10)L1").granularity == "batch"
    assert parse_element_string("(8013)M1").granularity == "model"
    assert parse_element_string("(414)9506000134376").granularity == "facility"


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        (("01", "9506000134352"), "gs1.length"),  # direct construction needs the padded GTIN-14
        (("01", "09506000134353"), "gs1.checkDigit"),
        (("21", "S"), "gs1.primaryKey"),
        (("01", "09506000134352", (("21", "S"), ("10", "L"))), "gs1.qualifierOrder"),
        (("01", "09506000134352", (("21", "A B"),)), "gs1.charset"),
    ],
)
def test_direct_construction_is_validated(args: tuple, rule: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(IdentifierError) as caught:
        Gs1Identifier(*args)
    assert caught.value.rule == rule


def test_identifiers_are_frozen_and_hashable() -> None:
    ident = parse_identifier("(01)09506000134352(21)1")
    assert len({ident, parse_identifier("https://x.example/01/09506000134352/21/1")}) == 1
    with pytest.raises(AttributeError):
        ident.value.primary_value = "0"  # type: ignore[misc, union-attr]


def test_scheme_recognition() -> None:
    assert parse_identifier("https://id.gs1.org/01/09506000134352").scheme is Scheme.GS1
    assert parse_identifier("https://example.com/passport/1").scheme is Scheme.IEC61406
    assert parse_identifier("iso15459:UN:1:2").scheme is Scheme.ISO15459
    assert parse_identification_link("https://example.com/a%2fb").url == "https://example.com/a%2Fb"


def test_iso15459_construction_matches_parsing() -> None:
    assert Iso15459Id("UN", "123", "4").canonical() == "iso15459:UN:123:4"
    with pytest.raises(IdentifierError):
        Iso15459Id("un", "123", "4")


def test_hostile_lengths_are_bounded() -> None:
    for text in ("https://id.gs1.org/01/" + "9" * 5000, "(01)" + "9" * 5000, "iso15459:UN:1:" + "2" * 5000):
        with pytest.raises(IdentifierError) as caught:
            parse_identifier(text)
        assert caught.value.rule.endswith(".length")
        assert len(caught.value.message) < 300

"""Identifier vectors (vectors.json): canonical forms, keys, element strings and refusal rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dbp.errors import BadRequest
from dbp.identifiers import IdentifierError, parse_identifier
from dbp.identifiers.gs1 import Gs1Identifier, parse_digital_link, parse_element_string

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "vectors.json").read_text(encoding="utf-8"))


def by_name(group: str) -> Any:
    return pytest.mark.parametrize("vector", VECTORS[group], ids=[v["name"] for v in VECTORS[group]])


@by_name("valid")
def test_valid_vector(vector: dict[str, str]) -> None:
    ident = parse_identifier(vector["input"])
    assert ident.scheme == vector["scheme"]
    assert ident.canonical() == vector["canonical"]
    assert ident.key() == vector["key"]
    if "elementString" in vector:
        assert isinstance(ident.value, Gs1Identifier)
        assert ident.value.element_string() == vector["elementString"]


@by_name("invalid")
def test_invalid_vector(vector: dict[str, str]) -> None:
    with pytest.raises(IdentifierError) as caught:
        parse_identifier(vector["input"])
    error = caught.value
    assert error.rule == vector["rule"], error.message
    # Every refusal names its rule and says what was expected and what was found.
    assert error.message.startswith(vector["rule"] + ": ")
    assert "expected" in error.message
    assert "got" in error.message
    assert isinstance(error, BadRequest) and error.http_status == 400
    assert [d.rule for d in error.details] == [vector["rule"]]


@by_name("gs1Only")
def test_gs1_parser_refusals(vector: dict[str, str]) -> None:
    with pytest.raises(IdentifierError) as caught:
        parse_digital_link(vector["input"])
    assert caught.value.rule == vector["rule"]


@pytest.mark.parametrize("group", VECTORS["sameKey"])
def test_same_identifier_same_key(group: list[str]) -> None:
    parsed = [parse_identifier(text) for text in group]
    assert len({p.key() for p in parsed}) == 1
    assert len({p.scheme for p in parsed}) == 1


@pytest.mark.parametrize("pair", VECTORS["differentKey"])
def test_different_identifiers_different_keys(pair: list[str]) -> None:
    first, second = (parse_identifier(text) for text in pair)
    assert first.key() != second.key()
    assert first != second


def test_vector_counts() -> None:
    # Guards against a vector file that silently lost its refusal cases.
    assert len(VECTORS["valid"]) >= 20
    assert len(VECTORS["invalid"]) >= 50
    rules = {v["rule"] for v in VECTORS["invalid"]}
    for rule in ("gs1.checkDigit", "gs1.length", "gs1.charset", "gs1.qualifierOrder", "gs1.compressed", "gs1.scheme"):
        assert rule in rules


def test_element_string_parser_is_exposed() -> None:
    assert parse_element_string("(01)09506000134352").gtin == "09506000134352"

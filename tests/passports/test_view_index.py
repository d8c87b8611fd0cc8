"""View indexes: an access view cut out of the stored canonical bytes is byte-identical to the view made
by parsing, redacting and re-serialising (RFC 8785), for every combination of access groups; where the
pieces would not join back into the stored bytes there is no index and the view is redacted."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import orjson
import pytest

from dbp.integrity.canonical import canonical_bytes
from dbp.passports import redaction
from dbp.passports.attributes import AccessGroup
from dbp.passports.redaction import ViewCache, catalogue_fingerprint, index_of, redacted_bytes, view_from_index

GROUP_SETS = [frozenset(c) for r in range(len(AccessGroup) + 1) for c in itertools.combinations(AccessGroup, r)]


def views_agree(doc: dict[str, Any]) -> int:
    """Every combination with the public group comes from the index, equal to the redacted view (bytes
    and hash); the others are not in the index."""
    body = canonical_bytes(doc)
    index = index_of(doc, body)
    assert index is not None
    assert orjson.loads(index)["catalogue"] == catalogue_fingerprint()
    for groups in GROUP_SETS:
        cut = view_from_index(body, index, groups)
        if AccessGroup.public in groups:
            assert cut == redacted_bytes(body, groups), sorted(groups)
        else:
            assert cut is None
    return len(GROUP_SETS)


def test_cut_views_equal_redacted_views_for_the_whole_fleet(fleet: list[dict[str, Any]]) -> None:
    assert sum(views_agree(doc) for doc in fleet) == len(fleet) * 16


def test_odd_but_valid_documents(fleet: list[dict[str, Any]]) -> None:
    doc = copy.deepcopy(fleet[0])
    doc["generalProductInformation"]["batteryModelIdentifier"] = 'quote " backslash \\ tab \t é 𝄞 \u2028'
    doc["circularity"] = {}  # an empty cluster stays, as redact leaves it
    doc["zzUnknownTopLevel"] = [1, {"b": 2, "a": None}]  # not an attribute: always kept
    views_agree(doc)
    only_withheld = {"dppId": "urn:uuid:x", "performance": {"stateOfHealth": 90}}
    views_agree(only_withheld)


@pytest.mark.parametrize("value", [1.0, 1e20, -0.0])
def test_no_index_where_orjson_and_rfc8785_differ(fleet: list[dict[str, Any]], value: float) -> None:
    doc = copy.deepcopy(fleet[0])
    doc["zzNumber"] = value  # RFC 8785 writes 1, 100000000000000000000, 0 where orjson writes 1.0, 1e+20, -0.0
    body = canonical_bytes(doc)
    assert index_of(doc, body) is None
    cache = ViewCache()
    groups = frozenset({AccessGroup.public})
    assert cache.get("d", 1, groups, body, None) == redacted_bytes(body, groups)


def test_the_cache_uses_the_index_and_gives_the_same_answer(fleet: list[dict[str, Any]]) -> None:
    doc = fleet[1]
    body = canonical_bytes(doc)
    index = index_of(doc, body)
    groups = frozenset({AccessGroup.public, AccessGroup.legitimate_interest_and_authorities})
    with_index, without = ViewCache(), ViewCache()
    assert with_index.get("d", 1, groups, body, index) == without.get("d", 1, groups, body, None)
    assert with_index.get("d", 1, groups, body, index) == redacted_bytes(body, groups)


def test_a_wrong_index_is_never_made(fleet: list[dict[str, Any]]) -> None:
    doc = fleet[2]
    body = canonical_bytes(doc)
    assert index_of(doc, body + b" ") is None  # bytes that are not this document's serialisation
    other = copy.deepcopy(doc)
    other["dppId"] = "urn:uuid:another"
    assert index_of(other, body) is None


UNREADABLE = ["", "{}", "[3]", "[[0, 9, 0, null, 0]]", "not json", '{"catalogue": "0000", "members": []}',
              '{"members": [[0, 9, 0, null, 0]]}']


@pytest.mark.parametrize("index", UNREADABLE + [
    f'{{"catalogue": "{catalogue_fingerprint()}", "members": {m}}}'
    for m in ("3", "[[1, 2]]", '[["x", 1, 0, null, 0]]', "[[0, 1, 0, [[1]], 8]]", "[[0, 1, 0, null, 8]]")])
def test_an_unreadable_index_means_redaction(fleet: list[dict[str, Any]], index: str) -> None:
    body = canonical_bytes(fleet[0])
    groups = frozenset({AccessGroup.public, AccessGroup.legitimate_interest_and_authorities})
    assert view_from_index(body, index, groups) is None
    assert ViewCache().get("d", 1, groups, body, index) == redacted_bytes(body, groups)


def test_an_index_made_under_another_catalogue_is_not_used(fleet: list[dict[str, Any]],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A release that moves an attribute to another access group must not serve views cut by old indexes."""
    body = canonical_bytes(fleet[0])
    index = index_of(fleet[0], body)
    assert index is not None
    groups = frozenset({AccessGroup.public, AccessGroup.legitimate_interest_and_authorities})
    assert view_from_index(body, index, groups) is not None
    monkeypatch.setattr(redaction, "catalogue_fingerprint", lambda: "another-catalogue")
    assert view_from_index(body, index, groups) is None

"""Identifiers on passport writes: one battery, one passport, however its identifier is written
(passports.product_key, migration 0010); an active passport records its facility identifier.

A GS1 Digital Link on another domain, the GTIN-13 form or the element string of a stored battery names the same
battery: creating a second passport for it is a conflict naming the first, and every lookup by product identifier
finds it. A malformed identifier is refused with the broken rule (422 as a semantic rule of a document, 400 in
a lookup).
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select

from conftest import assert_error
from dbp.identifiers import parse_identifier
from dbp.passports.models import Passport


def _spellings(upi: str) -> list[str]:
    """Other written forms of the same GS1 identifier: another domain, its element string."""
    gs1 = parse_identifier(upi)
    path = upi.split("://", 1)[1].split("/", 1)[1]
    return [f"https://other-resolver.example/{path}", gs1.value.element_string()]


def test_second_spelling_of_a_stored_battery_conflicts(client: httpx.Client, passport: dict[str, Any],
                                                        session_factory: Any) -> None:
    first = client.post("/api/v1/dpps", json=passport)
    assert first.status_code == 201, first.text
    other = copy.deepcopy(passport)
    other["uniqueProductIdentifier"] = _spellings(passport["uniqueProductIdentifier"])[0]
    body = assert_error(client.post("/api/v1/dpps", json=other), 409, "ClientResourceConflict")
    text = body["message"][0]["text"]
    assert first.json()["dppId"] in text and passport["uniqueProductIdentifier"] in text
    with session_factory() as s:  # nothing half-written
        assert s.scalar(select(Passport.dpp_id).where(Passport.product_id == other["uniqueProductIdentifier"])) \
            is None


def test_lookup_by_any_spelling(client: httpx.Client, public: httpx.Client, passport: dict[str, Any]) -> None:
    created = client.post("/api/v1/dpps", json=passport)
    assert created.status_code == 201
    dpp_id = created.json()["dppId"]
    for written in _spellings(passport["uniqueProductIdentifier"]):
        r = public.get(f"/api/v1/dppsByProductId/{quote(written, safe='')}")
        assert r.status_code == 200, (written, r.text[:300])
        assert r.json()["dppId"] == dpp_id
    ids = client.post("/api/v1/dppsByProductIds", json={"productIds": [
        _spellings(passport["uniqueProductIdentifier"])[1], "https://x.example/01/12345678901234/21/A"]})
    assert ids.status_code == 200
    assert [i["dppId"] for i in ids.json()["items"]] == [dpp_id]


@pytest.mark.parametrize(("upi", "rule"), [
    ("https://id.dbp.example/01/09506000134353/21/A", "gtin.checkDigit"),  # last digit off by one
    ("https://id.dbp.example/01/09506000134352/21/" + "S" * 21, "gs1.length"),  # AI 21 holds at most 20
    ("http://plain.example/battery/1", "iec61406.scheme"),  # an IEC 61406 link is https
])
def test_malformed_identifier_is_refused_with_its_rule(client: httpx.Client, passport: dict[str, Any],
                                                       upi: str, rule: str) -> None:
    doc = copy.deepcopy(passport)
    doc["uniqueProductIdentifier"] = upi
    body = assert_error(client.post("/api/v1/dpps", json=doc), 422, "ClientErrorBadRequest")  # a semantic rule
    details = [d for m in body["message"] for d in m.get("details", [])]
    assert {"path": "$.uniqueProductIdentifier", "rule": rule} in [{k: d[k] for k in ("path", "rule")}
                                                                   for d in details], details


def test_malformed_lookup_is_400_with_reason(public: httpx.Client) -> None:
    r = public.get(f"/api/v1/dppsByProductId/{quote('https://id.dbp.example/01/09506000134353/21/A', safe='')}")
    body = assert_error(r, 400, "ClientErrorBadRequest")
    assert "checkDigit" in str(body)


def test_an_active_passport_records_its_facility(client: httpx.Client, passport: dict[str, Any]) -> None:
    doc = copy.deepcopy(passport)
    doc.pop("facilityId", None)
    plant = (doc.get("generalProductInformation") or {}).get("manufacturingPlace") or {}
    plant.pop("facilityId", None)
    body = assert_error(client.post("/api/v1/dpps", json=doc), 422, "ClientErrorBadRequest")
    details = [d for m in body["message"] for d in m.get("details", [])]
    assert {"path": "$.facilityId", "rule": "required.forActivation"} in [
        {k: d[k] for k in ("path", "rule")} for d in details], details
    doc["dppStatus"] = "draft"  # a draft may still be incomplete
    assert client.post("/api/v1/dpps", json=doc).status_code == 201


# ------------------------------------------------------------------------------ keys and aliases
@pytest.mark.parametrize(("a", "b"), [
    ("urn:epc:id:sgtin:9506000.013435.ABC", "https://id.dbp.example/01/09506000134352/21/ABC"),  # EPC URN = GS1
    ("https://x.example/01/09506000134352/10/L1/21/ABC", "(01)09506000134352(21)ABC"),  # GTIN + serial names it
    ("urn:EPC:id:sgtin:9506000.013435.ABC", "urn:epc:id:sgtin:9506000.013435.ABC"),  # NID case-insensitive
    ("URN:Example:Foo-1", "urn:example:Foo-1"),
])
def test_one_battery_one_key(a: str, b: str) -> None:
    from dbp.identifiers import product_key

    assert product_key(a) == product_key(b)


@pytest.mark.parametrize(("a", "b"), [
    ("urn:example:Foo-1", "urn:example:foo-1"),  # the namespace-specific string keeps its case
    ("(01)09506000134352(21)ABC", "(01)09506000134352(21)ABD"),
    ("(01)09506000134352(10)L1", "(01)09506000134352(10)L2"),
])
def test_two_batteries_two_keys(a: str, b: str) -> None:
    from dbp.identifiers import product_key

    assert product_key(a) != product_key(b)


@pytest.mark.parametrize("urn", ["urn:x", "urn::x", "urn:-ab:x", "urn:epc:id:sgtin:9506000.13435.ABC"])
def test_malformed_urns_are_refused(urn: str) -> None:
    from dbp.identifiers import IdentifierError, product_key

    with pytest.raises(IdentifierError):
        product_key(urn)


def _with_aliases(passport: dict[str, Any], serial: str, aliases: list[str]) -> dict[str, Any]:
    doc = copy.deepcopy(passport)
    doc["uniqueProductIdentifier"] = f"https://id.dbp.example/01/09506000134352/21/{serial}"
    doc["productIdentifierAliases"] = aliases
    return doc


def test_an_alias_resolves_to_its_battery_and_names_no_other(client: httpx.Client, public: httpx.Client,
                                                              passport: dict[str, Any], session_factory: Any) -> None:
    alias = "https://battery.example.com/il/ALIAS-1"  # an IEC 61406 identification link of the same battery
    first = client.post("/api/v1/dpps", json=_with_aliases(passport, "AL1", [alias, "iso15459:UN:ACME:AL1"]))
    assert first.status_code == 201, first.text
    dpp_id = first.json()["dppId"]
    for written in (alias, "iso15459:UN:ACME:AL1", "https://BATTERY.example.com/il/ALIAS-1"):
        r = public.get(f"/api/v1/dppsByProductId/{quote(written, safe='')}")
        assert r.status_code == 200 and r.json()["dppId"] == dpp_id, (written, r.text[:200])
    # another battery may neither list it as alias nor be created under it
    body = assert_error(client.post("/api/v1/dpps", json=_with_aliases(passport, "AL2", [alias])), 409,
                        "ClientResourceConflict")
    assert dpp_id in body["message"][0]["text"]
    other = copy.deepcopy(passport)
    other["uniqueProductIdentifier"] = alias
    assert_error(client.post("/api/v1/dpps", json=other), 409, "ClientResourceConflict")
    # nor can a battery's own identifier become another's alias
    own = _with_aliases(passport, "AL3", [first.json()["uniqueProductIdentifier"]])
    assert_error(client.post("/api/v1/dpps", json=own), 409, "ClientResourceConflict")
    with session_factory() as s:  # nothing half-written by the refused creations
        from dbp.passports.models import ProductAlias

        assert sorted(a.dpp_id for a in s.scalars(select(ProductAlias))) == [dpp_id, dpp_id]
    # dropping an alias in a new version frees it
    patched = client.patch(f"/api/v1/dpps/{dpp_id}", content=b'{"productIdentifierAliases": ["iso15459:UN:ACME:AL1"]}',
                           headers={"Content-Type": "application/merge-patch+json", "If-Match": first.headers["etag"]})
    assert patched.status_code == 200, patched.text
    assert client.post("/api/v1/dpps", json=_with_aliases(passport, "AL2", [alias])).status_code == 201


@pytest.mark.parametrize(("aliases", "rule"), [
    (["http://battery.example.com/x"], "iec61406.scheme"),
    (["https://id.dbp.example/01/09506000134352/21/SELF"], "alias.self"),
    (["iso15459:UN:ACME:1", "iso15459:UN:ACME:1"], "alias.duplicate"),
])
def test_malformed_aliases_are_refused_with_their_rule(client: httpx.Client, passport: dict[str, Any],
                                                       aliases: list[str], rule: str) -> None:
    body = assert_error(client.post("/api/v1/dpps", json=_with_aliases(passport, "SELF", aliases)), 422,
                        "ClientErrorBadRequest")
    assert rule in {d["rule"] for m in body["message"] for d in m.get("details", [])}, body


def test_a_legacy_unparsed_key_still_resolves_and_updates(client: httpx.Client, public: httpx.Client,
                                                          passport: dict[str, Any], session_factory: Any) -> None:
    """A row keyed ``unparsed:`` by migration 0010 (an identifier stored before the parsers refused it) is found
    by its exact identifier and can still get new versions; its key is not recomputed."""
    created = client.post("/api/v1/dpps", json=passport)
    assert created.status_code == 201
    dpp_id, legacy = created.json()["dppId"], "http://legacy.example/battery/1"
    with session_factory.begin() as s:  # what a pre-0010 row looks like after the migration
        from sqlalchemy import update

        s.execute(update(Passport).where(Passport.dpp_id == dpp_id).values(product_key="unparsed:" + legacy))
    r = public.get(f"/api/v1/dppsByProductId/{quote(legacy, safe='')}")  # http: the parsers refuse it
    assert r.status_code == 200 and r.json()["dppId"] == dpp_id, r.text[:300]
    with session_factory() as s:
        assert s.scalar(select(Passport.product_key).where(Passport.dpp_id == dpp_id)) == "unparsed:" + legacy
    patched = client.patch(f"/api/v1/dpps/{dpp_id}", content=b'{"contentSpecificationIds": ["urn:x:v2"]}',
                           headers={"Content-Type": "application/merge-patch+json"})
    assert patched.status_code == 200, patched.text
    with session_factory() as s:  # an update does not recompute the key
        assert s.scalar(select(Passport.product_key).where(Passport.dpp_id == dpp_id)) == "unparsed:" + legacy

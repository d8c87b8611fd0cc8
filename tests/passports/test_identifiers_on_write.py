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

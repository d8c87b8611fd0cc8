"""Art. 77(7)-(8) lifecycle over HTTP: second life, waste, recycling (HARD-1)."""

from __future__ import annotations

import copy
from typing import Any

import httpx

from dbp.passports.demo import successor_document


def _create(client: httpx.Client, doc: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/api/v1/dpps", json=doc)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


def _evs(fleet: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [copy.deepcopy(d) for d in fleet if d["generalProductInformation"]["batteryCategory"] == "ev"][:n]


def test_repurposing_creates_linked_successor(client: httpx.Client, fleet: list[dict[str, Any]]) -> None:
    originals = _evs(fleet, 2)
    preds = [_create(client, d) for d in originals]
    before = [client.get(f"/api/v1/dpps/{p['dppId']}").content for p in preds]
    new_doc = successor_document(originals, "repurposing", index=0)
    r = client.post("/api/v1/lifecycle/successors", json={
        "operation": "repurposing", "predecessorDppIds": [p["dppId"] for p in preds], "passport": new_doc})
    assert r.status_code == 201, r.text
    succ = r.json()
    assert succ["dppId"] not in {p["dppId"] for p in preds}
    assert succ["uniqueProductIdentifier"] not in {p["uniqueProductIdentifier"] for p in preds}
    assert succ["generalProductInformation"]["batteryStatus"] == "repurposed"
    assert sorted(succ["predecessorDppIds"]) == sorted(p["dppId"] for p in preds)
    assert succ["economicOperatorId"] == new_doc["economicOperatorId"]
    for p, old_bytes in zip(preds, before, strict=True):
        now = client.get(f"/api/v1/dpps/{p['dppId']}").json()
        assert now["dppStatus"] == "inactive" and now["successorDppIds"] == [succ["dppId"]]
        # the original stays readable, its earlier version untouched
        assert client.get(f"/api/v1/dpps/{p['dppId']}/versions/1").content == old_bytes


def test_successor_refuses_bad_predecessors(client: httpx.Client, fleet: list[dict[str, Any]]) -> None:
    original = _evs(fleet, 1)
    pred = _create(client, original[0])
    new_doc = successor_document(original, "remanufacturing", index=1)
    unknown = client.post("/api/v1/lifecycle/successors", json={
        "operation": "remanufacturing", "predecessorDppIds": ["urn:uuid:00000000-0000-0000-0000-000000000001"],
        "passport": new_doc})
    assert unknown.status_code == 404
    prep = client.post("/api/v1/lifecycle/successors", json={
        "operation": "preparationForRepurposing", "predecessorDppIds": [pred["dppId"]], "passport": new_doc})
    assert prep.status_code == 409  # preparation for repurposing needs a waste battery
    assert client.get(f"/api/v1/dpps/{pred['dppId']}").json()["dppStatus"] == "active"
    assert client.get("/api/v1/dppsByProductId/" + new_doc["uniqueProductIdentifier"].replace("/", "%2F")
                      ).status_code == 404  # nothing half-written


def test_waste_then_recycle(client: httpx.Client, passport: dict[str, Any]) -> None:
    dpp = _create(client, passport)["dppId"]
    early = client.post(f"/api/v1/dpps/{dpp}/recycle", json={})
    assert early.status_code == 409
    w = client.post(f"/api/v1/dpps/{dpp}/waste", json={"responsibleOperatorId": "urn:dbp:op:pro-recycling-eu"})
    assert w.status_code == 200, w.text
    doc = w.json()
    assert doc["dppId"] == dpp  # same passport
    assert doc["generalProductInformation"]["batteryStatus"] == "waste"
    assert doc["economicOperatorId"] == "urn:dbp:op:pro-recycling-eu"
    assert client.post(f"/api/v1/dpps/{dpp}/waste", json={"responsibleOperatorId": "x"}).status_code == 409
    rec = client.post(f"/api/v1/dpps/{dpp}/recycle", json={"recyclerId": "urn:dbp:op:recycler"})
    assert rec.status_code == 200, rec.text
    assert rec.json()["dppStatus"] == "archived" and rec.json()["endOfLife"]["reason"] == "recycled"
    assert client.patch(f"/api/v1/dpps/{dpp}", json={"facilityId": "x"}).status_code == 409
    assert [v["change"] for v in client.get(f"/api/v1/dpps/{dpp}/versions").json()["versions"]] == [
        "create", "waste", "recycled"]


def test_waste_battery_gets_successor_by_preparation_for_repurposing(
        client: httpx.Client, fleet: list[dict[str, Any]]) -> None:
    original = _evs(fleet, 1)
    dpp = _create(client, original[0])["dppId"]
    assert client.post(f"/api/v1/dpps/{dpp}/waste", json={"responsibleOperatorId": "urn:dbp:op:w"}).status_code == 200
    repurpose = client.post("/api/v1/lifecycle/successors", json={
        "operation": "repurposing", "predecessorDppIds": [dpp],
        "passport": successor_document(original, "repurposing", index=2)})
    assert repurpose.status_code == 409  # repurposing is for non-waste batteries
    ok = client.post("/api/v1/lifecycle/successors", json={
        "operation": "preparationForRepurposing", "predecessorDppIds": [dpp],
        "passport": successor_document(original, "repurposing", index=2)})
    assert ok.status_code == 201, ok.text
    assert ok.json()["generalProductInformation"]["batteryStatus"] == "repurposed"


def test_battery_status_rules_on_update(client: httpx.Client, passport: dict[str, Any]) -> None:
    dpp = _create(client, passport)["dppId"]
    for status in ("waste", "repurposed", "remanufactured"):
        r = client.patch(f"/api/v1/dpps/{dpp}", json={"generalProductInformation": {"batteryStatus": status}})
        assert r.status_code == 422 and r.json()["message"][0]["details"][0]["rule"] == "batteryStatus.transition"
    repaired = client.patch(f"/api/v1/dpps/{dpp}", json={"generalProductInformation": {
        "batteryStatus": "re-used", "repairHistory": [{"date": "2026-05", "description": "module 3 replaced"}]}})
    assert repaired.status_code == 200, repaired.text
    assert repaired.json()["generalProductInformation"]["batteryStatus"] == "re-used"


def test_new_passport_must_be_original(client: httpx.Client, passport: dict[str, Any]) -> None:
    passport["generalProductInformation"]["batteryStatus"] = "repurposed"
    r = client.post("/api/v1/dpps", json=passport)
    assert r.status_code == 422
    assert r.json()["message"][0]["details"][0]["rule"] == "batteryStatus.initial"

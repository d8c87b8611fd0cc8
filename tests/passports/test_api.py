"""EN 18222 operations over real HTTP against a real database."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
import rfc8785

from conftest import assert_error
from dbp.integrity.canonical import sha256_hex


def create(client: httpx.Client, doc: dict[str, Any]) -> httpx.Response:
    r = client.post("/api/v1/dpps", json=doc)
    assert r.status_code == 201, r.text
    return r


def test_create_read_roundtrip(client: httpx.Client, passport: dict[str, Any]) -> None:
    r = create(client, passport)
    doc = r.json()
    assert r.headers["location"].endswith(f"/api/v1/dpps/{doc['dppId']}")
    assert doc["dppId"].startswith("urn:uuid:")
    assert doc["dppSchemaVersion"] and doc["lastUpdate"] and doc["dppStatus"] == "active"
    # the body is the RFC 8785 canonical form and the ETag is its SHA-256
    assert r.content == rfc8785.dumps(orjson.loads(r.content))
    assert r.headers["etag"] == f'"{sha256_hex(r.content)}"'
    got = client.get(r.headers["location"].split(str(client.base_url))[-1])
    assert got.status_code == 200 and got.content == r.content and got.headers["etag"] == r.headers["etag"]
    for key, value in passport.items():
        assert doc[key] == value or key in ("dppStatus",)


def test_read_unknown_is_404(client: httpx.Client) -> None:
    assert_error(client.get("/api/v1/dpps/urn:uuid:00000000-0000-0000-0000-000000000000"), 404,
                 "ClientErrorResourceNotFound")


def test_conditional_get(client: httpx.Client, passport: dict[str, Any]) -> None:
    r = create(client, passport)
    again = client.get(f"/api/v1/dpps/{r.json()['dppId']}", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


def test_duplicate_product_conflicts(client: httpx.Client, passport: dict[str, Any]) -> None:
    create(client, passport)
    assert_error(client.post("/api/v1/dpps", json=passport), 409, "ClientResourceConflict")


def test_read_by_product_id(client: httpx.Client, passport: dict[str, Any]) -> None:
    r = create(client, passport)
    upi = passport["uniqueProductIdentifier"]
    by_pid = client.get(f"/api/v1/dppsByProductId/{quote(upi, safe='')}")
    assert by_pid.status_code == 200 and by_pid.content == r.content
    assert_error(client.get(f"/api/v1/dppsByProductId/{quote(upi + 'x', safe='')}"), 404,
                 "ClientErrorResourceNotFound")


def test_merge_patch_creates_version_and_honours_if_match(client: httpx.Client, passport: dict[str, Any]) -> None:
    r = create(client, passport)
    dpp = r.json()["dppId"]
    etag1 = r.headers["etag"]
    patch = {"performanceAndDurability": {"ratedCapacity": 61.5, "powerToEnergyRatio": None}}
    p = client.patch(f"/api/v1/dpps/{dpp}", content=orjson.dumps(patch),
                     headers={"If-Match": etag1, "Content-Type": "application/merge-patch+json"})
    assert p.status_code == 200, p.text
    new = p.json()
    assert new["performanceAndDurability"]["ratedCapacity"] == 61.5
    assert "powerToEnergyRatio" not in new["performanceAndDurability"]
    assert p.headers["x-dpp-version"] == "2" and p.headers["etag"] != etag1
    # the old ETag is now stale: 412 and nothing stored changes
    stale = client.patch(f"/api/v1/dpps/{dpp}", json={"performanceAndDurability": {"ratedCapacity": 1.0}},
                         headers={"If-Match": etag1})
    assert_error(stale, 412, "ClientErrorPreconditionFailed")
    assert client.get(f"/api/v1/dpps/{dpp}").content == p.content
    versions = client.get(f"/api/v1/dpps/{dpp}/versions").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert client.get(f"/api/v1/dpps/{dpp}/versions/1").content == r.content


def test_invalid_patch_is_atomic(client: httpx.Client, passport: dict[str, Any]) -> None:
    r = create(client, passport)
    dpp = r.json()["dppId"]
    bad = {"performanceAndDurability": {"ratedCapacity": 70.0, "minimumVoltage": 1000.0}}
    body = assert_error(client.patch(f"/api/v1/dpps/{dpp}", json=bad), 422, "ClientErrorBadRequest")
    assert any(d["rule"] == "voltage.order" for d in body["message"][0]["details"])
    assert client.get(f"/api/v1/dpps/{dpp}").content == r.content
    assert len(client.get(f"/api/v1/dpps/{dpp}/versions").json()["versions"]) == 1


@pytest.mark.parametrize("field", ["dppId", "uniqueProductIdentifier", "successorDppIds", "dppSchemaVersion"])
def test_patch_refuses_immutable_and_server_fields(client: httpx.Client, passport: dict[str, Any],
                                                   field: str) -> None:
    r = create(client, passport)
    dpp = r.json()["dppId"]
    value: Any = ["urn:uuid:11111111-1111-1111-1111-111111111111"] if field == "successorDppIds" else (
        "urn:uuid:11111111-1111-1111-1111-111111111111" if field == "dppId" else (
            "https://id.dbp.example/01/04012345000016/21/OTHER" if field == "uniqueProductIdentifier" else "v9"))
    assert_error(client.patch(f"/api/v1/dpps/{dpp}", json={field: value}), 422, "ClientErrorBadRequest")
    assert client.get(f"/api/v1/dpps/{dpp}").content == r.content


def test_point_in_time_read(client: httpx.Client, passport: dict[str, Any]) -> None:
    r = create(client, passport)
    dpp = r.json()["dppId"]
    first_time = r.json()["lastUpdate"]
    time.sleep(0.01)
    p = client.patch(f"/api/v1/dpps/{dpp}", json={"performanceAndDurability": {"ratedCapacity": 59.0}})
    assert p.status_code == 200
    at_first = client.get(f"/api/v1/dppsByIdAndDate/{dpp}", params={"date": first_time})
    assert at_first.status_code == 200 and at_first.content == r.content
    now = client.get(f"/api/v1/dppsByIdAndDate/{dpp}", params={"date": "2199-01-01T00:00:00Z"})
    assert now.content == p.content
    assert_error(client.get(f"/api/v1/dppsByIdAndDate/{dpp}", params={"date": "2000-01-01T00:00:00Z"}), 404,
                 "ClientErrorResourceNotFound")
    assert_error(client.get(f"/api/v1/dppsByIdAndDate/{dpp}", params={"date": "yesterday"}), 400,
                 "ClientErrorBadRequest")
    upi = quote(passport["uniqueProductIdentifier"], safe="")
    by_product = client.get(f"/api/v1/dppsByProductIdAndDate/{upi}", params={"date": first_time})
    assert by_product.status_code == 200 and by_product.content == r.content
    assert_error(client.get(f"/api/v1/dppsByProductIdAndDate/{upi}x", params={"date": first_time}), 404,
                 "ClientErrorResourceNotFound")


def test_elements_read_and_update(client: httpx.Client, passport: dict[str, Any]) -> None:
    r = create(client, passport)
    dpp = r.json()["dppId"]
    rated = passport["performanceAndDurability"]["ratedCapacity"]
    got = client.get(f"/api/v1/dpps/{dpp}/elements/performanceAndDurability/ratedCapacity")
    assert got.status_code == 200 and got.json() == rated
    cas = passport["materialComposition"]["hazardousSubstances"][0]["casNumber"]
    assert client.get(f"/api/v1/dpps/{dpp}/elements/materialComposition.hazardousSubstances[0].casNumber"
                      ).json() == cas
    up = client.patch(f"/api/v1/dpps/{dpp}/elements/performanceAndDurability/ratedCapacity", json=58.25)
    assert up.status_code == 200 and up.json()["performanceAndDurability"]["ratedCapacity"] == 58.25
    bad = client.patch(f"/api/v1/dpps/{dpp}/elements/performanceAndDurability/ratedCapacity", json="many")
    assert_error(bad, 422, "ClientErrorBadRequest")
    assert_error(client.get(f"/api/v1/dpps/{dpp}/elements/performanceAndDurability/nothingHere"), 404,
                 "ClientErrorResourceNotFound")


def test_delete_archives_and_keeps_everything(client: httpx.Client, passport: dict[str, Any]) -> None:
    r = create(client, passport)
    dpp = r.json()["dppId"]
    d = client.delete(f"/api/v1/dpps/{dpp}")
    assert d.status_code == 200 and d.json()["dppStatus"] == "archived"
    assert d.json()["endOfLife"]["reason"] == "archived"
    assert client.get(f"/api/v1/dpps/{dpp}").json()["dppStatus"] == "archived"
    assert client.get(f"/api/v1/dpps/{dpp}/versions/1").content == r.content
    assert_error(client.patch(f"/api/v1/dpps/{dpp}", json={"facilityId": "x"}), 409, "ClientResourceConflict")
    assert_error(client.delete(f"/api/v1/dpps/{dpp}"), 409, "ClientResourceConflict")


def test_status_transitions(client: httpx.Client, passport: dict[str, Any]) -> None:
    draft = {**passport, "dppStatus": "draft"}
    del draft["performanceAndDurability"]["ratedCapacity"]
    r = create(client, draft)
    dpp = r.json()["dppId"]
    body = assert_error(client.patch(f"/api/v1/dpps/{dpp}", json={"dppStatus": "active"}), 422,
                        "ClientErrorBadRequest")
    assert {"path": "$.performanceAndDurability.ratedCapacity", "rule": "required.forActivation"}.items() <= \
        body["message"][0]["details"][0].items() or any(
        d["rule"] == "required.forActivation" for d in body["message"][0]["details"])
    ok = client.patch(f"/api/v1/dpps/{dpp}", json={"dppStatus": "active",
                                                   "performanceAndDurability": {"ratedCapacity": 60.0}})
    assert ok.status_code == 200 and ok.json()["dppStatus"] == "active"
    assert_error(client.patch(f"/api/v1/dpps/{dpp}", json={"dppStatus": "draft"}), 422, "ClientErrorBadRequest")
    assert_error(client.patch(f"/api/v1/dpps/{dpp}", json={"dppStatus": "archived"}), 422,
                 "ClientErrorBadRequest")
    assert client.patch(f"/api/v1/dpps/{dpp}", json={"dppStatus": "inactive"}).status_code == 200


def test_search_and_pagination(client: httpx.Client, fleet: list[dict[str, Any]]) -> None:
    for doc in fleet:
        create(client, doc)
    evs = [d for d in fleet if d["generalProductInformation"]["batteryCategory"] == "ev"]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"category": "ev", "limit": 7, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/dpps", params=params).json()
        seen.extend(i["uniqueProductIdentifier"] for i in page["items"])
        assert all(i["category"] == "ev" for i in page["items"])
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(d["uniqueProductIdentifier"] for d in evs)
    chem = fleet[0]["materialComposition"]["batteryChemistry"]["shortName"]
    made = fleet[0]["generalProductInformation"]["manufacturingDate"]
    hits = client.get("/api/v1/dpps", params={"chemistry": chem, "manufacturedFrom": made,
                                              "manufacturedTo": made, "limit": 1000}).json()["items"]
    expected = [d for d in fleet if d["materialComposition"]["batteryChemistry"]["shortName"] == chem
                and d["generalProductInformation"]["manufacturingDate"][:7] == made[:7]]
    assert len(hits) == len(expected) > 0
    batch = fleet[0]["generalProductInformation"]["batchNumber"]
    assert {i["batch"] for i in client.get("/api/v1/dpps", params={"batch": batch}).json()["items"]} == {batch}


def test_ids_by_product_ids(client: httpx.Client, fleet: list[dict[str, Any]]) -> None:
    created = {d["uniqueProductIdentifier"]: create(client, d).json()["dppId"] for d in fleet[:5]}
    wanted = [*list(created)[:3], "https://id.dbp.example/01/04012345000016/21/NOPE"]
    r = client.post("/api/v1/dppsByProductIds", json={"productIds": wanted, "limit": 2})
    assert r.status_code == 200
    first = r.json()
    assert len(first["items"]) == 2 and first["nextCursor"]
    second = client.post("/api/v1/dppsByProductIds", json={"productIds": wanted, "cursor": first["nextCursor"]}
                         ).json()
    got = {i["productId"]: i["dppId"] for i in first["items"] + second["items"]}
    assert got == {k: created[k] for k in wanted[:3]}


def test_schema_endpoints(client: httpx.Client) -> None:
    schema = client.get("/api/v1/schema").json()
    assert "generalProductInformation" in schema["properties"]
    attrs = client.get("/api/v1/schema/attributes").json()
    assert attrs["count"] == len(attrs["attributes"]) >= 93
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "BatteryPassport" in client.get("/openapi.json").json()["components"]["schemas"]


def test_html_page(client: httpx.Client, passport: dict[str, Any]) -> None:
    dpp = create(client, passport).json()["dppId"]
    page = client.get(f"/api/v1/dpps/{dpp}", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert passport["generalProductInformation"]["manufacturerInformation"]["name"] in page.text
    assert "Carbon footprint" in page.text
    assert_error(client.get(f"/api/v1/dpps/{dpp}", headers={"Accept": "image/png"}), 406,
                 "ClientErrorNotAcceptable")


def test_fast_read_path_answers_like_the_routes(client: httpx.Client, passport: dict[str, Any]) -> None:
    """The hot reads served before FastAPI carry the same bytes and headers as the documented routes."""
    r = create(client, passport)
    dpp = r.json()["dppId"]
    upi = quote(passport["uniqueProductIdentifier"], safe="")
    fast = client.get(f"/api/v1/dpps/{dpp}", headers={"X-Correlation-ID": "trace-1"})
    routed = client.get(f"/api/v1/dpps/{dpp}", params={"via": "route"})  # a query string takes the route
    by_product = client.get(f"/api/v1/dppsByProductId/{upi}")
    for resp in (fast, routed, by_product):
        assert resp.status_code == 200 and resp.content == r.content
        assert resp.headers["content-type"] == "application/json"
        for h in ("etag", "x-dpp-version", "last-modified-at", "cache-control", "content-length"):
            assert resp.headers[h] == fast.headers[h], h
    assert fast.headers["x-correlation-id"] == "trace-1"
    assert by_product.headers["x-correlation-id"] and by_product.headers["x-correlation-id"] != "trace-1"

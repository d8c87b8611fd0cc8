"""Hostile input against every /api/v1 endpoint, over real HTTP.

Every refusal must be the right 4xx (never 500) as an EN 18222 result object (statusCode + message[]),
without stack-trace text, echoing the client's X-Correlation-ID — and must change nothing: the ``stored``
fixture snapshots the target passport, its version list and the whole search listing, and compares them
byte for byte after the test.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

API = "/api/v1"
CID = "hostile-0001"
MIB = 1024 * 1024
CODES = {400: "ClientErrorBadRequest", 404: "ClientErrorResourceNotFound", 405: "ClientMethodNotAllowed",
         406: "ClientErrorNotAcceptable", 409: "ClientResourceConflict", 412: "ClientErrorPreconditionFailed",
         413: "ClientErrorPayloadTooLarge", 415: "ClientErrorUnsupportedMediaType", 422: "ClientErrorBadRequest"}
JSON = {"Content-Type": "application/json"}
UNKNOWN = "urn:uuid:00000000-0000-0000-0000-000000000000"


def assert_error(r: httpx.Response, status: int, cid: str = CID) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:600])
    assert r.headers["content-type"].startswith("application/json")
    assert "Traceback" not in r.text and 'File "' not in r.text
    body = r.json()
    assert body["statusCode"] == CODES[status]
    assert isinstance(body["message"], list) and body["message"]
    for m in body["message"]:
        assert m["messageType"] == "Error" and m["text"] and m["timestamp"] and m["correlationId"] == cid
        assert all(set(d) == {"path", "rule", "message"} for d in m.get("details", []))
    assert r.headers.get_list("x-correlation-id") == [cid]
    return body


def details(body: dict[str, Any]) -> list[dict[str, str]]:
    return list(body["message"][0].get("details", []))


class Stored:
    """A passport under attack; ``baseline()`` records what the hostile requests must leave unchanged."""

    def __init__(self, api: httpx.Client, doc: dict[str, Any]) -> None:
        r = api.post(f"{API}/dpps", json=doc)
        assert r.status_code == 201, r.text
        self.api, self.doc, self.dpp, self.etag = api, doc, r.json()["dppId"], r.headers["etag"]
        self.url = f"{API}/dpps/{self.dpp}"
        self.baseline()

    def state(self) -> list[bytes]:
        return [self.api.get(self.url).content, self.api.get(f"{self.url}/versions").content,
                self.api.get(f"{API}/dpps", params={"limit": 1000}).content]

    def baseline(self) -> None:
        self.before = self.state()

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.api.post(API + path.format(dpp=self.dpp), content=json.dumps(body), headers=JSON)


@pytest.fixture()
def api(server: Any, auth_headers: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60, headers={"X-Correlation-ID": CID, **auth_headers}) as c:
        yield c


@pytest.fixture()
def stored(api: httpx.Client, passport: dict[str, Any]) -> Iterator[Stored]:
    s = Stored(api, passport)
    yield s
    assert s.state() == s.before, "a refused request changed stored data"


def fresh(doc: dict[str, Any], path: str | None = None, value: Any = None) -> dict[str, Any]:
    """A copy with a new product id and, optionally, the value at dotted ``path`` replaced."""
    doc = copy.deepcopy(doc)
    doc["uniqueProductIdentifier"] += "H"
    if path:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[key]
        node[last] = value
    return doc


BODY_ENDPOINTS = [("POST", "/dpps"), ("PATCH", "/dpps/{dpp}"), ("PATCH", "/dpps/{dpp}/elements/facilityId"),
                  ("POST", "/dppsByProductIds"), ("POST", "/lifecycle/successors"), ("POST", "/dpps/{dpp}/waste"),
                  ("POST", "/dpps/{dpp}/recycle")]
MALFORMED = {
    "truncated": b'{"productIds": ["x"', "trailing garbage": b'{"a": 1} x', "NaN": b'{"a": NaN}',
    "Infinity": b'{"a": -Infinity}', "bare NaN": b"NaN", "duplicate key": b'{"a": 1, "a": 2}',
    "BOM": b'\xef\xbb\xbf{"a": 1}', "non-UTF-8": b'{"a": "\xff\xfe"}', "overlong UTF-8": b'{"a": "\xc0\xae"}',
    "lone surrogate": b'{"a": "\\ud800"}', "lone low surrogate": b'{"a": "\\udc00x"}', "raw NUL": b'{"a": "\x00"}',
    "single quotes": b"{'a': 1}", "unquoted key": b"{a: 1}", "trailing comma": b'{"a": 1,}',
    "comment": b'{"a": 1 /* c */}', "number overflow": b'{"a": 1e999}', "empty": b"", "whitespace": b" \n",
    "10000 nested arrays": b"[" * 10000 + b"]" * 10000,
    "10000 nested objects": b'{"a":' * 10000 + b"1" + b"}" * 10000,
    "1000 nested arrays": b"[" * 1000 + b"]" * 1000,  # within orjson's depth limit, beyond Python's recursion
}


@pytest.mark.parametrize(("method", "path", "raw"), [
    pytest.param(m, p, raw, id=f"{m} {p} {name}") for m, p in BODY_ENDPOINTS for name, raw in MALFORMED.items()
    if raw.strip() or not p.endswith("/recycle")])  # an empty recycle body is allowed
def test_malformed_json_is_400(api: httpx.Client, stored: Stored, method: str, path: str, raw: bytes) -> None:
    r = api.request(method, API + path.format(dpp=stored.dpp), content=raw, headers=JSON)
    assert details(assert_error(r, 400))[0]["rule"].startswith("json.")


def test_duplicate_keys_in_real_documents_are_refused(api: httpx.Client, stored: Stored) -> None:
    """Parsers disagree on which duplicate wins (I-JSON forbids them): refused even with equal values."""
    twice = json.dumps(fresh(stored.doc))[:-1] + f', "facilityId": "{stored.doc["facilityId"]}"}}'
    for method, url, raw in [
            ("POST", f"{API}/dpps", twice),
            ("POST", f"{stored.url}/waste", '{"responsibleOperatorId": "a", "responsibleOperatorId": "b"}'),
            ("PATCH", stored.url, '{"generalProductInformation": {"batteryMass": 1, "batteryMass": 2}}')]:
        body = assert_error(api.request(method, url, content=raw, headers=JSON), 400)
        assert details(body)[0]["rule"] == "json.duplicateKey"


@pytest.mark.parametrize(("path", "value"), [
    ("generalProductInformation.batteryMass", False), ("generalProductInformation.batteryMass", "561.2"),
    ("generalProductInformation.warrantyPeriod", 96.5), ("generalProductInformation.warrantyPeriod", True),
    ("generalProductInformation.warrantyPeriod", 10**30), ("generalProductInformation.bmsPresent", 1),
    ("generalProductInformation.bmsPresent", "true"), ("generalProductInformation.batteryCategory", "EV"),
    ("generalProductInformation", "ev"), ("generalProductInformation", []),
    ("materialComposition.criticalRawMaterials", {}), ("contentSpecificationIds", "x"), ("dppStatus", 1),
    ("uniqueProductIdentifier", 42), ("zzzUnknown", 1), ("generalProductInformation.zzz", 1),
    ("generalProductInformation.__class__", {}), ("performanceAndDurability.ratedCapacity", -1.0),
    ("generalProductInformation.manufacturerInformation.name", "x" * 513),
    ("labels.meaningOfLabelsAndSymbols", "x" * 20001),
    ("uniqueProductIdentifier", "https://id.dbp.example/" + "x" * 2048),
])
def test_create_refuses_wrong_types_unknown_fields_and_long_strings(api: httpx.Client, stored: Stored, path: str,
                                                                  value: Any) -> None:
    r = api.post(f"{API}/dpps", content=json.dumps(fresh(stored.doc, path, value)), headers=JSON)
    assert any(d["path"].startswith(f"$.{path}") for d in details(assert_error(r, 422))), r.text


@pytest.mark.parametrize("raw", ["[]", '"x"', "1", "null", "true"])
def test_create_refuses_non_objects(api: httpx.Client, stored: Stored, raw: str) -> None:
    assert_error(api.post(f"{API}/dpps", content=raw, headers=JSON), 422)


@pytest.mark.parametrize(("patch", "status"), [
    ([], 400), ("x", 400), (1, 400), (None, 400), (True, 400),
    ({"generalProductInformation": {"batteryMass": False}}, 422),
    ({"generalProductInformation": {"batteryMass": "1"}}, 422), ({"generalProductInformation": "x"}, 422),
    ({"zzz": 1}, 422), ({"__proto__": {"polluted": 1}}, 422), ({"constructor": {"prototype": {}}}, 422),
    ({"dppStatus": "archived"}, 422), ({"dppStatus": 1}, 422), ({"uniqueProductIdentifier": None}, 422),
    ({"successorDppIds": [UNKNOWN]}, 422), ({"endOfLife": {"reason": "recycled", "at": "2026-01-01T00:00:00Z"}}, 422),
    ({"economicOperatorId": "op\u0000id"}, 422), ({"generalProductInformation": {"batteryStatus": "waste"}}, 422),
])
def test_merge_patch_refusals(api: httpx.Client, stored: Stored, patch: Any, status: int) -> None:
    assert_error(api.patch(stored.url, json=patch), status)


@pytest.mark.parametrize("value", [False, True, "58", {}, [], "NaN", -1.0, None])
def test_element_patch_refuses_wrong_types(api: httpx.Client, stored: Stored, value: Any) -> None:
    # None removes the element, which an active EV passport cannot lose (mandatory attribute)
    r = api.patch(f"{stored.url}/elements/performanceAndDurability/ratedCapacity", content=json.dumps(value),
                  headers=JSON)
    assert_error(r, 422)


ELEMENT_PATHS = [  # (path as sent in the URL, GET status, PATCH status)
    ("%2e%2e", 400, 400), ("%2E%2E/dppId", 400, 400), ("labels/%2e%2e/%2e%2e/x", 400, 400), ("a//b", 400, 400),
    ("__class__", 400, 400), ("__proto__/polluted", 400, 400), ("constructor", 404, 422), ("etc/passwd", 404, 422),
    ("labels/-1", 400, 400), ("labels/testReports/-1", 400, 400), ("labels/testReports/01", 400, 400),
    ("labels/testReports/1e3", 400, 400), ("labels/testReports/99999999", 400, 400), ("0", 400, 400),
    ("labels/testReports/[0]", 400, 400), ("labels%5C..%5Cx", 400, 400), ("%ff", 400, 400),
    ("%c0%ae%c0%ae", 400, 400), ("*", 400, 400), ("$", 400, 400), ("labels/%20testReports", 400, 400),
    ("a" * 600, 400, 400), ("a/" * 20, 400, 400), ("labels/testReports/50/url", 404, 404),
    ("generalProductInformation/batteryMass/x", 404, 404), ("labels/meaningOfLabelsAndSymbols/0", 404, 404),
    ("lastUpdate", 200, 422), ("endOfLife/reason", 404, 422), ("dppSchemaVersion", 200, 422),
    ("successorDppIds/0", 404, 422), ("dppId", 200, 422), ("uniqueProductIdentifier", 200, 422),
]


@pytest.mark.parametrize(("path", "get_status", "patch_status"), ELEMENT_PATHS, ids=[p[0][:30] for p in ELEMENT_PATHS])
def test_element_path_traversal_and_junk(api: httpx.Client, stored: Stored, path: str, get_status: int,
                                         patch_status: int) -> None:
    got = api.get(f"{stored.url}/elements/{path}")
    if get_status == 200:
        assert got.status_code == 200 and got.content != stored.before[0]
    else:
        assert_error(got, get_status)
    assert_error(api.patch(f"{stored.url}/elements/{path}", json="https://evil.example/x"), patch_status)


@pytest.mark.parametrize("raw_path", ["..", "../../../../etc/passwd", "labels/../dppId", "./labels", "..%2f..%2f"])
def test_unnormalised_dot_segments(api: httpx.Client, stored: Stored, raw_path: str) -> None:
    """httpx normalises ``..`` away; send the bytes as they are."""
    url = urlsplit(str(api.base_url))
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        for method in ("GET", "PATCH"):
            conn.request(method, f"{stored.url}/elements/{raw_path}", body=b'"x"' if method == "PATCH" else None,
                         headers={"X-Correlation-ID": CID, **JSON})
            resp = conn.getresponse()
            r = httpx.Response(resp.status, headers=resp.getheaders(), content=resp.read())
            assert_error(r, 400)
    finally:
        conn.close()


PRODUCT_IDS_BODIES: list[Any] = [
    "x", 1, None, {}, [1], {"productIds": "x"}, {"productIds": []}, {"productIds": [True]}, {"productIds": [""]},
    {"productIds": ["a\u0000b"]}, {"productIds": ["x" * 2049]}, {"productIds": ["x"] * 1001},
    {"productIds": ["x"], "limit": False}, {"productIds": ["x"], "limit": "5"}, {"productIds": ["x"], "limit": 0},
    {"productIds": ["x"], "limit": 1001}, {"productIds": ["x"], "limit": 1.5}, {"productIds": ["x"], "limit": None},
    {"productIds": ["x"], "cursor": 5}, {"productIds": ["x"], "zzz": 1}, {"productIds": ["x"], "__proto__": {}},
]


@pytest.mark.parametrize("body", PRODUCT_IDS_BODIES)
def test_ids_by_product_ids_refusals(stored: Stored, body: Any) -> None:
    assert_error(stored.post("/dppsByProductIds", body), 422)


@pytest.mark.parametrize("ids", [["' OR 1=1 --"], ["%"], ["_"], ["*"], ["https://id.dbp.example/%"]])
def test_ids_by_product_ids_injection_finds_nothing(stored: Stored, ids: list[str]) -> None:
    r = stored.post("/dppsByProductIds", {"productIds": ids})
    assert r.status_code == 200 and r.json() == {"items": [], "nextCursor": None}


SUCCESSOR_BODIES: list[tuple[Callable[[Stored], Any], int]] = [
    (lambda s: [], 400), (lambda s: "x", 400), (lambda s: {}, 422),
    (lambda s: {"operation": "repurposing", "predecessorDppIds": [s.dpp], "passport": fresh(s.doc), "x": 1}, 422),
    (lambda s: {"operation": "__class__", "predecessorDppIds": [s.dpp], "passport": fresh(s.doc)}, 422),
    (lambda s: {"operation": ["repurposing"], "predecessorDppIds": [s.dpp], "passport": fresh(s.doc)}, 422),
    (lambda s: {"operation": "repurposing", "predecessorDppIds": s.dpp, "passport": fresh(s.doc)}, 422),
    (lambda s: {"operation": "repurposing", "predecessorDppIds": [], "passport": fresh(s.doc)}, 422),
    (lambda s: {"operation": "repurposing", "predecessorDppIds": [1], "passport": fresh(s.doc)}, 422),
    (lambda s: {"operation": "repurposing", "predecessorDppIds": ["u" * 257], "passport": fresh(s.doc)}, 422),
    (lambda s: {"operation": "repurposing", "predecessorDppIds": [s.dpp, s.dpp], "passport": fresh(s.doc)}, 422),
    (lambda s: {"operation": "repurposing", "predecessorDppIds": [s.dpp], "passport": []}, 422),
    (lambda s: {"operation": "repurposing", "predecessorDppIds": [s.dpp],
                "passport": fresh(s.doc, "generalProductInformation", "x")}, 422),
    (lambda s: {"operation": "repurposing", "predecessorDppIds": [s.dpp],
                "passport": fresh(s.doc, "generalProductInformation", [["a", 1]])}, 422),
    (lambda s: {"operation": "repurposing", "predecessorDppIds": [s.dpp],
                "passport": fresh(s.doc, "predecessorDppIds", [UNKNOWN])}, 422),
    (lambda s: {"operation": "repurposing", "predecessorDppIds": [UNKNOWN], "passport": fresh(s.doc)}, 404),
    (lambda s: {"operation": "repurposing", "predecessorDppIds": ["urn:uuid:\u0000"], "passport": fresh(s.doc)}, 404),
    (lambda s: {"operation": "repurposing", "predecessorDppIds": [s.dpp], "passport": s.doc}, 409),  # same product
    (lambda s: {"operation": "preparationForRepurposing", "predecessorDppIds": [s.dpp],
                "passport": fresh(s.doc)}, 409),  # the predecessor is not waste
]


@pytest.mark.parametrize(("make", "status"), SUCCESSOR_BODIES)
def test_successor_refusals(stored: Stored, make: Callable[[Stored], Any], status: int) -> None:
    assert_error(stored.post("/lifecycle/successors", make(stored)), status)


@pytest.mark.parametrize(("path", "body"), [
    ("waste", {}), ("waste", {"responsibleOperatorId": 5}), ("waste", {"responsibleOperatorId": ""}),
    ("waste", {"responsibleOperatorId": False}), ("waste", {"responsibleOperatorId": "op", "zzz": 1}),
    ("waste", {"responsibleOperatorId": "op\u0000"}),
    ("waste", {"responsibleOperatorId": "op", "operatorInformation": "x"}),
    ("waste", {"responsibleOperatorId": "op", "operatorInformation": [1]}),
    ("waste", {"responsibleOperatorId": "op", "operatorInformation": {"name": "x", "zzz": 1}}),
    ("recycle", {"zzz": 1}), ("recycle", {"recyclerId": 5}), ("recycle", {"recyclerId": False}),
])
def test_waste_and_recycle_bodies(stored: Stored, path: str, body: Any) -> None:
    assert_error(stored.post(f"/dpps/{{dpp}}/{path}", body), 422)


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_bodies_over_1_mib_are_413(api: httpx.Client, stored: Stored, method: str, path: str, chunked: bool) -> None:
    big = b'{"a": "' + b"x" * MIB + b'"}'
    content: Any = (big[i:i + 65536] for i in range(0, len(big), 65536)) if chunked else big
    assert_error(api.request(method, API + path.format(dpp=stored.dpp), content=content, headers=JSON), 413)


def test_a_body_at_the_limit_is_read(api: httpx.Client, stored: Stored) -> None:
    body = b'{"productIds": ["' + b"x" * (MIB - 20) + b'"]}'
    assert len(body) <= MIB
    assert_error(api.post(f"{API}/dppsByProductIds", content=body, headers=JSON), 422)


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS)
@pytest.mark.parametrize("ctype", ["text/plain", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
                                   "application/xml", "application/json-patch+json"])
def test_wrong_content_type_is_415(api: httpx.Client, stored: Stored, method: str, path: str, ctype: str) -> None:
    r = api.request(method, API + path.format(dpp=stored.dpp), content=b"{}", headers={"Content-Type": ctype})
    assert_error(r, 415)


READS = ["/dpps/{dpp}", "/dpps", "/dpps/{dpp}/versions", "/dpps/{dpp}/versions/1", "/dpps/{dpp}/elements/facilityId",
         "/dppsByProductId/{upi}", "/dppsByIdAndDate/{dpp}?date=2199-01-01T00:00:00Z", "/schema", "/schema/attributes"]


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("accept", ["image/png", "text/plain", "application/xml"])
def test_wrong_accept_is_406(api: httpx.Client, stored: Stored, path: str, accept: str) -> None:
    url = API + path.format(dpp=stored.dpp, upi=quote(stored.doc["uniqueProductIdentifier"], safe=""))
    assert api.get(url).status_code == 200
    assert_error(api.get(url, headers={"Accept": accept}), 406)


FILTERS = ["category", "chemistry", "manufacturer", "model", "status", "batteryStatus", "batch", "facility", "operator"]
INJECTIONS = ["' OR 1=1 --", "%", "_", "ev' OR '1'='1", "*", "\\", "ev%", "1; DROP TABLE passports; --", "\U0001f50b",
              "%25", "ev\u202e"]


@pytest.mark.parametrize("key", FILTERS)
@pytest.mark.parametrize("value", INJECTIONS)
def test_search_injection_finds_nothing(api: httpx.Client, stored: Stored, key: str, value: str) -> None:
    r = api.get(f"{API}/dpps", params={key: value})
    assert r.status_code == 200 and r.json() == {"items": [], "nextCursor": None}, r.text


@pytest.mark.parametrize("key", FILTERS)
@pytest.mark.parametrize("value", ["ev\u0000", "\u0000", "x" * 513])
def test_search_nul_and_overlong_filters_are_400(api: httpx.Client, stored: Stored, key: str, value: str) -> None:
    assert_error(api.get(f"{API}/dpps", params={key: value}), 400)


@pytest.mark.parametrize("key", ["manufacturedFrom", "manufacturedTo"])
@pytest.mark.parametrize("value", ["2026-13", "2026-02-30", "0000-00", "9999-99-99", "abcd-ef", "2026", "",
                                   "2026-05' OR 1=1", "\u0662\u0660\u0662\u0666-\u0660\u0661", "2026-05-01T00:00"])
def test_search_bad_months_are_400(api: httpx.Client, stored: Stored, key: str, value: str) -> None:
    assert_error(api.get(f"{API}/dpps", params={key: value}), 400)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BAD_CURSORS = ["!!!", "a", "====", _b64(b"\xff\xfe"), "A" * 600, "A" * 601, _b64(b"' OR 1=1 --"), _b64(b"\x00"),
               "AAAAAAAA", _b64(b"urn:x\n"), base64.urlsafe_b64encode(b"urn:uuid:1").decode(), "%00", "\u00e9",
               _b64(b"urn:" + b"x" * 300), "dXJuOnV1aWQ6MQ==="]


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_invalid_cursors_are_400(api: httpx.Client, stored: Stored, cursor: str) -> None:
    assert_error(api.get(f"{API}/dpps", params={"cursor": cursor}), 400)
    assert_error(api.post(f"{API}/dppsByProductIds", params={"cursor": cursor}, json={"productIds": ["x"]}), 400)
    assert_error(api.post(f"{API}/dppsByProductIds", json={"productIds": ["x"], "cursor": cursor}), 400)


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "abc", "1.5", "", "1e3", "99999999999999999999", "true"])
def test_limit_out_of_range_is_400(api: httpx.Client, stored: Stored, limit: str) -> None:
    assert_error(api.get(f"{API}/dpps", params={"limit": limit}), 400)
    assert_error(api.post(f"{API}/dppsByProductIds", params={"limit": limit}, json={"productIds": ["x"]}), 400)


IF_MATCH_WRITES = [("PATCH", "", {"facilityId": "x"}), ("PATCH", "/elements/facilityId", "x"), ("DELETE", "", None),
                   ("POST", "/waste", {"responsibleOperatorId": "urn:x:op"})]


@pytest.mark.parametrize(("method", "suffix", "body"), IF_MATCH_WRITES)
@pytest.mark.parametrize("tag", ["garbage", '"abc"', "W/{etag}", "{etag}x", '""', ", ,", "*x", "{etag};*", "x" * 1025])
def test_invalid_if_match(api: httpx.Client, stored: Stored, method: str, suffix: str, body: Any, tag: str) -> None:
    content = None if body is None else json.dumps(body)
    r = api.request(method, stored.url + suffix, content=content, headers={**JSON, "If-Match": tag.format(
        etag=stored.etag)})
    assert_error(r, 400 if len(tag) > 1024 else 412)


@pytest.mark.parametrize("date", [
    "yesterday", "2026-02-30", "2026-13-01T00:00:00Z", "0000-01-01T00:00:00Z", "2026-01-01T00:00:00", "", " ",
    "2026-01-01T25:00:00Z", "1e10", "2026-01-01T00:00:00+99:00", "0001-01-01T00:00:00+01:00", "x" * 65,
    "9999-12-31T23:59:59-01:00", "\u0662\u0660\u0662\u0666-\u0660\u0661-\u0660\u0661", "2026-W01", "2026-01-01\u0000",
    "2026-01-01T00:00:00Z' OR '1'='1",
])
def test_point_in_time_rejects_bad_dates(api: httpx.Client, stored: Stored, date: str) -> None:
    assert_error(api.get(f"{API}/dppsByIdAndDate/{stored.dpp}", params={"date": date}), 400)


def test_point_in_time_requires_a_date(api: httpx.Client, stored: Stored) -> None:
    assert_error(api.get(f"{API}/dppsByIdAndDate/{stored.dpp}"), 400)


ID_ROUTES = [("GET", "/dpps/{id}"), ("PATCH", "/dpps/{id}"), ("DELETE", "/dpps/{id}"), ("GET", "/dpps/{id}/versions"),
             ("GET", "/dpps/{id}/versions/1"), ("GET", "/dpps/{id}/elements/labels"),
             ("PATCH", "/dpps/{id}/elements/facilityId"), ("GET", "/dppsByIdAndDate/{id}?date=2026-01-01"),
             ("POST", "/dpps/{id}/waste"), ("POST", "/dpps/{id}/recycle"), ("GET", "/dppsByProductId/{id}")]


@pytest.mark.parametrize(("method", "route"), ID_ROUTES)
@pytest.mark.parametrize(("ident", "status"), [
    ("urn:uuid:%00", 400), ("urn%00", 400), ("u" * 2100, 400), (quote(UNKNOWN, safe=":"), 404),
    ("%27%20OR%201%3D1%20--", 404), ("%ED%A0%80", 404), ("%FF", 404), ("%2e%2e", 404)])
def test_hostile_identifiers(api: httpx.Client, stored: Stored, method: str, route: str, ident: str,
                             status: int) -> None:
    body = {"responsibleOperatorId": "urn:x:op"} if route.endswith("/waste") else {}
    if status == 400 and ident.startswith("u" * 10) and route.startswith("/dppsByProductId"):
        status = 422  # a product id may be long (2048), so its limit is a validation rule
    elif status == 404 and route.startswith("/dppsByProductId") and not ident.startswith("urn"):
        status = 400  # not an identifier of any scheme: refused with the rule broken, not looked up
    assert_error(api.request(method, API + route.format(id=ident), json=body), status)


@pytest.mark.parametrize("version", ["0", "-1", "abc", "2147483648", "99999999999999999999", "1e3"])
def test_invalid_version_numbers(api: httpx.Client, stored: Stored, version: str) -> None:
    assert_error(api.get(f"{stored.url}/versions/{version}"), 400)
    assert_error(api.get(f"{stored.url}/versions/999"), 404)


@pytest.mark.parametrize("field", ["generalProductInformation.manufacturerInformation.name", "facilityId",
                                   "labels.meaningOfLabelsAndSymbols", "generalProductInformation.batchNumber"])
@pytest.mark.parametrize("char", ["\u0000", "\u0007", "\u001b", "\u007f", "\u000b"])
def test_control_characters_are_refused(api: httpx.Client, stored: Stored, field: str, char: str) -> None:
    r = api.post(f"{API}/dpps", content=json.dumps(fresh(stored.doc, field, f"ab{char}cd")), headers=JSON)
    assert any(d["path"] == f"$.{field}" for d in details(assert_error(r, 422))), r.text
    patch: Any = f"ab{char}cd"
    for key in reversed(field.split(".")):
        patch = {key: patch}
    assert_error(api.patch(stored.url, json=patch), 422)


@pytest.mark.parametrize("text", [
    "\U0001f50b\U0001f600 battery", "\U0001d518\U0001d52b\U0001d526", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "e\u0301 \u00e9", "\u0627\u0644\u0628\u0637\u0627\u0631\u064a\u0629", "\ufdfd \ufeff \uffff", "\"\\/\u2028\u2029",
])
def test_free_text_unicode_is_stored_byte_exact(api: httpx.Client, passport: dict[str, Any], text: str) -> None:
    doc = fresh(passport, "labels.meaningOfLabelsAndSymbols", text)
    doc["generalProductInformation"]["manufacturerInformation"]["name"] = text
    created = api.post(f"{API}/dpps", json=doc)
    assert created.status_code == 201, created.text
    got = api.get(f"{API}/dpps/{created.json()['dppId']}")
    assert got.content == created.content
    assert json.dumps(text, ensure_ascii=False)[1:-1].encode() in got.content  # raw UTF-8, not \u escapes
    assert got.json()["labels"]["meaningOfLabelsAndSymbols"] == text
    element = api.get(f"{API}/dpps/{created.json()['dppId']}/elements/labels/meaningOfLabelsAndSymbols")
    assert element.json() == text


@pytest.mark.parametrize("char", ["\u202e", "\u200b", "\u2066", "\ufeff"])
@pytest.mark.parametrize(("field", "value"), [("manufacturerInformation.identifier", "urn:x:a{}b"),
                                              ("manufacturerInformation.website", "https://a{}b.example")])
def test_invisible_and_bidi_characters_in_identifiers_and_links_are_refused(
        api: httpx.Client, passport: dict[str, Any], char: str, field: str, value: str) -> None:
    """They make two different identifiers look alike, or a link point elsewhere than it shows (spoofing)."""
    doc = fresh(passport, f"generalProductInformation.{field}", value.format(char))
    body = assert_error(api.post(f"{API}/dpps", json=doc), 422)
    assert any(d["path"] == f"$.generalProductInformation.{field}" for d in details(body))


# ------------------------------------------------------------------------------------ lifecycle misuse
def test_successor_of_an_archived_passport_conflicts(stored: Stored) -> None:
    assert stored.api.delete(stored.url).status_code == 200
    stored.baseline()
    for op in ("repurposing", "preparationForRepurposing", "remanufacturing", "preparationForReuse"):
        body = {"operation": op, "predecessorDppIds": [stored.dpp], "passport": fresh(stored.doc)}
        assert_error(stored.post("/lifecycle/successors", body), 409)


def test_waste_twice_and_repurposing_waste_conflict(stored: Stored) -> None:
    assert stored.post("/dpps/{dpp}/waste", {"responsibleOperatorId": "urn:x:op"}).status_code == 200
    stored.baseline()
    assert_error(stored.post("/dpps/{dpp}/waste", {"responsibleOperatorId": "urn:x:other"}), 409)
    body = {"operation": "repurposing", "predecessorDppIds": [stored.dpp], "passport": fresh(stored.doc)}
    assert_error(stored.post("/lifecycle/successors", body), 409)
    assert_error(stored.api.patch(stored.url, json={"generalProductInformation": {"batteryStatus": "original"}}), 422)


def test_waste_of_a_draft_conflicts(api: httpx.Client, passport: dict[str, Any]) -> None:
    s = Stored(api, {**passport, "dppStatus": "draft"})
    assert_error(s.post("/dpps/{dpp}/waste", {"responsibleOperatorId": "urn:x:op"}), 409)
    assert s.state() == s.before


def test_recycle_needs_waste_and_happens_once(stored: Stored) -> None:
    assert_error(stored.api.post(f"{stored.url}/recycle"), 409)
    assert_error(stored.post("/dpps/{dpp}/recycle", {"recyclerId": "urn:x:rec"}), 409)
    assert stored.post("/dpps/{dpp}/waste", {"responsibleOperatorId": "urn:x:op"}).status_code == 200
    assert stored.post("/dpps/{dpp}/recycle", {"recyclerId": "urn:x:rec"}).status_code == 200
    stored.baseline()
    assert_error(stored.api.post(f"{stored.url}/recycle"), 409)


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("PATCH", "", {"facilityId": "x"}), ("PATCH", "", {"dppStatus": "active"}), ("PATCH", "/elements/facilityId", "x"),
    ("PATCH", "/elements/labels", None), ("DELETE", "", None), ("POST", "/waste", {"responsibleOperatorId": "o"}),
    ("POST", "/recycle", None)])
def test_an_archived_passport_is_read_only(stored: Stored, method: str, suffix: str, body: Any) -> None:
    assert stored.api.delete(stored.url).status_code == 200
    stored.baseline()
    content = None if body is None and method != "PATCH" else json.dumps(body)
    assert_error(stored.api.request(method, stored.url + suffix, content=content, headers=JSON), 409)


# ------------------------------------------------------------------------------------ plumbing
def test_correlation_id_is_echoed_once(api: httpx.Client, stored: Stored) -> None:
    ok = api.get(f"{API}/schema")
    assert ok.status_code == 200 and ok.headers.get_list("x-correlation-id") == [CID]
    assert_error(api.get(f"{API}/dpps/{UNKNOWN}"), 404)
    assert_error(api.get(f"{API}/dpps?category=%00"), 400)  # refused by the middleware
    assert_error(api.post(f"{API}/dpps", content=b"x" * (MIB + 1), headers=JSON), 413)
    assert_error(api.get(f"{API}/nothing-here"), 404)
    assert_error(api.put(stored.url, json={}), 405)


@pytest.mark.parametrize("cid", ["x" * 129, "caf\u00e9", ""])
def test_unusable_correlation_ids_are_replaced(server: Any, cid: str) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        r = c.get(f"{API}/dpps/{UNKNOWN}", headers={b"X-Correlation-ID": cid.encode("utf-8")})
    issued = r.headers["x-correlation-id"]
    assert issued != cid and 0 < len(issued) <= 128 and issued.isascii()
    assert_error(r, 404, cid=issued)

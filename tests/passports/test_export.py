"""``GET /api/v1/export/dpps`` over real HTTP: NDJSON of the caller's view of every matching passport.

Each line must be byte for byte what ``GET /api/v1/dpps/{dppId}`` answers the same caller; the trailer
must say whether the export is complete; every exported passport must have its access-log record, committed
before its line is sent; refusals are the EN 18222 error object with the right status (and, for refusals of
access, a denied record).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey
from sqlalchemy import select, text

from conftest import has_path as has
from conftest import settle_access_log
from dbp.access import service as access
from dbp.access.principal import Role
from dbp.audit.models import AccessLog
from dbp.errors import ServiceUnavailable
from dbp.passports import export
from dbp.passports.attributes import AccessGroup
from dbp.passports.schemas import attribute_catalogue

URL = "/api/v1/export/dpps"
NDJSON = "application/x-ndjson"
CATALOGUE: dict[str, str] = {a["path"]: a["access"] for a in attribute_catalogue()}
ALL = sorted(g.value for g in AccessGroup)
PUBLIC = ["public"]
P2 = sorted(["public", "legitimateInterestAndAuthorities"])
P4 = sorted(["public", "legitimateInterest"])
AUTH = sorted(["public", "legitimateInterestAndAuthorities", "authorities"])


# ------------------------------------------------------------------------------------------------ helpers
def groups_in(doc: dict[str, Any]) -> set[str]:
    return {CATALOGUE[p] for p in CATALOGUE if has(doc, p)}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cid() -> str:
    return f"x-{uuid.uuid4().hex}"


def ndjson(r: httpx.Response) -> tuple[list[bytes], dict[str, Any]]:
    """The passport lines and the trailer of an export answer."""
    assert r.status_code == 200, r.text[:600]
    assert r.headers["content-type"] == NDJSON
    assert r.headers["cache-control"] == "no-store"
    assert r.content.endswith(b"\n")
    lines = r.content.split(b"\n")[:-1]
    assert lines, "an export ends with its trailer"
    trailer = orjson.loads(lines[-1])
    assert set(trailer) >= {"exportComplete", "count", "nextCursor"} and "dppId" not in trailer, trailer
    assert trailer["count"] == len(lines) - 1
    return lines[:-1], trailer


def ids(lines: list[bytes]) -> list[str]:
    return [orjson.loads(line)["dppId"] for line in lines]


def complete(count: int) -> dict[str, Any]:
    return {"exportComplete": True, "count": count, "nextCursor": None}


def assert_error(r: httpx.Response, status: int, code: str, request_id: str) -> str:
    """An EN 18222 result object (no passport data, no stack trace), echoing the correlation id."""
    assert r.status_code == status, r.text[:600]
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"statusCode", "message"} and body["statusCode"] == code, body
    msg = body["message"][0]
    assert msg["messageType"] == "Error" and msg["text"] and msg["timestamp"] and msg["correlationId"] == request_id
    assert r.headers.get_list("x-correlation-id") == [request_id]
    assert "Traceback" not in r.text and "dppId" not in r.text and "uniqueProductIdentifier" not in r.text
    return str(msg["text"])


def log_rows(session_factory: Any, request_id: str) -> list[AccessLog]:
    settle_access_log(session_factory.kw["bind"])  # SQLite stages read records first
    with session_factory() as s:
        return list(s.scalars(select(AccessLog).where(AccessLog.request_id == request_id).order_by(AccessLog.id)))


def assert_export_logged(session_factory: Any, request_id: str, lines: list[bytes], detail: list[str] | list[
        list[str]]) -> list[AccessLog]:
    """One granted ``export`` record per line, for exactly the passports sent, with the groups returned."""
    rows = log_rows(session_factory, request_id)
    assert sorted(r.dpp_id or "" for r in rows) == sorted(ids(lines))
    per_line = detail if detail and isinstance(detail[0], list) else [detail] * len(lines)
    expected = dict(zip(ids(lines), per_line, strict=True))
    for row in rows:
        assert (row.action, row.outcome) == ("export", "granted")
        assert orjson.loads(row.detail) == expected[row.dpp_id], row.dpp_id
        assert row.reason
    return rows


@pytest.fixture()
def stored(client: httpx.Client, fleet: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The forty fleet passports, created; sorted by dppId (the export's order)."""
    docs = []
    for doc in fleet:
        r = client.post("/api/v1/dpps", json=doc)
        assert r.status_code == 201, r.text
        docs.append(r.json())
    return sorted(docs, key=lambda d: d["dppId"])


def reads(http: httpx.Client, docs: list[dict[str, Any]], headers: dict[str, str] | None = None) -> list[bytes]:
    """What ReadDPPById answers ``http`` for each passport."""
    out = []
    for d in docs:
        r = http.get(f"/api/v1/dpps/{d['dppId']}", headers=headers or {})
        assert r.status_code == 200, r.text
        out.append(r.content)
    return out


class Caller:
    """An organisation of ``role`` with an API client, and its bearer token (optionally with a purpose claim)."""

    def __init__(self, server: Any, session_factory: Any, role: Role, operator_id: str) -> None:
        with session_factory.begin() as s:
            org = access.create_org(s, name=f"{role.value} org", operator_id=operator_id, role=role)
            self.issued = access.create_client(s, org_id=org.id, role=role)
        self.org_id = org.id
        self.base_url = server.base_url

    def headers(self, purpose: str | None = None) -> dict[str, str]:
        form = {"grant_type": "client_credentials", "client_id": self.issued.client_id,
                "client_secret": self.issued.client_secret}
        r = httpx.post(f"{self.base_url}/api/v1/auth/token", data=form)
        assert r.status_code == 200, r.text
        out = {"Authorization": f"Bearer {r.json()['access_token']}"}
        if purpose:
            out["X-Purpose"] = purpose
        return out


@pytest.fixture()
def small_pages(monkeypatch: pytest.MonkeyPatch) -> int:
    """Pages of 7 passports (the server runs in this process), so forty passports take six pages."""
    monkeypatch.setattr(export, "PAGE_SIZE", 7)
    return 7


# ----------------------------------------------------------------------------------------- what is exported
def test_operator_exports_its_full_passports_byte_exact(client: httpx.Client, stored: list[dict[str, Any]],
                                                        session_factory: Any, small_pages: int) -> None:
    request_id = cid()
    lines, trailer = ndjson(client.get(URL, headers={"X-Correlation-ID": request_id}))
    assert trailer == complete(len(stored))
    assert ids(lines) == [d["dppId"] for d in stored]
    assert lines == reads(client, stored)  # the stored canonical versions, as ReadDPPById serves them
    assert [orjson.loads(line) for line in lines] == stored
    assert_export_logged(session_factory, request_id, lines, ALL)


def test_public_export_is_the_public_view(public: httpx.Client, stored: list[dict[str, Any]],
                                          session_factory: Any, small_pages: int) -> None:
    request_id = cid()
    r = public.get(URL, headers={"X-Correlation-ID": request_id})
    lines, trailer = ndjson(r)
    assert trailer == complete(len(stored))
    assert lines == reads(public, stored)  # the stored public view of each
    for line in lines:
        assert groups_in(orjson.loads(line)) == {"public"}
    rows = assert_export_logged(session_factory, request_id, lines, PUBLIC)
    assert {(row.principal, row.principal_kind, row.org_id) for row in rows} == {("anonymous", "anonymous", None)}
    assert "testReports" not in r.text and "dismantlingInformation" not in r.text


def test_versions_without_stored_views_are_redacted_like_a_read(
        server: Any, public: httpx.Client, stored: list[dict[str, Any]], engine: Any, session_factory: Any) -> None:
    """Versions written before public views and view indexes were stored (migrations 0003 and 0005 left them
    NULL) export the same view a read gives: redacted."""
    old = [stored[2]["dppId"], stored[9]["dppId"]]
    with engine.begin() as conn:
        conn.execute(text("UPDATE passport_versions SET public_canonical = NULL, public_sha256 = NULL "
                          "WHERE dpp_id = :d"), {"d": old[0]})
        conn.execute(text("UPDATE passport_versions SET view_index = NULL WHERE dpp_id = :d"), {"d": old[1]})
    lines, trailer = ndjson(public.get(URL))
    assert trailer == complete(len(stored))
    assert lines == reads(public, stored)
    assert groups_in(orjson.loads(lines[2])) == {"public"} and ids(lines)[2] == old[0]
    recycler = Caller(server, session_factory, Role.recycler, "urn:dbp:test:export-recycler")
    headers = recycler.headers("dismantling")
    lines, trailer = ndjson(public.get(URL, headers=headers))
    assert trailer == complete(len(stored)) and lines == reads(public, stored, headers)
    assert groups_in(orjson.loads(lines[9])) == set(P2) and ids(lines)[9] == old[1]


def test_recycler_stating_dismantling_gets_points_1_and_2(
        server: Any, public: httpx.Client, session_factory: Any, stored: list[dict[str, Any]],
        small_pages: int) -> None:
    recycler = Caller(server, session_factory, Role.recycler, "urn:dbp:test:export-recycler")
    headers = recycler.headers("dismantling")
    request_id = cid()
    lines, trailer = ndjson(public.get(URL, headers={**headers, "X-Correlation-ID": request_id}))
    assert trailer == complete(len(stored))
    assert lines == reads(public, stored, headers)
    for line in lines:
        assert groups_in(orjson.loads(line)) == set(P2)
    rows = assert_export_logged(session_factory, request_id, lines, P2)
    assert {(r.org_id, r.role, r.purpose) for r in rows} == {(recycler.org_id, "recycler", "dismantling")}


def test_views_are_decided_per_passport(server: Any, public: httpx.Client, session_factory: Any,
                                        stored: list[dict[str, Any]]) -> None:
    """A grant on one passport widens the view of that passport only."""
    stranger = Caller(server, session_factory, Role.economic_operator, "urn:dbp:test:export-stranger")
    granted = stored[3]["dppId"]
    with session_factory.begin() as s:
        access.create_grant(s, dpp_id=granted, grantee_org_id=stranger.org_id, purpose="residualValue",
                            access_groups=[AccessGroup.legitimate_interest], granted_by="test",
                            expires_at=(datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    headers = stranger.headers("residualValue")
    request_id = cid()
    lines, trailer = ndjson(public.get(URL, headers={**headers, "X-Correlation-ID": request_id}))
    assert trailer == complete(len(stored))
    assert lines == reads(public, stored, headers)
    expected = [P4 if d["dppId"] == granted else PUBLIC for d in stored]
    assert [sorted(groups_in(orjson.loads(line))) for line in lines] == expected
    assert_export_logged(session_factory, request_id, lines, expected)


@pytest.mark.parametrize("keys", [["category"], ["chemistry"], ["manufacturer"], ["model"], ["batch"], ["facility"],
                                  ["operator"], ["category", "operator"], ["status"], ["manufacturedFrom"],
                                  ["manufacturedFrom", "manufacturedTo"]])
def test_filters_are_those_of_search(client: httpx.Client, stored: list[dict[str, Any]], keys: list[str]) -> None:
    sample = stored[5]
    gp = sample["generalProductInformation"]
    values = {"category": gp["batteryCategory"], "chemistry": sample["materialComposition"]["batteryChemistry"][
        "shortName"], "manufacturer": gp["manufacturerInformation"]["name"], "model": gp["batteryModelIdentifier"],
        "batch": gp.get("batchNumber"), "facility": sample.get("facilityId"), "operator": sample["economicOperatorId"],
        "status": "active", "manufacturedFrom": gp["manufacturingDate"][:7], "manufacturedTo": gp["manufacturingDate"]}
    params = {k: values[k] for k in keys if values[k] is not None}
    assert params, keys
    found = client.get("/api/v1/dpps", params={**params, "limit": 1000})
    assert found.status_code == 200, found.text
    expected = [i["dppId"] for i in found.json()["items"]]
    assert sample["dppId"] in expected or "manufacturedTo" not in keys
    lines, trailer = ndjson(client.get(URL, params=params))
    assert ids(lines) == expected and trailer == complete(len(expected))


def test_nothing_matches(client: httpx.Client, stored: list[dict[str, Any]], session_factory: Any) -> None:
    request_id = cid()
    lines, trailer = ndjson(client.get(URL, params={"category": "no-such-category"},
                                       headers={"X-Correlation-ID": request_id}))
    assert lines == [] and trailer == complete(0)
    assert log_rows(session_factory, request_id) == []


# ------------------------------------------------------------------------------------- limit, cursor, pages
def test_limit_and_cursor_continue_an_export(client: httpx.Client, stored: list[dict[str, Any]],
                                             small_pages: int) -> None:
    whole, _ = ndjson(client.get(URL))
    first, trailer = ndjson(client.get(URL, params={"limit": 16}))  # two pages and a bit
    assert first == whole[:16]
    assert trailer["exportComplete"] is True and trailer["count"] == 16 and trailer["nextCursor"]
    rest, trailer2 = ndjson(client.get(URL, params={"cursor": trailer["nextCursor"]}))
    assert rest == whole[16:] and trailer2 == complete(len(stored) - 16)
    exact, trailer3 = ndjson(client.get(URL, params={"limit": len(stored)}))  # the limit is the last match
    assert exact == whole and trailer3 == complete(len(stored))
    one, trailer4 = ndjson(client.get(URL, params={"limit": 1}))
    assert one == whole[:1] and trailer4["nextCursor"]
    # the export's cursor is the search's: a search page continues where an export stopped, and back
    page = client.get("/api/v1/dpps", params={"limit": 5}).json()
    after, _ = ndjson(client.get(URL, params={"cursor": page["nextCursor"], "limit": 3}))
    assert after == whole[5:8]


def test_each_line_is_logged_before_it_is_sent(client: httpx.Client, stored: list[dict[str, Any]],
                                               session_factory: Any, small_pages: int) -> None:
    request_id = cid()
    seen = 0
    with client.stream("GET", URL, headers={"X-Correlation-ID": request_id}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            doc = orjson.loads(line)
            if "exportComplete" in doc:
                assert doc == complete(seen)
                break
            seen += 1
            logged = {row.dpp_id for row in log_rows(session_factory, request_id)}
            assert doc["dppId"] in logged, f"line {seen} arrived before its access-log record"
    assert seen == len(stored)


def _failing_log(server: Any, monkeypatch: pytest.MonkeyPatch, *, fail_from_call: int) -> list[int]:
    """Make the server's durable access log refuse the export pages from the ``fail_from_call``-th on."""
    read_log = server.config.app.state.read_log
    real = read_log.append_many
    calls: list[int] = []

    async def append_many(records: list[Any]) -> None:
        calls.append(len(records))
        if len(calls) >= fail_from_call:
            raise ServiceUnavailable("access log unavailable; the read was not answered")
        await real(records)

    monkeypatch.setattr(read_log, "append_many", append_many)
    return calls


def test_log_failure_before_the_first_line_is_a_503(server: Any, client: httpx.Client, stored: list[dict[str, Any]],
                                                    session_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _failing_log(server, monkeypatch, fail_from_call=1)
    request_id = cid()
    r = client.get(URL, headers={"X-Correlation-ID": request_id})
    assert_error(r, 503, "ServerErrorServiceUnavailable", request_id)
    assert calls == [export.PAGE_SIZE if len(stored) > export.PAGE_SIZE else len(stored)]
    assert log_rows(session_factory, request_id) == []


def test_log_failure_mid_stream_sends_nothing_unlogged(server: Any, client: httpx.Client,
                                                       stored: list[dict[str, Any]], session_factory: Any,
                                                       monkeypatch: pytest.MonkeyPatch, small_pages: int) -> None:
    whole, _ = ndjson(client.get(URL))
    _failing_log(server, monkeypatch, fail_from_call=3)
    request_id = cid()
    r = client.get(URL, headers={"X-Correlation-ID": request_id})
    assert r.status_code == 200
    lines = r.content.split(b"\n")[:-1]
    trailer = orjson.loads(lines[-1])
    sent = lines[:-1]
    assert sent == whole[: 2 * small_pages]  # two pages logged and sent; the third never left
    assert trailer["exportComplete"] is False and trailer["count"] == len(sent) and trailer["nextCursor"]
    error = trailer["error"]
    assert error["statusCode"] == "ServerErrorServiceUnavailable"
    assert error["message"][0]["correlationId"] == request_id and error["message"][0]["text"]
    assert_export_logged(session_factory, request_id, sent, ALL)
    monkeypatch.undo()
    rest, done = ndjson(client.get(URL, params={"cursor": trailer["nextCursor"]}))  # resume where it broke
    assert sent + rest == whole and done == complete(len(whole) - len(sent))


# ---------------------------------------------------------------------------------------------- refusals
@pytest.fixture()
def api(server: Any, auth_headers: dict[str, str], stored: list[dict[str, Any]]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30, headers=auth_headers) as c:
        yield c


BAD_PARAMS = [
    {"manufacturedFrom": "2026-13"}, {"manufacturedTo": "2026-02-30"}, {"manufacturedFrom": "2026"},
    {"manufacturedTo": "2026-05' OR 1=1"}, {"category": "x" * 513}, {"operator": "o" * 513},
    {"limit": "0"}, {"limit": "-1"}, {"limit": str(export.MAX_LIMIT + 1)}, {"limit": "abc"}, {"limit": "1.5"},
    {"limit": "99999999999999999999"}, {"cursor": "!!!"}, {"cursor": "A" * 601}, {"cursor": "AAAAAAAA"},
    {"cursor": "dXJuOnV1aWQ6MQ==="}, {"cursor": "\u00e9"},
]


@pytest.mark.parametrize("params", BAD_PARAMS, ids=[str(p)[:60] for p in BAD_PARAMS])
def test_malformed_filters_limits_and_cursors_are_400(api: httpx.Client, params: dict[str, str]) -> None:
    request_id = cid()
    assert_error(api.get(URL, params=params, headers={"X-Correlation-ID": request_id}), 400,
                 "ClientErrorBadRequest", request_id)


@pytest.mark.parametrize("query", ["category=ev%00", "%00=1", "cursor=%00"])
def test_nul_in_the_query_is_400(api: httpx.Client, query: str) -> None:
    request_id = cid()
    assert_error(api.get(f"{URL}?{query}", headers={"X-Correlation-ID": request_id}), 400, "ClientErrorBadRequest",
                 request_id)


def test_oversize_query_is_414(api: httpx.Client) -> None:
    request_id = cid()
    r = api.get(URL, params={"category": "x" * 9000}, headers={"X-Correlation-ID": request_id})
    assert_error(r, 414, "ClientErrorUriTooLong", request_id)


@pytest.mark.parametrize("accept", ["application/json", "text/html", "text/csv"])
def test_wrong_accept_is_406(api: httpx.Client, accept: str) -> None:
    request_id = cid()
    assert_error(api.get(URL, headers={"Accept": accept, "X-Correlation-ID": request_id}), 406,
                 "ClientErrorNotAcceptable", request_id)
    for fine in (NDJSON, "application/*", "*/*", f"{NDJSON}, application/json;q=0.5"):
        assert api.get(URL, params={"limit": 1}, headers={"Accept": fine}).status_code == 200


def test_other_methods_and_paths(api: httpx.Client) -> None:
    request_id = cid()
    assert_error(api.post(URL, json={}, headers={"X-Correlation-ID": request_id}), 405, "ClientMethodNotAllowed",
                 request_id)
    assert_error(api.get(f"{URL}/x", headers={"X-Correlation-ID": request_id}), 404, "ClientErrorResourceNotFound",
                 request_id)


@pytest.mark.parametrize("purpose", ["dis mantling", "-x", "x" * 65, "dismantling;drop", "\u00e9t\u00e9".encode(),
                                     "a/b"])
def test_bad_purpose_is_400_and_logged_as_a_denied_export(
        server: Any, api: httpx.Client, public: httpx.Client, session_factory: Any, purpose: str | bytes) -> None:
    recycler = Caller(server, session_factory, Role.recycler, "urn:dbp:test:export-recycler")
    for http, headers, org in ((api, {}, None), (public, recycler.headers(), recycler.org_id),
                               (public, {}, None)):
        request_id = cid()
        r = http.get(URL, headers={**headers, "X-Purpose": purpose, "X-Correlation-ID": request_id})
        text = assert_error(r, 400, "ClientErrorBadRequest", request_id)
        rows = log_rows(session_factory, request_id)
        assert len(rows) == 1
        row = rows[0]
        assert (row.action, row.outcome, row.dpp_id, row.reason) == ("export", "denied", None, text)
        assert row.purpose is None
        if org is not None:
            assert (row.org_id, row.role, row.principal) == (org, "recycler", recycler.issued.client_id)
        elif http is public:
            assert row.principal_kind == "anonymous"
        else:
            assert row.role == "serviceProvider"


def test_forged_tokens_are_401_and_logged(server: Any, public: httpx.Client, auth_headers: dict[str, str],
                                          session_factory: Any, stored: list[dict[str, Any]]) -> None:
    real = auth_headers["Authorization"].split(" ", 1)[1]
    header, claims, _ = real.split(".")
    kid = orjson.loads(unb64(header))["kid"]
    attacker = OKPKey.generate_key("Ed25519")
    forged = str(jwt.encode({"alg": "Ed25519", "kid": kid}, orjson.loads(unb64(claims)), attacker,
                            algorithms=["Ed25519"]))
    alg_none = f"{b64(orjson.dumps({'alg': 'none', 'kid': kid}))}.{claims}."
    tampered = f"{header}.{b64(orjson.dumps({**orjson.loads(unb64(claims)), 'role': 'commission'}))}." \
               f"{real.split('.')[2]}"
    for token in (forged, alg_none, tampered, "garbage", real + "x"):
        request_id = cid()
        r = public.get(URL, headers={"Authorization": f"Bearer {token}", "X-Correlation-ID": request_id})
        text = assert_error(r, 401, "ClientNotAuthorized", request_id)
        rows = log_rows(session_factory, request_id)
        assert len(rows) == 1
        assert (rows[0].outcome, rows[0].reason, rows[0].principal_kind) == ("denied", text, "anonymous")
        assert orjson.loads(rows[0].detail) == [f"GET {URL}"]


def test_battery_status_filter_is_refused_to_the_public_and_logged(
        public: httpx.Client, api: httpx.Client, session_factory: Any) -> None:
    request_id = cid()
    r = public.get(URL, params={"batteryStatus": "original"}, headers={"X-Correlation-ID": request_id})
    text = assert_error(r, 403, "ClientForbidden", request_id)
    assert "battery status is not public" in text
    rows = log_rows(session_factory, request_id)
    assert [(x.action, x.outcome, x.reason) for x in rows] == [("export", "denied", text)]
    # an operator (here a service provider) may filter its own passports by it: it has none of its own
    lines, trailer = ndjson(api.get(URL, params={"batteryStatus": "original"}))
    assert lines == [] and trailer == complete(0)

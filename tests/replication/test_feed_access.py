"""Who reads the change feed, what, and the access-log record of each page or refusal (dbp.replication)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from conftest import assert_error, settle_access_log
from dbp.access import service as access
from dbp.access.principal import Role
from dbp.audit.models import AccessLog

FEED = "/api/v1/feed"
ORGS = {"operator": Role.economic_operator, "agent": Role.service_provider, "stranger": Role.economic_operator,
        "recycler": Role.recycler, "notifiedBody": Role.notified_body, "backup": Role.backup_provider,
        "otherBackup": Role.backup_provider, "purchaser": Role.purchaser}


class Feeders:
    def __init__(self, base_url: str, session_factory: Any, doc: dict[str, Any]) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.session_factory = session_factory
        self.operator_id = doc["economicOperatorId"]
        self.orgs: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        issued = {}
        with session_factory.begin() as s:
            for name, role in ORGS.items():
                op = self.operator_id if name == "operator" else f"urn:dbp:test:feed:{name}"
                org = access.create_org(s, name=name, operator_id=op, role=role)
                issued[name] = access.create_client(s, org_id=org.id, role=role)
                self.orgs[name] = org.id
            access.authorise(s, operator_org_id=self.orgs["operator"], agent_org_id=self.orgs["agent"],
                             reference="agreement")
        for name, client in issued.items():
            r = self.http.post("/api/v1/auth/token", data={
                "grant_type": "client_credentials", "client_id": client.client_id,
                "client_secret": client.client_secret})
            assert r.status_code == 200, r.text
            self.tokens[name] = r.json()["access_token"]
        r = self.get("POST", "/api/v1/dpps", "operator", json=doc)[0]
        assert r.status_code == 201, r.text
        self.dpp = r.json()["dppId"]
        with session_factory.begin() as s:
            self.device_key = access.create_api_key(s, org_id=self.orgs["operator"], dpp_ids=[self.dpp]).api_key

    def headers(self, who: str) -> dict[str, str]:
        if who == "public":
            return {}
        if who == "device":
            return {"X-API-Key": self.device_key}
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, method: str, url: str, who: str, **kw: Any) -> tuple[httpx.Response, str]:
        cid = f"feed-{uuid.uuid4().hex}"
        r = self.http.request(method, url, headers={**self.headers(who), "X-Correlation-ID": cid}, **kw)
        return r, cid

    def logged(self, cid: str) -> list[AccessLog]:
        settle_access_log(self.session_factory.kw["bind"])
        with self.session_factory() as s:
            return list(s.scalars(select(AccessLog).where(AccessLog.request_id == cid)))


@pytest.fixture()
def w(server: Any, settings: Any, session_factory: Any, passport: dict[str, Any]) -> Any:
    f = Feeders(server.base_url, session_factory, passport)
    yield f
    f.http.close()


def _denied(w: Feeders, r: httpx.Response, cid: str, status: int, code: str) -> str:
    text = str(assert_error(r, status, code)["message"][0]["text"])
    rows = w.logged(cid)
    assert len(rows) == 1 and rows[0].outcome == "denied" and rows[0].action == "feed" and rows[0].reason
    return text


@pytest.mark.parametrize(("who", "status", "code", "says"), [
    ("public", 401, "ClientNotAuthorized", "credentials"),
    ("device", 403, "ClientForbidden", "device keys"),
    ("recycler", 403, "ClientForbidden", "responsible operator"),
    ("purchaser", 403, "ClientForbidden", "responsible operator"),
    ("otherBackup", 403, "ClientForbidden", "backup provider"),
])
def test_callers_without_the_right_are_refused_and_logged(w: Feeders, who: str, status: int, code: str,
                                                          says: str) -> None:
    for url in (FEED, f"{FEED}/stream"):
        r, cid = w.get("GET", url, who)
        assert says in _denied(w, r, cid, status, code)


def test_another_operator_sees_only_its_own_and_may_not_name_ours(w: Feeders) -> None:
    r, _ = w.get("GET", FEED, "stranger")
    assert r.status_code == 200 and r.json()["entries"] == []
    r, cid = w.get("GET", FEED, "stranger", params={"operatorId": w.operator_id})
    assert "may not follow the feed of operator" in _denied(w, r, cid, 403, "ClientForbidden")


@pytest.mark.parametrize("who", ["operator", "agent"])
def test_operator_and_its_authorised_agent_read_entries_and_bodies(w: Feeders, who: str) -> None:
    r, cid = w.get("GET", FEED, who, params={"include": "body", "operatorId": w.operator_id})
    assert r.status_code == 200, r.text
    [entry] = r.json()["entries"]
    assert entry["dppId"] == w.dpp and "body" in entry
    [row] = w.logged(cid)
    assert (row.outcome, row.action, row.dpp_id, row.passport_operator_id) == ("granted", "feed", None,
                                                                                w.operator_id)
    detail = orjson.loads(row.detail)
    assert detail[1:] == ["entries=1", "include=body", f"operatorId={w.operator_id}", f"{w.dpp}@1"]
    assert detail[0] == f"feed f1.0..{r.json()['nextCursor']}"
    r, cid = w.get("GET", FEED, who)
    assert "body" not in r.json()["entries"][0]
    assert orjson.loads(w.logged(cid)[0].detail)[1:] == ["entries=1", "include=metadata"]


def test_authority_reads_metadata_of_everything_but_no_bodies(w: Feeders) -> None:
    r, cid = w.get("GET", FEED, "notifiedBody")
    assert r.status_code == 200 and [e["dppId"] for e in r.json()["entries"]] == [w.dpp]
    assert w.logged(cid)[0].outcome == "granted"
    r, cid = w.get("GET", FEED, "notifiedBody", params={"include": "body"})
    assert "include=body" in _denied(w, r, cid, 403, "ClientForbidden")


def test_appointed_backup_provider_follows_with_bodies_until_revoked(w: Feeders) -> None:
    r, cid = w.get("GET", FEED, "backup", params={"include": "body"})
    _denied(w, r, cid, 403, "ClientForbidden")
    r, _ = w.get("POST", "/api/v1/backup-providers", "operator",
                 json={"providerOrgId": w.orgs["backup"], "reference": "backup agreement 7"})
    assert r.status_code == 201, r.text
    assert r.json()["providerOrgId"] == w.orgs["backup"] and r.json()["revokedAt"] is None
    r, cid = w.get("GET", FEED, "backup", params={"include": "body"})
    assert r.status_code == 200, r.text
    [entry] = r.json()["entries"]
    assert entry["dppId"] == w.dpp and entry["body"]
    [row] = w.logged(cid)
    assert row.outcome == "granted" and "backup provider appointed by" in (row.reason or "")
    # the appointment gives nothing on the ordinary read paths: public view only
    r, _ = w.get("GET", f"/api/v1/dpps/{w.dpp}", "backup")
    assert r.status_code == 200 and r.headers["x-dpp-access"] == "public"
    listed, _ = w.get("GET", "/api/v1/backup-providers", "operator")
    assert [i["providerOrgId"] for i in listed.json()["items"]] == [w.orgs["backup"]]
    r, _ = w.get("DELETE", f"/api/v1/backup-providers/{w.orgs['backup']}", "operator")
    assert r.status_code == 204
    r, cid = w.get("GET", FEED, "backup")
    _denied(w, r, cid, 403, "ClientForbidden")
    assert_error(w.get("DELETE", f"/api/v1/backup-providers/{w.orgs['backup']}", "operator")[0], 404,
                 "ClientErrorResourceNotFound")


def test_appointment_refusals(w: Feeders) -> None:
    body = {"providerOrgId": w.orgs["backup"], "reference": "x"}
    assert_error(w.get("POST", "/api/v1/backup-providers", "public", json=body)[0], 401, "ClientNotAuthorized")
    for who in ("recycler", "agent", "notifiedBody", "backup"):
        assert_error(w.get("POST", "/api/v1/backup-providers", who, json=body)[0], 403, "ClientForbidden")
    wrong_role = {"providerOrgId": w.orgs["recycler"], "reference": "x"}
    assert_error(w.get("POST", "/api/v1/backup-providers", "operator", json=wrong_role)[0], 409,
                 "ClientResourceConflict")
    unknown = {"providerOrgId": "nope", "reference": "x"}
    assert_error(w.get("POST", "/api/v1/backup-providers", "operator", json=unknown)[0], 404,
                 "ClientErrorResourceNotFound")
    for bad in ({}, {"providerOrgId": w.orgs["backup"]}, {**body, "extra": 1}, {**body, "reference": ""},
                {**body, "reference": "r" * 600}):
        assert_error(w.get("POST", "/api/v1/backup-providers", "operator", json=bad)[0], 400,
                     "ClientErrorBadRequest")

"""The Art. 77 / 78 access matrix over real HTTP: every role × purpose × operation.

Each test builds its own world (tables are emptied before every test): organisations for the
passport's economic operator, a service provider it authorised in writing, a second economic operator
(the stranger), a repairer, a recycler, a waste operator, a purchaser, a notified body, a market
surveillance authority and the Commission, each with an API client; one complete active passport
created by its operator; and a device key of the operator for that battery.

Read operations assert EXACTLY what comes back: the body equals the stored document reduced to the
attributes of the access groups the caller may read (computed here from the attribute catalogue,
independently of ``dbp.passports.redaction``), and ``X-DPP-Access`` names those groups. Refusals assert
the status, the EN 18222 error object and its reason. Every case asserts its access-log record
(principal, organisation, role, purpose, passport, action, outcome, groups or fields, reason).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from sqlalchemy import select

from conftest import has_path as has
from conftest import settle_access_log
from dbp.access import service as access
from dbp.access.principal import Role
from dbp.audit.models import AccessLog
from dbp.passports import service as passports
from dbp.passports.schemas import attribute_catalogue

PUBLIC = "public"  # Annex XIII point 1
POINT2 = "legitimateInterestAndAuthorities"
POINT3 = "authorities"
POINT4 = "legitimateInterest"
P = frozenset({PUBLIC})
P2 = P | {POINT2}
P4 = P | {POINT4}
AUTH = P2 | {POINT3}
ALL = AUTH | {POINT4}

CATALOGUE: dict[str, str] = {a["path"]: a["access"] for a in attribute_catalogue()}

# One attribute per access group, read with ReadDataElement.
ELEMENTS = {
    PUBLIC: "performanceAndDurability/ratedCapacity",
    POINT2: "circularity/dismantlingInformation",
    POINT3: "labels/testReports",
    POINT4: "generalProductInformation/batteryStatus",
}
# Search summaries carry public data only (no battery status, no use data).
SUMMARY_KEYS = {"dppId", "uniqueProductIdentifier", "dppStatus", "category", "chemistry", "manufacturer", "model",
                "batch", "facility", "manufacturingDate", "economicOperatorId", "version", "lastUpdate"}
HTML_LABELS = {PUBLIC: "public", POINT4: "legitimate interest", POINT2: "legitimate interest and authorities",
               POINT3: "authorities only"}

# actor → (role, operator identifier); None: the passport's own economic operator.
ORGS: dict[str, tuple[Role, str | None]] = {
    "operator": (Role.economic_operator, None),
    "agent": (Role.service_provider, "urn:dbp:test:agent"),
    "stranger": (Role.economic_operator, "urn:dbp:test:stranger"),
    "repairer": (Role.repairer, "urn:dbp:test:repairer"),
    "recycler": (Role.recycler, "urn:dbp:test:recycler"),
    "wasteOperator": (Role.waste_operator, "urn:dbp:test:waste-operator"),
    "purchaser": (Role.purchaser, "urn:dbp:test:purchaser"),
    "notifiedBody": (Role.notified_body, "urn:dbp:test:notified-body"),
    "marketSurveillance": (Role.market_surveillance, "urn:dbp:test:msa"),
    "commission": (Role.commission, "urn:dbp:test:commission"),
    "backupProvider": (Role.backup_provider, "urn:dbp:test:backup-provider"),  # not appointed by the operator
}
PRO = "urn:dbp:test:producer-responsibility-organisation"  # takes responsibility for waste batteries


# ------------------------------------------------------------------------------------------------ helpers
def get(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc[part]
    return doc


def attrs_in(doc: dict[str, Any]) -> set[str]:
    return {p for p in CATALOGUE if has(doc, p)}


def view_of(doc: dict[str, Any], groups: frozenset[str]) -> dict[str, Any]:
    """``doc`` reduced to the attributes of ``groups`` (clusters left empty are absent)."""
    out: dict[str, Any] = {}
    for path, group in CATALOGUE.items():
        if group in groups and has(doc, path):
            node = out
            *parents, leaf = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = get(doc, path)
    return out


def display(element: str) -> str:
    return "$." + element.replace("/", ".")


def assert_error(r: httpx.Response, status: int, code: str) -> str:
    """The EN 18222 result object of a refusal; returns its text. It never carries passport data."""
    assert r.status_code == status, r.text
    body = r.json()
    assert body["statusCode"] == code, body
    msg = body["message"][0]
    assert msg["messageType"] == "Error" and msg["text"] and msg["correlationId"] and msg["timestamp"]
    assert set(body) == {"statusCode", "message"} and len(body["message"]) == 1
    assert set(msg) <= {"messageType", "text", "correlationId", "timestamp", "code", "details"}
    return str(msg["text"])


def future(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Actor:
    name: str
    role: str | None
    org_id: str | None
    operator_id: str | None
    client_id: str | None = None
    client_secret: str | None = None
    api_key: str | None = None
    key_id: str | None = None

    @property
    def subject(self) -> str:
        return self.client_id or self.key_id or "anonymous"

    @property
    def kind(self) -> str:
        return "client" if self.client_id else "apiKey" if self.key_id else "anonymous"


class World:
    """The organisations, their credentials and one complete active passport of ``operator``."""

    def __init__(self, base_url: str, session_factory: Any, doc: dict[str, Any]) -> None:
        self.base_url = base_url
        self.session_factory = session_factory
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.tokens: dict[tuple[str, str | None], str] = {}
        self.actors: dict[str, Actor] = {"public": Actor("public", None, None, None)}
        self.operator_id: str = doc["economicOperatorId"]
        with session_factory.begin() as s:
            for name, (role, op) in ORGS.items():
                org = access.create_org(s, name=f"{name} org", operator_id=op or self.operator_id, role=role)
                issued = access.create_client(s, org_id=org.id, role=role)
                self.actors[name] = Actor(name, role.value, org.id, org.operator_id, issued.client_id,
                                          issued.client_secret)
            access.authorise(s, operator_org_id=self.actors["operator"].org_id or "",
                             agent_org_id=self.actors["agent"].org_id or "", reference="service agreement 2026/1")
        r = self.request("POST", "/api/v1/dpps", "operator", json=doc)[0]
        assert r.status_code == 201, r.text
        self.doc: dict[str, Any] = r.json()  # the stored version 1, complete
        self.dpp: str = self.doc["dppId"]
        with session_factory.begin() as s:
            key = access.create_api_key(s, org_id=self.actors["operator"].org_id or "", dpp_ids=[self.dpp])
        self.actors["device"] = Actor("device", Role.device.value, self.actors["operator"].org_id, self.operator_id,
                                      api_key=key.api_key, key_id=key.key_id)

    def token(self, actor: str, purpose: str | None = None) -> str:
        if (actor, purpose) not in self.tokens:
            a = self.actors[actor]
            form = {"grant_type": "client_credentials", "client_id": a.client_id or "",
                    "client_secret": a.client_secret or ""}
            if purpose:
                form["purpose"] = purpose
            r = self.http.post("/api/v1/auth/token", data=form)
            assert r.status_code == 200, r.text
            self.tokens[(actor, purpose)] = r.json()["access_token"]
        return self.tokens[(actor, purpose)]

    def headers(self, actor: str, *, token_purpose: str | None = None,
                header_purpose: str | None = None) -> dict[str, str]:
        a = self.actors[actor]
        out: dict[str, str] = {}
        if a.client_id:
            out["Authorization"] = f"Bearer {self.token(actor, token_purpose)}"
        elif a.api_key:
            out["X-API-Key"] = a.api_key
        if header_purpose:
            out["X-Purpose"] = header_purpose
        return out

    def request(self, method: str, url: str, actor: str, *, token_purpose: str | None = None,
                header_purpose: str | None = None, headers: dict[str, str] | None = None,
                **kwargs: Any) -> tuple[httpx.Response, str]:
        """One request with a fresh correlation id (the access log's request id)."""
        cid = f"m-{uuid.uuid4().hex}"
        h = {**self.headers(actor, token_purpose=token_purpose, header_purpose=header_purpose),
             "X-Correlation-ID": cid, **(headers or {})}
        r = self.http.request(method, url, headers=h, **kwargs)
        if r.status_code < 500:
            assert r.headers.get("x-correlation-id") == cid
        return r, cid

    def current(self) -> dict[str, Any]:
        r = self.request("GET", f"/api/v1/dpps/{self.dpp}", "operator")[0]
        assert r.status_code == 200, r.text
        return dict(r.json())

    def version_count(self) -> int:
        r = self.request("GET", f"/api/v1/dpps/{self.dpp}/versions", "operator")[0]
        assert r.status_code == 200, r.text
        return len(r.json()["versions"])

    def stored(self, version: int) -> dict[str, Any]:
        """A stored version, complete, straight from the database."""
        with self.session_factory() as s:
            return dict(orjson.loads(passports.read_version(s, dpp_id=self.dpp, version=version).body))

    def log_rows(self, cid: str) -> list[AccessLog]:
        settle_access_log(self.session_factory.kw["bind"])  # SQLite stages read records first (dbp.audit.staging)
        with self.session_factory() as s:
            return list(s.scalars(select(AccessLog).where(AccessLog.request_id == cid)))

    def close(self) -> None:
        self.http.close()


@pytest.fixture()
def world(server: Any, settings: Any, session_factory: Any, passport: dict[str, Any]) -> Any:
    w = World(server.base_url, session_factory, passport)
    yield w
    w.close()


@dataclass(frozen=True)
class Case:
    id: str
    actor: str
    groups: frozenset[str]
    token_purpose: str | None = None  # the token's purpose claim
    header_purpose: str | None = None  # X-Purpose (wins over the claim)
    writes: bool = False  # the representative of its role for the write operations

    @property
    def purpose(self) -> str | None:
        """The purpose the access log records (the anonymous public states none)."""
        if self.actor == "public":
            return None
        return self.header_purpose or self.token_purpose

    @property
    def mismatch(self) -> bool:
        """A role with legitimate-interest purposes that stated none of them."""
        return self.actor in ("repairer", "recycler", "wasteOperator", "purchaser", "stranger",
                              "backupProvider") and self.groups == P


CASES = [
    Case("public", "public", P, writes=True),
    Case("public-stating-a-purpose", "public", P, header_purpose="dismantling"),
    Case("operator", "operator", ALL, writes=True),
    Case("operator-any-purpose", "operator", ALL, header_purpose="marketAccess"),
    Case("authorised-service-provider", "agent", ALL, writes=True),
    Case("stranger-operator", "stranger", P, writes=True),
    Case("stranger-operator-residualValue", "stranger", P, header_purpose="residualValue"),
    Case("repairer-dismantling", "repairer", P2, header_purpose="dismantling"),
    Case("repairer-repair-claim", "repairer", P2, token_purpose="repair", writes=True),
    Case("repairer-no-purpose", "repairer", P),
    Case("recycler-dismantling", "recycler", P2, header_purpose="dismantling", writes=True),
    Case("recycler-dismantling-claim", "recycler", P2, token_purpose="dismantling"),
    Case("recycler-recycling", "recycler", P2, header_purpose="recycling"),
    Case("recycler-no-purpose", "recycler", P),
    Case("recycler-marketAccess", "recycler", P, header_purpose="marketAccess"),
    Case("recycler-header-overrides-claim", "recycler", P, token_purpose="dismantling", header_purpose="marketAccess"),
    Case("wasteOperator-dismantling", "wasteOperator", P2, header_purpose="dismantling", writes=True),
    Case("purchaser-marketAccess", "purchaser", P4, header_purpose="marketAccess", writes=True),
    Case("purchaser-residualValue-claim", "purchaser", P4, token_purpose="residualValue"),
    Case("purchaser-dismantling", "purchaser", P, header_purpose="dismantling"),
    Case("purchaser-no-purpose", "purchaser", P),
    Case("notifiedBody-no-purpose", "notifiedBody", AUTH, writes=True),
    Case("marketSurveillance-inspection", "marketSurveillance", AUTH, header_purpose="inspection", writes=True),
    Case("commission-claim", "commission", AUTH, token_purpose="review", writes=True),
    Case("backupProvider-backup", "backupProvider", P, header_purpose="backup", writes=True),
    Case("backupProvider-no-purpose", "backupProvider", P),
    Case("device-key", "device", P, writes=True),
    Case("device-key-with-purpose", "device", P, header_purpose="dismantling"),
]
CASE_IDS = [c.id for c in CASES]
WRITE_CASES = [c for c in CASES if c.writes]


def assert_logged(w: World, case: Case, cid: str, *, action: str, outcome: str, dpp_id: str | None,
                  detail: list[str] | None = None, reason: str | None = None) -> AccessLog:
    rows = w.log_rows(cid)
    assert len(rows) == 1, f"expected one access-log record for {cid}, found {len(rows)}"
    row = rows[0]
    who = w.actors[case.actor]
    assert (row.principal, row.principal_kind, row.org_id, row.role) == (who.subject, who.kind, who.org_id, who.role)
    assert row.purpose == case.purpose
    assert (row.action, row.outcome, row.dpp_id) == (action, outcome, dpp_id)
    if detail is not None:
        assert orjson.loads(row.detail) == detail
    if outcome == "denied":
        assert row.reason, "a denial records why"
    if reason is not None:
        assert row.reason == reason
    return row


def assert_view(w: World, case: Case, r: httpx.Response, cid: str, *, action: str) -> None:
    """A JSON read answered with exactly the caller's view of version 1, and logged with its groups."""
    assert r.status_code == 200, r.text
    assert r.headers["x-dpp-access"] == ", ".join(sorted(case.groups))
    body = r.json()
    expected = {p for p in attrs_in(w.doc) if CATALOGUE[p] in case.groups}
    assert attrs_in(body) == expected, (
        f"extra {sorted(attrs_in(body) - expected)}, missing {sorted(expected - attrs_in(body))}")
    assert body == view_of(w.doc, case.groups)
    assert_logged(w, case, cid, action=action, outcome="granted", dpp_id=w.dpp, detail=sorted(case.groups))


# ------------------------------------------------------------------------------------------- the matrix
READ_OPS = ["read", "readHtml", "readByProductId", "readVersion", "readAt", "readByProductIdAndDate",
            "element-public", "element-point2", "element-point3", "element-point4", "search", "versionList", "export"]
EXPORT = "/api/v1/export/dpps"


def export_lines(r: httpx.Response) -> tuple[list[bytes], dict[str, Any]]:
    """The passport lines of an NDJSON export and its trailer (the last line)."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = r.content.split(b"\n")
    assert lines[-1] == b"" and len(lines) >= 2, r.content[-200:]
    trailer = orjson.loads(lines[-2])
    assert "dppId" not in trailer
    return lines[:-2], trailer


def test_world_passport_holds_every_access_group(world: World) -> None:
    """The matrix is only meaningful if the passport carries attributes of all four groups."""
    assert {CATALOGUE[p] for p in attrs_in(world.doc)} == ALL
    for element in ELEMENTS.values():
        assert has(world.doc, element.replace("/", "."))


@pytest.mark.parametrize("op", READ_OPS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_read_matrix(world: World, case: Case, op: str) -> None:
    w = world
    kw = {"token_purpose": case.token_purpose, "header_purpose": case.header_purpose}
    upi = quote(w.doc["uniqueProductIdentifier"], safe="")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if op == "read":
        r, cid = w.request("GET", f"/api/v1/dpps/{w.dpp}", case.actor, **kw)
        assert_view(w, case, r, cid, action="read")
    elif op == "readByProductId":
        r, cid = w.request("GET", f"/api/v1/dppsByProductId/{upi}", case.actor, **kw)
        assert_view(w, case, r, cid, action="read")
    elif op == "readVersion":
        r, cid = w.request("GET", f"/api/v1/dpps/{w.dpp}/versions/1", case.actor, **kw)
        assert_view(w, case, r, cid, action="readVersion")
    elif op == "readAt":
        r, cid = w.request("GET", f"/api/v1/dppsByIdAndDate/{w.dpp}", case.actor, params={"date": now}, **kw)
        assert_view(w, case, r, cid, action="readAt")
    elif op == "readByProductIdAndDate":
        r, cid = w.request("GET", f"/api/v1/dppsByProductIdAndDate/{upi}", case.actor, params={"date": now}, **kw)
        assert_view(w, case, r, cid, action="readAt")
    elif op == "readHtml":
        r, cid = w.request("GET", f"/api/v1/dpps/{w.dpp}", case.actor, headers={"Accept": "text/html"}, **kw)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["x-dpp-access"] == ", ".join(sorted(case.groups))
        present = {CATALOGUE[p] for p in attrs_in(w.doc)}
        for group, label in HTML_LABELS.items():
            shown = f'<div class="meta">{label} · ' in r.text
            assert shown == (group in case.groups and group in present), (group, shown)
        # distinctive values: the test report and dismantling manual links appear only to those who may read them
        reports, dismantling = w.doc["labels"]["testReports"], w.doc["circularity"]["dismantlingInformation"]
        assert (reports[0]["url"] in r.text) == (POINT3 in case.groups)
        assert (dismantling["documents"][0]["url"] in r.text) == (POINT2 in case.groups)
        assert_logged(w, case, cid, action="read", outcome="granted", dpp_id=w.dpp, detail=sorted(case.groups))
    elif op.startswith("element-"):
        group = {"public": PUBLIC, "point2": POINT2, "point3": POINT3, "point4": POINT4}[op.split("-")[1]]
        element = ELEMENTS[group]
        r, cid = w.request("GET", f"/api/v1/dpps/{w.dpp}/elements/{element}", case.actor, **kw)
        if group in case.groups:
            assert r.status_code == 200, r.text
            assert r.json() == get(w.doc, element.replace("/", "."))
            assert_logged(w, case, cid, action="readElement", outcome="granted", dpp_id=w.dpp,
                          detail=[display(element)])
        else:
            text = assert_error(r, 403, "ClientForbidden")
            assert text.startswith(f"{display(element)} is {group} data; "), text
            if case.mismatch:
                assert f"no legitimate interest established for purpose {case.purpose or 'none'}" in text
            assert_logged(w, case, cid, action="readElement", outcome="denied", dpp_id=w.dpp,
                          detail=[display(element)], reason=text)
    elif op == "search":
        r, cid = w.request("GET", "/api/v1/dpps", case.actor, params={"operator": w.operator_id}, **kw)
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert [i["dppId"] for i in items] == [w.dpp]
        assert set(items[0]) <= SUMMARY_KEYS
        assert all(CATALOGUE.get(k, PUBLIC) == PUBLIC for k in items[0])
        assert_logged(w, case, cid, action="search", outcome="granted", dpp_id=None,
                      detail=[f"operator={w.operator_id}"])
    elif op == "versionList":
        r, cid = w.request("GET", f"/api/v1/dpps/{w.dpp}/versions", case.actor, **kw)
        assert r.status_code == 200, r.text
        versions = r.json()["versions"]
        assert [v["version"] for v in versions] == [1]
        assert "generalProductInformation" not in r.text  # numbers, times and hashes only
        assert_logged(w, case, cid, action="readVersion", outcome="granted", dpp_id=w.dpp, detail=["versionList"])
    elif op == "export":
        r, cid = w.request("GET", EXPORT, case.actor, params={"operator": w.operator_id}, **kw)
        lines, trailer = export_lines(r)
        assert trailer == {"exportComplete": True, "count": 1, "nextCursor": None}
        assert len(lines) == 1
        body = orjson.loads(lines[0])
        expected = {p for p in attrs_in(w.doc) if CATALOGUE[p] in case.groups}
        assert attrs_in(body) == expected, (
            f"extra {sorted(attrs_in(body) - expected)}, missing {sorted(expected - attrs_in(body))}")
        assert body == view_of(w.doc, case.groups)
        # byte for byte what ReadDPPById answers the same caller
        assert lines[0] == w.request("GET", f"/api/v1/dpps/{w.dpp}", case.actor, **kw)[0].content
        assert_logged(w, case, cid, action="export", outcome="granted", dpp_id=w.dpp, detail=sorted(case.groups))
    else:  # pragma: no cover
        raise AssertionError(op)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_search_by_battery_status(world: World, case: Case) -> None:
    """batteryStatus is point 4 data: a caller may filter by it only over passports whose point 4 it reads."""
    w = world
    r, cid = w.request("GET", "/api/v1/dpps", case.actor, params={"batteryStatus": "original"},
                       token_purpose=case.token_purpose, header_purpose=case.header_purpose)
    if case.actor == "public" or case.groups == AUTH:
        text = assert_error(r, 403, "ClientForbidden")
        assert "battery status is not public" in text
        assert_logged(w, case, cid, action="search", outcome="denied", dpp_id=None, reason=text)
        return
    assert r.status_code in (200, 403), r.text
    if r.status_code == 403:
        assert_logged(w, case, cid, action="search", outcome="denied", dpp_id=None)
        return
    found = [i["dppId"] for i in r.json()["items"]]
    if case.actor == "operator":
        assert found == [w.dpp]
    assert_logged(w, case, cid, action="search", outcome="granted", dpp_id=None)
    assert not found or POINT4 in case.groups, "battery status of passports whose point 4 the caller may not read"


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_export_by_battery_status(world: World, case: Case) -> None:
    """As for search: only an economic operator or its service provider may filter an export by battery status,
    and only over its own passports; everyone else is refused (403) and the refusal is logged."""
    w = world
    r, cid = w.request("GET", EXPORT, case.actor, params={"batteryStatus": "original"},
                       token_purpose=case.token_purpose, header_purpose=case.header_purpose)
    if ORGS.get(case.actor, (None,))[0] not in (Role.economic_operator, Role.service_provider):
        text = assert_error(r, 403, "ClientForbidden")
        assert "battery status is not public" in text
        assert_logged(w, case, cid, action="export", outcome="denied", dpp_id=None, reason=text)
        return
    lines, trailer = export_lines(r)
    if case.actor == "operator":
        assert len(lines) == 1 and orjson.loads(lines[0]) == w.doc
        assert_logged(w, case, cid, action="export", outcome="granted", dpp_id=w.dpp, detail=sorted(ALL))
    else:  # its own passports: it is the responsible operator of none
        assert lines == [] and w.log_rows(cid) == []
    assert trailer == {"exportComplete": True, "count": len(lines), "nextCursor": None}


NO_PURPOSE = [c for c in CASES if c.token_purpose is None and c.header_purpose is None]


@pytest.mark.parametrize("case", NO_PURPOSE, ids=[c.id for c in NO_PURPOSE])
def test_export_with_a_malformed_purpose_is_refused_and_logged(world: World, case: Case) -> None:
    w = world
    r, cid = w.request("GET", EXPORT, case.actor, params={"operator": w.operator_id},
                       headers={"X-Purpose": "dismantling; DROP TABLE"})
    text = assert_error(r, 400, "ClientErrorBadRequest")
    assert "X-Purpose" in text
    assert_logged(w, case, cid, action="export", outcome="denied", dpp_id=None, reason=text)


CLUSTERS = ["labels", "circularity", "generalProductInformation"]


@pytest.mark.parametrize("cluster", CLUSTERS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_element_read_of_a_whole_cluster(world: World, case: Case, cluster: str) -> None:
    """ReadDataElement of a cluster returns only the caller's view of it (or is refused)."""
    w = world
    r, cid = w.request("GET", f"/api/v1/dpps/{w.dpp}/elements/{cluster}", case.actor,
                       token_purpose=case.token_purpose, header_purpose=case.header_purpose)
    rows = w.log_rows(cid)
    assert len(rows) == 1
    if r.status_code == 403:
        assert_error(r, 403, "ClientForbidden")
        assert rows[0].outcome == "denied"
        return
    assert r.status_code == 200, r.text
    assert rows[0].outcome == "granted"
    assert r.json() == view_of(w.doc, case.groups).get(cluster)


# ------------------------------------------------------------------------------------------ write matrix
WRITE_OPS = ["patchPublic", "patchRepair", "patchDynamicElement", "waste", "recycle", "delete",
             "transferResponsibility"]
WRITERS = {
    "patchPublic": {"operator", "agent"},
    "patchRepair": {"operator", "agent", "repairer", "device"},  # repairHistory and batteryStatus are dynamic
    "patchDynamicElement": {"operator", "agent", "device"},
    "waste": {"operator", "agent", "recycler", "wasteOperator"},
    "recycle": {"operator", "agent", "recycler", "wasteOperator"},
    "delete": {"operator", "agent"},  # archives; data are never deleted
    "transferResponsibility": {"operator", "agent"},
}
WRITE_ACTION = {"patchPublic": "update", "patchRepair": "update", "patchDynamicElement": "updateElement",
                "waste": "waste", "recycle": "recycle", "delete": "delete",
                "transferResponsibility": "transferResponsibility"}
WRITE_FIELDS = {
    "patchPublic": ["performanceAndDurability.ratedCapacity"],
    "patchRepair": ["generalProductInformation.batteryStatus", "generalProductInformation.repairHistory"],
    "patchDynamicElement": ["performanceAndDurability.stateOfCharge"],
    "waste": ["generalProductInformation.batteryStatus", "economicOperatorId"],
    "recycle": ["dppStatus", "endOfLife"],
    "delete": ["dppStatus", "endOfLife"],
    "transferResponsibility": ["economicOperatorId"],
}
REPAIR = {"batteryStatus": "re-used", "repairHistory": [{"date": "2026-05", "description": "module 3 replaced"}]}
STATE_OF_CHARGE = {"value": 51.5, "timestamp": "2026-10-01T08:00:00Z"}


def do_write(w: World, case: Case, op: str) -> tuple[httpx.Response, str]:
    kw: dict[str, Any] = {"token_purpose": case.token_purpose, "header_purpose": case.header_purpose}
    url = f"/api/v1/dpps/{w.dpp}"
    if op == "patchPublic":
        patch = {"performanceAndDurability": {"ratedCapacity": w.doc["performanceAndDurability"]["ratedCapacity"] + 1}}
        return w.request("PATCH", url, case.actor, content=orjson.dumps(patch),
                         headers={"Content-Type": "application/merge-patch+json"}, **kw)
    if op == "patchRepair":
        return w.request("PATCH", url, case.actor, json={"generalProductInformation": REPAIR}, **kw)
    if op == "patchDynamicElement":
        return w.request("PATCH", f"{url}/elements/performanceAndDurability/stateOfCharge", case.actor,
                         json=STATE_OF_CHARGE, **kw)
    if op == "waste":
        # a recycler or waste operator takes responsibility itself; the operator hands it to a PRO
        taker = w.actors[case.actor].operator_id if case.actor in ("recycler", "wasteOperator") else PRO
        return w.request("POST", f"{url}/waste", case.actor, json={"responsibleOperatorId": taker}, **kw)
    if op == "recycle":
        # the battery became waste under its own operator first (recycling needs a waste battery)
        r = w.request("POST", f"{url}/waste", "operator", json={"responsibleOperatorId": w.operator_id})[0]
        assert r.status_code == 200, r.text
        return w.request("POST", f"{url}/recycle", case.actor, json={"recyclerId": "urn:dbp:test:recycler"}, **kw)
    if op == "delete":
        return w.request("DELETE", url, case.actor, **kw)
    if op == "transferResponsibility":
        return w.request("POST", f"{url}/responsibility", case.actor,
                         json={"operatorId": PRO, "reference": "sale of the battery fleet, contract 2026-17"}, **kw)
    raise AssertionError(op)  # pragma: no cover


def refusal_text(case: Case, op: str, operator_id: str) -> str:
    """What the refusal says (a substring of it)."""
    if case.groups == AUTH:
        return "authorities may read passports but not alter their content"
    if case.actor == "repairer" and op.startswith("patch"):
        return "a repairer may record repairs (repairHistory) and set status re-used, nothing else"
    if case.actor == "device":
        return "a device key may only write dynamic data"
    action = {"patchPublic": "update", "patchRepair": "update", "patchDynamicElement": "updateElement"}.get(op, op)
    return f"{role_of(case)} may not {action} passports of {operator_id}"


def role_of(case: Case) -> str:
    return {"device": "device", **{k: v[0].value for k, v in ORGS.items()}}[case.actor]


@pytest.mark.parametrize("op", WRITE_OPS)
@pytest.mark.parametrize("case", WRITE_CASES, ids=[c.id for c in WRITE_CASES])
def test_write_matrix(world: World, case: Case, op: str) -> None:
    w = world
    before = w.version_count() + (1 if op == "recycle" else 0)  # recycle: the operator's waste step first
    r, cid = do_write(w, case, op)
    action = WRITE_ACTION[op]
    if case.actor == "public":
        assert_error(r, 401, "ClientNotAuthorized")
        assert_logged(w, case, cid, action=action, outcome="denied", dpp_id=w.dpp, reason="no credentials")
        assert w.version_count() == before
    elif case.actor in WRITERS[op]:
        assert r.status_code == 200, r.text
        assert_logged(w, case, cid, action=action, outcome="granted", dpp_id=w.dpp, detail=WRITE_FIELDS[op])
        assert w.version_count() == before + 1
        stored = w.stored(before + 1)
        if case.actor in ("operator", "agent"):
            # the owner's answer is the complete new version — unless the write handed the passport to another
            # operator (waste, transfer): then it reads back what it may read now, the public view
            moved = op in ("waste", "transferResponsibility")
            assert r.json() == (view_of(stored, P) if moved else stored)
        changed = sorted(p for p in CATALOGUE if p not in ("lastUpdate", "dppSchemaVersion")
                         and (get(stored, p) if has(stored, p) else None) != (
                             get(w.doc, p) if has(w.doc, p) else None))
        # waste and transfers also drop the operator information; recycle follows the operator's waste step
        if op in ("waste", "recycle", "transferResponsibility"):
            assert set(changed) >= set(WRITE_FIELDS[op])
        else:
            assert changed == sorted(WRITE_FIELDS[op])
    else:
        text = assert_error(r, 403, "ClientForbidden")
        operator = w.operator_id
        assert refusal_text(case, op, operator) in text, text
        assert_logged(w, case, cid, action=action, outcome="denied", dpp_id=w.dpp, reason=text)
        assert w.version_count() == before


WRITE_VIEW_CASES = [(c, op) for c in WRITE_CASES for op in WRITE_OPS
                    if c.actor in WRITERS[op] and c.actor not in ("operator", "agent")]


@pytest.mark.parametrize(("case", "op"), [pytest.param(c, op, id=f"{c.id}-{op}") for c, op in WRITE_VIEW_CASES])
def test_write_response_is_the_writers_view(world: World, case: Case, op: str) -> None:
    """A writer that is not the operator gets back no more of the passport than it may read."""
    w = world
    r, _ = do_write(w, case, op)
    assert r.status_code == 200, r.text
    if op == "waste":  # a recycler or waste operator records waste by taking responsibility: it now reads all
        assert r.json() == w.stored(w.version_count())
        assert r.json()["economicOperatorId"] == w.actors[case.actor].operator_id
        return
    withheld = {p for p in attrs_in(r.json()) if CATALOGUE[p] not in case.groups}
    assert not withheld, f"{case.actor} received {sorted(withheld)}"
    assert r.json() == view_of(w.stored(w.version_count()), case.groups)


# ---------------------------------------------------------------------------------------------- grants
def grant(w: World, grantee: str, *, purpose: str, groups: list[str], seconds: float) -> tuple[dict[str, Any], str]:
    r, cid = w.request("POST", f"/api/v1/dpps/{w.dpp}/grants", "operator", json={
        "grantee": grantee, "purpose": purpose, "accessGroups": groups, "expiresAt": future(seconds)})
    assert r.status_code == 201, r.text
    return r.json(), cid


def stranger_reads(w: World, purpose: str | None) -> tuple[httpx.Response, str]:
    return w.request("GET", f"/api/v1/dpps/{w.dpp}", "stranger", header_purpose=purpose)


def test_grant_for_a_purpose_then_revoke(world: World) -> None:
    w = world
    stranger = w.actors["stranger"]
    g, cid = grant(w, stranger.org_id or "", purpose="residualValue", groups=[POINT4], seconds=2)
    assert g["granteeOrgId"] == stranger.org_id and g["accessGroups"] == [POINT4] and g["revokedAt"] is None
    granted_row = w.log_rows(cid)
    assert len(granted_row) == 1 and granted_row[0].action == "grant" and granted_row[0].outcome == "granted"

    with_grant = Case("stranger-granted", "stranger", P4, header_purpose="residualValue")
    r, cid = stranger_reads(w, "residualValue")
    assert_view(w, with_grant, r, cid, action="read")
    assert "grant by the responsible operator" in (w.log_rows(cid)[0].reason or "")
    r, cid = w.request("GET", f"/api/v1/dpps/{w.dpp}/elements/{ELEMENTS[POINT4]}", "stranger",
                       header_purpose="residualValue")
    assert r.status_code == 200 and r.json() == get(w.doc, ELEMENTS[POINT4].replace("/", "."))

    other = Case("stranger-other-purpose", "stranger", P, header_purpose="marketAccess")
    r, cid = stranger_reads(w, "marketAccess")  # the grant is for residualValue only
    assert_view(w, other, r, cid, action="read")
    none = Case("stranger-no-purpose", "stranger", P)
    r, cid = stranger_reads(w, None)
    assert_view(w, none, r, cid, action="read")

    r, cid = w.request("DELETE", f"/api/v1/dpps/{w.dpp}/grants/{g['id']}", "operator")
    assert r.status_code == 200 and r.json()["revokedAt"], r.text
    revoked_row = w.log_rows(cid)
    assert len(revoked_row) == 1 and revoked_row[0].action == "revokeGrant"

    after = Case("stranger-after-revoke", "stranger", P, header_purpose="residualValue")
    r, cid = stranger_reads(w, "residualValue")
    assert_view(w, after, r, cid, action="read")
    r, cid = w.request("GET", f"/api/v1/dpps/{w.dpp}/elements/{ELEMENTS[POINT4]}", "stranger",
                       header_purpose="residualValue")
    text = assert_error(r, 403, "ClientForbidden")
    assert_logged(w, after, cid, action="readElement", outcome="denied", dpp_id=w.dpp, reason=text)


def test_grant_expires(world: World) -> None:
    w = world
    stranger = w.actors["stranger"]
    start = time.monotonic()
    grant(w, stranger.operator_id or "", purpose="residualValue", groups=[POINT4], seconds=2)  # by operator id
    r, cid = stranger_reads(w, "residualValue")
    assert time.monotonic() - start < 2, "too slow to observe the grant before it expires"
    assert_view(w, Case("granted", "stranger", P4, header_purpose="residualValue"), r, cid, action="read")
    time.sleep(max(0.0, 2.5 - (time.monotonic() - start)))
    r, cid = stranger_reads(w, "residualValue")
    assert_view(w, Case("expired", "stranger", P, header_purpose="residualValue"), r, cid, action="read")
    r, cid = w.request("GET", f"/api/v1/dpps/{w.dpp}/versions/1", "stranger", header_purpose="residualValue")
    assert_view(w, Case("expired", "stranger", P, header_purpose="residualValue"), r, cid, action="readVersion")


def test_grant_of_point2_to_a_purchaser_adds_to_its_policy(world: World) -> None:
    w = world
    grant(w, w.actors["purchaser"].org_id or "", purpose="marketAccess", groups=[POINT2], seconds=60)
    case = Case("purchaser-granted-point2", "purchaser", P4 | {POINT2}, header_purpose="marketAccess")
    r, cid = w.request("GET", f"/api/v1/dpps/{w.dpp}", "purchaser", header_purpose="marketAccess")
    assert_view(w, case, r, cid, action="read")


@pytest.mark.parametrize("actor", ["stranger", "recycler", "purchaser", "commission", "device"])
def test_only_the_operator_manages_grants(world: World, actor: str) -> None:
    w = world
    body = {"grantee": w.actors[actor].org_id, "purpose": "residualValue", "accessGroups": [POINT4],
            "expiresAt": future(60)}
    r, _ = w.request("POST", f"/api/v1/dpps/{w.dpp}/grants", actor, json=body)
    assert "only the passport's responsible operator" in assert_error(r, 403, "ClientForbidden")
    r, _ = w.request("GET", f"/api/v1/dpps/{w.dpp}/grants", actor)
    assert_error(r, 403, "ClientForbidden")
    g, _ = grant(w, w.actors["stranger"].org_id or "", purpose="residualValue", groups=[POINT4], seconds=60)
    r, _ = w.request("DELETE", f"/api/v1/dpps/{w.dpp}/grants/{g['id']}", actor)
    assert_error(r, 403, "ClientForbidden")
    listed = w.request("GET", f"/api/v1/dpps/{w.dpp}/grants", "operator")[0].json()["grants"]
    assert [x["revokedAt"] for x in listed] == [None]


def test_grant_refusals(world: World) -> None:
    w = world
    anonymous, _ = w.request("POST", f"/api/v1/dpps/{w.dpp}/grants", "public", json={
        "grantee": w.actors["stranger"].org_id, "purpose": "x", "accessGroups": [POINT4], "expiresAt": future(60)})
    assert_error(anonymous, 401, "ClientNotAuthorized")
    for groups in ([POINT3], [PUBLIC, POINT4], []):  # test reports are for authorities only
        r, _ = w.request("POST", f"/api/v1/dpps/{w.dpp}/grants", "operator", json={
            "grantee": w.actors["stranger"].org_id, "purpose": "dismantling", "accessGroups": groups,
            "expiresAt": future(60)})
        assert r.status_code in (400, 422), r.text
    past, _ = w.request("POST", f"/api/v1/dpps/{w.dpp}/grants", "operator", json={
        "grantee": w.actors["stranger"].org_id, "purpose": "dismantling", "accessGroups": [POINT2],
        "expiresAt": "2020-01-01T00:00:00Z"})
    assert past.status_code == 400, past.text
    no_purpose, _ = w.request("POST", f"/api/v1/dpps/{w.dpp}/grants", "operator", json={
        "grantee": w.actors["stranger"].org_id, "accessGroups": [POINT2], "expiresAt": future(60)})
    assert no_purpose.status_code == 422, no_purpose.text
    listed = w.request("GET", f"/api/v1/dpps/{w.dpp}/grants", "operator")[0].json()["grants"]
    assert listed == []


# ----------------------------------------------------------------------- one organisation, another's passport
def test_client_of_one_organisation_against_another_organisations_passport(
        world: World, fleet: list[dict[str, Any]]) -> None:
    """Two economic operators: each reads only the public view of the other's passport and changes nothing."""
    w = world
    other_doc = next(d for d in fleet if d["economicOperatorId"] != w.operator_id)
    with w.session_factory.begin() as s:
        org = access.create_org(s, name="second operator", operator_id=other_doc["economicOperatorId"],
                                role=Role.economic_operator)
        issued = access.create_client(s, org_id=org.id, role=Role.economic_operator)
    w.actors["second"] = Actor("second", Role.economic_operator.value, org.id, org.operator_id, issued.client_id,
                               issued.client_secret)
    r, _ = w.request("POST", "/api/v1/dpps", "second", json=other_doc)
    assert r.status_code == 201, r.text
    theirs = r.json()
    mine = w.doc

    for actor, doc, owner in (("second", mine, "operator"), ("operator", theirs, "second")):
        case = Case(f"{actor}-foreign", actor, P)
        dpp = doc["dppId"]
        r, cid = w.request("GET", f"/api/v1/dpps/{dpp}", actor)
        assert r.status_code == 200 and r.headers["x-dpp-access"] == PUBLIC
        assert r.json() == view_of(doc, P)
        assert_logged(w, case, cid, action="read", outcome="granted", dpp_id=dpp, detail=[PUBLIC])
        r, cid = w.request("GET", f"/api/v1/dpps/{dpp}/elements/{ELEMENTS[POINT4]}", actor)
        text = assert_error(r, 403, "ClientForbidden")
        assert_logged(w, case, cid, action="readElement", outcome="denied", dpp_id=dpp, reason=text)
        for action, method, url, body in (
                ("update", "PATCH", f"/api/v1/dpps/{dpp}", {"performanceAndDurability": {"ratedCapacity": 1.5}}),
                ("updateElement", "PATCH", f"/api/v1/dpps/{dpp}/elements/performanceAndDurability/stateOfCharge",
                 STATE_OF_CHARGE),
                ("delete", "DELETE", f"/api/v1/dpps/{dpp}", None),
                ("waste", "POST", f"/api/v1/dpps/{dpp}/waste", {"responsibleOperatorId": w.actors[actor].operator_id}),
                ("recycle", "POST", f"/api/v1/dpps/{dpp}/recycle", {}),
                ("transferResponsibility", "POST", f"/api/v1/dpps/{dpp}/responsibility",
                 {"operatorId": w.actors[actor].operator_id, "reference": "none"})):
            r, cid = w.request(method, url, actor, **({"json": body} if body is not None else {}))
            text = assert_error(r, 403, "ClientForbidden")
            assert_logged(w, case, cid, action=action, outcome="denied", dpp_id=dpp, reason=text)
        r, _ = w.request("POST", f"/api/v1/dpps/{dpp}/grants", actor, json={
            "grantee": w.actors[actor].org_id, "purpose": "residualValue", "accessGroups": [POINT4],
            "expiresAt": future(60)})
        assert_error(r, 403, "ClientForbidden")  # it cannot grant itself access either
        r, _ = w.request("GET", f"/api/v1/dpps/{dpp}", owner)
        assert r.status_code == 200 and r.json() == doc  # unchanged, version 1
        # nor create a passport naming the other as its responsible operator
        forged = {**(other_doc if actor == "operator" else w.doc), "uniqueProductIdentifier": doc[
            "uniqueProductIdentifier"] + "-forged"}
        forged.pop("dppId", None)
        for k in ("dppSchemaVersion", "lastUpdate", "dppStatus"):
            forged.pop(k, None)
        forged["economicOperatorId"] = doc["economicOperatorId"]
        r, cid = w.request("POST", "/api/v1/dpps", actor, json=forged)
        text = assert_error(r, 403, "ClientForbidden")
        assert "you cannot create one for" in text
        assert_logged(w, case, cid, action="create", outcome="denied", dpp_id=None, reason=text)


# ----------------------------------------------------------------------------------------- the change feed
FEED_METADATA = {"operator", "agent", "stranger", "notifiedBody", "marketSurveillance", "commission"}
FEED_BODIES = {"operator", "agent", "stranger"}  # the stranger: bodies of its own passports (none here)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_feed_matrix(world: World, case: Case) -> None:
    """GET /api/v1/feed (dbp.replication): the responsible operator and its authorised agent read entries and
    bodies; authorities metadata of every passport; another operator only its own (none here); the anonymous
    public 401; every other role — a backup provider the operator did not appoint included — 403. Each page and
    each refusal is one access-log record."""
    w = world
    kw = {"token_purpose": case.token_purpose, "header_purpose": case.header_purpose}
    for include in ("metadata", "body"):
        r, cid = w.request("GET", "/api/v1/feed", case.actor, params={"include": include}, **kw)
        if case.actor == "public":
            assert_error(r, 401, "ClientNotAuthorized")
        elif case.actor not in FEED_METADATA or (include == "body" and case.actor not in FEED_BODIES):
            assert_error(r, 403, "ClientForbidden")
        else:
            assert r.status_code == 200, r.text
            entries = r.json()["entries"]
            assert [e["dppId"] for e in entries] == ([] if case.actor == "stranger" else [w.dpp])
            assert all(("body" in e) == (include == "body") for e in entries)
            if include == "body" and entries:
                assert orjson.loads(entries[0]["body"]) == w.doc
            row = assert_logged(w, case, cid, action="feed", outcome="granted", dpp_id=None)
            assert orjson.loads(row.detail)[1] == f"entries={len(entries)}"
            continue
        assert_logged(w, case, cid, action="feed", outcome="denied", dpp_id=None)


# ----------------------------------------------------------------------------------------- the access log
def test_done_when_every_read_is_in_the_access_log(world: World) -> None:
    """Issue 3's 'done when': public → point 1; recycler/dismantling → point 2, not 3 or 4; authority → 2 and 3,
    not 4; operator → everything; each read is in the access log, as an authority queries it."""
    w = world
    cases = [Case("public", "public", P), Case("recycler", "recycler", P2, header_purpose="dismantling"),
             Case("msa", "marketSurveillance", AUTH), Case("operator", "operator", ALL)]
    cids = {}
    for case in cases:
        r, cid = w.request("GET", f"/api/v1/dpps/{w.dpp}", case.actor, header_purpose=case.header_purpose)
        assert_view(w, case, r, cid, action="read")
        cids[cid] = case
    r, _ = w.request("GET", "/api/v1/access-log", "commission", params={"dppId": w.dpp, "action": "read",
                                                                        "limit": 1000})
    assert r.status_code == 200, r.text
    items = {i["requestId"]: i for i in r.json()["items"]}
    for cid, case in cids.items():
        item = items[cid]
        assert item["outcome"] == "granted" and item["dppId"] == w.dpp and item["detail"] == sorted(case.groups)
        assert item["role"] == w.actors[case.actor].role and item["purpose"] == case.purpose


def test_access_log_visibility_and_denials(world: World) -> None:
    w = world
    denied_case = Case("recycler-no-purpose", "recycler", P)
    r, denied_cid = w.request("GET", f"/api/v1/dpps/{w.dpp}/elements/{ELEMENTS[POINT2]}", "recycler")
    reason = assert_error(r, 403, "ClientForbidden")
    assert_logged(w, denied_case, denied_cid, action="readElement", outcome="denied", dpp_id=w.dpp, reason=reason)
    _, public_cid = w.request("GET", f"/api/v1/dpps/{w.dpp}", "public")

    def ids(actor: str, **params: Any) -> set[str]:
        resp, _ = w.request("GET", "/api/v1/access-log", actor, params={"limit": 1000, **params})
        assert resp.status_code == 200, resp.text
        return {i["requestId"] for i in resp.json()["items"]}

    assert {denied_cid, public_cid} <= ids("operator", dppId=w.dpp)  # accesses to its own passport
    assert {denied_cid, public_cid} <= ids("notifiedBody")  # authorities see everything
    assert denied_cid in ids("recycler")  # its own accesses
    assert public_cid not in ids("recycler")
    assert not {denied_cid, public_cid} & ids("stranger")  # not its passport, not its organisation
    only_denied, _ = w.request("GET", "/api/v1/access-log", "operator", params={"outcome": "denied", "limit": 1000})
    items = only_denied.json()["items"]
    assert items and all(i["outcome"] == "denied" and i["reason"] for i in items)
    assert denied_cid in {i["requestId"] for i in items}
    assert_error(w.request("GET", "/api/v1/access-log", "public")[0], 401, "ClientNotAuthorized")
    csv_r, _ = w.request("GET", "/api/v1/access-log", "operator", params={"format": "csv", "dppId": w.dpp})
    assert csv_r.status_code == 200 and csv_r.headers["content-type"].startswith("text/csv")
    assert denied_cid in csv_r.text

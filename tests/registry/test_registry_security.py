"""The security review's findings on the registry, over real HTTP: a registry node (its own app on this test's
database) reading passports from small fake repositories on loopback (ASGI apps serving documents the test
writes, as any operator's repository could), and the attacks the review described refused."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
import pytest
from registry_helpers import org_headers
from sqlalchemy import text

from conftest import ServerThread, assert_error
from dbp.access.principal import Role
from dbp.app import create_app
from dbp.config import Settings
from dbp.registry import proofs

GTIN = "09506000134352"
VICTIM_PID = f"https://id.gs1.org/01/{GTIN}/21/VICTIM1"
VICTIM_DPP = "urn:uuid:0a0a0a0a-1111-4222-8333-000000000001"
VICTIM_OP = "urn:x:victim"
ATTACKER_OP = "urn:x:attacker"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeRepository:
    """An ASGI app answering ``GET …/api/v1/dpps/{dppId}`` with the document in ``docs`` (ETag: SHA-256 of the
    bytes, X-DPP-Version: its ``version`` entry), 404 otherwise; each answer after ``delay`` seconds."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, int] = {}
        self.delay = 0.0
        self.hits = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        self.hits += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        dpp_id = unquote(scope["path"].rsplit("/", 1)[-1])
        doc = self.docs.get(dpp_id)
        if doc is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = orjson.dumps(doc)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"etag", f'"{hashlib.sha256(body).hexdigest()}"'.encode()),
            (b"x-dpp-version", str(self.versions.get(dpp_id, 1)).encode())]})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Any]]:
    repos = {name: (FakeRepository(), _port()) for name in ("victim", "attacker", "third")}
    threads = [ServerThread(app, port) for app, port in repos.values()]
    for t in threads:
        t.__enter__()
    yield {name: {"app": app, "port": port, "url": f"http://127.0.0.1:{port}"} for name, (app, port) in
           repos.items()}
    for t in threads:
        t.__exit__(None, None, None)


@pytest.fixture(scope="module")
def registry(settings: Settings, fakes: dict[str, Any]) -> Iterator[ServerThread]:
    """A registry node on the test database that may read the fake repositories over plain http."""
    port = _port()
    hosts = [f"127.0.0.1:{f['port']}" for f in fakes.values()] + [f"localhost:{fakes['third']['port']}"]
    node = settings.model_copy(update={"port": port, "registry_endpoint_http_hosts": hosts,
                                       "base_url": f"http://127.0.0.1:{port}"})
    with ServerThread(create_app(node), port) as srv:
        yield srv


@pytest.fixture()
def repos(fakes: dict[str, Any]) -> dict[str, Any]:
    for f in fakes.values():
        f["app"].docs.clear()
        f["app"].versions.clear()
        f["app"].delay = 0.0
    return fakes


def doc(pid: str, dpp_id: str, operator: str, **extra: Any) -> dict[str, Any]:
    return {"uniqueProductIdentifier": pid, "dppId": dpp_id, "economicOperatorId": operator, "granularity": "item",
            **extra}


def body(d: dict[str, Any], endpoint: str, **extra: Any) -> dict[str, Any]:
    return {"uniqueProductIdentifier": d["uniqueProductIdentifier"], "dppId": d["dppId"],
            "economicOperatorId": d["economicOperatorId"], "endpoint": endpoint, **extra}


def events(factory: Any, rid: str) -> list[tuple[int, str]]:
    with factory() as s:
        return [(r[0], r[1]) for r in s.execute(text(
            "SELECT revision, kind FROM registration_events WHERE registration_id = :r ORDER BY id"), {"r": rid})]


def _victim(repos: dict[str, Any], registry: ServerThread, factory: Any) -> tuple[dict[str, str], str]:
    victim_doc = doc(VICTIM_PID, VICTIM_DPP, VICTIM_OP)
    repos["victim"]["app"].docs[VICTIM_DPP] = victim_doc
    headers = org_headers(factory, registry.base_url, role=Role.economic_operator, operator_id=VICTIM_OP)
    r = httpx.post(f"{registry.base_url}/api/v1/registerDPP", json=body(victim_doc, repos["victim"]["url"]),
                   headers=headers)
    assert r.status_code == 201, r.text
    return headers, r.json()["registrationId"]


# ----------------------------------------------------------------------------------------------- S1
def test_s1_another_operator_cannot_take_over_a_registration(repos: dict[str, Any], registry: ServerThread,
                                                             session_factory: Any) -> None:
    _, rid = _victim(repos, registry, session_factory)
    # the attacker serves a copy naming itself at its own endpoint and asks for custody
    repos["attacker"]["app"].docs[VICTIM_DPP] = doc(VICTIM_PID, VICTIM_DPP, ATTACKER_OP)
    attacker = org_headers(session_factory, registry.base_url, role=Role.economic_operator, operator_id=ATTACKER_OP)
    before = httpx.get(f"{registry.base_url}/api/v1/registry/registrations/{rid}").json()
    hits = repos["attacker"]["app"].hits
    r = httpx.post(f"{registry.base_url}/api/v1/registry/registrations/{rid}/routing", headers=attacker,
                   json={"economicOperatorId": ATTACKER_OP, "endpoint": repos["attacker"]["url"]})
    err = assert_error(r, 403, "ClientForbidden")
    assert "responsibility transfer" in err["message"][0]["text"] and VICTIM_OP in err["message"][0]["text"]
    assert repos["attacker"]["app"].hits == hits  # the attacker's endpoint was not even read
    assert httpx.get(f"{registry.base_url}/api/v1/registry/registrations/{rid}").json() == before
    assert events(session_factory, rid) == [(1, "registered")]  # no event, no proof
    resolved = httpx.get(f"{registry.base_url}/01/{GTIN}/21/VICTIM1", follow_redirects=False)
    assert resolved.status_code == 307 and resolved.headers["location"].startswith(repos["victim"]["url"])
    # without an endpoint change either: the victim's repository does not name the attacker
    r = httpx.post(f"{registry.base_url}/api/v1/registry/registrations/{rid}/routing", headers=attacker,
                   json={"economicOperatorId": ATTACKER_OP})
    assert_error(r, 403, "ClientForbidden")
    # the victim's repository gone: only the Commission moves custody
    repos["victim"]["app"].docs.clear()
    r = httpx.post(f"{registry.base_url}/api/v1/registry/registrations/{rid}/routing", headers=attacker,
                   json={"economicOperatorId": ATTACKER_OP, "endpoint": repos["attacker"]["url"]})
    assert "only the Commission" in assert_error(r, 403, "ClientForbidden")["message"][0]["text"]
    assert events(session_factory, rid) == [(1, "registered")]


def test_s1_legitimate_moves_succeed(repos: dict[str, Any], registry: ServerThread, session_factory: Any) -> None:
    victim, rid = _victim(repos, registry, session_factory)
    routing = f"{registry.base_url}/api/v1/registry/registrations/{rid}/routing"
    # the current operator moves its own endpoint: the passport there must agree
    repos["third"]["app"].docs[VICTIM_DPP] = doc(VICTIM_PID, VICTIM_DPP, "urn:x:someone-else")
    assert_error(httpx.post(routing, headers=victim, json={"endpoint": repos["third"]["url"]}), 422,
                 "ClientErrorBadRequest")
    repos["third"]["app"].docs[VICTIM_DPP] = doc(VICTIM_PID, VICTIM_DPP, VICTIM_OP)
    moved = httpx.post(routing, headers=victim, json={"endpoint": repos["third"]["url"]})
    assert moved.status_code == 200, moved.text
    assert moved.json()["registration"]["endpoint"] == repos["third"]["url"]
    # the responsibility transfer recorded at the repository holding custody: the new operator moves custody to
    # its own repository, which serves the same passport
    new_op = "urn:x:new-operator"
    repos["third"]["app"].docs[VICTIM_DPP] = doc(VICTIM_PID, VICTIM_DPP, new_op)
    repos["attacker"]["app"].docs[VICTIM_DPP] = doc(VICTIM_PID, VICTIM_DPP, new_op)
    successor = org_headers(session_factory, registry.base_url, role=Role.economic_operator, operator_id=new_op)
    custody = httpx.post(routing, headers=successor, json={"economicOperatorId": new_op,
                                                           "endpoint": repos["attacker"]["url"]})
    assert custody.status_code == 200, custody.text
    keys = proofs.keys_from_jwks(httpx.get(f"{registry.base_url}/.well-known/jwks.json").json())
    assert proofs.verify_proof(custody.json()["proof"], keys)["economicOperatorId"] == new_op
    assert events(session_factory, rid) == [(1, "registered"), (2, "rerouted"), (3, "custody")]
    # the Commission moves custody of a registration whose repository is gone
    repos["attacker"]["app"].docs.clear()
    repos["victim"]["app"].docs[VICTIM_DPP] = doc(VICTIM_PID, VICTIM_DPP, "urn:x:rescuer")
    commission = org_headers(session_factory, registry.base_url, role=Role.commission, operator_id="urn:x:ec")
    rescued = httpx.post(routing, headers=commission, json={"economicOperatorId": "urn:x:rescuer",
                                                            "endpoint": repos["victim"]["url"]})
    assert rescued.status_code == 200, rescued.text
    assert events(session_factory, rid)[-1] == (4, "custody")


# ----------------------------------------------------------------------------------------------- S2
def test_s2_aliases_need_the_passport_to_list_them(repos: dict[str, Any], registry: ServerThread,
                                                   session_factory: Any) -> None:
    squatted = "https://id.gs1.org/01/04012345000009/21/SOMEONE-ELSES"
    pid = f"https://id.gs1.org/01/{GTIN}/21/ATTACK1"
    dpp = "urn:uuid:0a0a0a0a-1111-4222-8333-000000000002"
    repos["attacker"]["app"].docs[dpp] = doc(pid, dpp, ATTACKER_OP)
    attacker = org_headers(session_factory, registry.base_url, role=Role.economic_operator, operator_id=ATTACKER_OP)
    other = "iso15459:LA:MAKER:ATTACK1"
    r = httpx.post(f"{registry.base_url}/api/v1/registerDPP", headers=attacker,
                   json=body(repos["attacker"]["app"].docs[dpp], repos["attacker"]["url"],
                             aliases=[squatted, other]))
    err = assert_error(r, 422, "ClientErrorBadRequest")
    details = err["message"][0]["details"]
    assert [d["path"] for d in details] == ["$.aliases[0]", "$.aliases[1]"]
    assert all("expected it among the passport's productIdentifierAliases" in d["message"] for d in details)
    with session_factory() as s:
        assert s.execute(text("SELECT count(*) FROM registrations")).scalar() == 0
    assert httpx.get(f"{registry.base_url}/api/v1/registry/registrations", params={"productId": squatted}
                     ).json()["items"] == []
    # listed by the passport: accepted
    repos["attacker"]["app"].docs[dpp]["productIdentifierAliases"] = [other]
    ok = httpx.post(f"{registry.base_url}/api/v1/registerDPP", headers=attacker,
                    json=body(repos["attacker"]["app"].docs[dpp], repos["attacker"]["url"], aliases=[other]))
    assert ok.status_code == 201, ok.text
    assert [a["identifier"] for a in ok.json()["registration"]["aliases"]] == [other]
    # an identifier already registered stays its owner's, even when another passport lists it
    _victim(repos, registry, session_factory)
    repos["attacker"]["app"].docs[dpp]["productIdentifierAliases"] = [other, VICTIM_PID]
    taken = httpx.post(f"{registry.base_url}/api/v1/registerDPP", headers=attacker,
                       json=body(repos["attacker"]["app"].docs[dpp], repos["attacker"]["url"],
                                 aliases=[other, VICTIM_PID]))
    assert_error(taken, 409, "ClientResourceConflict")


# ----------------------------------------------------------------------------------------------- S6
def test_s6_unconfirmed_predecessors_are_not_stored(repos: dict[str, Any], registry: ServerThread,
                                                    session_factory: Any) -> None:
    _, rid = _victim(repos, registry, session_factory)
    pid = f"https://id.gs1.org/01/{GTIN}/21/ATTACK2"
    dpp = "urn:uuid:0a0a0a0a-1111-4222-8333-000000000003"
    unknown = "urn:uuid:0a0a0a0a-1111-4222-8333-00000000ffff"
    repos["attacker"]["app"].docs[dpp] = doc(pid, dpp, ATTACKER_OP, predecessorDppIds=[VICTIM_DPP, unknown])
    attacker = org_headers(session_factory, registry.base_url, role=Role.economic_operator, operator_id=ATTACKER_OP)
    r = httpx.post(f"{registry.base_url}/api/v1/registerDPP", headers=attacker,
                   json=body(repos["attacker"]["app"].docs[dpp], repos["attacker"]["url"]))
    assert r.status_code == 201, r.text
    assert r.json()["registration"]["predecessorDppIds"] == []
    assert httpx.get(f"{registry.base_url}/api/v1/registry/registrations/{rid}").json()["status"] == "active"
    linkset = httpx.get(f"{registry.base_url}/01/{GTIN}/21/ATTACK2", params={"linkType": "linkset"}).text
    assert VICTIM_DPP not in linkset and unknown not in linkset


# ----------------------------------------------------------------------------------------------- C4
def test_c4_an_exited_node_reroutes_an_endpoint_written_differently(repos: dict[str, Any], registry: ServerThread,
                                                                   session_factory: Any) -> None:
    port = repos["third"]["port"]
    pid = f"https://id.gs1.org/01/{GTIN}/21/CASE1"
    dpp = "urn:uuid:0a0a0a0a-1111-4222-8333-000000000004"
    repos["third"]["app"].docs[dpp] = doc(pid, dpp, VICTIM_OP)
    op = org_headers(session_factory, registry.base_url, role=Role.economic_operator, operator_id=VICTIM_OP)
    commission = org_headers(session_factory, registry.base_url, role=Role.commission, operator_id="urn:x:ec4")
    node = httpx.post(f"{registry.base_url}/api/v1/registry/nodes", headers=commission, json={
        "nodeId": "repo-third", "kind": "repository", "endpoint": f"HTTP://LocalHost:{port}/"})
    assert node.status_code == 201 and node.json()["endpoint"] == f"http://localhost:{port}", node.text
    r = httpx.post(f"{registry.base_url}/api/v1/registerDPP", headers=op,
                   json=body(repos["third"]["app"].docs[dpp], f"http://LOCALHOST:{port}"))
    assert r.status_code == 201, r.text
    assert r.json()["registration"]["endpoint"] == f"http://localhost:{port}"
    before = httpx.get(f"{registry.base_url}/01/{GTIN}/21/CASE1", follow_redirects=False)
    assert before.status_code == 307
    exited = httpx.patch(f"{registry.base_url}/api/v1/registry/nodes/repo-third", headers=commission,
                         json={"status": "exited"})
    assert exited.status_code == 200, exited.text
    after = httpx.get(f"{registry.base_url}/01/{GTIN}/21/CASE1", follow_redirects=False)
    assert after.status_code == 503, (after.status_code, after.headers.get("location"))


# ----------------------------------------------------------------------------------------------- C1
def test_c1_a_custody_update_at_the_same_endpoint(repos: dict[str, Any], registry: ServerThread,
                                                  session_factory: Any) -> None:
    _, rid = _victim(repos, registry, session_factory)
    new_op = "urn:x:heir"
    heir = org_headers(session_factory, registry.base_url, role=Role.economic_operator, operator_id=new_op)
    # another endpoint: that is a move, through routing (409 here)
    repos["attacker"]["app"].docs[VICTIM_DPP] = doc(VICTIM_PID, VICTIM_DPP, new_op)
    elsewhere = httpx.post(f"{registry.base_url}/api/v1/registerDPP", headers=heir,
                           json=body(repos["attacker"]["app"].docs[VICTIM_DPP], repos["attacker"]["url"]))
    assert "routing" in assert_error(elsewhere, 409, "ClientResourceConflict")["message"][0]["text"]
    # the same endpoint, whose passport now names the heir: a custody update
    repos["victim"]["app"].docs[VICTIM_DPP] = doc(VICTIM_PID, VICTIM_DPP, new_op)
    repos["victim"]["app"].versions[VICTIM_DPP] = 2
    same = httpx.post(f"{registry.base_url}/api/v1/registerDPP", headers=heir,
                      json=body(repos["victim"]["app"].docs[VICTIM_DPP], repos["victim"]["url"]))
    assert same.status_code == 200, same.text
    assert same.json()["registration"]["economicOperatorId"] == new_op and same.json()["revision"] == 2
    assert events(session_factory, rid) == [(1, "registered"), (2, "custody")]


# ----------------------------------------------------------------------------------------------- D1
def test_d1_concurrent_reroutes_one_wins_one_conflicts(repos: dict[str, Any], registry: ServerThread,
                                                       session_factory: Any) -> None:
    victim, rid = _victim(repos, registry, session_factory)
    for name in ("third", "attacker"):
        repos[name]["app"].docs[VICTIM_DPP] = doc(VICTIM_PID, VICTIM_DPP, VICTIM_OP)
        repos[name]["app"].delay = 0.5  # both requests read revision 1 before either writes
    answers: dict[str, httpx.Response] = {}
    barrier = threading.Barrier(2)

    def move(name: str) -> None:
        barrier.wait()
        answers[name] = httpx.post(f"{registry.base_url}/api/v1/registry/registrations/{rid}/routing",
                                   headers=victim, json={"endpoint": repos[name]["url"]}, timeout=30)

    threads = [threading.Thread(target=move, args=(n,)) for n in ("third", "attacker")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in answers.values())
    assert codes == [200, 409], [r.text for r in answers.values()]
    assert "changed concurrently" in next(r for r in answers.values() if r.status_code == 409).text
    assert events(session_factory, rid) == [(1, "registered"), (2, "rerouted")]


def test_d1_the_database_refuses_a_second_revision_n_plus_1(repos: dict[str, Any], registry: ServerThread,
                                                            session_factory: Any) -> None:
    """Two sessions load revision 1 and both write revision 2: the optimistic UPDATE lets one through (the second
    session keeps what it loaded across its own commit, as a read made before a network wait would)."""
    from sqlalchemy.orm.exc import StaleDataError

    from dbp.registry.models import Registration

    _, rid = _victim(repos, registry, session_factory)
    first, second = session_factory(), session_factory(expire_on_commit=False)
    try:
        b = second.get(Registration, rid)
        second.commit()
        a = first.get(Registration, rid)
        assert a is not None and b is not None and a.revision == b.revision == 1
        a.endpoint, a.revision = "https://a.example", 2
        first.commit()
        b.endpoint, b.revision = "https://b.example", 2
        with pytest.raises(StaleDataError):
            second.commit()
    finally:
        second.rollback()
        first.close()
        second.close()
    with session_factory() as s:
        assert s.get(Registration, rid).endpoint == "https://a.example"  # type: ignore[union-attr]


def test_d1_d2_unique_event_revisions_and_dpp_ids(repos: dict[str, Any], registry: ServerThread,
                                                  session_factory: Any) -> None:
    from sqlalchemy.exc import IntegrityError

    _, rid = _victim(repos, registry, session_factory)
    with pytest.raises(IntegrityError), session_factory.begin() as s:
        s.execute(text("INSERT INTO registration_events (registration_id, revision, kind, at, actor, data) "
                       "VALUES (:r, 1, 'updated', '2026', 'x', '{}')"), {"r": rid})
    with pytest.raises(IntegrityError), session_factory.begin() as s:
        s.execute(text("INSERT INTO registrations SELECT 'urn:dbp:registration:copy', 'other-key', product_id, "
                       "dpp_id, operator_id, facility_id, commodity_code, granularity, endpoint, backup_node_id, "
                       "dpp_version, version_hash, status, successor_registration_id, predecessor_dpp_ids, "
                       "revision, registered_at, updated_at, registrant, registrant_org FROM registrations"))


# ----------------------------------------------------------------------------------------------- 401 first
def test_anonymous_register_and_routing_are_401_before_the_body(registry: ServerThread) -> None:
    for path in ("/api/v1/registerDPP", "/api/v1/registry/registrations/urn:dbp:registration:x/routing"):
        assert_error(httpx.post(f"{registry.base_url}{path}", content=b"{",
                                headers={"Content-Type": "application/json"}), 401, "ClientNotAuthorized")

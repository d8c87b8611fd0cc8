"""The registry API on one all-roles server (the registry reads its own repository in-process): registration,
proofs, lookups, routing, nodes, export, and every refusal with the EN 18222 error object."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from registry_helpers import body_for, create_passport, fresh

from conftest import ServerThread, assert_error
from dbp.registry import proofs


def _keys(public: httpx.Client) -> dict[str, bytes]:
    return proofs.keys_from_jwks(public.get("/.well-known/jwks.json").json())


def test_registration_returns_a_verifiable_signed_proof(server: ServerThread, client: httpx.Client,
                                                        public: httpx.Client, passport: dict[str, Any]) -> None:
    p = create_passport(client, fresh(passport, "REG0001"))
    served = public.get(f"/api/v1/dpps/{p['dppId']}")
    r = client.post("/api/v1/registerDPP", json=body_for(p, server.base_url))
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["registrationId"].startswith("urn:dbp:registration:") and out["revision"] == 1
    payload = proofs.verify_proof(out["proof"], _keys(public))
    assert payload["registrationId"] == out["registrationId"] and payload["dppId"] == p["dppId"]
    assert payload["versionHash"] == served.headers["etag"].strip('"') and payload["etagVerified"] is True
    assert payload["economicOperatorId"] == p["economicOperatorId"] and payload["registry"] == server.base_url
    verdict = public.post("/api/v1/registry/proofs/verify", json={"proof": out["proof"]}).json()
    assert verdict["valid"] is True and verdict["registration"]["current"] is True


def _register(client: httpx.Client, p: dict[str, Any], base: str, *, status: int = 201, **extra: Any
              ) -> dict[str, Any]:
    """Registers ``p``; ``status`` 201 for a new registration, 200 for a new revision of an existing one."""
    r = client.post("/api/v1/registerDPP", json=body_for(p, base, **extra))
    assert r.status_code == status, r.text
    out: dict[str, Any] = r.json()
    return out


def test_update_is_a_new_revision_and_a_repeat_changes_nothing(server: ServerThread, client: httpx.Client,
                                                                public: httpx.Client,
                                                                passport: dict[str, Any]) -> None:
    p = create_passport(client, fresh(passport, "REG0002"))
    first = _register(client, p, server.base_url)
    again = client.post("/api/v1/registerDPP", json=body_for(p, server.base_url))
    assert again.status_code == 200 and again.json()["changed"] is False and again.json()["revision"] == 1
    assert again.json()["proof"] == first["proof"]
    patched = client.patch(f"/api/v1/dpps/{p['dppId']}", content=b'{"contentSpecificationIds": ["urn:x:spec"]}',
                           headers={"Content-Type": "application/merge-patch+json"})
    assert patched.status_code == 200, patched.text
    second = _register(client, p, server.base_url, status=200)
    assert second["revision"] == 2 and second["registrationId"] == first["registrationId"]
    payload = proofs.verify_proof(second["proof"], _keys(public))
    assert payload["dppVersion"] == 2 and payload["revision"] == 2
    assert payload["versionHash"] == public.get(f"/api/v1/dpps/{p['dppId']}").headers["etag"].strip('"')
    events = client.get(f"/api/v1/registry/registrations/{first['registrationId']}/events").json()["events"]
    assert [(e["revision"], e["kind"]) for e in events] == [(1, "registered"), (2, "updated")]
    assert all(e["proof"] for e in events) and events[0]["registration"]["dppVersion"] == 1
    proof = public.get(f"/api/v1/registry/registrations/{first['registrationId']}/proof").json()
    assert proof["revision"] == 2 and proof["current"] is True
    stale = public.post("/api/v1/registry/proofs/verify", json={"proof": first["proof"]}).json()
    assert stale["valid"] is True and stale["registration"]["current"] is False


def test_lookups_by_product_in_any_spelling_operator_and_id(server: ServerThread, client: httpx.Client,
                                                            public: httpx.Client, session_factory: Any,
                                                            passport: dict[str, Any]) -> None:
    from registry_helpers import org_headers

    from dbp.access.principal import Role

    p = create_passport(client, fresh(passport, "REG0003"))
    reg = _register(client, p, server.base_url)
    rid = reg["registrationId"]
    other_domain = p["uniqueProductIdentifier"].replace("https://id.dbp.example/", "https://id.gs1.org/")
    found = public.get("/api/v1/registry/registrations", params={"productId": other_domain}).json()
    assert [i["registrationId"] for i in found["items"]] == [rid]
    assert public.get(f"/api/v1/registry/registrations/{rid}").json()["dppId"] == p["dppId"]
    assert public.get("/api/v1/registry/registrations", params={
        "productId": "https://id.dbp.example/01/05904417101006/21/NOPE"}).json()["items"] == []
    # by operator: the operator (through its service provider) and authorities, not the public or others
    mine = client.get("/api/v1/registry/registrations", params={"operatorId": p["economicOperatorId"]})
    assert mine.status_code == 200 and rid in [i["registrationId"] for i in mine.json()["items"]]
    assert_error(public.get("/api/v1/registry/registrations", params={"operatorId": p["economicOperatorId"]}),
                 401, "ClientNotAuthorized")
    recycler = org_headers(session_factory, server.base_url, role=Role.recycler, operator_id="urn:x:recycler")
    assert_error(public.get("/api/v1/registry/registrations", params={"operatorId": p["economicOperatorId"]},
                            headers=recycler), 403, "ClientForbidden")
    msa = org_headers(session_factory, server.base_url, role=Role.market_surveillance, operator_id="urn:x:msa")
    assert public.get("/api/v1/registry/registrations", params={"status": "active"}, headers=msa
                      ).json()["items"][0]["registrationId"] == rid
    assert_error(public.get("/api/v1/registry/registrations/urn:dbp:registration:nope"), 404,
                 "ClientErrorResourceNotFound")
    assert_error(public.get("/api/v1/registry/registrations", params={"productId": "https://id.dbp.example/01/"
                                                                      "05904417101007/21/X"}), 400,
                 "ClientErrorBadRequest")  # wrong GTIN check digit
    assert_error(public.get("/api/v1/registry/registrations"), 400, "ClientErrorBadRequest")
    assert_error(public.get("/api/v1/registry/registrations", params={"status": "active", "cursor": "!!"},
                            headers=msa), 400, "ClientErrorBadRequest")


def test_pagination_by_cursor(server: ServerThread, client: httpx.Client, passport: dict[str, Any]) -> None:
    ids = {_register(client, create_passport(client, fresh(passport, f"REGP{i}")), server.base_url)["registrationId"]
           for i in range(3)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"operatorId": passport["economicOperatorId"], "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/registry/registrations", params=params).json()
        seen += [i["registrationId"] for i in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert set(seen) == ids and len(seen) == 3


@pytest.mark.parametrize(("change", "status", "rule"), [
    ({"unknownField": 1}, 400, "request.extra_forbidden"),
    ({"dppId": "urn:uuid:a\u0000b"}, 400, "request.string_pattern_mismatch"),
    ({"economicOperatorId": "op\u0000"}, 400, "request.string_pattern_mismatch"),
    ({"commodityCode": "85076"}, 400, "request.string_pattern_mismatch"),
    ({"commodityCode": "85076000001"}, 400, "request.string_pattern_mismatch"),
    ({"commodityCode": 850760}, 400, "request.string_type"),
    ({"granularity": "pallet"}, 400, "request.enum"),
    ({"uniqueProductIdentifier": "https://id.dbp.example/01/05904417101007/21/X"}, 400, "gs1.checkDigit"),
    ({"aliases": ["https://id.dbp.example/01/05904417101007/21/X"]}, 400, "gs1.checkDigit"),
    ({"endpoint": "http://169.254.169.254"}, 400, "endpoint.https"),
    ({"endpoint": "https://169.254.169.254/latest"}, 400, "endpoint.address"),
    ({"endpoint": "https://10.0.0.8"}, 400, "endpoint.address"),
    ({"endpoint": "https://[::1]:8443"}, 400, "endpoint.address"),
    ({"endpoint": "https://localhost"}, 400, "endpoint.address"),
    ({"endpoint": "https://user:pw@repo.example"}, 400, "endpoint.form"),
    ({"endpoint": "https://repo.example/?x=1"}, 400, "endpoint.form"),
    ({"endpoint": "file:///etc/passwd"}, 400, "endpoint.scheme"),
    ({"endpoint": "gopher://repo.example"}, 400, "endpoint.scheme"),
    ({"backupProvider": "no-such-node"}, 400, "registry.backupProvider"),
])
def test_hostile_or_malformed_registrations_are_refused(server: ServerThread, client: httpx.Client,
                                                        passport: dict[str, Any], change: dict[str, Any],
                                                        status: int, rule: str) -> None:
    p = create_passport(client, fresh(passport, "REG0004"))
    body = {**body_for(p, server.base_url), **change}
    r = client.post("/api/v1/registerDPP", json=body)
    err = assert_error(r, status, "ClientErrorBadRequest")
    rules = [d["rule"] for d in err["message"][0].get("details", [])]
    assert any(rule in x for x in rules), (rules, r.text)


def test_unreadable_bodies(server: ServerThread, client: httpx.Client) -> None:
    for raw, ctype, status, code in [
        (b"{", "application/json", 400, "ClientErrorBadRequest"),
        (b"[]", "application/json", 400, "ClientErrorBadRequest"),
        (b'{"a": 1, "a": 2}', "application/json", 400, "ClientErrorBadRequest"),
        (b"\xff\xfe", "application/json", 400, "ClientErrorBadRequest"),
        (b"{}", "text/plain", 415, "ClientErrorUnsupportedMediaType"),
        (b"{" + b" " * (10 * 1024 * 1024) + b"}", "application/json", 413, "ClientErrorPayloadTooLarge"),
    ]:
        assert_error(client.post("/api/v1/registerDPP", content=raw, headers={"Content-Type": ctype}), status, code)
    assert_error(client.post("/api/v1/registerDPP", content=b"{}", headers={"Content-Type": "application/json"}),
                 400, "ClientErrorBadRequest")


def test_who_may_register(server: ServerThread, client: httpx.Client, public: httpx.Client, session_factory: Any,
                          passport: dict[str, Any]) -> None:
    from registry_helpers import device_headers, org_headers

    from dbp.access.principal import Role

    p = create_passport(client, fresh(passport, "REG0005"))
    body = body_for(p, server.base_url)
    assert_error(public.post("/api/v1/registerDPP", json=body), 401, "ClientNotAuthorized")
    other = org_headers(session_factory, server.base_url, role=Role.economic_operator, operator_id="urn:x:someone")
    err = assert_error(public.post("/api/v1/registerDPP", json=body, headers=other), 403, "ClientForbidden")
    assert "does not speak for" in err["message"][0]["text"]
    recycler = org_headers(session_factory, server.base_url, role=Role.recycler, operator_id=p["economicOperatorId"]
                           + ":recycling")
    assert_error(public.post("/api/v1/registerDPP", json=body, headers=recycler), 403, "ClientForbidden")
    # a device key of the very operator is not the operator
    assert_error(public.post("/api/v1/registerDPP", json=body, headers=device_headers(
        session_factory, p["economicOperatorId"])), 403, "ClientForbidden")
    msa = org_headers(session_factory, server.base_url, role=Role.market_surveillance, operator_id="urn:x:msa2")
    assert_error(public.post("/api/v1/registerDPP", json=body, headers=msa), 403, "ClientForbidden")
    assert_error(public.post("/api/v1/registerDPP", json=body, headers={"Authorization": "Bearer nope"}), 401,
                 "ClientNotAuthorized")
    # the operator itself may
    own = org_headers(session_factory, server.base_url, role=Role.economic_operator,
                      operator_id=p["economicOperatorId"] + "-itself")
    assert_error(public.post("/api/v1/registerDPP", json=body, headers=own), 403, "ClientForbidden")
    with session_factory() as s:
        from sqlalchemy import text

        denied = s.execute(text("SELECT count(*) FROM access_log WHERE action = 'registry.register' AND "
                                "outcome = 'denied'")).scalar()
    assert denied is not None


def test_registration_must_agree_with_the_passport(server: ServerThread, client: httpx.Client,
                                                   passport: dict[str, Any]) -> None:
    p = create_passport(client, fresh(passport, "REG0006"))
    body = body_for(p, server.base_url, granularity="batch", facilityId="urn:x:other-facility",
                    uniqueProductIdentifier=p["uniqueProductIdentifier"][:-1] + "Z")
    err = assert_error(client.post("/api/v1/registerDPP", json=body), 422, "ClientErrorBadRequest")
    details = {d["path"]: d["message"] for d in err["message"][0]["details"]}
    assert set(details) == {"$.granularity", "$.facilityId", "$.uniqueProductIdentifier"}, details
    assert details["$.granularity"] == "expected 'batch' (registration), got 'item' (passport)"
    # another operator's identifier: the passport names its own
    wrong_op = body_for(p, server.base_url, economicOperatorId="urn:x:op")
    err = assert_error(client.post("/api/v1/registerDPP", json=wrong_op), 422, "ClientErrorBadRequest")
    assert [d["path"] for d in err["message"][0]["details"]] == ["$.economicOperatorId"]
    missing = body_for(p, server.base_url, dppId="urn:uuid:00000000-0000-4000-8000-000000000000")
    err = assert_error(client.post("/api/v1/registerDPP", json=missing), 422, "ClientErrorBadRequest")
    assert "expected HTTP 200, got 404" in err["message"][0]["text"]


def test_an_identifier_is_held_by_one_registration_across_schemes(server: ServerThread, client: httpx.Client,
                                                                  public: httpx.Client,
                                                                  passport: dict[str, Any]) -> None:
    iec = "https://battery.maker.example/id/REG0007"
    iso = "iso15459:LA:MAKER:REG0007"
    a = create_passport(client, {**fresh(passport, "REG0007"), "productIdentifierAliases": [iec]})
    b = create_passport(client, {**fresh(passport, "REG0008"), "productIdentifierAliases": [iso]})
    ra = _register(client, a, server.base_url, aliases=[iec])
    assert [x["identifier"] for x in ra["registration"]["aliases"]] == [iec]
    # the alias resolves like the identifier, written any way its scheme allows
    found = public.get("/api/v1/registry/registrations", params={"productId": iec.replace("battery.maker",
                                                                                         "BATTERY.MAKER")})
    assert [i["registrationId"] for i in found.json()["items"]] == [ra["registrationId"]]
    # an alias the passport does not list is refused (a's, or anyone's: evidence first; taken ones are a 409,
    # tests/registry/test_registry_security.py)
    unlisted = assert_error(client.post("/api/v1/registerDPP", json=body_for(b, server.base_url, aliases=[iso, iec])),
                            422, "ClientErrorBadRequest")
    assert [d["path"] for d in unlisted["message"][0]["details"]] == ["$.aliases[1]"]
    rb = _register(client, b, server.base_url, aliases=[iso])
    assert [x["identifier"] for x in rb["registration"]["aliases"]] == [iso]
    clash = client.post("/api/v1/registerDPP", json=body_for(a, server.base_url, aliases=[iec,
                                                                                            b["uniqueProductIdentifier"]]))
    assert_error(clash, 422, "ClientErrorBadRequest")
    same = client.post("/api/v1/registerDPP", json=body_for(a, server.base_url, aliases=[a["uniqueProductIdentifier"]]))
    assert_error(same, 400, "ClientErrorBadRequest")


def test_a_successor_supersedes_its_confirmed_predecessors(server: ServerThread, client: httpx.Client,
                                                           public: httpx.Client, fleet: list[dict[str, Any]]) -> None:
    from dbp.passports.demo import successor_document

    originals = [fresh(d, f"REGS{i}") for i, d in enumerate(
        [d for d in fleet if d["generalProductInformation"]["batteryCategory"] == "ev"][:2])]
    preds = [create_passport(client, d) for d in originals]
    regs = [_register(client, p, server.base_url) for p in preds]
    r = client.post("/api/v1/lifecycle/successors", json={
        "operation": "repurposing", "predecessorDppIds": [p["dppId"] for p in preds],
        "passport": successor_document(originals, "repurposing", index=0)})
    assert r.status_code == 201, r.text
    succ = r.json()
    out = _register(client, succ, server.base_url)
    assert out["registration"]["predecessorDppIds"] == succ["predecessorDppIds"]
    for reg in regs:
        now = public.get(f"/api/v1/registry/registrations/{reg['registrationId']}").json()
        assert now["status"] == "superseded" and now["successorRegistrationId"] == out["registrationId"]
        kinds = [e["kind"] for e in client.get(
            f"/api/v1/registry/registrations/{reg['registrationId']}/events").json()["events"]]
        assert kinds == ["registered", "superseded"]
    # the predecessor's own change (inactive, successorDppIds) is registered too and it stays superseded
    again = _register(client, preds[0], server.base_url, status=200)
    assert again["registration"]["status"] == "superseded" and again["registration"]["dppVersion"] == 2


def test_custody_move_and_rerouting_are_logged_revisions(server: ServerThread, client: httpx.Client,
                                                         public: httpx.Client, session_factory: Any,
                                                         passport: dict[str, Any]) -> None:
    from registry_helpers import org_headers

    from dbp.access.principal import Role

    p = create_passport(client, fresh(passport, "REGC1"))
    reg = _register(client, p, server.base_url)
    rid = reg["registrationId"]
    routing = f"/api/v1/registry/registrations/{rid}/routing"
    new_op = "urn:x:successor-operator"
    moved = client.post(f"/api/v1/dpps/{p['dppId']}/responsibility", json={"operatorId": new_op,
                                                                            "reference": "contract 7"})
    assert moved.status_code == 200, moved.text
    successor = org_headers(session_factory, server.base_url, role=Role.economic_operator, operator_id=new_op)
    # a stranger cannot ask for the move
    stranger = org_headers(session_factory, server.base_url, role=Role.economic_operator, operator_id="urn:x:s")
    assert_error(public.post(routing, json={"economicOperatorId": new_op}, headers=stranger), 403, "ClientForbidden")
    assert_error(public.post(routing, json={"economicOperatorId": new_op}), 401, "ClientNotAuthorized")
    assert_error(public.post(routing, json={"economicOperatorId": new_op, "extra": 1}, headers=successor), 400,
                 "ClientErrorBadRequest")
    custody = public.post(routing, json={"economicOperatorId": new_op}, headers=successor)
    assert custody.status_code == 200, custody.text
    assert custody.json()["revision"] == 2 and custody.json()["registration"]["economicOperatorId"] == new_op
    payload = proofs.verify_proof(custody.json()["proof"], _keys(public))
    assert payload["economicOperatorId"] == new_op and payload["dppVersion"] == 2
    # registering again as the new operator now changes nothing
    again = public.post("/api/v1/registerDPP", json=body_for(p, server.base_url, economicOperatorId=new_op),
                        headers=successor)
    assert again.status_code == 200 and again.json()["changed"] is False, again.text
    # the old operator's service provider no longer speaks for the registration ... unless authorised by new_op
    assert_error(client.post(routing, json={"endpoint": "https://repo-new.example"}), 403, "ClientForbidden")
    # the new operator moves it to an endpoint that does not answer: refused, nothing changes
    bad = public.post(routing, json={"endpoint": "http://169.254.169.254"}, headers=successor)
    assert_error(bad, 400, "ClientErrorBadRequest")
    commission = org_headers(session_factory, server.base_url, role=Role.commission, operator_id="urn:x:ec")
    backup = public.post("/api/v1/registry/nodes", headers=commission, json={
        "nodeId": "backup-1", "kind": "backup", "operatorId": "urn:x:backup-co", "endpoint": "https://backup.example"})
    assert backup.status_code == 201, backup.text
    rerouted = public.post(routing, json={"backupProvider": "backup-1"}, headers=commission)
    assert rerouted.status_code == 200 and rerouted.json()["registration"]["backupProvider"] == "backup-1"
    events = public.get(f"/api/v1/registry/registrations/{rid}/events", headers=commission).json()["events"]
    assert [(e["revision"], e["kind"]) for e in events] == [(1, "registered"), (2, "custody"), (3, "rerouted")]
    assert events[1]["registration"]["economicOperatorId"] == new_op
    assert_error(public.get(f"/api/v1/registry/registrations/{rid}/events"), 401, "ClientNotAuthorized")
    assert_error(public.get(f"/api/v1/registry/registrations/{rid}/events", headers=stranger), 403,
                 "ClientForbidden")
    assert_error(public.post("/api/v1/registry/registrations/urn:dbp:registration:x/routing", headers=commission,
                             json={"backupProvider": None}), 404, "ClientErrorResourceNotFound")


def test_node_directory(server: ServerThread, public: httpx.Client, client: httpx.Client,
                        session_factory: Any) -> None:
    from registry_helpers import org_headers

    from dbp.access.principal import Role

    commission = org_headers(session_factory, server.base_url, role=Role.commission, operator_id="urn:x:ec2")
    jwks = public.get("/.well-known/jwks.json").json()
    node = {"nodeId": "repo-a", "kind": "repository", "operatorId": "urn:x:a", "endpoint": "https://repo-a.example/",
            "keys": jwks}
    assert_error(public.post("/api/v1/registry/nodes", json=node), 401, "ClientNotAuthorized")
    assert_error(client.post("/api/v1/registry/nodes", json=node), 403, "ClientForbidden")
    created = public.post("/api/v1/registry/nodes", json=node, headers=commission)
    assert created.status_code == 201, created.text
    assert created.json()["endpoint"] == "https://repo-a.example" and created.json()["keys"] == jwks
    assert_error(public.post("/api/v1/registry/nodes", json=node, headers=commission), 409, "ClientResourceConflict")
    assert_error(public.post("/api/v1/registry/nodes", json={**node, "nodeId": "repo-b"}, headers=commission), 409,
                 "ClientResourceConflict")  # the endpoint is repo-a's
    for hostile in ({**node, "nodeId": "x\u0000"}, {**node, "nodeId": "b", "endpoint": "http://10.1.1.1"},
                    {**node, "nodeId": "c", "kind": "printer"}, {**node, "nodeId": "d", "keys": {"keys": "no"}},
                    {**node, "nodeId": "e", "surprise": True}):
        assert_error(public.post("/api/v1/registry/nodes", json=hostile, headers=commission), 400,
                     "ClientErrorBadRequest")
    exited = public.patch("/api/v1/registry/nodes/repo-a", json={"status": "exited"}, headers=commission)
    assert exited.status_code == 200 and exited.json()["status"] == "exited"
    assert_error(client.patch("/api/v1/registry/nodes/repo-a", json={"status": "active"}), 403, "ClientForbidden")
    assert_error(public.patch("/api/v1/registry/nodes/repo-a", json={"status": "gone"}, headers=commission), 400,
                 "ClientErrorBadRequest")
    assert_error(public.patch("/api/v1/registry/nodes/nope", json={"status": "active"}, headers=commission), 404,
                 "ClientErrorResourceNotFound")
    listed = public.get("/api/v1/registry/nodes", params={"status": "exited"}).json()["items"]
    assert [n["nodeId"] for n in listed] == ["repo-a"]
    assert public.get("/api/v1/registry/nodes/repo-a").json()["status"] == "exited"
    # an exited backup cannot be named in a registration
    public.post("/api/v1/registry/nodes", headers=commission, json={
        "nodeId": "backup-x", "kind": "backup", "endpoint": "https://backup-x.example", "status": "exited"})
    with session_factory() as s:
        from sqlalchemy import text

        logged = s.execute(text("SELECT count(*) FROM access_log WHERE action LIKE 'registry.node%'")).scalar()
    assert logged and logged >= 2


def test_export_json_and_csv(server: ServerThread, client: httpx.Client, public: httpx.Client,
                             session_factory: Any, passport: dict[str, Any]) -> None:
    import csv
    import io

    from registry_helpers import org_headers

    from dbp.access.principal import Role

    commission = org_headers(session_factory, server.base_url, role=Role.commission, operator_id="urn:x:ec3")
    public.post("/api/v1/registry/nodes", headers=commission, json={
        "nodeId": "backup-e", "kind": "backup", "endpoint": "https://backup-e.example"})
    p = create_passport(client, fresh(passport, "REGE1"))
    reg = _register(client, p, server.base_url, backupProvider="backup-e", commodityCode="8507600010")
    op = p["economicOperatorId"]
    data = client.get("/api/v1/registry/export", params={"format": "json", "operatorId": op})
    assert data.status_code == 200 and data.headers["content-type"].startswith("application/json")
    doc = data.json()
    assert doc["exportComplete"] is True and doc["count"] == 1
    row = doc["registrations"][0]
    assert row["registrationId"] == reg["registrationId"] and row["granularity"] == "item"
    assert (row["economicOperatorId"], row["facilityId"], row["commodityCode"], row["backupProvider"]) == (
        op, p.get("facilityId"), "8507600010", "backup-e")
    assert row["versionHash"] == reg["registration"]["versionHash"] and row["registeredAt"]
    text_ = public.get("/api/v1/registry/export", params={"format": "csv"}, headers=commission)
    assert text_.status_code == 200 and text_.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text_.text)))
    assert [r["registrationId"] for r in rows] == [reg["registrationId"]]
    assert rows[0]["commodityCode"] == "8507600010" and rows[0]["backupProvider"] == "backup-e"
    # who may export what
    assert_error(public.get("/api/v1/registry/export"), 401, "ClientNotAuthorized")
    assert_error(client.get("/api/v1/registry/export"), 403, "ClientForbidden")  # everyone's: authorities only
    assert_error(client.get("/api/v1/registry/export", params={"operatorId": "urn:x:not-mine"}), 403,
                 "ClientForbidden")
    msa = org_headers(session_factory, server.base_url, role=Role.market_surveillance, operator_id="urn:x:msa3")
    assert public.get("/api/v1/registry/export", params={"format": "csv"}, headers=msa).status_code == 200
    assert_error(public.get("/api/v1/registry/export", params={"format": "xml"}, headers=msa), 400,
                 "ClientErrorBadRequest")


def test_csv_cells_are_never_formulas() -> None:
    from dbp.registry.routes import safe_cell

    for hostile in ("=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert safe_cell(hostile).startswith("'")
    assert safe_cell("urn:x:op") == "urn:x:op" and safe_cell(None) == "" and safe_cell(["a", "b"]) == "a b"


def test_verify_endpoint_refuses_what_it_cannot_verify(public: httpx.Client) -> None:
    for token, reason in [("a.b.c", "proof header"), ("x" * 10, "3 parts"),
                          ("eyJhbGciOiJub25lIn0.e30.", "alg")]:
        verdict = public.post("/api/v1/registry/proofs/verify", json={"proof": token}).json()
        assert verdict["valid"] is False and reason in verdict["reason"], verdict
    assert_error(public.post("/api/v1/registry/proofs/verify", json={"proof": "x", "more": 1}), 400,
                 "ClientErrorBadRequest")
    assert_error(public.post("/api/v1/registry/proofs/verify", json={"proof": "x" * 70000}), 400,
                 "ClientErrorBadRequest")


def test_a_predecessor_registered_after_its_successor_is_superseded_at_once(
        server: ServerThread, client: httpx.Client, public: httpx.Client, fleet: list[dict[str, Any]]) -> None:
    from dbp.passports.demo import successor_document

    original = fresh([d for d in fleet if d["generalProductInformation"]["batteryCategory"] == "ev"][3], "REGR1")
    pred = create_passport(client, original)
    r = client.post("/api/v1/lifecycle/successors", json={
        "operation": "repurposing", "predecessorDppIds": [pred["dppId"]],
        "passport": successor_document([original], "repurposing", index=1)})
    assert r.status_code == 201, r.text
    succ = _register(client, r.json(), server.base_url)
    late = _register(client, public.get(f"/api/v1/dpps/{pred['dppId']}").json(), server.base_url)
    assert late["registration"]["status"] == "superseded"
    assert late["registration"]["successorRegistrationId"] == succ["registrationId"]
    assert "superseded by" in late["notes"][0]


def test_a_responsibility_transfer_in_the_repository_is_followed_by_auto_registration(
        server: ServerThread, client: httpx.Client, public: httpx.Client, session_factory: Any,
        passport: dict[str, Any]) -> None:
    """C1: after a responsibility transfer inside the repository, the worker's registerDPP (same endpoint, the new
    operator, whose name the passport there carries) is a custody update — not a 409 for ever."""
    import asyncio

    from registry_helpers import org_headers

    from dbp.access import service as access
    from dbp.access.principal import Role
    from dbp.registry.client import HttpRegistry
    from dbp.registry.worker import Options, sync_once

    p = create_passport(client, fresh(passport, "REGT1"))
    reg = _register(client, p, server.base_url)
    new_op = "urn:x:heir-operator"
    moved = client.post(f"/api/v1/dpps/{p['dppId']}/responsibility", json={"operatorId": new_op,
                                                                            "reference": "contract 8"})
    assert moved.status_code == 200, moved.text
    with session_factory.begin() as s:
        org = access.create_org(s, name="Heir", operator_id=new_op, role=Role.economic_operator)
        issued = access.create_client(s, org_id=org.id, role=Role.economic_operator)
    registry = HttpRegistry(base_url=server.base_url, client_id=issued.client_id, client_secret=issued.client_secret)
    report, _ = asyncio.run(sync_once(session_factory, registry, Options(endpoint=server.base_url)))
    assert (report.registered, report.failed) == (1, 0), report.errors
    now = public.get(f"/api/v1/registry/registrations/{reg['registrationId']}").json()
    assert now["economicOperatorId"] == new_op and now["revision"] == 2 and now["dppVersion"] == 2
    commission = org_headers(session_factory, server.base_url, role=Role.commission, operator_id="urn:x:ec5")
    events = public.get(f"/api/v1/registry/registrations/{reg['registrationId']}/events",
                        headers=commission).json()["events"]
    assert [(e["revision"], e["kind"]) for e in events] == [(1, "registered"), (2, "custody")]
    assert proofs.verify_proof(events[1]["proof"], _keys(public))["economicOperatorId"] == new_op

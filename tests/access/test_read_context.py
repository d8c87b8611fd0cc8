"""The read decision's database part may be kept between reads (SQLite: while no other connection
committed), but a change made anywhere — another process, the CLI, a direct SQL update — counts for the
very next read. Reads go over HTTP, through the hot path."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text

from dbp.access import service as access
from dbp.access.principal import Role
from dbp.passports.attributes import AccessGroup

ALL = "authorities, legitimateInterest, legitimateInterestAndAuthorities, public"


def groups(http: httpx.Client, dpp: str, headers: dict[str, str] | None = None) -> str:
    r = http.get(f"/api/v1/dpps/{dpp}", headers=headers or {})
    assert r.status_code == 200, r.text
    return r.headers["x-dpp-access"]


def test_a_revoked_authorisation_counts_at_the_next_read(client: httpx.Client, passport: dict[str, Any],
                                                          service_provider: dict[str, Any],
                                                          session_factory: Any) -> None:
    dpp = client.post("/api/v1/dpps", json=passport).json()["dppId"]
    for _ in range(3):  # the organisation's context is now kept
        assert groups(client, dpp) == ALL
    revoke = text("UPDATE authorisations SET revoked_at = :t WHERE agent_org_id = :a AND operator_org_id = "
                  "(SELECT id FROM organisations WHERE operator_id = :op)")
    with session_factory.begin() as s:  # as an administrator would, outside the server
        s.execute(revoke, {"t": access.now_ts(), "a": service_provider["org_id"],
                           "op": passport["economicOperatorId"]})
    assert groups(client, dpp) == "public"
    with session_factory.begin() as s:
        s.execute(text("UPDATE authorisations SET revoked_at = NULL WHERE agent_org_id = :a"),
                  {"a": service_provider["org_id"]})
    assert groups(client, dpp) == ALL


def test_a_grant_made_elsewhere_counts_at_the_next_read(server: Any, client: httpx.Client,
                                                         passport: dict[str, Any], session_factory: Any) -> None:
    dpp = client.post("/api/v1/dpps", json=passport).json()["dppId"]
    with session_factory.begin() as s:
        buyer = access.create_org(s, name="Fleet buyer", operator_id="urn:test:buyer", role=Role.purchaser)
        issued = access.create_client(s, org_id=buyer.id, role=Role.purchaser)
        buyer_id = buyer.id
    token = httpx.post(f"{server.base_url}/api/v1/auth/token", data={
        "grant_type": "client_credentials", "client_id": issued.client_id,
        "client_secret": issued.client_secret}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "X-Purpose": "repair"}  # no policy entry for it
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for _ in range(3):
            assert groups(http, dpp, headers) == "public"
        with session_factory.begin() as s:
            grant = access.create_grant(s, dpp_id=dpp, grantee_org_id=buyer_id, purpose="repair",
                                        access_groups=[AccessGroup.legitimate_interest],
                                        expires_at="2999-01-01T00:00:00.000000Z", granted_by="test")
            grant_id = grant.id
        assert groups(http, dpp, headers) == "legitimateInterest, public"
        with session_factory.begin() as s:
            access.revoke_grant(s, grant_id=grant_id, dpp_id=dpp)
        assert groups(http, dpp, headers) == "public"

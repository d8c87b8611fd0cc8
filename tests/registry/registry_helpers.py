"""Helpers of the registry tests: organisations and tokens, passports on the repository, registration bodies."""

from __future__ import annotations

import copy
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from dbp.access import service as access
from dbp.access.principal import Role


def token(base_url: str, client_id: str, client_secret: str) -> dict[str, str]:
    r = httpx.post(f"{base_url}/api/v1/auth/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def org_headers(factory: sessionmaker[Session], base_url: str, *, role: Role, operator_id: str,
                name: str | None = None) -> dict[str, str]:
    """A new organisation with ``role`` and ``operator_id``, its API client and a token of the node at
    ``base_url``."""
    with factory.begin() as s:
        org = access.create_org(s, name=name or f"{role.value} {operator_id}", operator_id=operator_id, role=role)
        issued = access.create_client(s, org_id=org.id, role=role)
    return token(base_url, issued.client_id, issued.client_secret)


def device_headers(factory: sessionmaker[Session], operator_id: str) -> dict[str, str]:
    with factory.begin() as s:
        org = access.create_org(s, name=f"devices {operator_id}", operator_id=f"{operator_id}:devices",
                                role=Role.device)
        key = access.create_api_key(s, org_id=org.id)
    return {"X-API-Key": key.api_key}


def create_passport(client: httpx.Client, doc: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/api/v1/dpps", json=doc)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def fresh(doc: dict[str, Any], serial: str) -> dict[str, Any]:
    """A copy of ``doc`` for another battery (serial ``serial``): another product identifier, no dppId."""
    out = copy.deepcopy(doc)
    out.pop("dppId", None)
    pid = out["uniqueProductIdentifier"]
    out["uniqueProductIdentifier"] = pid.rsplit("/21/", 1)[0] + f"/21/{serial}"
    return out


def body_for(passport: dict[str, Any], endpoint: str, **extra: Any) -> dict[str, Any]:
    body = {"uniqueProductIdentifier": passport["uniqueProductIdentifier"], "dppId": passport["dppId"],
            "economicOperatorId": passport["economicOperatorId"], "endpoint": endpoint,
            "granularity": passport.get("granularity", "item"), "commodityCode": "850760"}
    if passport.get("facilityId"):
        body["facilityId"] = passport["facilityId"]
    body.update(extra)
    return body

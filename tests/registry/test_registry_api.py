"""The registry API on one all-roles server (the registry reads its own repository in-process): registration,
proofs, lookups, routing, nodes, export, and every refusal with the EN 18222 error object."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from conftest import ServerThread, assert_error
from registry_helpers import body_for, create_passport, fresh

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

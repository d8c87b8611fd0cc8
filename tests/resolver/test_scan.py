"""Done-criterion of the resolver: scanning a demo battery's QR code and following the link with a plain HTTP
client lands on its current passport (and a repurposed battery's old code on its successor's)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from resolver_helpers import decode_qr, registrar, successor_setter

from conftest import ServerThread
from dbp.passports.demo import successor_document


@pytest.fixture()
def register(session_factory: Any) -> Any:
    return registrar(session_factory)


@pytest.fixture()
def set_successor(session_factory: Any) -> Any:
    return successor_setter(session_factory)


def scan(public: httpx.Client, dpp_id: str, tmp_path: Path) -> str:
    """The path of the link the passport's QR code carries (its product identifier), as a phone reads it."""
    r = public.get(f"/api/v1/dpps/{dpp_id}/qr", params={"format": "png"})
    assert r.status_code == 200, r.text
    link = decode_qr(r.content, tmp_path)
    assert link.startswith("https://id.dbp.example/01/") and "/21/" in link
    return urlsplit(link).path


def follow(server: ServerThread, path: str, accept: str) -> httpx.Response:
    """A plain HTTP client following the link's path on the local resolver (curl -sL)."""
    r = httpx.get(server.base_url + path, headers={"Accept": accept}, follow_redirects=True, timeout=30)
    assert r.status_code == 200, r.text
    assert [h.status_code for h in r.history] == [307]
    return r


def test_scanning_a_demo_battery_lands_on_its_current_passport(client: httpx.Client, public: httpx.Client,
                                                                server: ServerThread, passport: dict[str, Any],
                                                                register: Any, tmp_path: Path) -> None:
    created = client.post("/api/v1/dpps", json=passport)
    assert created.status_code == 201, created.text
    dpp_id = created.json()["dppId"]
    register(passport["uniqueProductIdentifier"], dpp_id, operator_id=passport["economicOperatorId"],
             endpoint=server.base_url)
    path = scan(public, dpp_id, tmp_path)
    landed = follow(server, path, "application/json")
    direct = public.get(f"/api/v1/dpps/{dpp_id}")
    assert landed.url == httpx.URL(f"{server.base_url}/api/v1/dpps/{dpp_id}")
    assert landed.json() == direct.json() and landed.json()["dppId"] == dpp_id
    assert landed.json()["uniqueProductIdentifier"] == passport["uniqueProductIdentifier"]
    page = follow(server, path, "text/html,application/xhtml+xml,*/*;q=0.8")
    assert page.headers["content-type"].startswith("text/html") and dpp_id in page.text


def test_a_repurposed_batterys_old_code_lands_on_the_successor(client: httpx.Client, public: httpx.Client,
                                                               server: ServerThread, fleet: list[dict[str, Any]],
                                                               register: Any, set_successor: Any,
                                                               tmp_path: Path) -> None:
    original = copy.deepcopy(next(d for d in fleet if d["generalProductInformation"]["batteryCategory"] == "ev"))
    old = client.post("/api/v1/dpps", json=original)
    assert old.status_code == 201, old.text
    old_id = old.json()["dppId"]
    doc = successor_document([original], "repurposing", index=11)
    r = client.post("/api/v1/lifecycle/successors", json={"operation": "repurposing",
                                                          "predecessorDppIds": [old_id], "passport": doc})
    assert r.status_code == 201, r.text
    new_id = r.json()["dppId"]
    old_reg = register(original["uniqueProductIdentifier"], old_id, operator_id=original["economicOperatorId"],
                       endpoint=server.base_url)
    new_reg = register(doc["uniqueProductIdentifier"], new_id, operator_id=doc["economicOperatorId"],
                       endpoint=server.base_url, predecessors=[old_id])
    set_successor(old_reg, new_reg)
    old_path = scan(public, old_id, tmp_path)
    landed = follow(server, old_path, "application/json")
    assert landed.json()["dppId"] == new_id and landed.json() == public.get(f"/api/v1/dpps/{new_id}").json()
    linkset = httpx.get(server.base_url + old_path, params={"linkType": "linkset"}, timeout=30).json()
    [item] = linkset["linkset"]
    assert [p["href"] for p in item["predecessor-version"]] == [f"{server.base_url}/api/v1/dpps/{old_id}"]
    assert item["https://ref.gs1.org/voc/dpp"][0]["href"] == f"{server.base_url}/api/v1/dpps/{new_id}"

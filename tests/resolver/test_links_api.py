"""``/api/v1/resolver/links`` and ``dbp resolver links``: only the scope's economic operator manages its links;
every value is checked and a refusal names the rule; a link counts at the next resolver request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
from resolver_helpers import GTIN, headers_maker, pid, registrar

from conftest import ServerThread, assert_error
from dbp.access.principal import Role
from dbp.config import Settings

LINKS = "/api/v1/resolver/links"
ACME = "urn:dbp:op:acme"
GOOD = {"linkType": "gs1:recyclingInfo", "href": "https://acme.example/recycling/{gtin}/{serial}",
        "title": "Recycling", "type": "text/html", "hreflang": ["en", "de"]}


@pytest.fixture()
def register(session_factory: Any) -> Any:
    return registrar(session_factory)


@pytest.fixture()
def operator_headers(server: ServerThread, session_factory: Any) -> Any:
    return headers_maker(server, session_factory)


def rules(r: httpx.Response) -> list[str]:
    return [d["rule"] for d in r.json()["message"][0].get("details", [])]


def test_rights(server: ServerThread, operator_headers: Any, public: httpx.Client) -> None:
    acme, other = operator_headers(ACME), operator_headers("urn:dbp:op:other")
    provider = operator_headers(ACME + ":agent", Role.service_provider)
    recycler = operator_headers("urn:dbp:op:recycler", Role.recycler)
    assert_error(public.post(LINKS, json=GOOD), 401, "ClientNotAuthorized")
    assert_error(public.get(LINKS), 401, "ClientNotAuthorized")
    assert_error(public.delete(f"{LINKS}/1"), 401, "ClientNotAuthorized")
    for headers in (provider, recycler):
        assert_error(public.post(LINKS, json=GOOD, headers=headers), 403, "ClientForbidden")
        assert_error(public.get(LINKS, headers=headers), 403, "ClientForbidden")
    assert_error(public.post(LINKS, json={**GOOD, "operatorId": ACME}, headers=other), 403, "ClientForbidden")
    r = public.post(LINKS, json=GOOD, headers=acme)
    assert r.status_code == 201, r.text
    link = r.json()
    assert link["operatorId"] == ACME and link["linkType"] == "gs1:recyclingInfo" and link["hreflang"] == ["en", "de"]
    assert r.headers["location"] == f"{LINKS}/{link['id']}"
    assert public.get(LINKS, headers=acme).json()["items"] == [link]
    assert public.get(LINKS, headers=other).json()["items"] == []
    assert_error(public.delete(f"{LINKS}/{link['id']}", headers=other), 403, "ClientForbidden")
    assert_error(public.delete(f"{LINKS}/999999", headers=acme), 404, "ClientErrorResourceNotFound")
    assert public.delete(f"{LINKS}/{link['id']}", headers=acme).status_code == 204
    assert public.get(LINKS, headers=acme).json()["items"] == []


def test_values_are_checked_and_named(operator_headers: Any, public: httpx.Client) -> None:
    acme = operator_headers(ACME)
    bad = [({"linkType": "gs1:nonsense"}, "resolver.linkType"), ({"linkType": "linkset"}, "resolver.linkType"),
           ({"href": "http://acme.example/x"}, "resolver.https"), ({"href": "https://acme.example/{nope}"},
                                                                   "resolver.href"),
           ({"href": "javascript:alert(1)"}, "resolver.https"), ({"href": "https://a.example/<x>"}, "resolver.href"),
           ({"href": "https://x/{endpoint}"}, "resolver.href"), ({"title": " "}, "resolver.title"),
           ({"title": "a\nb"}, "resolver.title"), ({"type": "html"}, "resolver.type"),
           ({"hreflang": ["english!"]}, "resolver.hreflang"), ({"gtin": GTIN[:-1] + "5"}, "gs1.checkDigit"),
           ({"productId": "https://id.dbp.example/01/123/21/x"}, "gs1.length"),
           ({"gtin": GTIN, "productId": pid("X")}, "resolver.scope")]
    for change, rule in bad:
        assert isinstance(change, dict)
        r = public.post(LINKS, json={**GOOD, **change}, headers=acme)
        assert_error(r, 400, "ClientErrorBadRequest")
        assert rule in rules(r), (change, r.text)
    r = public.post(LINKS, json={**GOOD, "unknown": 1}, headers=acme)
    assert_error(r, 400, "ClientErrorBadRequest")


def test_a_link_added_counts_at_once(operator_headers: Any, public: httpx.Client, register: Any,
                                     server: ServerThread) -> None:
    register(pid("SN-1"), "urn:uuid:sn1", operator_id=ACME)
    acme = operator_headers(ACME)
    path = f"/01/{GTIN}/21/SN-1"
    with httpx.Client(base_url=server.base_url, follow_redirects=False) as c:
        assert c.get(path, params={"linkType": "gs1:recyclingInfo"}).headers["location"].endswith("urn:uuid:sn1")
        created = public.post(LINKS, json={**GOOD, "gtin": GTIN[1:]}, headers=acme)
        assert created.status_code == 201 and created.json()["gtin"] == GTIN
        r = c.get(path, params={"linkType": "gs1:recyclingInfo"})
        assert r.headers["location"] == f"https://acme.example/recycling/{GTIN}/SN-1"
        public.delete(f"{LINKS}/{created.json()['id']}", headers=acme)
        assert c.get(path, params={"linkType": "gs1:recyclingInfo"}).headers["location"].endswith("urn:uuid:sn1")


def dbp(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DBP_DATABASE_URL": settings.database_url}
    return subprocess.run([sys.executable, "-m", "dbp", "resolver", "links", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_admin_cli(settings: Settings) -> None:
    done = dbp(settings, "add", "--operator", ACME, "--type", "gs1:safetyInfo", "--href",
               "https://acme.example/safety.pdf", "--title", "Safety data", "--media-type", "application/pdf")
    assert done.returncode == 0, done.stderr
    added = json.loads(done.stdout)
    assert added["linkType"] == "gs1:safetyInfo" and added["type"] == "application/pdf"
    listed = dbp(settings, "list", "--operator", ACME)
    assert listed.returncode == 0 and [x["id"] for x in json.loads(listed.stdout)["items"]] == [added["id"]]
    bad = dbp(settings, "add", "--operator", ACME, "--type", "gs1:pip", "--href", "http://x.example", "--title", "x")
    assert bad.returncode == 1 and "resolver.https" in bad.stderr
    assert dbp(settings, "remove", str(added["id"])).returncode == 0
    assert dbp(settings, "remove", str(added["id"])).returncode == 1
    assert json.loads(dbp(settings, "list").stdout)["items"] == []

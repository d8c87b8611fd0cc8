"""The resolver over real HTTP: GS1-Conformant Resolver 1.2 behaviour on registrations inserted directly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from resolver_helpers import GTIN, REPO, node_maker, pid, registrar, resolver_client, successor_setter

from conftest import assert_error
from dbp.resolver import service
from dbp.resolver.linkset import VOCAB

DPP = "urn:uuid:11111111-2222-4333-8444-555555555555"
PATH = f"/01/{GTIN}/21/SN-1"
PASSPORT = f"{REPO}/api/v1/dpps/{DPP}"


def links(session_factory: Any, operator_id: str = "urn:dbp:op:acme", **extra: Any) -> None:
    with session_factory.begin() as s:
        service.add_link(s, operator_id=operator_id, created_by="test", **extra)


def assert_cors(r: httpx.Response) -> None:
    assert r.headers["access-control-allow-origin"] == "*"
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {"link", "location"} <= exposed


def error_rule(r: httpx.Response, status: int, code: str) -> str:
    body = assert_error(r, status, code)
    assert_cors(r)
    rule: str = body["message"][0]["details"][0]["rule"]
    return rule


@pytest.fixture()
def register(session_factory: Any) -> Any:
    return registrar(session_factory)


@pytest.fixture()
def set_successor(session_factory: Any) -> Any:
    return successor_setter(session_factory)


@pytest.fixture()
def node(session_factory: Any) -> Any:
    return node_maker(session_factory)


@pytest.fixture()
def resolver(server: Any) -> Iterator[httpx.Client]:
    with resolver_client(server) as c:
        yield c


@pytest.fixture()
def one(register: Any) -> str:
    return str(register(pid("SN-1"), DPP))


# --------------------------------------------------------------------------------------------- redirects
def test_get_redirects_307_to_the_current_passport_with_query_passed_on(resolver: httpx.Client, one: str) -> None:
    r = resolver.get(PATH)
    assert r.status_code == 307 and r.content == b""
    assert r.headers["location"] == PASSPORT
    assert r.headers["vary"] == "Accept" and r.headers["cache-control"] == "no-cache"
    assert_cors(r)
    link = r.headers["link"]
    assert f'<http://127.0.0.1:{resolver.base_url.port}{PATH}?linkType=linkset>; rel="linkset"' in link
    assert f'<{PASSPORT}>; rel="{VOCAB}dpp"; title="Digital battery passport"' in link
    assert "owl:sameAs" not in link  # the canonical form was asked for
    r = resolver.get(PATH, params={"foo": "bar", "17": "270101"})
    assert r.status_code == 307 and r.headers["location"] == f"{PASSPORT}?foo=bar&17=270101"
    r = resolver.get(PATH + "?linkType=gs1:dpp&a=1&a=2&b")
    assert r.headers["location"] == f"{PASSPORT}?a=1&a=2&b"  # linkType is the resolver's, the rest passes on


def test_head_is_get_without_a_body_and_options_answers_204(resolver: httpx.Client, one: str) -> None:
    get, head = resolver.get(PATH), resolver.head(PATH)
    assert head.status_code == 307 and head.content == b""
    for name in ("location", "link", "vary", "cache-control", "access-control-allow-origin"):
        assert head.headers[name] == get.headers[name]
    r = resolver.options(PATH)
    assert r.status_code == 204 and r.content == b""
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "HEAD", "OPTIONS"}
    assert_cors(r)
    r = resolver.options(PATH, headers={"Origin": "https://scanner.example", "Access-Control-Request-Method": "GET"})
    assert r.status_code == 204 and "GET" in r.headers["access-control-allow-methods"]
    assert_error(resolver.post(PATH, json={}), 405, "ClientMethodNotAllowed")
    assert_error(resolver.delete(PATH), 405, "ClientMethodNotAllowed")


def test_browsers_and_machines_get_the_same_redirect_the_repository_negotiates(resolver: httpx.Client,
                                                                              one: str) -> None:
    for accept in ("application/json", "text/html,application/xhtml+xml,*/*;q=0.8", "*/*"):
        r = resolver.get(PATH, headers={"Accept": accept})
        assert r.status_code == 307 and r.headers["location"] == PASSPORT, accept


def test_every_configured_link_type_is_reachable(resolver: httpx.Client, one: str, session_factory: Any) -> None:
    configured = {"gs1:pip": "https://acme.example/p/{gtin}/{serial}",
                  "gs1:sustainabilityInfo": "https://acme.example/sustainability?dpp={dppId}",
                  "gs1:recyclingInfo": "https://acme.example/recycling/{gtin}",
                  "gs1:safetyInfo": "https://acme.example/safety.pdf",
                  "gs1:instructions": "{endpoint}/manuals/{serial}",
                  "gs1:certificationInfo": "https://acme.example/cert?product={productId}"}
    for kind, href in configured.items():
        links(session_factory, link_type=kind, href=href, title=f"{kind} page", media_type="text/html")
    expected = {"gs1:pip": f"https://acme.example/p/{GTIN}/SN-1",
                "gs1:sustainabilityInfo": f"https://acme.example/sustainability?dpp={quote(DPP, safe='')}",
                "gs1:recyclingInfo": f"https://acme.example/recycling/{GTIN}",
                "gs1:safetyInfo": "https://acme.example/safety.pdf",
                "gs1:instructions": f"{REPO}/manuals/SN-1",
                "gs1:certificationInfo": f"https://acme.example/cert?product={quote(pid('SN-1'), safe='')}",
                "gs1:dpp": PASSPORT, "gs1:defaultLink": PASSPORT}
    for kind, location in expected.items():
        r = resolver.get(PATH, params={"linkType": kind})
        assert r.status_code == 307 and r.headers["location"] == location, kind
        term = kind[4:]
        for uri in (f"https://ref.gs1.org/voc/{term}", f"https://gs1.org/voc/{term}", f"http://www.gs1.org/voc/{term}"):
            assert resolver.get(PATH, params={"linkType": uri}).headers["location"] == location, uri
    # with a query string of its own, the target's query is extended
    r = resolver.get(PATH, params={"linkType": "gs1:sustainabilityInfo", "x": "1"})
    assert r.headers["location"] == expected["gs1:sustainabilityInfo"] + "&x=1"
    # the Link header lists every link with its relation and title (GS1: all links exposed have both)
    link = resolver.get(PATH).headers["link"]
    for kind in configured:
        assert f'rel="{VOCAB}{kind[4:]}"; title="{kind} page"' in link


def test_an_unavailable_or_unknown_link_type_redirects_to_the_default(resolver: httpx.Client, one: str) -> None:
    for value in ("gs1:epil", "gs1:nonsense", "schema:foo", "", "%00", "https://example.com/voc/dpp"):
        r = resolver.get(PATH + "?linkType=" + value)
        assert r.status_code == 307 and r.headers["location"] == PASSPORT, value


def test_operator_default_link_and_scopes(resolver: httpx.Client, register: Any, session_factory: Any) -> None:
    register(pid("SN-1"), DPP)
    register(pid("SN-2"), "urn:uuid:other")
    links(session_factory, link_type="gs1:pip", href="https://acme.example/all", title="All batteries")
    links(session_factory, link_type="gs1:pip", href="https://acme.example/gtin", title="This model", gtin=GTIN)
    links(session_factory, link_type="gs1:pip", href="https://acme.example/sn1", title="This battery",
          product_id=pid("SN-1"))
    links(session_factory, link_type="gs1:pip", href="https://acme.example/other-operator", title="x",
          operator_id="urn:dbp:op:other")
    assert resolver.get(PATH, params={"linkType": "gs1:pip"}).headers["location"] == "https://acme.example/sn1"
    other = f"/01/{GTIN}/21/SN-2"
    assert resolver.get(other, params={"linkType": "gs1:pip"}).headers["location"] == "https://acme.example/gtin"
    assert resolver.get(other).headers["location"] == f"{REPO}/api/v1/dpps/urn:uuid:other"
    links(session_factory, link_type="gs1:instructions", href="https://acme.example/start", title="Start here",
          default=True)
    assert resolver.get(other).headers["location"] == "https://acme.example/start"  # the operator's default
    assert resolver.get(other, params={"linkType": "gs1:dpp"}).headers["location"].endswith("urn:uuid:other")


def test_accept_language_picks_among_links_of_one_type(resolver: httpx.Client, one: str,
                                                       session_factory: Any) -> None:
    links(session_factory, link_type="gs1:instructions", href="https://acme.example/en", title="Manual",
          hreflang=["en"])
    links(session_factory, link_type="gs1:instructions", href="https://acme.example/de", title="Anleitung",
          hreflang=["de"])
    q = {"linkType": "gs1:instructions"}
    assert resolver.get(PATH, params=q).headers["location"] == "https://acme.example/en"
    r = resolver.get(PATH, params=q, headers={"Accept-Language": "fr;q=0.9, de-AT, en;q=0.5"})
    assert r.headers["location"] == "https://acme.example/de"


# --------------------------------------------------------------------------------------------- linksets
def test_linkset_on_link_type_all_or_linkset_or_accept(resolver: httpx.Client, one: str,
                                                       session_factory: Any) -> None:
    links(session_factory, link_type="gs1:recyclingInfo", href="https://acme.example/r", title="Recycling",
          media_type="text/html", hreflang="en,de")
    links(session_factory, link_type="gs1:safetyInfo", href="https://acme.example/s/{gtin}", title="Safety",
          gtin=GTIN)
    anchor = f"http://127.0.0.1:{resolver.base_url.port}{PATH}"
    answers = [resolver.get(PATH, params={"linkType": "all"}), resolver.get(PATH, params={"linkType": "linkset"}),
               resolver.get(PATH, headers={"Accept": "application/linkset+json"})]
    for r in answers:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/linkset+json"
        assert r.headers["vary"] == "Accept" and "json-ld#context" in r.headers["link"]
        assert_cors(r)
        assert r.json() == answers[0].json()
    doc = answers[0].json()
    item, model = doc["linkset"]
    assert item["anchor"] == anchor
    assert item[VOCAB + "dpp"] == [{"href": PASSPORT, "title": "Digital battery passport", "type": "application/json"}]
    assert item[VOCAB + "pip"] == [{"href": PASSPORT, "title": "Battery passport (web page)", "type": "text/html"}]
    assert item[VOCAB + "defaultLink"] == [{"href": PASSPORT, "title": "Current battery passport"}]
    assert item[VOCAB + "recyclingInfo"] == [{"href": "https://acme.example/r", "title": "Recycling",
                                               "type": "text/html", "hreflang": ["en", "de"]}]
    assert model == {"anchor": f"http://127.0.0.1:{resolver.base_url.port}/01/{GTIN}",
                     VOCAB + "safetyInfo": [{"href": f"https://acme.example/s/{GTIN}", "title": "Safety"}]}
    r = resolver.get(PATH, params={"linkType": "all"}, headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json" and r.json() == doc
    head = resolver.head(PATH, params={"linkType": "all"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == answers[0].headers["content-length"]
    # an explicit link type wins over Accept
    r = resolver.get(PATH, params={"linkType": "gs1:dpp"}, headers={"Accept": "application/linkset+json"})
    assert r.status_code == 307


# --------------------------------------------------------------------------------------------- refusals
BAD = {  # path -> the rule named in the 400
    f"/01/{GTIN[:-1]}5/21/SN-1": "gs1.checkDigit",
    f"/01/{GTIN}/21/SN%201": "gs1.charset",  # a space is not in the AI 82 character set
    f"/01/{GTIN}/21/SN%C3%A91": "gs1.charset",  # é
    f"/01/{GTIN}/21/{'x' * 21}": "gs1.length",  # serial: at most 20
    f"/01/0{GTIN}/21/SN-1": "gs1.length",  # 15 digits
    "/01/950600013435/21/SN-1": "gs1.checkDigit",  # GTIN-12 with a wrong check digit
    f"/01/{GTIN}/21/SN-1/10/LOT": "gs1.qualifierOrder",
    f"/01/{GTIN}/21/A/21/B": "gs1.duplicateAi",
    f"/01/{GTIN}/17/270101": "gs1.qualifier",  # a data attribute belongs in the query string
    f"/01/{GTIN}/21": "gs1.length",
    "/01": "gs1.length",
    "/01/ABC/21/1": "gs1.charset",
    f"/01/{GTIN}/21/SN%2": "gs1.percentEncoding",
    f"/01/{GTIN}/21/SN-1/foo": "gs1.compressed",  # GS1 test suite: the DL with /foo appended is a 400
    "/01/AQnYUc1gRTQ": "gs1.charset",
    "/414/9506000134352/254/x/254/y": "gs1.duplicateAi",
    "/8013/" + "M" * 26: "gs1.length",
}


@pytest.mark.parametrize("path", sorted(BAD))
def test_malformed_identifiers_are_400_with_the_rule(resolver: httpx.Client, path: str) -> None:
    for r in (resolver.get(path), resolver.get(path, params={"linkType": "all"})):
        assert error_rule(r, 400, "ClientErrorBadRequest") == BAD[path], r.text
    head = resolver.head(path)
    assert head.status_code == 400 and head.content == b""


def test_compressed_uris_are_refused(resolver: httpx.Client) -> None:
    for path in ("/AQnYUc1gRTQ3NjlOzA", "/ARHKVAdpQgQ_-x/"):
        assert error_rule(resolver.get(path), 400, "ClientErrorBadRequest") == "gs1.compressed"
    assert resolver.get("/openapi.json").status_code == 200 and resolver.get("/health").status_code == 200


def test_unregistered_identifiers_are_404_and_never_200(resolver: httpx.Client, one: str) -> None:
    for path in (f"/01/{GTIN}/21/SN-404", f"/01/{GTIN}", "/414/9506000134352", "/8013/MODEL-1",
                 f"/01/{GTIN}/10/LOT-1"):
        for params in ({}, {"linkType": "all"}, {"linkType": "gs1:dpp"}):
            r = resolver.get(path, params=params)
            assert error_rule(r, 404, "ClientErrorResourceNotFound") == "resolver.unknown"


def test_non_canonical_forms_resolve_with_owl_same_as(resolver: httpx.Client, one: str) -> None:
    canonical = f"http://127.0.0.1:{resolver.base_url.port}{PATH}"
    for path in (f"/01/{GTIN[1:]}/21/SN-1", f"/01/{GTIN}/21/SN%2D1"):
        r = resolver.get(path)
        assert r.status_code == 307 and r.headers["location"] == PASSPORT, path
        assert f'<{canonical}>; rel="owl:sameAs"' in r.headers.get_list("link"), path
    # GS1: tolerate a trailing slash, answering exactly as without it
    slash, plain = resolver.get(PATH + "/"), resolver.get(PATH)
    assert slash.status_code == 307 and slash.headers.get_list("link") == plain.headers.get_list("link")
    assert slash.headers["location"] == plain.headers["location"]


def test_a_lot_with_the_serial_resolves_by_gtin_and_serial(resolver: httpx.Client, one: str) -> None:
    r = resolver.get(f"/01/{GTIN}/10/LOT-7/21/SN-1")
    assert r.status_code == 307 and r.headers["location"] == PASSPORT


def test_hostile_input(resolver: httpx.Client, one: str) -> None:
    assert error_rule(resolver.get(f"/01/{GTIN}/21/SN%001"), 400, "ClientErrorBadRequest") == "gs1.charset"
    assert error_rule(resolver.get(f"/01/{GTIN}/21/%"), 400, "ClientErrorBadRequest") == "gs1.percentEncoding"
    assert error_rule(resolver.get(f"/01/{GTIN}/21/%%%%"), 400, "ClientErrorBadRequest") == "gs1.percentEncoding"
    assert error_rule(resolver.get("/01/" + "1" * 3000), 400, "ClientErrorBadRequest") == "gs1.length"
    assert_error(resolver.get("/01/" + "1" * 8200), 414, "ClientErrorUriTooLong")  # Hardening's URL limit
    r = resolver.get(f"/01/{GTIN}/21/ü€")  # httpx percent-encodes UTF-8
    assert error_rule(r, 400, "ClientErrorBadRequest") == "gs1.charset"
    # a query string with NUL, escapes, non-ASCII: the redirect still goes out, the query as one safe line
    r = resolver.get(PATH + "?a=%00&b=%zz&c=\u00e9")
    assert r.status_code == 307 and r.headers["location"].startswith(PASSPORT + "?a=%00&b=%zz&c=")
    assert all(0x21 <= ord(ch) < 0x7F for ch in r.headers["location"])
    r = resolver.get(PATH, params={"linkType": "\u00e9\x00" * 100})
    assert r.status_code == 307 and r.headers["location"] == PASSPORT


def test_well_known_description(resolver: httpx.Client, server: Any) -> None:
    r = resolver.get("/.well-known/gs1resolver")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert_cors(r)
    doc = r.json()
    assert doc["resolverRoot"] == server.base_url
    assert doc["supportedPrimaryKeys"] == ["01", "414", "8013"]
    assert doc["supportedLinkType"] == [{"namespace": "https://ref.gs1.org/voc/", "prefix": "gs1:"}]
    assert doc["linkTypeDefaultCanBeLinkset"] is False and doc["name"]
    assert resolver.head("/.well-known/gs1resolver").status_code == 200
    assert resolver.options("/.well-known/gs1resolver").status_code == 204
    assert_error(resolver.post("/.well-known/gs1resolver"), 405, "ClientMethodNotAllowed")


# --------------------------------------------------------------------------------------------- routing
def test_successor_chain_resolves_the_old_identifier_to_the_new_passport(resolver: httpx.Client, register: Any,
                                                                         set_successor: Any) -> None:
    first = register(pid("OLD-1"), "urn:uuid:first", status="superseded", registration_id="reg-first")
    second = register(pid("MID-1"), "urn:uuid:second", status="superseded", registration_id="reg-second",
                      endpoint="https://second.example", predecessors=["urn:uuid:first"])
    register(pid("NEW-1"), "urn:uuid:third", registration_id="reg-third", endpoint="https://third.example",
             operator_id="urn:dbp:op:second-life", predecessors=["urn:uuid:second", "urn:uuid:elsewhere"])
    set_successor(first, second)
    set_successor(second, "reg-third")
    current = "https://third.example/api/v1/dpps/urn:uuid:third"
    for serial in ("OLD-1", "MID-1", "NEW-1"):
        r = resolver.get(f"/01/{GTIN}/21/{serial}")
        assert r.status_code == 307 and r.headers["location"] == current, serial
    doc = resolver.get(f"/01/{GTIN}/21/OLD-1", params={"linkType": "linkset"}).json()
    item = doc["linkset"][0]
    assert item["anchor"].endswith(f"/01/{GTIN}/21/OLD-1")
    assert [p["href"] for p in item["predecessor-version"]] == [
        "https://second.example/api/v1/dpps/urn:uuid:second", f"{REPO}/api/v1/dpps/urn:uuid:first"]
    assert pid("OLD-1") in item["predecessor-version"][1]["title"]  # with its product identifier
    r = resolver.get(f"/01/{GTIN}/21/NEW-1", params={"linkType": "predecessor-version"})
    assert r.headers["location"] == "https://second.example/api/v1/dpps/urn:uuid:second"


def test_a_successor_cycle_ends(resolver: httpx.Client, register: Any, set_successor: Any) -> None:
    a = register(pid("CYC-A"), "urn:uuid:a", registration_id="reg-a")
    b = register(pid("CYC-B"), "urn:uuid:b", registration_id="reg-b")
    set_successor(a, b)
    set_successor(b, a)
    assert resolver.get(f"/01/{GTIN}/21/CYC-A").headers["location"].endswith("urn:uuid:b")
    assert resolver.get(f"/01/{GTIN}/21/CYC-B").headers["location"].endswith("urn:uuid:a")


def test_exited_repository_routes_to_the_backup_then_503(resolver: httpx.Client, register: Any, node: Any) -> None:
    node("repo-acme", REPO)
    node("backup-1", "https://backup.example", kind="backup")
    register(pid("SN-1"), DPP, backup="backup-1")
    register(pid("SN-2"), "urn:uuid:nobackup")
    assert resolver.get(PATH).headers["location"] == PASSPORT
    node("repo-acme", REPO, status="exited")  # counts at the next request: the cache follows the database
    r = resolver.get(PATH)
    assert r.status_code == 307 and r.headers["location"] == f"https://backup.example/api/v1/dpps/{DPP}"
    assert "https://backup.example/api/v1/dpps/" in r.headers["link"]
    node("repo-acme", REPO, status="unreachable")
    assert resolver.get(PATH).headers["location"] == f"https://backup.example/api/v1/dpps/{DPP}"
    node("backup-1", "https://backup.example", kind="backup", status="exited")
    for params in ({}, {"linkType": "all"}):
        r = resolver.get(PATH, params=params)
        assert error_rule(r, 503, "ServerErrorServiceUnavailable") == "resolver.unavailable"
        assert r.headers["retry-after"] == "60" and "backup-1" in r.json()["message"][0]["text"]
    assert error_rule(resolver.get(f"/01/{GTIN}/21/SN-2"), 503, "ServerErrorServiceUnavailable") \
        == "resolver.unavailable"  # no backup named
    node("repo-acme", REPO, status="active")
    assert resolver.get(PATH).headers["location"] == PASSPORT


def test_retired_registration_is_410(resolver: httpx.Client, register: Any) -> None:
    register(pid("SN-1"), DPP, status="retired")
    assert error_rule(resolver.get(PATH), 410, "ClientErrorResourceGone") == "resolver.retired"


def test_alias_keys_resolve(resolver: httpx.Client, register: Any) -> None:
    register("https://battery.example/sn/XYZ", "urn:uuid:iec", aliases=(f"https://other.example/01/{GTIN}/21/AL-1",))
    r = resolver.get(f"/01/{GTIN}/21/AL-1")
    assert r.status_code == 307 and r.headers["location"] == f"{REPO}/api/v1/dpps/urn:uuid:iec"


def test_a_new_registration_counts_at_once(resolver: httpx.Client, register: Any) -> None:
    assert resolver.get(PATH).status_code == 404
    register(pid("SN-1"), DPP)
    assert resolver.get(PATH).status_code == 307

"""The change feed over real HTTP (dbp.replication): order, cursors, verification of every entry without trusting
the transport, long-poll, server-sent events, hostile inputs. Access rules are in test_feed_access.py."""

from __future__ import annotations

import base64
import copy
import hashlib
import threading
import time
from typing import Any

import httpx
import orjson
import pytest

from conftest import assert_error
from dbp.integrity import merkle
from dbp.integrity.checkpoint import parse_verifier_key, verify_checkpoint
from dbp.integrity.log import Leaf
from dbp.integrity.signing import verify_version
from dbp.integrity.verify import trusted_keys
from dbp.passports.demo import successor_document

FEED = "/api/v1/feed"


def _evs(fleet: list[dict[str, Any]], n: int, skip: int = 0) -> list[dict[str, Any]]:
    return [copy.deepcopy(d) for d in fleet if d["generalProductInformation"]["batteryCategory"] == "ev"][skip:skip + n]


def _create(client: httpx.Client, doc: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/api/v1/dpps", json=doc)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def read_all(client: httpx.Client, *, cursor: str | None = None, limit: int = 1000,
             **params: Any) -> tuple[list[dict[str, Any]], str]:
    entries: list[dict[str, Any]] = []
    while True:
        r = client.get(FEED, params={**({"cursor": cursor} if cursor else {}), "limit": limit, **params})
        assert r.status_code == 200, r.text
        page = r.json()
        entries.extend(page["entries"])
        cursor = page["nextCursor"]
        if not page["hasMore"]:
            return entries, str(cursor)


def checkpoint(public: httpx.Client, *, at_least: int, timeout: float = 15) -> tuple[int, bytes]:
    """(size, root) of a verified checkpoint covering ``at_least`` leaves."""
    deadline = time.monotonic() + timeout
    while True:
        r = public.get("/api/v1/log/checkpoint", headers={"Accept": "application/json"})
        if r.status_code == 200 and r.json()["size"] >= at_least:
            break
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)
    data = r.json()
    opened = verify_checkpoint(data["note"].encode(), origin=data["origin"],
                               verifiers=[parse_verifier_key(data["verifierKey"])])
    return opened.checkpoint.size, opened.checkpoint.root_hash


def verify_entry(client: httpx.Client, public: httpx.Client, entry: dict[str, Any], keys: dict[str, bytes],
                 size: int, root: bytes) -> None:
    """What a consumer does, trusting nothing but the published keys and a signed checkpoint: the body fetched
    separately hashes to sha256, the JWS verifies over it with kid's key, the leaf rebuilt from the entry hashes to
    leafHash, and the inclusion proof of that leaf at its position verifies against the checkpoint root."""
    body = client.get(f"/api/v1/dpps/{entry['dppId']}/versions/{entry['version']}").content
    assert hashlib.sha256(body).hexdigest() == entry["sha256"]
    if "body" in entry:
        assert entry["body"].encode() == body
    assert verify_version(entry["signature"], body, keys) == entry["kid"]
    leaf = Leaf(entry["dppId"], entry["version"], entry["sha256"], entry["createdAt"], kid=entry["kid"],
                public_sha256=entry["publicSha256"])
    assert base64.b64encode(leaf.leaf_hash()).decode() == entry["leafHash"]
    r = public.get("/api/v1/log/proof/inclusion", params={"leafIndex": entry["position"], "treeSize": size})
    assert r.status_code == 200, r.text
    merkle.verify_inclusion(leaf_hash=leaf.leaf_hash(), index=entry["position"], size=size,
                            proof=[base64.b64decode(h) for h in r.json()["hashes"]], root=root)


def test_lifecycle_changes_in_order_each_entry_verifies(client: httpx.Client, public: httpx.Client,
                                                        fleet: list[dict[str, Any]]) -> None:
    a_doc, b_doc = _evs(fleet, 2)
    a = _create(client, a_doc)
    b = _create(client, b_doc)
    etag = client.get(f"/api/v1/dpps/{a['dppId']}").headers["etag"]
    r = client.patch(f"/api/v1/dpps/{a['dppId']}", json={"performanceAndDurability": {"ratedCapacity": 71.5}},
                     headers={"If-Match": etag})
    assert r.status_code == 200, r.text
    assert client.post(f"/api/v1/dpps/{a['dppId']}/waste",
                       json={"responsibleOperatorId": "urn:dbp:op:pro-recycling-eu"}).status_code == 200
    assert client.post(f"/api/v1/dpps/{a['dppId']}/recycle", json={}).status_code == 200
    succ_doc = successor_document([b_doc], "repurposing", index=0)
    r = client.post("/api/v1/lifecycle/successors", json={
        "operation": "repurposing", "predecessorDppIds": [b["dppId"]], "passport": succ_doc})
    assert r.status_code == 201, r.text
    succ = r.json()["dppId"]

    entries, cursor = read_all(client, include="body")
    assert [(e["dppId"], e["version"], e["change"]) for e in entries] == [
        (a["dppId"], 1, "create"), (b["dppId"], 1, "create"), (a["dppId"], 2, "update"), (a["dppId"], 3, "waste"),
        (a["dppId"], 4, "recycled"), (succ, 1, "create:repurposing"), (b["dppId"], 2, "succeededBy:repurposing")]
    assert [e["position"] for e in entries] == sorted(e["position"] for e in entries)
    assert len({e["position"] for e in entries}) == len(entries)
    assert [e["dppStatus"] for e in entries] == ["active", "active", "active", "active", "archived", "active",
                                                 "inactive"]
    # custody follows the passport: every entry of a names its current responsible operator
    assert {e["operatorId"] for e in entries if e["dppId"] == a["dppId"]} == {"urn:dbp:op:pro-recycling-eu"}
    assert cursor == f"f1.{entries[-1]['position'] + 1}"
    keys = trusted_keys(public.get("/.well-known/jwks.json").json())
    size, root = checkpoint(public, at_least=entries[-1]["position"] + 1)
    for e in entries:
        assert set(e) == {"position", "kind", "dppId", "version", "createdAt", "change", "operatorId", "dppStatus",
                          "sha256", "signature", "kid", "publicSha256", "leafHash", "body"}
        assert e["kind"] == "version"
        verify_entry(client, public, e, keys, size, root)
    # nothing past the end: the same cursor, an empty page
    r = client.get(FEED, params={"cursor": cursor})
    assert r.status_code == 200 and r.json()["entries"] == [] and r.json()["nextCursor"] == cursor
    assert r.json()["treeSize"] >= size and r.json()["checkpoint"] == "/api/v1/log/checkpoint"


def test_a_tampered_body_fails_the_consumers_checks(client: httpx.Client, public: httpx.Client,
                                                    passport: dict[str, Any]) -> None:
    _create(client, passport)
    entry = client.get(FEED, params={"include": "body"}).json()["entries"][0]
    keys = trusted_keys(public.get("/.well-known/jwks.json").json())
    forged = entry["body"].replace('"active"', '"draft"', 1).encode()
    with pytest.raises(Exception, match="signature"):
        verify_version(entry["signature"], forged, keys)


def test_cursor_resume_returns_exactly_the_rest(client: httpx.Client, fleet: list[dict[str, Any]]) -> None:
    ids = [_create(client, d)["dppId"] for d in _evs(fleet, 7)]
    everything, end = read_all(client)
    assert [e["dppId"] for e in everything] == ids
    pages: list[list[str]] = []
    cursor = None
    while True:
        r = client.get(FEED, params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append([e["dppId"] for e in page["entries"]])
        if not page["hasMore"]:
            break
        cursor = page["nextCursor"]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == ids
    assert page["nextCursor"] == end
    # resume from the middle (a follower restarted with its stored cursor)
    middle = f"f1.{everything[4]['position']}"
    assert [e["dppId"] for e in read_all(client, cursor=middle)[0]] == ids[4:]


def test_follower_under_concurrent_writers_sees_everything_once_in_order(
        client: httpx.Client, server: Any, auth_headers: dict[str, str], fleet: list[dict[str, Any]]) -> None:
    docs = _evs(fleet, 40)[:24]  # distinct batteries
    created: list[str] = []
    lock = threading.Lock()
    errors: list[str] = []

    def writer(part: list[dict[str, Any]]) -> None:
        with httpx.Client(base_url=server.base_url, timeout=30, headers=auth_headers) as c:
            for d in part:
                r = c.post("/api/v1/dpps", json=d)
                if r.status_code != 201:
                    errors.append(r.text)
                    continue
                with lock:
                    created.append(r.json()["dppId"])

    threads = [threading.Thread(target=writer, args=(docs[i::3],)) for i in range(3)]
    seen: list[dict[str, Any]] = []
    cursor = None
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = client.get(FEED, params={"limit": 5, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        seen.extend(r.json()["entries"])
        cursor = r.json()["nextCursor"]
        if not any(t.is_alive() for t in threads) and not r.json()["hasMore"] and len(seen) >= len(created):
            break
    for t in threads:
        t.join()
    assert not errors
    positions = [e["position"] for e in seen]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert sorted(e["dppId"] for e in seen) == sorted(created) and len(created) == len(docs)
    assert [e["dppId"] for e in seen] == [e["dppId"] for e in read_all(client)[0]]


def test_long_poll_answers_when_a_write_lands(client: httpx.Client, server: Any, auth_headers: dict[str, str],
                                              fleet: list[dict[str, Any]]) -> None:
    first, second = _evs(fleet, 2)
    _create(client, first)
    _, cursor = read_all(client)
    result: dict[str, Any] = {}

    def follow() -> None:
        with httpx.Client(base_url=server.base_url, timeout=40, headers=auth_headers) as c:
            t0 = time.monotonic()
            result["r"] = c.get(FEED, params={"cursor": cursor, "wait": 20})
            result["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=follow)
    t.start()
    time.sleep(0.7)
    dpp = _create(client, second)["dppId"]
    written = time.monotonic()
    t.join(timeout=30)
    r = result["r"]
    assert r.status_code == 200, r.text
    assert [e["dppId"] for e in r.json()["entries"]] == [dpp]
    assert result["elapsed"] < 10 and time.monotonic() - written < 5  # answered at once, not after 20 s

    # nothing lands: an empty page with the same cursor after about ``wait`` seconds
    after = r.json()["nextCursor"]
    t0 = time.monotonic()
    r = client.get(FEED, params={"cursor": after, "wait": 1})
    elapsed = time.monotonic() - t0
    assert r.status_code == 200 and r.json()["entries"] == [] and r.json()["nextCursor"] == after
    assert 0.9 <= elapsed < 5


def _events(lines: Any, want: int, *, timeout: float = 20) -> list[dict[str, Any]]:
    """Parse SSE events (id/event/data or comments) from an iterator of lines until ``want`` events arrived."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    for line in lines:
        assert time.monotonic() < deadline
        if line == "":
            if current:
                out.append(current)
                current = {}
            if len(out) >= want:
                return out
            continue
        if line.startswith(":"):
            current["comment"] = line[1:].strip()
            continue
        name, _, value = line.partition(":")
        current[name] = value[1:] if value.startswith(" ") else value
    return out


def test_server_sent_events_resume_from_last_event_id(client: httpx.Client, server: Any,
                                                      auth_headers: dict[str, str],
                                                      fleet: list[dict[str, Any]]) -> None:
    docs = _evs(fleet, 4)
    ids = [_create(client, d)["dppId"] for d in docs[:3]]
    entries, _ = read_all(client)
    resume = f"f1.{entries[0]['position'] + 1}"  # the id of the first entry's event
    with httpx.Client(base_url=server.base_url, timeout=30, headers=auth_headers) as c, c.stream(
            "GET", f"{FEED}/stream", params={"heartbeat": 0.3, "maxSeconds": 20},
            headers={"Last-Event-ID": resume}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        got = _events(lines, 3)
        assert got[0] == {"retry": "1000"}
        assert [orjson.loads(e["data"])["dppId"] for e in got[1:]] == ids[1:]
        assert [e["id"] for e in got[1:]] == [f"f1.{e['position'] + 1}" for e in entries[1:]]
        assert all(e["event"] == "version" for e in got[1:])
        beat = _events(lines, 1)
        assert beat == [{"comment": "heartbeat"}]
        new = _create(client, docs[3])["dppId"]
        more = [e for e in _events(lines, 3) if e.get("event") == "version"]
        assert [orjson.loads(e["data"])["dppId"] for e in more][:1] == [new]


def test_stream_ends_after_max_seconds_with_its_cursor(client: httpx.Client, passport: dict[str, Any]) -> None:
    _create(client, passport)
    t0 = time.monotonic()
    r = client.get(f"{FEED}/stream", params={"maxSeconds": 0.5, "heartbeat": 0.2})
    assert r.status_code == 200 and time.monotonic() - t0 < 10
    assert "event: version" in r.text and "event: end" in r.text
    end = r.text.split("event: end\ndata: ", 1)[1].split("\n", 1)[0]
    assert orjson.loads(end)["nextCursor"] == client.get(FEED).json()["nextCursor"]


@pytest.mark.parametrize("params", [
    {"cursor": "garbage"}, {"cursor": "f1.-1"}, {"cursor": "f1.01"}, {"cursor": "f1."}, {"cursor": "f2.5"},
    {"cursor": "f1.99999999999999999999"}, {"cursor": "f1.9999999999999999999"}, {"cursor": "x" * 5000},
    {"cursor": "f1.1\x00"}, {"cursor": "f1.١٢"},
    {"limit": 0}, {"limit": 1001}, {"limit": "abc"}, {"limit": -5}, {"limit": "1e3"},
    {"wait": -1}, {"wait": 31}, {"wait": "nan"}, {"wait": "inf"}, {"wait": "soon"},
    {"include": "everything"}, {"operatorId": ""}, {"operatorId": "a\x01b"}, {"operatorId": "x" * 600},
])
def test_malformed_parameters_are_400(client: httpx.Client, params: dict[str, Any]) -> None:
    r = client.get(FEED, params=params)
    if r.status_code == 414:  # the hardening layer refuses very long URLs before the route
        return
    assert_error(r, 400, "ClientErrorBadRequest")


@pytest.mark.parametrize("params", [{"cursor": "nope"}, {"heartbeat": 0}, {"maxSeconds": 100000}, {"limit": 0}])
def test_malformed_stream_parameters_are_400(client: httpx.Client, params: dict[str, Any]) -> None:
    assert_error(client.get(f"{FEED}/stream", params=params), 400, "ClientErrorBadRequest")
    assert_error(client.get(f"{FEED}/stream", headers={"Last-Event-ID": "f1.x"}), 400, "ClientErrorBadRequest")


def test_cursor_beyond_the_log_is_a_conflict(client: httpx.Client, passport: dict[str, Any]) -> None:
    _create(client, passport)
    body = assert_error(client.get(FEED, params={"cursor": "f1.1000000"}), 409, "ClientResourceConflict")
    assert "beyond this log" in body["message"][0]["text"]

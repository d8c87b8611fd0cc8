"""The log's fast path (``dbp.integrity.serving``) answers exactly as the FastAPI routes do.

Two servers on the same database: the application as built (fast path in front) and the same application with
the fast path switched off (every request through FastAPI). Every request — valid ones in each form, and
malformed, oversize, hostile ones — gets the same status, the same headers in the same order and the same bytes
from both (error objects compared without their timestamp, which is the time of the answer). A third check calls
the fast responder directly: it answers the valid requests itself and leaves the rest to the routes.
"""

from __future__ import annotations

import asyncio
import copy
import random
import socket
import time
import types
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from conftest import ServerThread, _free_port
from dbp.app import create_app
from dbp.config import Settings
from dbp.db import transaction
from dbp.hardening import Hardening
from dbp.integrity import log
from dbp.integrity.serving import FastLogReads

CID = "fast-path-test-0001"
SKIP_HEADERS = {"date", "server"}


@pytest.fixture(scope="module")
def routes_only(settings: Settings) -> Iterator[ServerThread]:
    """The application with no fast path at all: FastAPI answers everything. Same public base URL as the main
    server's, so the same log origin and key name."""
    app = create_app(settings.model_copy(update={"port": _free_port(), "public_base_url": settings.base_url}))

    def plain_stack(self: FastAPI) -> Any:
        return Hardening(FastAPI.build_middleware_stack(self), self.state.settings)

    app.build_middleware_stack = types.MethodType(plain_stack, app)  # type: ignore[method-assign]
    with ServerThread(app, app.state.settings.port) as srv:
        yield srv


@pytest.fixture()
def logged(client: httpx.Client, public: httpx.Client, fleet: list[dict[str, Any]]) -> dict[str, Any]:
    """Seven passport versions logged and covered by a signed checkpoint: their ids, and the checkpoint."""
    ids = []
    for doc in fleet[:5]:
        r = client.post("/api/v1/dpps", json=copy.deepcopy(doc))
        assert r.status_code == 201, r.text
        ids.append(r.json()["dppId"])
    for j in range(2):
        r = client.patch(f"/api/v1/dpps/{ids[0]}", json={"performanceAndDurability": {"ratedCapacity": 61.5 + j}})
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 15
    while True:
        r = public.get("/api/v1/log/checkpoint", headers={"Accept": "application/json"})
        if r.status_code == 200 and r.json()["size"] >= 7:
            break
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)
    return {"ids": ids, "size": r.json()["size"]}


Case = tuple[str, str, dict[str, str]]


def _cases(ids: list[str], size: int) -> tuple[list[Case], list[Case]]:
    """(path, raw query string, extra headers) of valid requests, and of everything else."""
    dpp = ids[0]
    enc = dpp.replace(":", "%3A")
    inc, con, cp = "proof/inclusion", "proof/consistency", "checkpoint"
    valid = [
        *[(inc, f"leafIndex={i}&treeSize={size}", {}) for i in range(size)],
        (inc, "leafIndex=0", {}), (inc, f"treeSize={size}&leafIndex={size - 1}", {}),
        (inc, "leafIndex=2&treeSize=3", {}), (inc, "leafIndex=0&treeSize=1", {}),
        (inc, f"dppId={dpp}&version=1", {}), (inc, f"dppId={dpp}&version=3&treeSize={size}", {}),
        (inc, f"dppId={enc}&version=2&treeSize={size}", {}), (inc, f"version=1&dppId={ids[4]}", {}),
        *[(con, f"from={a}&to={b}", {}) for b in range(size + 1) for a in range(b + 1)],
        (con, "from=3", {}), (con, "from=0", {}), (con, f"to={size}&from=1", {}),
        (cp, "", {}), (cp, "", {"Accept": "application/json"}), (cp, "", {"Accept": "*/*"}),
        (cp, "", {"Accept": "text/plain, application/json"}), (cp, "", {"Accept": "text/*"}),
        (cp, "", {"Accept": ""}), (cp, "", {"Accept": "application/json, text/plain"}),
    ]
    hostile = [
        (inc, "", {}), (inc, "leafIndex=", {}), (inc, "leafIndex", {}), (inc, "leafIndex=-1&treeSize=1", {}),
        (inc, "leafIndex=01&treeSize=3", {}), (inc, "leafIndex=+1&treeSize=3", {}), (inc, "leafIndex=1.0", {}),
        (inc, "leafIndex=1_0", {}), (inc, "leafIndex=%31&treeSize=3", {}), (inc, "leafIndex=%20", {}),
        (inc, "leafIndex=1&leafIndex=2", {}), (inc, "leafIndex=0&treeSize=1&treeSize=2", {}),
        (inc, f"leafIndex={size}", {}), (inc, f"leafIndex=0&treeSize={size + 1}", {}),
        (inc, f"leafIndex=0&treeSize={2**63 - 1}", {}), (inc, f"leafIndex=0&treeSize={2**63}", {}),
        (inc, f"leafIndex=0&treeSize={10**40}", {}), (inc, "leafIndex=0&treeSize=ten", {}),
        (inc, "leafIndex=0&treeSize=0", {}), (inc, "leafIndex=0&other=1", {}), (inc, "leafIndex=0&", {}),
        (inc, "&leafIndex=0", {}), (inc, "leafIndex=0;treeSize=1", {}), (inc, "leafIndex=%00", {}),
        (inc, "leafIndex=0%00", {}), (inc, "leafIndex=0&dppId=urn:x&version=1", {}), (inc, "dppId=urn:x", {}),
        (inc, "version=1", {}), (inc, f"dppId={dpp}&version=0", {}), (inc, f"dppId={dpp}&version=99", {}),
        (inc, f"dppId={dpp}&version=2147483648", {}), (inc, f"dppId={dpp}&version=-1", {}),
        (inc, f"dppId={dpp}&version=1&treeSize=0", {}), (inc, "dppId=&version=1", {}),
        (inc, "dppId=" + "x" * 257 + "&version=1", {}), (inc, "dppId=" + "x" * 256 + "&version=1", {}),
        (inc, "dppId=urn%3Auuid%3Aunknown&version=1", {}), (inc, "dppId=%FF%FE&version=1", {}),
        (inc, "dppId=%C3%A9&version=1", {}), (inc, "dppId=caf\xe9&version=1", {}), (inc, "dppId=a+b&version=1", {}),
        (inc, f"dppId={dpp}%00&version=1", {}), (inc, "dppId=%0A&version=1", {}), (inc, "dppId=%2F..&version=1", {}),
        (inc, f"dppId={dpp}&dppId={ids[1]}&version=1", {}), (inc, "leafIndex=0&treeSize=1" + "&x=1" * 300, {}),
        (con, "", {}), (con, "to=1", {}), (con, "from=2&to=1", {}), (con, "from=-1&to=1", {}),
        (con, f"from=0&to={size + 1}", {}), (con, f"from={size + 1}", {}), (con, f"from=0&to={10**30}", {}),
        (con, "from=a&to=b", {}), (con, "from=1&from=2", {}), (con, "from=01&to=2", {}), (con, "from=%32", {}),
        (con, "From=1", {}), (con, "from=1&to=", {}), (con, "from=1&extra", {}),
        (cp, "", {"Accept": "image/png"}), (cp, "", {"Accept": "text/html"}), (cp, "x=1", {}),
    ]
    return valid, hostile


def _get(base: str, path: str, query: str, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request on a raw socket, the query string sent byte for byte (latin-1) as given — no client
    normalises it: (status, headers in order, body)."""
    host, port = base.removeprefix("http://").split(":")
    target = f"/api/v1/log/{path}" + (f"?{query}" if query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", f"X-Correlation-ID: {CID}", "Connection: close",
             *[f"{k}: {v}" for k, v in headers.items()]]
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    pairs = [(k.lower(), v.strip()) for k, _, v in (line.partition(":") for line in header_lines)]
    return int(status_line.split()[1]), pairs, body


def _comparable(answer: tuple[int, list[tuple[str, str]], bytes]) -> tuple[int, list[tuple[str, str]], Any]:
    status, pairs, body = answer
    headers = [(k, v) for k, v in pairs if k not in SKIP_HEADERS]
    if status == 200 or not body.startswith(b"{"):  # 200, or the HTTP server's own refusal (not an ASGI answer)
        return status, headers, body
    parsed = orjson.loads(body)
    for message in parsed.get("message", []):
        message.pop("timestamp", None)
    headers = [(k, v) for k, v in headers if k != "content-length"]  # the timestamp's length may vary
    return status, headers, parsed


def test_fast_path_and_routes_answer_byte_identically(server: ServerThread, routes_only: ServerThread,
                                                      logged: dict[str, Any]) -> None:
    statuses: dict[int, int] = {}
    valid, hostile = _cases(logged["ids"], logged["size"])
    for path, query, headers in [*valid, *hostile]:
        fast = _get(server.base_url, path, query, headers)
        slow = _get(routes_only.base_url, path, query, headers)
        assert _comparable(fast) == _comparable(slow), (path, query, headers, fast[2][:300], slow[2][:300])
        statuses[fast[0]] = statuses.get(fast[0], 0) + 1
    assert statuses[200] > 40 and statuses[400] > 20 and statuses[404] > 5 and statuses[406] >= 1


def test_fast_path_answers_valid_requests_itself(server: ServerThread, logged: dict[str, Any]) -> None:
    """Called directly: every valid request is answered here (not left to the routes), every other one is not —
    except a few the routes answer 200 too but which the fast path leaves to them (an unusual form)."""
    app = server.config.app
    valid, hostile = _cases(logged["ids"], logged["size"])

    async def run(cases: list[Case]) -> list[Case]:
        """The cases the fast path answered."""
        fast = FastLogReads(app.state)
        try:
            answered = []
            for case in cases:
                path, query, headers = case
                scope = {"type": "http", "method": "GET", "path": f"/api/v1/log/{path}",
                         "query_string": query.encode("latin-1"),
                         "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
                if await fast(scope) is not None:
                    answered.append(case)
            return answered
        finally:
            fast.close()

    assert asyncio.run(run(valid)) == valid
    assert asyncio.run(run(hostile)) == []


def test_proofs_agree_on_a_larger_log(server: ServerThread, routes_only: ServerThread, session_factory: Any,
                                      public: httpx.Client) -> None:
    """Proofs of random leaves and sizes of a 1,000-leaf log (ragged right edges of every shape): the same bytes
    from both servers."""
    rng = random.Random(4)
    leaves = [log.Leaf(f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}", 1,
                       f"{rng.getrandbits(256):064x}", "2027-02-18T10:00:00.000000Z") for _ in range(1000)]
    with transaction(session_factory) as session:
        log.append(session, leaves=leaves)
    deadline = time.monotonic() + 15
    while (r := public.get("/api/v1/log/checkpoint", headers={"Accept": "application/json"})).status_code != 200 \
            or r.json()["size"] < 1000:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)
    queries = []
    for _ in range(150):
        size = rng.randrange(1, 1001)
        queries.append(("proof/inclusion", f"leafIndex={rng.randrange(size)}&treeSize={size}"))
        queries.append(("proof/consistency", f"from={rng.randrange(size + 1)}&to={size}"))
    queries.append(("proof/inclusion", f"dppId={leaves[617].dpp_id}&version=1"))
    for path, query in queries:
        fast, slow = _get(server.base_url, path, query, {}), _get(routes_only.base_url, path, query, {})
        assert fast[0] == 200 and _comparable(fast) == _comparable(slow), (path, query)

"""D4: a registry that answers garbage fails the passport it was asked about — recorded with back-off — and never
the auto-registration round: a fake registry (a small ASGI app on loopback) answering non-JSON, lists, missing
tokens and bad numbers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from registry_helpers import create_passport, fresh
from sqlalchemy import text

from conftest import ServerThread
from dbp.registry.client import HttpRegistry
from dbp.registry.worker import Options, sync_once

# (token answer, registerDPP answer): each a (status, body) pair
CASES = {
    "token-not-json": ((200, b"<html>hello</html>"), (201, b"{}")),
    "token-a-list": ((200, b"[1, 2]"), (201, b"{}")),
    "token-without-access-token": ((200, b'{"token_type": "bearer"}'), (201, b"{}")),
    "token-bad-expiry": ((200, b'{"access_token": "t", "expires_in": "soon"}'), (201, b"{}")),
    "answer-not-json": ((200, b'{"access_token": "t", "expires_in": 300}'), (201, b"<html>")),
    "answer-a-list": ((200, b'{"access_token": "t", "expires_in": 300}'), (200, b"[]")),
    "answer-without-proof": ((200, b'{"access_token": "t", "expires_in": 300}'), (201, b'{"registrationId": 1}')),
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GarbageRegistry:
    def __init__(self) -> None:
        self.case = "token-not-json"
        self.calls: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                done = "startup" if msg["type"] == "lifespan.startup" else "shutdown"
                await send({"type": f"lifespan.{done}.complete"})
                if done == "shutdown":
                    return
        self.calls.append(scope["path"])
        token, answer = CASES[self.case]
        status, body = {"/api/v1/auth/token": token, "/api/v1/registerDPP": answer}.get(
            scope["path"], (200, b'{"keys": []}'))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def garbage() -> Iterator[tuple[GarbageRegistry, str]]:
    app, port = GarbageRegistry(), _port()
    with ServerThread(app, port):
        yield app, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("case", list(CASES))
def test_garbage_from_the_registry_fails_each_passport_with_back_off(
        case: str, garbage: tuple[GarbageRegistry, str], client: Any, session_factory: Any,
        passport: dict[str, Any], server: ServerThread) -> None:
    app, url = garbage
    app.case = case
    ids = [create_passport(client, fresh(passport, f"GRB{i}"))["dppId"] for i in range(2)]
    registry = HttpRegistry(base_url=url, client_id="id", client_secret="secret")
    report, last = asyncio.run(sync_once(session_factory, registry, Options(endpoint=server.base_url)))
    assert (report.registered, report.failed) == (0, 2), report.errors
    assert last in ids  # the batch went through to its end (order: the database collation)
    with session_factory() as s:
        rows = s.execute(text("SELECT dpp_id, attempts, last_error, next_attempt_at, registration_id FROM "
                              "registry_receipts ORDER BY dpp_id")).all()
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert all(r[1] == 1 and r[2] and r[3] is not None and r[4] is None for r in rows), rows
    # backing off: the next round does not ask again for them
    again, _ = asyncio.run(sync_once(session_factory, registry, Options(endpoint=server.base_url)))
    assert (again.registered, again.failed) == (0, 0)

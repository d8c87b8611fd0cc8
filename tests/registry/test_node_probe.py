"""The registry probes the repositories of its node directory (dbp.registry.health): a repository that stops
answering becomes unreachable after three failed probes (the resolver then routes to the backup), and active again
after two good answers; exited nodes and backups are left alone; each change is in the access log."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from conftest import ServerThread, _free_port, settle_access_log
from dbp.audit.models import AccessLog
from dbp.registry.fetch import HttpFetcher
from dbp.registry.health import NodeProber, Streak, judge
from dbp.registry.models import RegistryNode


def test_judge_needs_failures_in_a_row_and_recoveries_in_a_row() -> None:
    assert judge("active", Streak(failures=2), failures=3, recoveries=2) is None
    assert judge("active", Streak(failures=3), failures=3, recoveries=2) == "unreachable"
    assert judge("unreachable", Streak(successes=1), failures=3, recoveries=2) is None
    assert judge("unreachable", Streak(successes=2), failures=3, recoveries=2) == "active"
    assert judge("exited", Streak(successes=9), failures=3, recoveries=2) is None
    assert judge("exited", Streak(failures=9), failures=3, recoveries=2) is None


class _Failing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's name
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _statuses(session_factory: Any) -> dict[str, str]:
    with session_factory() as s:
        return {n.node_id: n.status for n in s.scalars(select(RegistryNode))}


def test_a_dead_repository_is_routed_around_and_taken_back_when_it_answers(
        server: ServerThread, session_factory: Any, settings: Any) -> None:
    down_port = _free_port()
    failing = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=failing.serve_forever, daemon=True).start()
    nodes = {"up": server.base_url, "down": f"http://127.0.0.1:{down_port}",
             "broken": f"http://127.0.0.1:{failing.server_address[1]}", "gone": f"http://127.0.0.1:{_free_port()}",
             "backup": f"http://127.0.0.1:{_free_port()}/backup"}
    with session_factory.begin() as s:
        for node_id, endpoint in nodes.items():
            s.add(RegistryNode(node_id=node_id, kind="backup" if node_id == "backup" else "repository",
                               endpoint=endpoint, status="exited" if node_id == "gone" else "active",
                               updated_at="2027-02-18T10:00:00.000000Z"))
    hosts = [e.split("/")[2] for e in nodes.values()]
    changes: list[tuple[str, str, str]] = []
    prober = NodeProber(session_factory, HttpFetcher(http_hosts=hosts, timeout=2), interval=1,
                        on_change=lambda *c: changes.append(c))
    try:
        assert asyncio.run(prober.probe_once()) == {}
        assert asyncio.run(prober.probe_once()) == {}
        assert asyncio.run(prober.probe_once()) == {"down": "unreachable", "broken": "unreachable"}
        assert _statuses(session_factory) == {"up": "active", "down": "unreachable", "broken": "unreachable",
                                              "gone": "exited", "backup": "active"}
        assert "answered 503" in next(c[2] for c in changes if c[0] == "broken")
        # the repository comes back: two good answers in a row make it active again
        from dbp.app import create_app
        with ServerThread(create_app(settings.model_copy(update={"port": down_port})), down_port):
            assert asyncio.run(prober.probe_once()) == {}
            assert asyncio.run(prober.probe_once()) == {"down": "active"}
        assert _statuses(session_factory)["down"] == "active"
    finally:
        failing.shutdown()
    settle_access_log(session_factory.kw["bind"])
    with session_factory() as s:
        logged = [(r.action, r.detail) for r in s.scalars(select(AccessLog).where(
            AccessLog.action == "registry.nodeChanged"))]
    assert len(logged) == 3 and all(a == "registry.nodeChanged" for a, _ in logged)


def test_the_commission_marking_wins_over_a_probe(session_factory: Any, settings: Any) -> None:
    with session_factory.begin() as s:
        s.add(RegistryNode(node_id="r", kind="repository", endpoint=f"http://127.0.0.1:{_free_port()}",
                           status="active", updated_at="2027-02-18T10:00:00.000000Z"))
    prober = NodeProber(session_factory, HttpFetcher(http_hosts=["127.0.0.1"], timeout=1), interval=1, failures=1)
    nodes = prober._nodes()
    with session_factory.begin() as s:  # the Commission marks it exited between the look and the change
        s.get(RegistryNode, "r").status = "exited"  # type: ignore[union-attr]
    assert prober._change("r", "active", "unreachable", "test") is False
    assert _statuses(session_factory)["r"] == "exited" and nodes[0][2] == "active"


@pytest.mark.parametrize("endpoint", ["https://10.0.0.1", "http://169.254.169.254"])
def test_endpoints_the_fetch_policy_refuses_count_as_unreachable(session_factory: Any, endpoint: str) -> None:
    with session_factory.begin() as s:
        s.add(RegistryNode(node_id="r", kind="repository", endpoint=endpoint, status="active",
                           updated_at="2027-02-18T10:00:00.000000Z"))
    prober = NodeProber(session_factory, HttpFetcher(timeout=1), interval=1, failures=1)
    assert asyncio.run(prober.probe_once()) == {"r": "unreachable"}
    assert prober.streaks[f"r {endpoint}"].last_error


def test_when_every_repository_fails_at_once_the_registry_marks_none(session_factory: Any) -> None:
    with session_factory.begin() as s:
        for node_id in ("r1", "r2"):
            s.add(RegistryNode(node_id=node_id, kind="repository", endpoint=f"http://127.0.0.1:{_free_port()}",
                               status="active", updated_at="2027-02-18T10:00:00.000000Z"))
    prober = NodeProber(session_factory, HttpFetcher(http_hosts=["127.0.0.1"], timeout=1), interval=1, failures=1)
    assert asyncio.run(prober.probe_once()) == {}
    assert _statuses(session_factory) == {"r1": "active", "r2": "active"}

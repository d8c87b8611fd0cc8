"""The registry watches the repositories of its node directory, so that a repository that stops answering is
routed around without anyone noticing first (HARD-3: a QR code always reaches current data).

``NodeProber`` runs in the registry role (``DBP_REGISTRY_PROBE_INTERVAL`` seconds between rounds; 0 switches it
off). Each round it asks every ``repository`` node whose status is ``active`` or ``unreachable`` for a passport that
does not exist (``GET {endpoint}/api/v1/dpps/urn:dbp:probe``, anonymously, with the registry's fetch limits and
address checks): any answer below 500 — a 404 is the expected one — means the repository is up; no answer, a
timeout or a 5xx is a failure. After ``failures`` failures in a row an ``active`` node becomes ``unreachable`` (the
resolver then routes its passports to their backup node); after ``recoveries`` good answers in a row a node the
*probes* marked ``unreachable`` becomes ``active`` again (``registry_nodes.status_by``). A status the Commission
set (``exited``, or ``unreachable`` by ``PATCH``) is a decision the probes never change. When every repository of
a round of at least two fails at once, nothing is marked: the registry itself is more likely cut off than all of
them gone. Each change is a conditional update (only from the status and endpoint the round saw) and an
access-log record ``registry.nodeChanged`` by the registry itself, with the reason.

The decision (``judge``) is pure; the counts live in the prober, per node and endpoint (one registry process
decides; several would each need their own failures in a row, which only delays the change).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from dbp.access.principal import Principal, PrincipalKind, Role
from dbp.audit import service as audit
from dbp.clock import timestamp
from dbp.db import transaction
from dbp.registry.fetch import FetchFailed, PassportFetcher
from dbp.registry.models import RegistryNode
from dbp.registry.schemas import NodeStatus

log = logging.getLogger("dbp.registry")

PROBE_ID = "urn:dbp:probe"
PROBE = "probe"  # registry_nodes.status_by of the markings made here
REGISTRY = Principal(PrincipalKind.client, "registry-node-prober", role=Role.commission)  # the registry itself


@dataclass
class Streak:
    """Consecutive outcomes of one node's probes."""

    failures: int = 0
    successes: int = 0
    last_error: str | None = None


def judge(status: str, streak: Streak, *, failures: int, recoveries: int, by: str | None = PROBE) -> str | None:
    """The node's new status, or None to leave it: ``active`` → ``unreachable`` after ``failures`` failures in a
    row, ``unreachable`` → ``active`` after ``recoveries`` successes in a row when the probes (``by``) marked it;
    nothing else changes here."""
    if status == NodeStatus.active.value and streak.failures >= failures:
        return NodeStatus.unreachable.value
    if status == NodeStatus.unreachable.value and by == PROBE and streak.successes >= recoveries:
        return NodeStatus.active.value
    return None


@dataclass
class NodeProber:
    factory: sessionmaker[Session]
    fetcher: PassportFetcher
    interval: float
    failures: int = 3
    recoveries: int = 2
    streaks: dict[str, Streak] = field(default_factory=dict)
    on_change: Callable[[str, str, str], None] | None = None  # (node id, new status, reason), for tests and logs
    _task: asyncio.Task[None] | None = None

    def _nodes(self) -> list[tuple[str, str, str, str | None]]:
        """(node id, endpoint, status, status_by) of the repositories to probe."""
        with self.factory() as session:
            rows = session.execute(select(RegistryNode.node_id, RegistryNode.endpoint, RegistryNode.status,
                                          RegistryNode.status_by).where(
                RegistryNode.kind == "repository",
                RegistryNode.status.in_([NodeStatus.active.value, NodeStatus.unreachable.value]))).all()
        return [(str(a), str(b), str(c), d) for a, b, c, d in rows]

    async def _probe(self, endpoint: str) -> str | None:
        """None when the repository answered (< 500), else why not."""
        try:
            answer = await self.fetcher.fetch(endpoint, PROBE_ID)
        except FetchFailed as exc:
            return exc.reason
        except Exception as exc:  # an endpoint the fetch policy refuses, a broken URL: the node is not reachable
            return f"{type(exc).__name__}: {exc}"
        return None if answer.status < 500 else f"answered {answer.status}"

    def _change(self, node_id: str, old: str, new: str, reason: str, *, endpoint: str | None = None,
                by: str | None = PROBE) -> bool:
        with transaction(self.factory) as session:
            # only from what the round saw: the status, who set it, and the endpoint probed (a node the Commission
            # moved or marked meanwhile is judged again at the next round)
            stmt = update(RegistryNode).where(
                RegistryNode.node_id == node_id, RegistryNode.status == old,
                RegistryNode.status_by.is_(None) if by is None else RegistryNode.status_by == by)
            if endpoint is not None:
                stmt = stmt.where(RegistryNode.endpoint == endpoint)
            result = session.execute(stmt.values(status=new, status_by=PROBE, updated_at=timestamp()))
            if result.rowcount != 1:  # type: ignore[attr-defined]  # the Commission changed it meanwhile
                return False
            audit.record(session, audit.AccessRecord.of(
                REGISTRY, action="registry.nodeChanged", passport_operator_id=None,
                detail=[node_id, new, reason[:400]], outcome="granted", request_id=f"probe-{node_id}"[:64]))
        log.warning("registry: node %s is now %s (%s)", node_id, new, reason)
        if self.on_change is not None:
            self.on_change(node_id, new, reason)
        return True

    async def probe_once(self) -> dict[str, str]:
        """One round; returns node id -> new status for the nodes it changed."""
        nodes = await asyncio.to_thread(self._nodes)
        results = await asyncio.gather(*(self._probe(endpoint) for _, endpoint, _, _ in nodes))
        changed: dict[str, str] = {}
        # the nodes still taken as up: when all of them (two at least) fail at once, the registry is the one cut off
        live = [error for (_, _, status, _), error in zip(nodes, results, strict=True)
                if status == NodeStatus.active.value]
        everyone_failed = len(live) >= 2 and all(error is not None for error in live)
        if everyone_failed:
            log.warning("registry: every repository failed its probe at once; marking none (is this registry cut "
                        "off from the network?)")
        for (node_id, endpoint, status, by), error in zip(nodes, results, strict=True):
            streak = self.streaks.setdefault(f"{node_id} {endpoint}", Streak())
            if error is None:
                streak.successes, streak.failures, streak.last_error = streak.successes + 1, 0, None
            else:
                streak.failures, streak.successes, streak.last_error = streak.failures + 1, 0, error
            new = None if everyone_failed else judge(status, streak, failures=self.failures,
                                                     recoveries=self.recoveries, by=by)
            if new is not None:
                reason = (f"{streak.failures} probes failed in a row: {error}" if error is not None
                          else f"{streak.successes} probes answered in a row")
                if await asyncio.to_thread(self._change, node_id, status, new, reason, endpoint=endpoint, by=by):
                    changed[node_id] = new
        for key in set(self.streaks) - {f"{n} {e}" for n, e, _, _ in nodes}:
            del self.streaks[key]
        return changed

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dbp-registry-prober")

    async def _run(self) -> None:
        while True:
            try:
                await self.probe_once()
            except Exception:  # a busy database: the next round tries again
                log.exception("registry: node probe round failed")
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

"""Backup node catch-up (issue 6): a fresh backup follows the benchmark repository from zero to every version,
against the bare transfer of the same pages with the same client.

* Set-up (not timed): an organisation with role ``backupProvider`` and an API client of it are created in the
  repository's database; every economic operator of the dataset (an organisation per ``operator_id``, created
  when missing) appoints it backup provider (``dbp.replication.service.appoint``). dbp serves the repository
  (``bench.servers.uvicorn``: the same flags and settings as the read benchmark, pinned to core 0) and signs a
  checkpoint covering the log. The backup's database is a fresh SQLite file (dbp's schema) beside the
  repository's, with one source (``backup.add_source``) pinned to the key the checkpoint answer names.
* Backup: ``follow_once`` rounds in this process, pinned to core 1 (one core for the backup; the repository
  runs in its own process on the other), until the backup holds every version the log holds: checkpoint and
  keys, the leaves audit (``/api/v1/log/leaves``, 1,000 a request, hashed into the backup's own tree, root
  checked), then the feed with bodies (``FEED_PAGE`` entries a request, as the appointed provider) — every
  entry verified (content hash, Ed25519 JWS, leaf hash, the leaf held at its position) and stored, one
  transaction per page; the next page is fetched in a second thread meanwhile. The breakdown (wall time of
  the round's own thread) wraps the calls: ``leaves fetch`` (request, transfer, JSON parse), ``leaves audit``
  (``verify.audit_leaves``), ``verify`` (``verify.verify_entry_in_tree``), ``store`` (the backup store's calls
  of a round — leaf hashes, copies, rejections, tree — and every commit); ``feed wait and the rest`` is what is
  left: waiting for a feed page not yet there, checkpoint, keys, witness, bookkeeping. ``feed_fetch_s`` is the
  time of the feed requests themselves (in the fetch thread, overlapping the rest).
* Baseline: the bare transfer — the same leaves pages and feed pages with bodies, fetched with the same
  ``RepositoryClient`` (HTTP, token, bounded read, JSON parse), nothing verified, nothing stored.
* Ratio: backup versions/s over baseline versions/s (what the verification and storage cost on top of the
  transfer); the target of issue 6 is absolute: >= 1,000 verified versions/s on one core.
* ``dbp backup verify`` (``dbp.replication.recheck``): everything held re-checked from the backup's database
  alone (tree, checkpoints, every version), timed, same core; it must find no problem.

With ``--rounds N`` the backup catches up N times (a fresh database each time), alternating with the baseline;
the best run of each counts.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from bench.databases import ROOT, migrate
from bench.load import LoadFailed
from bench.progress import Progress, step
from bench.servers import uvicorn
from dbp.access.models import Organisation
from dbp.access.principal import Role
from dbp.access.service import create_client, create_org
from dbp.db import make_engine, make_sessionmaker, transaction
from dbp.integrity import log
from dbp.integrity.models import LogLeaf
from dbp.replication import backup, recheck, verify
from dbp.replication import follower as follower_mod
from dbp.replication import service as feed_service
from dbp.replication.follower import FEED_PAGE, LEAVES_PAGE, RepositoryClient, follow_once
from dbp.replication.models import BackupRejection, BackupVersion

SERVER_CORE, BACKUP_CORE = 0, 1
SOURCE_ID = "bench"
PROVIDER_OPERATOR_ID = "bench-backup-provider-0001"
SECRET_KEY = "bench-secret-key-for-the-backup-node-0001"
TARGET_VERSIONS_PER_S = 1000.0  # issue 6: on one core, over 100,000 passports
CHECKPOINT_WAIT_S = 120


@dataclass(frozen=True)
class Provider:
    client_id: str
    client_secret: str  # never written to the results
    operators: int  # economic operators that appointed it


def appoint_provider(url: str) -> Provider:
    """The backup provider organisation and its API client, appointed by every operator of the dataset."""
    engine = make_engine(url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            operators = sorted({str(r) for r in session.execute(
                text("SELECT DISTINCT operator_id FROM passports WHERE operator_id IS NOT NULL")).scalars()})
            if not operators:
                raise LoadFailed("no passport names an operator: nobody can appoint a backup provider")
            have = {o.operator_id: o for o in session.scalars(
                select(Organisation).where(Organisation.operator_id.in_(operators)))}
            provider = create_org(session, name="bench backup provider", operator_id=PROVIDER_OPERATOR_ID,
                                  role=Role.backup_provider)
            for i, op in enumerate(operators):
                org = have.get(op) or create_org(session, name=f"bench operator {i}", operator_id=op,
                                                 role=Role.economic_operator)
                feed_service.appoint(session, operator_org_id=org.id, provider_org_id=provider.id,
                                     reference="bench backup agreement")
            issued = create_client(session, org_id=provider.id, role=Role.backup_provider)
    finally:
        engine.dispose()
    return Provider(issued.client_id, issued.client_secret, len(operators))


def version_leaves(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            n = conn.execute(select(func.count()).select_from(LogLeaf)
                             .where(LogLeaf.kind == log.KIND_VERSION)).scalar_one()
            conn.rollback()
    finally:
        engine.dispose()
    return int(n)


def wait_checkpoint(base: str, *, versions: int) -> tuple[int, str]:
    """(tree size, verifier key) once the server signed a checkpoint covering at least ``versions`` leaves."""
    deadline = time.monotonic() + CHECKPOINT_WAIT_S
    while True:
        r = httpx.get(base + "/api/v1/log/checkpoint", headers={"Accept": "text/plain"}, timeout=10)
        if r.status_code == 200:
            size = int(r.text.split("\n")[1])  # C2SP tlog-checkpoint: origin, size, root
            if size >= versions:
                return size, r.headers["X-Log-Verifier-Key"]
        if time.monotonic() > deadline:
            raise LoadFailed(f"no checkpoint of {versions:,} leaves within {CHECKPOINT_WAIT_S} s: {r.status_code} "
                             f"{r.text[:200]}")
        time.sleep(0.2)


@contextmanager
def pinned_to(core: int) -> Iterator[bool]:
    """This process on ``core`` alone (True), where affinity can be set and there is more than one core."""
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        yield False
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield True
    finally:
        os.sched_setaffinity(0, before)


class Clock:
    """Seconds spent in wrapped calls (and in commits), per label."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._commit_started: dict[int, float] = {}
        self._inside: dict[str, bool] = {}

    def add(self, label: str, seconds: float) -> None:
        self.seconds[label] = self.seconds.get(label, 0.0) + seconds
        self.calls[label] = self.calls.get(label, 0) + 1

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, timed under ``label`` (a wrapped call made inside another of the same label counts once)."""
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._inside.get(label):
                return fn(*args, **kwargs)
            self._inside[label] = True
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._inside[label] = False
                self.add(label, time.perf_counter() - t)
        return timed

    def watch_commits(self, factory: sessionmaker[Session], label: str) -> None:
        """Time every commit of ``factory``'s sessions (the final flush and the database's commit)."""
        def before(session: Session) -> None:
            self._commit_started[id(session)] = time.perf_counter()

        def after(session: Session) -> None:
            started = self._commit_started.pop(id(session), None)
            if started is not None:
                self.add(label, time.perf_counter() - started)

        event.listen(factory, "before_commit", before)
        event.listen(factory, "after_commit", after)
        event.listen(factory, "after_soft_rollback", lambda session, _previous: self._commit_started.pop(
            id(session), None))


#: the backup store's calls a round makes per page (and for the tree): timed as "store", with the commits
STORE_CALLS = ("leaf_hashes", "store_copies", "store_copy", "resolve_rejections", "resolve_rejection", "reject",
               "store_tree", "frontier")


# ------------------------------------------------------------------------------------------------ the two sides
def bare_transfer(base: str, provider: Provider, *, tree_size: int) -> dict[str, Any]:
    """The leaves and the feed pages with bodies a catch-up fetches, with the follower's client; no checks."""
    client = RepositoryClient(base, client_id=provider.client_id, client_secret=provider.client_secret, timeout=60)
    leaves = entries = pages = 0
    progress = Progress("bare transfer", tree_size * 2)
    try:
        started = time.perf_counter()
        client.checkpoint()
        client.keys()
        start = 0
        while start < tree_size:
            end = min(start + LEAVES_PAGE, tree_size)
            leaves += len(client.leaves(start, end))
            progress.add(end - start)
            start = end
        leaves_s = time.perf_counter() - started
        position = 0
        while position < tree_size:
            page = client.feed(position, FEED_PAGE)
            got = page["entries"]
            pages += 1
            below = [e for e in got if e["position"] < tree_size]
            entries += len(below)
            nxt = below[-1]["position"] + 1 if len(got) == FEED_PAGE and below else \
                min(max(int(page["nextCursor"][3:]), position), tree_size)
            progress.add(nxt - position)
            if nxt <= position or len(below) < len(got):
                break
            position = nxt
        seconds = time.perf_counter() - started
        progress.finish()
    finally:
        client.close()
    if leaves != tree_size:
        raise LoadFailed(f"bare transfer: {leaves:,} leaves fetched of {tree_size:,}")
    return {"seconds": seconds, "leaves": leaves, "entries": entries, "feed_pages": pages,
            "leaves_s": leaves_s, "feed_s": seconds - leaves_s, "versions_per_s": entries / seconds}


def catch_up(base: str, provider: Provider, *, key: str, versions: int, folder: Path, run: int) -> dict[str, Any]:
    """A fresh backup database, then ``follow_once`` rounds until it holds ``versions`` versions (timed)."""
    url = f"sqlite:///{folder / f'backup-{run}.sqlite3'}"
    migrate(url)
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    clock = Clock()
    clock.watch_commits(factory, "store")
    try:
        with transaction(factory) as session:
            backup.add_source(session, source_id=SOURCE_ID, url=base, origin=key.split("+")[0], verifier_key=key,
                              client_id=provider.client_id, client_secret=provider.client_secret,
                              secret_key=SECRET_KEY)
        clock.seconds.clear()
        clock.calls.clear()
        client = RepositoryClient(base, client_id=provider.client_id, client_secret=provider.client_secret,
                                  timeout=60)
        client.leaves = clock.wrap("leaves fetch", client.leaves)  # type: ignore[method-assign]
        client.feed = clock.wrap("feed fetch", client.feed)  # type: ignore[method-assign]
        progress = Progress("backup catch-up", versions)
        held = rounds = stored = rejected = leaves = 0
        last: list[int] = [0]

        def on_page(report: follower_mod.RoundReport) -> None:
            progress.add(report.stored - last[0])
            last[0] = report.stored

        try:
            with ExitStack() as patches:
                patches.enter_context(mock.patch.object(verify, "audit_leaves",
                                                        clock.wrap("leaves audit", verify.audit_leaves)))
                patches.enter_context(mock.patch.object(verify, "verify_entry_in_tree",
                                                        clock.wrap("verify", verify.verify_entry_in_tree)))
                for name in STORE_CALLS:
                    if hasattr(backup, name):
                        patches.enter_context(mock.patch.object(backup, name,
                                                                clock.wrap("store", getattr(backup, name))))
                started = time.perf_counter()
                while held < versions:
                    last[0] = 0
                    report = follow_once(factory, client, source_id=SOURCE_ID, progress=on_page)
                    rounds += 1
                    if report.outcome != "ok":
                        raise LoadFailed(f"backup round {rounds}: {report.outcome}: {report.message}")
                    stored, rejected, leaves = stored + report.stored, rejected + report.rejected, \
                        leaves + report.leaves
                    held = stored
                    if report.stored == 0 and rounds > 1:
                        raise LoadFailed(f"backup round {rounds} stored nothing; it holds {held:,} of {versions:,}")
                seconds = time.perf_counter() - started
        finally:
            client.close()
        progress.finish()
        with factory() as session:
            count = session.scalar(select(func.count()).select_from(BackupVersion)) or 0
            open_rejections = session.scalar(select(func.count()).select_from(BackupRejection)) or 0
        if count != versions or rejected or open_rejections:
            raise LoadFailed(f"the backup holds {count:,} of {versions:,} versions, {rejected} rejected")
    finally:
        engine.dispose()
    # measured in the round's own thread; the feed pages after the first are fetched in a second thread while
    # the round checks and stores the page before (follower: one page ahead), so their time overlaps the rest
    # and what the round waited for them is in "feed wait and the rest" (with checkpoint, keys, witness)
    own = {label: clock.seconds.get(label, 0.0) for label in ("leaves fetch", "leaves audit", "verify", "store")}
    breakdown = {**own, "feed wait and the rest": max(seconds - sum(own.values()), 0.0)}
    return {"seconds": seconds, "versions": stored, "leaves": leaves, "rounds": rounds,
            "versions_per_s": stored / seconds, "breakdown_s": breakdown,
            "feed_fetch_s": clock.seconds.get("feed fetch", 0.0),
            "feed_pages": clock.calls.get("feed fetch", 0), "leaves_pages": clock.calls.get("leaves fetch", 0),
            "database": url}


def recheck_rate(url: str, *, versions: int) -> dict[str, Any]:
    """``dbp backup verify`` over what the backup holds (timed): it must find no problem."""
    engine = make_engine(url)
    try:
        progress = Progress("dbp backup verify", versions)
        done: list[int] = [0]

        def on_progress(what: str, n: int, total: int) -> None:
            if what.endswith("versions"):
                progress.add(n - done[0])
                done[0] = n

        started = time.perf_counter()
        with make_sessionmaker(engine)() as session:
            results = recheck.recheck(session, source_id=SOURCE_ID, progress=on_progress)
        seconds = time.perf_counter() - started
        progress.finish()
    finally:
        engine.dispose()
    result = results[0]
    if not result.ok or result.versions != versions:
        raise LoadFailed(f"dbp backup verify found {result.problem_count} problem(s) in {result.versions:,} versions: "
                         f"{result.problems[:3]}")
    return {"seconds": seconds, "versions": result.versions, "leaves": result.leaves, "nodes": result.nodes,
            "checkpoints": result.checkpoints, "versions_per_s": result.versions / seconds}


def _remove_sqlite(url: str) -> None:
    path = Path(url[len("sqlite:///"):])
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ the benchmark
def backup_benchmark(url: str, *, rounds: int, verify_held: bool = True) -> dict[str, Any]:
    step("backup: appointing a backup provider (every operator of the dataset) and creating its API client")
    provider = appoint_provider(url)
    versions = version_leaves(url)
    if not versions:
        raise LoadFailed("the repository's log holds no versions to back up")
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "backup": []}
    (ROOT / "var" / "bench").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="backup-", dir=ROOT / "var" / "bench") as tmp:
        folder = Path(tmp)
        with uvicorn("dbp", url, core=SERVER_CORE, log_dir=folder, probe="/health", label="dbp-backup") as server:
            tree_size, key = wait_checkpoint(server.url, versions=versions)
            step(f"backup: repository serves a checkpoint of {tree_size:,} leaves ({versions:,} versions, "
                 f"{provider.operators} appointing operators)")
            with pinned_to(BACKUP_CORE) as pinned:
                for r in range(rounds):
                    step(f"backup baseline: bare transfer of leaves and feed pages (round {r + 1}/{rounds})")
                    base = bare_transfer(server.url, provider, tree_size=tree_size)
                    step(f"  baseline: {base['versions_per_s']:,.0f} versions/s ({base['seconds']:.1f} s: leaves "
                         f"{base['leaves_s']:.1f} s, feed {base['feed_s']:.1f} s)")
                    runs["baseline"].append(base)
                    step(f"backup: catch-up from zero (round {r + 1}/{rounds})")
                    mine = catch_up(server.url, provider, key=key, versions=versions, folder=folder, run=r)
                    b = mine["breakdown_s"]
                    step(f"  backup: {mine['versions_per_s']:,.0f} verified versions/s ({mine['seconds']:.1f} s: "
                         + ", ".join(f"{k} {v:.1f} s" for k, v in b.items()) + ")")
                    runs["backup"].append(mine)
                    for run in runs["backup"]:  # keep the best copy only (for dbp backup verify): ~10 KB a version
                        if run is not max(runs["backup"], key=lambda x: x["versions_per_s"]):
                            _remove_sqlite(run["database"])
                best = {side: max(rs, key=lambda x: x["versions_per_s"]) for side, rs in runs.items()}
                checked = None
                if verify_held:
                    step("backup: dbp backup verify over everything held")
                    checked = recheck_rate(best["backup"]["database"], versions=versions)
                    step(f"  verify: {checked['versions_per_s']:,.0f} versions/s ({checked['seconds']:.1f} s)")
    for rs in runs["backup"]:
        rs.pop("database", None)
    return {"versions": versions, "tree_size": tree_size, "operators": provider.operators, "feed_page": FEED_PAGE,
            "leaves_page": LEAVES_PAGE, "pinned": pinned, "backup": best["backup"], "baseline": best["baseline"],
            "all_runs": runs, "ratio": best["backup"]["versions_per_s"] / best["baseline"]["versions_per_s"],
            "target_versions_per_s": TARGET_VERSIONS_PER_S, "recheck": checked}

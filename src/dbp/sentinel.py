"""The tamper sentinel: keeps, per process, the set of passports whose stored data fail their integrity checks, so
that every read of such a passport says so; and appends the access-log digests to the transparency log.

**What it runs** (``install`` starts it in the app's lifespan):

* *New versions* — every ``check_interval`` s (1) the leaves appended since the last look are checked with the
  versions they commit to (``tamper.VersionAudit`` on those keys, one snapshot each batch).
* *Sweep* — the whole check of ``dbp audit-log verify`` (``tamper.FullCheck``: leaves, nodes, state, checkpoint,
  every version, every access-log digest), in small batches, throttled to ``sweep_budget`` of one core
  (DBP_INTEGRITY_SWEEP_BUDGET, default 0.02; 0 turns sweeping off), then again after ``sweep_pause`` s. When a
  sweep ends its findings *replace* the flags (plus whatever was flagged meanwhile), so a repaired row clears.
* *Per read* — on the non-hot read paths (routes through ``guard.view_for``) the SHA-256 of the full version being
  served is compared with its ``sha256`` column (~10 µs for 10 KB); a mismatch flags the passport at once.
* *Digests* — every ``digest_interval`` s (DBP_ACCESS_DIGEST_INTERVAL, default 60) and at shutdown: move staged read
  records (``ReadLogWriter.flush``), then ``tamper.digest_access_log``.

**Detection delay.** Altered canonical bytes whose ``sha256`` column was left alone: the first non-hot read, or the
next sweep. Anything else (a re-hashed body, a signature, a public view, a leaf, a node, the state, the checkpoint,
an access-log row): at most one sweep cycle, sweep CPU time / budget + pause. Measured on SQLite: a sweep costs
~165 µs of CPU per passport version (with its leaf) the first time and ~65 µs afterwards (each signature is verified
once per process: ``tamper.VerifiedSignatures``), so at the default budget 0.02 a cycle takes ~2 minutes for 20,000
passports (~3 minutes for the first one after start) and ~55 minutes for 10^6. Access-log rows newer than the last
digest are covered from the next digest on (≤ ``digest_interval``).

**Where flags live.** In this process's memory only: each server process runs its own sentinel and sweeps for
itself (the cost multiplies by the number of processes; nothing is shared that could disagree or be tampered with
in turn). A restart starts with no flags until its first sweep ends.

**The flag** (``IntegrityFlags`` and the hot path in ``passports.reads``): a read of a flagged passport carries
``X-DPP-Integrity: failed; scope="passport"; reason="<first finding>"``; a repository-wide finding (log state,
checkpoint, access log) flags every passport read with ``scope="repository"``. Search results
(``GET /api/v1/dpps``, ``POST /api/v1/dppsByProductIds``) get an ``integrity`` member on each flagged item and the
header with the count; the HTML page shows a warning banner. Nothing is added when nothing is known to be wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import orjson
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dbp.access.secrets import DEVELOPMENT_SECRET
from dbp.integrity import log as integrity_log
from dbp.integrity.audit import Findings
from dbp.integrity.models import LogKey, LogLeaf
from dbp.passports import tamper

logger = logging.getLogger("dbp.sentinel")

#: ``scope["state"]`` key: the passports a request read (set by ``passports.guard``).
READ_MARK = "dbp.passports_read"
#: The integrity problem of the passport the current request renders (set by ``guard``; the HTML page reads it).
CURRENT_PROBLEM: ContextVar[str | None] = ContextVar("dbp_integrity_problem", default=None)
HEADER = b"x-dpp-integrity"
LISTINGS = frozenset({"/api/v1/dpps", "/api/v1/dppsByProductIds"})
MAX_REASON = 300


def header_value(problem: str, scope: str = "passport") -> bytes:
    """``failed; scope="…"; reason="…"`` (RFC 9110 quoted-string; non-ASCII escaped, cut to MAX_REASON)."""
    reason = problem.encode("ascii", "backslashreplace").decode("ascii")
    reason = "".join(c if " " <= c <= "~" else "?" for c in reason)[:MAX_REASON]
    reason = reason.replace("\\", "\\\\").replace('"', '\\"')
    return f'failed; scope="{scope}"; reason="{reason}"'.encode("ascii")


class Sentinel:
    """See the module docstring. Thread-safe for its readers: ``problem`` is a dict lookup."""

    def __init__(self, factory: sessionmaker[Session], *, read_factory: sessionmaker[Session] | None = None,
                 read_log: Any = None, digest_interval: float = 60.0, check_interval: float = 1.0,
                 sweep_budget: float = 0.02, sweep_pause: float = 60.0, secret_key: str | None = None) -> None:
        self.factory = factory
        self.secret_key = secret_key  # sweeps refuse log keys this repository did not make
        self.read_factory = read_factory or factory
        self.read_log = read_log
        self.digest_interval = digest_interval
        self.check_interval = check_interval
        self.sweep_budget = sweep_budget
        self.sweep_pause = sweep_pause
        self._flags: dict[str, str] = {}
        self._since_sweep: dict[str, str] = {}  # flagged by other checks while a sweep runs
        self.repository: str | None = None
        self.last_sweep: tamper.FullCheck | None = None
        self.sweeps = 0
        self._mark: int | None = None  # leaves below this were looked at by check_new
        self._digest_hint = 0
        self._keys: dict[str, bytes] = {}
        self._verified = tamper.VerifiedSignatures()  # a sweep verifies each signature once per process
        self._lock = threading.Lock()  # one sweep at a time
        self._flag_lock = threading.Lock()  # flag() vs a sweep publishing its findings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None

    # --- the flags ---------------------------------------------------------------------------------------------

    def problem(self, dpp_id: str) -> str | None:
        """Why reads of ``dpp_id`` are not to be trusted; None when nothing is known to be wrong."""
        return self._flags.get(dpp_id) or self.repository

    @property
    def active(self) -> bool:
        return bool(self._flags) or self.repository is not None

    def flagged(self) -> dict[str, str]:
        return dict(self._flags)

    def flag(self, dpp_id: str, reason: str) -> None:
        if dpp_id not in self._flags:
            logger.error("integrity check failed for passport %s: %s", dpp_id, reason)
        with self._flag_lock:  # against _publish swapping the maps between the two writes
            self._flags[dpp_id] = reason
            self._since_sweep[dpp_id] = reason

    def clear(self) -> None:
        """Forget every flag (tests; a sweep replaces them anyway)."""
        self._flags = {}
        self._since_sweep = {}
        self.repository = None

    def check_served(self, dpp_id: str, body: bytes, sha256: str) -> None:
        """The full version about to be served must hash to its sha256 column; flags the passport if not."""
        actual = hashlib.sha256(body).hexdigest()
        if actual != sha256:
            self.flag(dpp_id, f"served version: expected sha256 {sha256} of its canonical bytes, got {actual}")

    # --- checks ------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _scope(self) -> Iterator[Session]:
        """One read snapshot (REPEATABLE READ on PostgreSQL, a deferred transaction on SQLite)."""
        with self.read_factory() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            try:
                yield session
            finally:
                session.rollback()

    def sweep(self, *, throttle: bool = False) -> tamper.FullCheck | None:
        """The full check; on completion its findings replace the flags. None if stopped before the end."""
        with self._lock:
            with self._flag_lock:
                self._since_sweep = {}
            budget = self.sweep_budget if throttle else 1.0
            # Throttled batches hold the GIL ~1.5 ms each (64 leaves, 8 versions), so a request arriving meanwhile
            # waits at most that long: larger ones (256 / 32, ~6 ms) showed in the proof benchmark's p99.
            check = tamper.FullCheck(check_extra=False, log_batch=64 if throttle else 2048,
                                     version_batch=8 if throttle else 200, verified=self._verified,
                                     secret_key=self.secret_key)
            started = time.monotonic()
            for _ in check.steps(self._scope):
                if self._stop.is_set() and throttle:
                    return None
                if budget < 1.0:
                    elapsed = time.monotonic() - started
                    self._stop.wait(min(5.0, elapsed * (1 - budget) / budget))
                    started = time.monotonic()
            self._publish(check.findings)
            self.last_sweep = check
            self.sweeps += 1
            return check

    def _publish(self, findings: Findings) -> None:
        flags: dict[str, str] = {}
        repository: str | None = None
        for f in findings.items:
            if not f.dpp_ids:  # the state, the checkpoint, the access log, a digest leaf: no one passport
                repository = repository or f.text()
            for dpp_id in f.dpp_ids:
                flags.setdefault(dpp_id, f.text())
        if findings.total:
            logger.error("integrity sweep: %d problem(s); first: %s", findings.total, findings.items[0].text())
        with self._flag_lock:
            flags.update(self._since_sweep)
            self._flags = flags
            self.repository = repository

    def check_new(self, *, limit: int = 2000, since: int | None = None) -> int:
        """Check the versions whose leaves were appended since the last look (or from leaf ``since``); returns how
        many leaves were looked at."""
        with self._scope() as s:
            size = integrity_log.size(s)
            if since is not None:
                self._mark = since
            if self._mark is None or self._mark > size:  # first look, or the log was emptied (tests)
                self._mark = size
                return 0
            rows = s.execute(select(*integrity_log.LEAF_COLUMNS).where(LogLeaf.leaf_index >= self._mark)
                             .order_by(LogLeaf.leaf_index).limit(limit)).all()
            if not rows:
                return 0
            keys = [(r[2], r[3]) for r in rows if r[1] == integrity_log.KIND_VERSION]
            if any(kid is not None and kid not in self._keys for kid in (r[7] for r in rows)):
                self._keys = {k: bytes(p) for k, p in s.execute(select(LogKey.kid, LogKey.public_key)).all()}
            findings = Findings()
            audit = tamper.VersionAudit(keys=self._keys, findings=findings)
            audit.check_keys(s, keys)
            for r in rows:
                try:
                    ok = integrity_log.stored_leaf(r).leaf.leaf_hash() == bytes(r[6])
                except Exception:
                    ok = False
                if not ok and r[2]:
                    self.flag(r[2], f"leaf {r[0]}: its stored hash is not the hash of its fields")
            for f in findings.items:
                for dpp_id in f.dpp_ids:
                    self.flag(dpp_id, f.text())
            self._mark = int(rows[-1][0]) + 1
            return len(rows)

    def digest(self) -> int:
        """Append digests of the access-log rows not yet digested (staged records must be moved first)."""
        made = tamper.digest_access_log(self.factory, hint=self._digest_hint)
        if made:
            self._digest_hint = made[-1].index
        return len(made)

    async def digest_now(self) -> int:
        if self.read_log is not None:
            with contextlib.suppress(Exception):
                await self.read_log.flush()
        return await asyncio.to_thread(self.digest)

    # --- running -----------------------------------------------------------------------------------------------

    def _sweeper(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep(throttle=True)
            except Exception:
                logger.exception("integrity sweep failed; trying again in %s s", self.sweep_pause)
            self._stop.wait(self.sweep_pause)

    async def _run(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_digest = loop.time() + self.digest_interval if self.digest_interval > 0 else float("inf")
        while not stopping.is_set():
            try:
                await asyncio.to_thread(self.check_new)
                if loop.time() >= next_digest:
                    next_digest = loop.time() + self.digest_interval
                    await self.digest_now()
            except Exception:
                logger.exception("integrity check of new versions or access-log digest failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.check_interval)

    def start(self) -> None:
        self._stop.clear()
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._stopping), name="dbp-integrity-sentinel")
        if self.sweep_budget > 0:
            self._thread = threading.Thread(target=self._sweeper, name="dbp-integrity-sweep", daemon=True)
            self._thread.start()

    async def stop(self) -> None:
        """Stop checking; digest what the access log holds (shutdown)."""
        self._stop.set()
        if self._task is not None and self._stopping is not None:
            self._stopping.set()
            await self._task
            self._task = None
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
            self._thread = None
        if self.digest_interval > 0:
            try:
                await self.digest_now()
            except Exception:
                logger.exception("access-log digest at shutdown failed (the next start digests those entries)")


class IntegrityFlags:
    """ASGI middleware (inside ``Hardening``, so the hot path never meets it): adds the flag to the answers of the
    routes; see the module docstring."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sentinel: Sentinel | None = getattr(self.state, "sentinel", None)
        if scope["type"] != "http" or sentinel is None:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if sentinel.active and scope["path"] in LISTINGS:
            await self._listing(sentinel, scope, receive, send)
            return

        async def flagged(message: Message) -> None:
            if message["type"] == "http.response.start" and sentinel.active:
                problem = next((p for p in map(sentinel.problem, state.get(READ_MARK) or ()) if p), None)
                if problem is not None:
                    kind = "passport" if problem != sentinel.repository else "repository"
                    message["headers"] = [*message.get("headers", ()), (HEADER, header_value(problem, kind))]
            await send(message)

        await self.app(scope, receive, flagged)

    async def _listing(self, sentinel: Sentinel, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def buffered(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            headers = list(start.get("headers", ()))
            if start["status"] == 200:
                body, count = _mark_items(sentinel, body)
                if count:
                    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
                    headers += [(b"content-length", str(len(body)).encode()),
                                (HEADER, header_value(f"{count} passport(s) in this page failed their integrity "
                                                      "checks; see each item's integrity member", "passport"))]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, buffered)


def _mark_items(sentinel: Sentinel, body: bytes) -> tuple[bytes, int]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body, 0
    items = doc.get("items") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return body, 0
    count = 0
    for item in items:
        dpp_id = item.get("dppId") if isinstance(item, dict) else None
        problem = sentinel.problem(dpp_id) if isinstance(dpp_id, str) else None
        if problem is not None:
            item["integrity"] = {"status": "failed", "reason": problem}
            count += 1
    return (orjson.dumps(doc), count) if count else (body, 0)


def current_problem() -> str | None:
    """For templates: the integrity problem of the passport the current request renders."""
    return CURRENT_PROBLEM.get()


def install(app: FastAPI) -> Sentinel:
    """Build the app's sentinel from its settings, add the flag middleware and run the sentinel in the app's
    lifespan (started after the app's own start-up, stopped — with a last digest — before its shutdown)."""
    from dbp.passports import views

    settings = app.state.settings
    sentinel = Sentinel(app.state.sessionmaker, read_factory=app.state.read_sessionmaker,
                        read_log=app.state.read_log, digest_interval=settings.access_digest_interval,
                        sweep_budget=settings.integrity_sweep_budget, sweep_pause=settings.integrity_sweep_pause,
                        secret_key=settings.secret_key or DEVELOPMENT_SECRET)
    app.state.sentinel = sentinel
    app.add_middleware(IntegrityFlags, state=app.state)
    views._env().globals["integrity_problem"] = current_problem
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> Any:
        async with inner(a) as value:
            sentinel.start()
            try:
                yield value
            finally:
                await sentinel.stop()

    app.router.lifespan_context = lifespan
    return sentinel

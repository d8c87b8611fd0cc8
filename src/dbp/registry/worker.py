"""Auto-registration (repository side): keeps every passport's registration current, off the write path.

``pending`` finds, with one LEFT JOIN of ``passports`` and ``registry_receipts``, the passports to (re-)register:
published ones (every status but draft) never registered, and registered ones whose receipt is older than their
current version — skipping those whose back-off has not yet
run out. ``sync_once`` registers a batch: reads each current public view, builds the registration, asks the
``RegistryClient``, verifies the proof (``client.check_receipt``) and stores the receipt, or the error with
exponential back-off (``BACKOFF_BASE`` · 2^attempts, at most ``BACKOFF_MAX``) in ``next_attempt_at``. No passport
write waits on it or fails because of it; each receipt is its own short transaction. Whatever goes wrong with one
passport (a refusal, an unverifiable proof, a registry answering garbage, an unexpected exception — logged with its
traceback) is recorded as that passport's failure with back-off: the round goes on with the next one.

``AutoRegistrar`` runs ``sync_once`` every ``interval`` seconds as a task of the app's lifespan (sooner while a
backlog remains); ``stop`` returns promptly, cancelling a round that is still waiting on the registry (its
passports stay pending and are tried again at the next start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from dbp.clock import timestamp
from dbp.db import transaction
from dbp.errors import VerificationError
from dbp.passports.models import Passport, PassportVersion
from dbp.registry.client import RegistrationFailed, RegistryClient, aliases_of, check_receipt
from dbp.registry.models import RegistryReceipt

log = logging.getLogger("dbp.registry")

# Not only active passports: a predecessor becomes inactive in the very transaction that creates its successor
# (Art. 77(7)), so "active only" would never register it, and its battery's QR code would resolve nowhere; the
# registry marks it superseded by the successor instead.

BATCH = 100
BACKOFF_BASE = 5.0
BACKOFF_MAX = 3600.0


@dataclass(frozen=True)
class Options:
    """What a repository puts in its registrations besides the passport's own data."""

    endpoint: str  # this repository's API base URL
    backup_node: str | None = None
    commodity_code: str | None = None


@dataclass
class Report:
    registered: int = 0
    failed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


def _pending_filter(now: str) -> Any:
    r, p = RegistryReceipt, Passport
    due = or_(r.next_attempt_at.is_(None), r.next_attempt_at <= now)
    never = and_(r.dpp_id.is_(None), p.dpp_status != "draft")
    stale = and_(r.dpp_id.is_not(None), due,
                 or_(r.registered_version.is_(None), r.registered_version < p.current_version),
                 or_(r.registration_id.is_not(None), p.dpp_status != "draft"))
    return or_(never, stale)


def pending(session: Session, *, limit: int = BATCH, now: str | None = None, after: str | None = None
            ) -> list[str]:
    """dppIds to register or re-register now, in dppId order (``after``: continue after this one)."""
    stmt = (select(Passport.dpp_id).outerjoin(RegistryReceipt, RegistryReceipt.dpp_id == Passport.dpp_id)
            .where(_pending_filter(now or timestamp())))
    if after is not None:
        stmt = stmt.where(Passport.dpp_id > after)
    return list(session.scalars(stmt.order_by(Passport.dpp_id).limit(limit)))


def counts(session: Session) -> dict[str, Any]:
    """registered (current), pending (due or backing off), failing (last attempt failed), and the last errors."""
    r, p = RegistryReceipt, Passport
    joined = select(func.count()).select_from(p).outerjoin(r, r.dpp_id == p.dpp_id)
    registered = session.scalar(joined.where(r.registered_version >= p.current_version)) or 0
    waiting = session.scalar(joined.where(_pending_filter("9999"))) or 0
    failing = session.scalar(select(func.count()).select_from(r).where(r.last_error.is_not(None))) or 0
    errors = [{"dppId": d, "attempts": a, "error": e, "nextAttemptAt": n} for d, a, e, n in session.execute(
        select(r.dpp_id, r.attempts, r.last_error, r.next_attempt_at).where(r.last_error.is_not(None))
        .order_by(r.next_attempt_at.desc()).limit(10))]
    return {"registered": registered, "pending": waiting, "failing": failing, "lastErrors": errors}


@dataclass(frozen=True)
class _Item:
    dpp_id: str
    body: dict[str, Any]


def _load(session: Session, dpp_ids: list[str], options: Options) -> list[_Item]:
    rows = session.execute(
        select(PassportVersion.dpp_id, PassportVersion.version, PassportVersion.public_canonical,
               PassportVersion.public_sha256)
        .join(Passport, and_(Passport.dpp_id == PassportVersion.dpp_id,
                             Passport.current_version == PassportVersion.version))
        .where(PassportVersion.dpp_id.in_(dpp_ids))).all()
    out = []
    for dpp_id, _version, public, _sha in rows:
        doc = orjson.loads(public) if public else {}
        body = {"uniqueProductIdentifier": doc.get("uniqueProductIdentifier"), "dppId": dpp_id,
                "economicOperatorId": doc.get("economicOperatorId"), "granularity": doc.get("granularity", "item"),
                "endpoint": options.endpoint}
        for name, value in (("facilityId", doc.get("facilityId")), ("commodityCode", options.commodity_code),
                            ("backupProvider", options.backup_node)):
            if value is not None:
                body[name] = value
        body["aliases"] = aliases_of(doc)  # what the passport lists (and the registry checks against it)
        out.append(_Item(dpp_id, body))
    return out


def _public_hash(session_factory: sessionmaker[Session], dpp_id: str) -> Callable[[int], str | None]:
    def lookup(version: int) -> str | None:
        with session_factory() as session:
            return session.scalar(select(PassportVersion.public_sha256).where(
                PassportVersion.dpp_id == dpp_id, PassportVersion.version == version))

    return lookup


def _store(factory: sessionmaker[Session], dpp_id: str, **given: Any) -> None:
    for _ in range(2):  # another process may insert the same receipt first: then update it
        values = dict(given)
        try:
            with transaction(factory) as session:
                row = session.get(RegistryReceipt, dpp_id)
                if row is None:
                    row = RegistryReceipt(dpp_id=dpp_id, attempts=0)
                    session.add(row)
                if values.pop("failed", False):
                    row.attempts = (row.attempts or 0) + 1
                    delay = min(BACKOFF_BASE * 2 ** (row.attempts - 1), BACKOFF_MAX)
                    if values.pop("permanent", False):
                        delay = max(delay, 60.0)
                    row.next_attempt_at = timestamp(datetime.now(UTC) + timedelta(seconds=delay))
                else:
                    row.attempts, row.next_attempt_at = 0, None
                values.pop("permanent", None)
                for k, v in values.items():
                    setattr(row, k, v)
            return
        except IntegrityError:
            continue


async def sync_once(factory: sessionmaker[Session], client: RegistryClient, options: Options, *,
                    limit: int = BATCH, ignore_backoff: bool = False, after: str | None = None,
                    progress: Callable[[int], None] | None = None) -> tuple[Report, str | None]:
    """Register one batch of pending passports; returns the report and the last dppId handled (None: none left)."""
    report = Report()

    def select_batch() -> list[_Item]:
        with factory() as session:
            try:
                ids = pending(session, limit=limit, now="9999" if ignore_backoff else None, after=after)
                return _load(session, ids, options) if ids else []
            finally:
                session.rollback()

    items = await asyncio.to_thread(select_batch)
    if not items:
        return report, None
    for item in items:
        try:
            answer = await client.register(item.body)
            keys = await client.keys()
            try:
                receipt = check_receipt(answer, keys, dpp_id=item.dpp_id,
                                        public_sha256=_public_hash(factory, item.dpp_id))
            except VerificationError:
                forget = getattr(client, "forget_keys", None)
                if forget is None:
                    raise
                forget()  # the registry may have rotated its key since: fetch them once more
                receipt = check_receipt(answer, await client.keys(), dpp_id=item.dpp_id,
                                        public_sha256=_public_hash(factory, item.dpp_id))
        except (RegistrationFailed, VerificationError) as exc:
            message = exc.message
            report.failed += 1
            report.errors.append((item.dpp_id, message))
            await asyncio.to_thread(_store, factory, item.dpp_id, failed=True, last_error=message[:4000],
                                    permanent=getattr(exc, "permanent", True))
        except Exception as exc:  # a misbehaving registry (or a bug) fails this passport, never the round
            log.exception("auto-registration of %s failed unexpectedly; backing off", item.dpp_id)
            message = f"unexpected {type(exc).__name__}: {exc}"
            report.failed += 1
            report.errors.append((item.dpp_id, message))
            await asyncio.to_thread(_store, factory, item.dpp_id, failed=True, last_error=message[:4000],
                                    permanent=False)
        else:
            report.registered += 1
            await asyncio.to_thread(_store, factory, item.dpp_id, registration_id=receipt.registration_id,
                                    registered_version=receipt.dpp_version, version_hash=receipt.version_hash,
                                    proof=receipt.proof, registered_at=timestamp(), last_error=None)
        if progress is not None:
            progress(1)
    return report, items[-1].dpp_id


async def sync_all(factory: sessionmaker[Session], client: RegistryClient, options: Options, *,
                   ignore_backoff: bool = True, progress: Callable[[int], None] | None = None) -> Report:
    """Every pending passport now, batch after batch (each passport at most once)."""
    total = Report()
    after: str | None = None
    while True:
        report, after = await sync_once(factory, client, options, ignore_backoff=ignore_backoff, after=after,
                                        progress=progress)
        total.registered += report.registered
        total.failed += report.failed
        total.errors.extend(report.errors)
        if after is None:
            return total


def options_of(settings: Any) -> Options:
    return Options(endpoint=settings.base_url, backup_node=settings.registry_backup_node,
                   commodity_code=settings.registry_commodity_code)


class AutoRegistrar:
    """``sync_once`` every ``interval`` seconds on the running event loop, between ``start`` and ``stop``."""

    def __init__(self, factory: sessionmaker[Session], client: RegistryClient, options: Options, *,
                 interval: float) -> None:
        self.factory = factory
        self.client = client
        self.options = options
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None

    async def _run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            pause = self.interval
            try:
                report, last = await sync_once(self.factory, self.client, self.options)
                if last is not None and report.registered:
                    pause = min(pause, 0.05)  # a backlog: the next batch soon
            except Exception:
                log.exception("auto-registration round failed; trying again in %s s", self.interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), pause)

    def start(self) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._stopping), name="dbp-auto-register")

    async def stop(self, grace: float = 2.0) -> None:
        """Stop; a round still running after ``grace`` seconds is cancelled."""
        if self._task is None or self._stopping is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None


def start_for(app: Any) -> AutoRegistrar | None:
    """The app's auto-registrar, started; None (with a warning) when there is no registry to register with."""
    from dbp.registry.client import client_for

    client = client_for(app)
    settings = app.state.settings
    if client is None:
        log.warning("DBP_AUTO_REGISTER is on but there is no registry: set DBP_REGISTRY_URL (or run the registry "
                    "role in this process); passports are not registered")
        return None
    registrar = AutoRegistrar(app.state.sessionmaker, client, options_of(settings),
                              interval=settings.registry_sync_interval)
    registrar.start()
    return registrar

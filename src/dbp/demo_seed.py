"""Seeds the embedded demo: a synthetic fleet through the real import path, then second-life
passports through the real lifecycle operation. Idempotent: re-running adds nothing twice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dbp.access import service as access
from dbp.access.principal import Role
from dbp.config import Settings
from dbp.db import make_engine, make_sessionmaker, transaction
from dbp.errors import DbpError
from dbp.passports import bulk, lifecycle
from dbp.passports.demo import generate_fleet, successor_document, successor_plan
from dbp.passports.models import Passport


@dataclass(frozen=True)
class Sample:
    dpp_id: str
    product_id: str
    successor_id: str | None
    credentials: dict[str, Any]


DEMO_PARTIES = (  # (name, operator id, role, purpose the demo client states)
    ("Circular Metals Recycling SA", "urn:dbp:demo:recycler", Role.recycler, "dismantling"),
    ("Fix-It Battery Repair GmbH", "urn:dbp:demo:repairer", Role.repairer, "repair"),
    ("Grid Aggregation BV", "urn:dbp:demo:purchaser", Role.purchaser, "marketAccess"),
    ("Market Surveillance Authority (demo)", "urn:dbp:demo:msa", Role.market_surveillance, "marketSurveillance"),
)


def _identities(factory: sessionmaker[Session], docs: list[dict[str, Any]], extra_operators: set[str]
                ) -> dict[str, Any]:
    """One organisation and API client per operator in the fleet, plus a recycler, a repairer, a
    purchaser and an authority. Idempotent: existing organisations are reused, new clients added."""
    out: dict[str, Any] = {}
    operators = sorted({d["economicOperatorId"] for d in docs} | extra_operators)
    with factory.begin() as session:
        existing = {o.operator_id: o for o in access.list_orgs(session)}
        parties = [(f"Operator {op}", op, Role.economic_operator, None) for op in operators] + list(DEMO_PARTIES)
        for name, op, role, purpose in parties:
            org = existing.get(op) or access.create_org(session, name=name, operator_id=op, role=role)
            issued = access.create_client(session, org_id=org.id, role=role)
            out[op] = {"name": org.name, "role": role.value, "client_id": issued.client_id,
                       "client_secret": issued.client_secret, "purpose": purpose}
    return out


def seed(settings: Settings, *, count: int, progress: Callable[[int], None] | None = None) -> Sample:
    engine = make_engine(settings.database_url)
    factory = make_sessionmaker(engine)
    try:
        docs = list(generate_fleet(count))
        with factory() as session:
            present = set(session.scalars(select(Passport.product_id).where(
                Passport.product_id.like("https://id.dbp.example/%"))))
        if progress and present:
            progress(sum(1 for d in docs if d["uniqueProductIdentifier"] in present))
        records = (bulk.RecordSource("demo", i, raw=orjson.dumps(d)) for i, d in enumerate(docs, start=1)
                   if d["uniqueProductIdentifier"] not in present)
        report = bulk.import_records(factory, records, progress=progress)
        if report.failed:
            raise RuntimeError(f"demo data failed validation: {report.errors[:3]}")
        successor_id = None
        for k, (indexes, operation) in enumerate(successor_plan(count)):
            preds = [docs[i] for i in indexes]
            with transaction(factory) as session:
                rows = [session.scalar(select(Passport).where(Passport.product_id == d["uniqueProductIdentifier"]))
                        for d in preds]
                if any(r is None or r.dpp_status != "active" for r in rows):
                    continue  # already succeeded on an earlier run
                body = orjson.dumps({"operation": operation,
                                     "predecessorDppIds": [r.dpp_id for r in rows if r is not None],
                                     "passport": successor_document(preds, operation, index=k)})
                try:
                    successor_id = lifecycle.create_successor(session, body=body).dpp_id
                except DbpError as exc:
                    raise RuntimeError(f"demo successor {k} refused: {exc.message} {exc.details[:3]}") from exc
        with factory() as session:
            first = session.scalar(select(Passport).where(
                Passport.product_id == docs[0]["uniqueProductIdentifier"]))
            if successor_id is None:
                successor_id = session.scalar(select(Passport.dpp_id).where(
                    Passport.battery_status.in_(["repurposed", "remanufactured", "re-used"])).limit(1))
        assert first is not None
        successor_ops = {successor_document(docs[:1], "repurposing", index=0)["economicOperatorId"]}
        credentials = _identities(factory, docs, successor_ops)
        return Sample(first.dpp_id, first.product_id, successor_id, credentials)
    finally:
        engine.dispose()


def register_all(settings: Settings, *, progress: Callable[[int], None] | None = None) -> Any:
    """Register every pending demo passport now (with the embedded registry of this configuration, or
    DBP_REGISTRY_URL), so that a demo QR code resolves at once; the worker's report, or None when this
    configuration has no registry to register with (auto-registration off, or no registry role nor URL)."""
    from dbp.config import Role
    from dbp.registry.cli import sync_now

    if not settings.auto_register or (settings.registry_url is None and Role.registry not in settings.roles):
        return None
    return sync_now(settings, progress=progress)


DEMO_BACKUP = ("Demo Backup Provider", "urn:dbp:demo:backup-provider")
DEMO_SOURCE = "demo"


def follow_self(settings: Settings) -> bool:
    """The embedded demo's backup role follows the demo repository (over loopback HTTP, like any repository):
    a backup-provider organisation with a client, appointed by every operator, and the repository added as the
    backup's source ``demo`` with its log key pinned. In production the backup is another organisation's node
    with its own database (``dbp federation``). Idempotent; False when the source existed already."""
    from dbp.access.secrets import DEVELOPMENT_SECRET
    from dbp.integrity import log as integrity_log
    from dbp.replication import backup
    from dbp.replication import service as feed_service
    from dbp.replication.models import BackupSource

    secret = settings.secret_key or DEVELOPMENT_SECRET
    engine = make_engine(settings.database_url)
    factory = make_sessionmaker(engine)
    try:
        with factory.begin() as session:
            if session.get(BackupSource, DEMO_SOURCE) is not None:
                return False
            orgs = {o.operator_id: o for o in access.list_orgs(session)}
            provider = orgs.get(DEMO_BACKUP[1]) or access.create_org(
                session, name=DEMO_BACKUP[0], operator_id=DEMO_BACKUP[1], role=Role.backup_provider)
            issued = access.create_client(session, org_id=provider.id, role=Role.backup_provider)
            for org in orgs.values():
                if org.role == Role.economic_operator.value:
                    feed_service.appoint(session, operator_org_id=org.id, provider_org_id=provider.id,
                                         reference="demo backup agreement")
            origin = integrity_log.origin_of(settings.base_url)
            key = integrity_log.load_signer(session, secret_key=secret, origin=origin).verifier.encode()
            backup.add_source(session, source_id=DEMO_SOURCE, url=settings.base_url, origin=origin, verifier_key=key,
                              client_id=issued.client_id, client_secret=issued.client_secret, secret_key=secret)
        return True
    finally:
        engine.dispose()

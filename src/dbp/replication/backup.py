"""The backup node's store (role ``backup``): the repositories it follows (sources), the log tree it rebuilt for
each, the checkpoints it verified, the verified copies of passport versions, and what it refused. Keyword-only
functions over a SQLAlchemy ``Session``; the HTTP side and the verification order are in
``dbp.replication.follower``, the checks themselves in ``dbp.replication.verify``.

What a copy guarantees: a ``backup_versions`` row exists only for a feed entry whose body hashed to its content
hash, whose JWS verified with a key the backup trusts for that source (``trusted_keys``: keys whose public key
signed a checkpoint the backup verified with the pinned log key), whose rebuilt leaf is the leaf at its position
of a tree the backup rebuilt itself from the log's leaves, and whose root equals a signed checkpoint that is
consistent with every checkpoint the backup saw before. So a copy is evidence on its own: ``bundle`` builds the
same evidence bundle the repository would serve (``dbp.integrity.evidence``), from the backup's own tree — it
verifies against the original operator's keys after the repository is gone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.orm import Session

from dbp.access.secrets import decrypt, encrypt
from dbp.clock import timestamp
from dbp.errors import BadRequest, Conflict, FieldError, NotFound
from dbp.integrity import merkle
from dbp.integrity.evidence import Bundle, KeyPeriod
from dbp.integrity.signing import unb64url
from dbp.replication.models import (
    BackupAlert,
    BackupCheckpoint,
    BackupNode,
    BackupRejection,
    BackupSource,
    BackupVersion,
)

FOLLOWING, FAILING, HALTED = "following", "failing", "halted"
CUSTODY = "custody"  # restored from a custody file (dbp restore): served, not followed
NOT_FOLLOWED = frozenset({HALTED, CUSTODY})
BACKOFF_BASE = 2.0
BACKOFF_MAX = 300.0
_SOURCE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_IN_CHUNK = 500  # values in one IN (…) list: well below every database's limit on bound parameters
_NODES = cast(Table, BackupNode.__table__)  # Core executemany: no ORM unit-of-work per row
_VERSIONS = cast(Table, BackupVersion.__table__)


# ------------------------------------------------------------------------------------------------ sources
def check_source_id(source_id: str) -> str:
    if not isinstance(source_id, str) or not _SOURCE_ID.fullmatch(source_id):
        raise BadRequest("a source id is 1..64 lowercase letters, digits, '.', '_' or '-'", details=[
            FieldError("sourceId", "backup.sourceId", "[a-z0-9][a-z0-9._-]{0,63}")])
    return source_id


def add_source(session: Session, *, source_id: str, url: str, origin: str, verifier_key: str,
               client_id: str | None, client_secret: str | None, secret_key: str, now: str | None = None
               ) -> BackupSource:
    """Start following a repository: ``verifier_key`` is pinned (given, or trusted on first use by the caller).
    ``Conflict`` when the id is taken or another source already follows that log."""
    check_source_id(source_id)
    if session.get(BackupSource, source_id) is not None:
        raise Conflict(f"backup source {source_id} exists already")
    if session.scalar(select(BackupSource.source_id).where(BackupSource.origin == origin)) is not None:
        raise Conflict(f"the log {origin} is followed already (one source per repository log)")
    row = BackupSource(source_id=source_id, url=url, origin=origin, verifier_key=verifier_key, trusted_keys="{}",
                       client_id=client_id,
                       client_secret=encrypt(secret_key, client_secret.encode()) if client_secret else None,
                       next_position=0, tree_size=0, log_size=0, status=FOLLOWING, created_at=now or timestamp(),
                       failures=0)
    session.add(row)
    session.flush()
    return row


def get_source(session: Session, *, source_id: str) -> BackupSource:
    row = session.get(BackupSource, source_id)
    if row is None:
        raise NotFound(f"this backup follows no source {source_id}")
    return row


def sources(session: Session) -> list[BackupSource]:
    return list(session.scalars(select(BackupSource).order_by(BackupSource.source_id)))


def client_secret(source: BackupSource, *, secret_key: str) -> str | None:
    return open_secret(source.client_secret, secret_key=secret_key)


def open_secret(sealed: str | None, *, secret_key: str) -> str | None:
    """A stored client secret in clear (``InvalidToken`` when it was sealed under another key)."""
    return decrypt(secret_key, sealed).decode() if sealed else None


def trusted_keys(source: BackupSource) -> dict[str, dict[str, Any]]:
    """kid -> {x, createdAt, retiredAt} of the version keys trusted for ``source``."""
    data = orjson.loads(source.trusted_keys)
    return data if isinstance(data, dict) else {}


def raw_keys(source: BackupSource) -> dict[str, bytes]:
    """kid -> raw Ed25519 public key, as ``verify_version`` takes them."""
    return raw_keys_of(trusted_keys(source))


def raw_keys_of(trusted: dict[str, dict[str, Any]]) -> dict[str, bytes]:
    """``raw_keys`` of a trusted-keys mapping (kid -> {x, createdAt, retiredAt})."""
    return {kid: unb64url(k["x"], "x") for kid, k in trusted.items()}


def key_periods(source: BackupSource) -> tuple[KeyPeriod, ...]:
    keys = trusted_keys(source)
    return tuple(KeyPeriod(kid, unb64url(k["x"], "x"), k["createdAt"], k.get("retiredAt"))
                 for kid, k in sorted(keys.items(), key=lambda item: item[1]["createdAt"]))


def schedule_failure(session: Session, *, source_id: str, error: str, now: datetime | None = None) -> BackupSource:
    """A round that could not finish (network, HTTP, a busy database): back off exponentially; nothing it did not
    commit is kept, and the cursor stays where the last committed page left it."""
    row = get_source(session, source_id=source_id)
    at = now or datetime.now(UTC)
    row.failures += 1
    row.status = FAILING if row.status != HALTED else HALTED
    row.last_error = error[:2000]
    row.last_attempt_at = timestamp(at)
    delay = min(BACKOFF_BASE * 2 ** min(row.failures - 1, 16), BACKOFF_MAX)
    row.next_attempt_at = timestamp(at + timedelta(seconds=delay))
    return row


def halt(session: Session, *, source_id: str, kind: str, message: str, evidence: dict[str, Any]) -> int:
    """The witness caught the log lying (rollback, fork, rewritten history, leaves that are not the signed tree,
    a bad signature, another origin): keep the evidence and stop taking anything from it until an operator
    looks (``dbp backup resume``). Copies already held stay served."""
    row = get_source(session, source_id=source_id)
    alert_id = alert(session, source_id=source_id, kind=kind, message=message, evidence=evidence)
    row.status, row.halted_reason, row.last_error = HALTED, message[:2000], message[:2000]
    return alert_id


def alert(session: Session, *, source_id: str, kind: str, message: str, evidence: dict[str, Any]) -> int:
    """Record what an operator of the backup must look at (``GET /api/v1/backup/alerts``)."""
    row = BackupAlert(source_id=source_id, kind=kind[:32], message=message[:4000],
                      evidence=orjson.dumps(evidence).decode(), at=timestamp())
    session.add(row)
    session.flush()
    return int(row.id)


def newest_signed(session: Session, *, source_id: str, kid: str) -> str | None:
    """createdAt of the newest version held that ``kid`` signed (a key cannot have retired before it)."""
    return session.scalar(select(func.max(BackupVersion.created_at)).where(
        BackupVersion.source_id == source_id, BackupVersion.kid == kid))


def known_positions(session: Session, *, source_id: str, positions: Sequence[int]) -> set[int]:
    """Those of ``positions`` held as a copy or recorded as an open rejection (the rejection retries them)."""
    if not positions:
        return set()
    lo, hi = min(positions), max(positions)
    held = set(session.scalars(select(BackupVersion.position).where(
        BackupVersion.source_id == source_id, BackupVersion.position.between(lo, hi))))
    held.update(session.scalars(select(BackupRejection.position).where(
        BackupRejection.source_id == source_id, BackupRejection.position.between(lo, hi),
        BackupRejection.resolved_at.is_(None))))
    return {int(p) for p in held}


def held_elsewhere(session: Session, *, source_id: str, dpp_ids: Iterable[str]) -> dict[str, str]:
    """dppId -> the other source holding it, for those of ``dpp_ids`` that another source holds."""
    ids = sorted(set(dpp_ids))
    out: dict[str, str] = {}
    for i in range(0, len(ids), _IN_CHUNK):
        out.update((str(d), str(s)) for d, s in session.execute(
            select(BackupVersion.dpp_id, BackupVersion.source_id).distinct().where(
                BackupVersion.dpp_id.in_(ids[i:i + _IN_CHUNK]), BackupVersion.source_id != source_id)))
    return out


def resume(session: Session, *, source_id: str) -> None:
    row = get_source(session, source_id=source_id)
    row.status, row.halted_reason, row.failures, row.next_attempt_at = FOLLOWING, None, 0, None


# ------------------------------------------------------------------------------------------------ the tree
def subtree_reader(session: Session, source_id: str) -> merkle.SubtreeHash:
    """``subtree_hash(start, end)`` over the backup's stored nodes of ``source_id``."""
    def subtree_hash(start: int, end: int) -> bytes:
        node = merkle.node_for_range(start, end)
        digest = session.scalar(select(BackupNode.hash).where(
            BackupNode.source_id == source_id, BackupNode.level == node.level, BackupNode.idx == node.index))
        if digest is None:
            raise LookupError(f"backup tree of {source_id}: no node for leaves [{start}, {end})")
        return bytes(digest)
    return subtree_hash


def frontier(session: Session, *, source: BackupSource) -> merkle.Frontier:
    return merkle.Frontier.load(source.tree_size, subtree_reader(session, source.source_id))


def latest_checkpoint(session: Session, *, source_id: str) -> BackupCheckpoint | None:
    return session.scalar(select(BackupCheckpoint).where(BackupCheckpoint.source_id == source_id)
                          .order_by(BackupCheckpoint.tree_size.desc()).limit(1))


def checkpoint_at(session: Session, *, source_id: str, size: int) -> BackupCheckpoint | None:
    return session.get(BackupCheckpoint, (source_id, size))


def store_tree(session: Session, *, source: BackupSource, subtrees: Sequence[merkle.Subtree], size: int,
               root: bytes, note: str, signed: bool = True) -> None:
    """The nodes the new leaves completed and the checkpoint they were checked against, in the caller's
    transaction (with the source's new tree size: all or nothing)."""
    if subtrees:
        session.execute(insert(_NODES), [
            {"source_id": source.source_id, "level": s.level, "idx": s.index, "hash": s.digest} for s in subtrees])
    if signed and session.get(BackupCheckpoint, (source.source_id, size)) is None:
        session.add(BackupCheckpoint(source_id=source.source_id, tree_size=size, root_hash=root, note=note,
                                     verified_at=timestamp()))
    source.tree_size = size


def leaf_hashes(session: Session, *, source_id: str, positions: Iterable[int]) -> dict[int, bytes]:
    wanted = sorted(set(positions))
    if not wanted:
        return {}
    rows = session.execute(select(BackupNode.idx, BackupNode.hash).where(
        BackupNode.source_id == source_id, BackupNode.level == 0, BackupNode.idx >= wanted[0],
        BackupNode.idx <= wanted[-1]))
    keep = set(wanted)
    return {int(i): bytes(h) for i, h in rows if int(i) in keep}


# ------------------------------------------------------------------------------------------------ copies
def store_copy(session: Session, *, source_id: str, entry: dict[str, Any], body: bytes) -> bool | None:
    """Keep a verified version (``store_copies`` of one: True new, False held, None held with another body)."""
    return store_copies(session, source_id=source_id, copies=[(entry, body)])[0]


def store_copies(session: Session, *, source_id: str, copies: Sequence[tuple[dict[str, Any], bytes]]
                 ) -> list[bool | None]:
    """Keep verified versions ``(entry, body)`` — a feed page's — with one look-up of what is held and one insert
    (idempotent: a version held already, or met earlier in ``copies``, is not written again). Per copy: True if
    it is new, False if that version is held with the same content hash, None if it is held with ANOTHER one
    (the log signed two bodies for one version: the caller reports it)."""
    if not copies:
        return []
    ids = sorted({entry["dppId"] for entry, _ in copies})
    held: dict[tuple[str, int], str] = {}
    for i in range(0, len(ids), _IN_CHUNK):
        held.update(((str(d), int(v)), str(h)) for d, v, h in session.execute(
            select(BackupVersion.dpp_id, BackupVersion.version, BackupVersion.sha256).where(
                BackupVersion.source_id == source_id, BackupVersion.dpp_id.in_(ids[i:i + _IN_CHUNK]))))
    rows: list[dict[str, Any]] = []
    outcome: list[bool | None] = []
    for entry, body in copies:
        key = (entry["dppId"], entry["version"])
        if key in held:
            outcome.append(False if held[key] == entry["sha256"] else None)
            continue
        held[key] = entry["sha256"]
        outcome.append(True)
        rows.append({
            "source_id": source_id, "dpp_id": entry["dppId"], "version": entry["version"],
            "position": entry["position"], "created_at": entry["createdAt"], "change": entry["change"],
            "operator_id": entry["operatorId"], "dpp_status": entry["dppStatus"], "sha256": entry["sha256"],
            "public_sha256": entry["publicSha256"], "kid": entry["kid"], "signature": entry["signature"],
            "canonical": body, "verified_at": timestamp()})
    if rows:
        session.execute(insert(_VERSIONS), rows)
    return outcome


def operator_of(body: bytes, fallback: object = None) -> str | None:
    """The ``economicOperatorId`` a signed body names (the operator the access rules use), else ``fallback``."""
    try:
        named = orjson.loads(body).get("economicOperatorId")
    except (orjson.JSONDecodeError, AttributeError):
        named = None
    if isinstance(named, str) and 0 < len(named) <= 512:
        return named
    return fallback[:512] if isinstance(fallback, str) else None


def settle_operators(session: Session, *, source_id: str, dpp_ids: Iterable[str]) -> None:
    """Every held version of these passports takes the operator of the newest one held (its own signed body's):
    the repository decides every version's view by the passport's responsible operator now, and so does the
    backup (after a waste transfer, say, version 1 belongs to the new operator too)."""
    ids = sorted(set(dpp_ids))
    newer = _VERSIONS.alias("newer")
    by_operator: dict[str | None, list[str]] = {}
    for i in range(0, len(ids), _IN_CHUNK):
        rows = session.execute(select(BackupVersion.dpp_id, BackupVersion.operator_id).where(
            BackupVersion.source_id == source_id, BackupVersion.dpp_id.in_(ids[i:i + _IN_CHUNK]),
            ~select(newer.c.version).where(newer.c.source_id == source_id, newer.c.dpp_id == BackupVersion.dpp_id,
                                           newer.c.version > BackupVersion.version).exists()))
        for dpp_id, operator in rows:
            by_operator.setdefault(operator, []).append(str(dpp_id))
    for operator, group in by_operator.items():
        for i in range(0, len(group), _IN_CHUNK):
            session.execute(update(BackupVersion).where(
                BackupVersion.source_id == source_id, BackupVersion.dpp_id.in_(group[i:i + _IN_CHUNK]),
                BackupVersion.operator_id.is_distinct_from(operator)).values(operator_id=operator)
                .execution_options(synchronize_session=False))


def reject(session: Session, *, source_id: str, entry: object, position: int, step: str, reason: str
           ) -> str | None:
    """Record (or count again) a refused entry at ``position``; the step it was refused at before, if open
    (None: not refused, or resolved, before)."""
    at = timestamp()
    row = session.scalar(select(BackupRejection).where(BackupRejection.source_id == source_id,
                                                       BackupRejection.position == position))
    dpp_id = entry.get("dppId") if isinstance(entry, dict) else None
    version = entry.get("version") if isinstance(entry, dict) else None
    if row is None:
        session.add(BackupRejection(
            source_id=source_id, position=position, dpp_id=dpp_id[:256] if isinstance(dpp_id, str) else None,
            version=version if type(version) is int and 0 < version < 2**31 else None, step=step[:32],
            reason=reason[:4000], attempts=1, first_at=at, last_at=at))
        return None
    before = row.step if row.resolved_at is None else None
    row.step, row.reason, row.last_at, row.resolved_at = step[:32], reason[:4000], at, None
    row.attempts += 1
    return before


def resolve_rejections(session: Session, *, source_id: str, positions: Sequence[int]) -> None:
    """Mark the open rejections at ``positions`` resolved (their entries verified since)."""
    wanted = sorted(set(positions))
    at = timestamp()
    for i in range(0, len(wanted), _IN_CHUNK):
        session.execute(update(BackupRejection).where(
            BackupRejection.source_id == source_id, BackupRejection.position.in_(wanted[i:i + _IN_CHUNK]),
            BackupRejection.resolved_at.is_(None)).values(resolved_at=at))


def open_rejections(session: Session, *, source_id: str, limit: int = 100) -> list[BackupRejection]:
    """Open rejections, the least recently tried first (so that permanent ones do not starve the others)."""
    return list(session.scalars(select(BackupRejection).where(
        BackupRejection.source_id == source_id, BackupRejection.resolved_at.is_(None))
        .order_by(BackupRejection.last_at, BackupRejection.position).limit(limit)))


def current_copy(session: Session, *, dpp_id: str, version: int | None = None) -> BackupVersion:
    """The newest version held of ``dpp_id`` (or ``version``) from the source that held the passport first (one
    passport, one source: the follower refuses a passport another source holds; a second holder can only come
    from a database written by other means, and never wins). ``NotFound``."""
    first = session.scalar(select(BackupVersion.source_id).where(BackupVersion.dpp_id == dpp_id)
                           .order_by(BackupVersion.verified_at, BackupVersion.version).limit(1))
    stmt = select(BackupVersion).where(BackupVersion.dpp_id == dpp_id, BackupVersion.source_id == first)
    if version is not None:
        stmt = stmt.where(BackupVersion.version == version)
    row = session.scalar(stmt.order_by(BackupVersion.version.desc(), BackupVersion.verified_at.desc()).limit(1))
    if row is None:
        what = f"version {version} of passport {dpp_id}" if version is not None else f"passport {dpp_id}"
        raise NotFound(f"this backup holds no verified copy of {what}")
    return row


def bundle(session: Session, *, copy: BackupVersion, view: str, document: bytes, issued_at: str) -> Bundle:
    """The evidence bundle of a held version, from the backup's own tree and the latest checkpoint it verified:
    the same bundle the repository served, checkable against the original operator's keys."""
    source = get_source(session, source_id=copy.source_id)
    latest = latest_checkpoint(session, source_id=copy.source_id)
    if latest is None or copy.position >= latest.tree_size:
        raise NotFound(f"version {copy.version} of {copy.dpp_id} is not covered by a checkpoint held")
    proof = merkle.inclusion_proof(copy.position, latest.tree_size, subtree_reader(session, copy.source_id))
    from dbp.integrity.log import Leaf  # the leaf is rebuilt: it is what the stored node hashes

    leaf = Leaf(copy.dpp_id, copy.version, copy.sha256, copy.created_at, kid=copy.kid,
                public_sha256=copy.public_sha256)
    return Bundle(dpp_id=copy.dpp_id, version=copy.version, view=view, document=document,
                  signature=copy.signature if view == "full" else None, leaf_index=copy.position,
                  leaf=leaf.as_json(), tree_size=latest.tree_size, inclusion_proof=tuple(proof),
                  checkpoint=latest.note, origin=source.origin, keys=key_periods(source), issued_at=issued_at)


# ------------------------------------------------------------------------------------------------ status
@dataclass(frozen=True)
class SourceStatus:
    source: BackupSource
    versions: int
    passports: int
    open_rejections: int
    alerts: int

    def as_json(self) -> dict[str, Any]:
        s = self.source
        return {"sourceId": s.source_id, "url": s.url, "origin": s.origin, "status": s.status,
                "haltedReason": s.halted_reason, "cursor": f"f1.{s.next_position}", "treeSize": s.tree_size,
                "logSize": s.log_size, "lagLeaves": max(s.log_size - s.next_position, 0),
                "versions": self.versions, "passports": self.passports, "openRejections": self.open_rejections,
                "alerts": self.alerts, "lastSuccessAt": s.last_success_at, "lastAttemptAt": s.last_attempt_at,
                "lastError": s.last_error, "failures": s.failures, "nextAttemptAt": s.next_attempt_at,
                "verifierKey": s.verifier_key}


def status(session: Session) -> list[SourceStatus]:
    """Per source: where it is, how far behind (``lagLeaves``: log leaves not yet read), what it holds."""
    def per_source(stmt: Any) -> dict[str, int]:
        return {str(source_id): int(n) for source_id, n in session.execute(stmt).all()}

    counts = per_source(select(BackupVersion.source_id, func.count()).group_by(BackupVersion.source_id))
    passports = per_source(select(BackupVersion.source_id, func.count(func.distinct(BackupVersion.dpp_id)))
                           .group_by(BackupVersion.source_id))
    rejections = per_source(select(BackupRejection.source_id, func.count())
                            .where(BackupRejection.resolved_at.is_(None)).group_by(BackupRejection.source_id))
    alerts = per_source(select(BackupAlert.source_id, func.count()).group_by(BackupAlert.source_id))
    return [SourceStatus(s, counts.get(s.source_id, 0), passports.get(s.source_id, 0),
                         rejections.get(s.source_id, 0), alerts.get(s.source_id, 0)) for s in sources(session)]


def rejections_json(session: Session, *, source_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    stmt = select(BackupRejection).order_by(BackupRejection.id.desc()).limit(limit)
    if source_id is not None:
        stmt = stmt.where(BackupRejection.source_id == source_id)
    return [{"sourceId": r.source_id, "position": r.position, "dppId": r.dpp_id, "version": r.version,
             "step": r.step, "reason": r.reason, "attempts": r.attempts, "firstAt": r.first_at, "lastAt": r.last_at,
             "resolvedAt": r.resolved_at} for r in session.scalars(stmt)]


def alerts_json(session: Session, *, source_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    stmt = select(BackupAlert).order_by(BackupAlert.id.desc()).limit(limit)
    if source_id is not None:
        stmt = stmt.where(BackupAlert.source_id == source_id)
    return [{"id": a.id, "sourceId": a.source_id, "kind": a.kind, "message": a.message,
             "evidence": orjson.loads(a.evidence), "at": a.at} for a in session.scalars(stmt)]


def forget(session: Session, *, source_id: str) -> None:
    """Drop a source and everything held of it (``dbp backup remove``; the copies go too)."""
    get_source(session, source_id=source_id)
    for table in (BackupAlert, BackupRejection, BackupVersion, BackupCheckpoint, BackupNode):
        session.execute(delete(table).where(table.source_id == source_id))  # type: ignore[attr-defined]
    session.execute(delete(BackupSource).where(BackupSource.source_id == source_id))

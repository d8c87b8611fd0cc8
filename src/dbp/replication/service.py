"""The repository's change feed: an ordered, resumable list of every passport version written, each entry carrying
what a consumer needs to verify it without trusting the transport (the version's detached JWS and its position
in the transparency log). Keyword-only functions over a SQLAlchemy ``Session``; nothing here writes passports.

**Source and order.** The feed is derived from the transparency log (``log_leaves``), not written separately:
every passport version is a leaf, appended in the transaction that writes the version (``passports.service.
insert_new`` / ``append_version``; bulk import appends its leaves itself). Status and custody changes are
versions too — activation and updates (``update``, ``updateElement``), waste with the transfer of responsibility
(``waste``), archiving on recycling (the archive reason), successor creation (``create:<operation>`` on the new
passport, ``succeededBy:<operation>`` on each predecessor), responsibility transfer — so they are in the log
already and appear here with their change label. ``accessLogDigest`` leaves are skipped (the cursor moves past
them). A feed entry's ``position`` is its leaf index.

**Ordering guarantee.** Leaf indexes are assigned under the log lock (``integrity.log.append``: the
``log_state`` row, SELECT … FOR UPDATE on PostgreSQL; BEGIN IMMEDIATE serialises every writer on SQLite), which is
held until the writing transaction commits or rolls back. So a leaf with index n commits only after every leaf
below n has committed, and an index whose transaction rolled back is handed to the next writer: the committed
leaves are always exactly [0, size). A reader that sees leaf n therefore sees every leaf below it; a page never
skips a lower position that commits later, and positions are never reused or reordered.

**Cursor.** ``f1.<n>``: the next position to read (opaque to clients; ``f1`` is the format). The first page starts
at ``f1.0`` (no cursor). ``nextCursor`` is one past the last entry returned — or, when the page is not full, one
past the last committed leaf seen, so a follower does not rescan leaves it skipped (digests, other operators).
It survives restarts (it names a log position, which never changes).

**Access** (``feed_scope``): the anonymous public → ``Unauthorized``; device keys → ``Forbidden``; authorities
(notified bodies, market surveillance, the Commission) read the metadata of every entry, never bodies here
(they do not read point 4 of every passport; they read bodies through the passport API); otherwise the caller
reads the entries of passports whose CURRENT responsible operator (``passports.operator_id``) is its own
operator, an operator that authorised its organisation in writing, or an operator that appointed its organisation
backup provider (``backup_appointments``) — and, for exactly those, the canonical bodies (each of these reads
everything of such a passport). A caller that is neither an economic operator nor a service provider, and is
not authorised, not appointed and the responsible operator of no passport here, is refused (a recycler, a
repairer, a purchaser, a backup provider nobody appointed). Entries
of a passport whose responsibility moved (waste) follow the passport to its new operator, history included.

**Registration changes are not in this feed.** The repository's ``registry_receipts`` hold only the latest state
of each registration attempt (updated in place, no history, no order); the registry node's
``registration_events`` are the ordered, versioned record with signed proofs, and a backup reads registrations
from the registry. See the report of issue 6's first piece.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session

from dbp.access import service as access
from dbp.access.models import Organisation
from dbp.access.policy import Policy, decide_read
from dbp.access.principal import Principal, Role
from dbp.clock import timestamp
from dbp.errors import BadRequest, Conflict, FieldError, Forbidden, NotFound, Unauthorized
from dbp.integrity import log as integrity_log
from dbp.integrity.models import LogLeaf
from dbp.passports.models import Passport, PassportVersion
from dbp.replication.models import BackupAppointment

CURSOR_PREFIX = "f1."
START = f"{CURSOR_PREFIX}0"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR_LENGTH = 32
#: Roles that may follow the feed of their (possibly empty) scope; others need a passport, authorisation or appointment.
FEED_ROLES = frozenset({Role.economic_operator, Role.service_provider})
_CURSOR = re.compile(r"f1\.(0|[1-9][0-9]{0,18})")
_OPERATOR = re.compile(r"[\x21-\x7e]{1,512}")


def encode_cursor(position: int) -> str:
    """The cursor of the next position to read."""
    return f"{CURSOR_PREFIX}{position}"


def decode_cursor(cursor: str | None) -> int:
    """The next position a cursor names; ``BadRequest`` (with the rule) for anything but a cursor this feed made."""
    if cursor is None or cursor == "":
        return 0
    if len(cursor) > MAX_CURSOR_LENGTH or not _CURSOR.fullmatch(cursor):
        raise BadRequest("cursor is not a feed cursor; use nextCursor of a previous page (or none to start)",
                         details=[FieldError("cursor", "feed.cursor", "expected f1.<position> as the feed returned")])
    position = int(cursor[len(CURSOR_PREFIX):])
    if position > integrity_log.MAX_INDEX:
        raise BadRequest("cursor position out of range", details=[
            FieldError("cursor", "feed.cursor", f"position at most {integrity_log.MAX_INDEX}")])
    return position


def check_limit(limit: int) -> int:
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be 1..{MAX_LIMIT}", details=[
            FieldError("limit", "feed.limit", f"an integer in 1..{MAX_LIMIT}")])
    return limit


def check_operator(operator_id: str | None) -> str | None:
    if operator_id is None:
        return None
    if not _OPERATOR.fullmatch(operator_id):
        raise BadRequest("operatorId must be an operator identifier (1..512 visible ASCII characters)", details=[
            FieldError("operatorId", "feed.operatorId", "1..512 visible ASCII characters")])
    return operator_id


# ------------------------------------------------------------------------------------------------ access
@dataclass(frozen=True)
class Scope:
    """What a caller may follow: ``operators`` (None: every operator) and whether bodies may be included, with a
    reason a person understands (it goes into the access log)."""

    operators: frozenset[str] | None
    bodies: bool
    reason: str
    appointed_by: frozenset[str] = frozenset()  # operators that appointed the caller's organisation backup provider
    local: bool = False  # the repository's own command line (``dbp feed``): whoever reads the database reads all

    def narrowed(self, operator_id: str | None) -> Scope:
        """The scope of ``?operatorId=``; ``Forbidden`` when the caller may not follow that operator."""
        if operator_id is None:
            return self
        if self.operators is not None and operator_id not in self.operators:
            raise Forbidden(f"you may not follow the feed of operator {operator_id}: it is not your operator, did "
                            "not authorise your organisation in writing and did not appoint it backup provider")
        return Scope(frozenset({operator_id}), self.bodies, self.reason, self.appointed_by, self.local)


#: ``dbp feed``: the whole feed with bodies, for whoever holds the database (like ``dbp export``).
LOCAL = Scope(None, True, "local command line", local=True)


def appointing_operator_ids(session: Session, *, provider_org_id: str) -> frozenset[str]:
    """Operator identifiers of the organisations that appointed ``provider_org_id`` (not revoked)."""
    rows = session.scalars(
        select(Organisation.operator_id).join(BackupAppointment, BackupAppointment.operator_org_id == Organisation.id)
        .where(BackupAppointment.provider_org_id == provider_org_id, BackupAppointment.revoked_at.is_(None)))
    return frozenset(rows)


def feed_scope(session: Session, *, principal: Principal, policy: Policy) -> Scope:
    """The caller's scope (module docstring, **Access**). ``Unauthorized`` / ``Forbidden`` with the reason."""
    if principal.is_anonymous:
        raise Unauthorized("the change feed needs credentials (POST /api/v1/auth/token)")
    if principal.role is Role.device:
        raise Forbidden("device keys write dynamic data; they do not follow the change feed")
    if principal.is_authority:
        return Scope(None, False, f"{principal.role.value if principal.role else '?'}: metadata of every passport")
    own = frozenset({principal.operator_id}) if principal.operator_id else frozenset()
    authorised = access.authorised_operator_ids(session, agent_org_id=principal.org_id) if principal.org_id else \
        frozenset()
    appointed = appointing_operator_ids(session, provider_org_id=principal.org_id) if principal.org_id else \
        frozenset()
    if principal.role not in FEED_ROLES and not authorised and not appointed and not (own and session.scalar(
            select(exists().where(Passport.operator_id.in_(own))))):
        role = principal.role.value if principal.role else "this caller"
        raise Forbidden(f"a {role} follows the change feed only of passports it is the responsible operator of, "
                        "or as the backup provider an operator appointed; it is neither here")
    parts = ["responsible operator"] if own else []
    if authorised:
        parts.append("authorised in writing by " + ", ".join(sorted(authorised)))
    if appointed:
        parts.append("backup provider appointed by " + ", ".join(sorted(appointed)))
    # every one of these reads everything of such a passport (decide_read: responsible operator / authorised in
    # writing; the appointment is the feed's own rule); checked again per passport in body_allowed
    return Scope(own | authorised | appointed, True, "; ".join(parts), appointed)


def body_allowed(principal: Principal, scope: Scope, *, operator_id: str, authorised: frozenset[str],
                 policy: Policy | None) -> bool:
    """May the body of a passport of ``operator_id`` be included? The read decision of the passport API
    (``decide_read``: everything), or the operator appointed the caller backup provider."""
    if not scope.bodies:
        return False
    if scope.local or operator_id in scope.appointed_by:
        return True
    if policy is None:
        return False
    return decide_read(principal=principal, passport_operator_id=operator_id, authorised_for=authorised,
                       grant_groups=frozenset(), policy=policy).everything


# ------------------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class Page:
    entries: list[dict[str, Any]]
    next_position: int
    full: bool
    log_size: int
    tree_size: int

    @property
    def next_cursor(self) -> str:
        return encode_cursor(self.next_position)

    def as_json(self) -> dict[str, Any]:
        return {"entries": self.entries, "nextCursor": self.next_cursor, "hasMore": self.full,
                "logSize": self.log_size, "treeSize": self.tree_size, "checkpoint": "/api/v1/log/checkpoint"}


def _query(*, start: int, limit: int, operators: frozenset[str] | None) -> Any:
    cols = [LogLeaf.leaf_index, LogLeaf.dpp_id, LogLeaf.version, LogLeaf.sha256, LogLeaf.at, LogLeaf.kid,
            LogLeaf.public_sha256, LogLeaf.leaf_hash, PassportVersion.change, PassportVersion.signature,
            PassportVersion.sha256, PassportVersion.canonical, Passport.operator_id]
    stmt = (select(*cols)
            .outerjoin(PassportVersion, and_(PassportVersion.dpp_id == LogLeaf.dpp_id,
                                             PassportVersion.version == LogLeaf.version))
            .outerjoin(Passport, Passport.dpp_id == LogLeaf.dpp_id)
            .where(LogLeaf.leaf_index >= start, LogLeaf.kind == integrity_log.KIND_VERSION))
    if operators is not None:
        stmt = stmt.where(Passport.operator_id.in_(sorted(operators)))
    return stmt.order_by(LogLeaf.leaf_index).limit(limit)


def _entry(row: Any, *, with_body: bool) -> dict[str, Any]:
    (index, dpp_id, version, sha, at, kid, public_sha, leaf_hash, change, signature, stored_sha, canonical,
     operator_id) = row
    status = None
    if canonical is not None:
        try:
            status = orjson.loads(canonical).get("dppStatus")
        except orjson.JSONDecodeError:
            status = None
    entry: dict[str, Any] = {
        "position": index, "kind": "version", "dppId": dpp_id, "version": version, "createdAt": at,
        "change": change, "operatorId": operator_id, "dppStatus": status, "sha256": sha,
        "signature": signature, "kid": kid, "publicSha256": public_sha,
        "leafHash": base64.b64encode(bytes(leaf_hash)).decode("ascii"),
    }
    if canonical is None or stored_sha != sha:
        # the log commits to a version this database no longer holds as logged: say so, serve no body
        entry["stored"] = False
    elif with_body:
        entry["body"] = canonical
    return entry


def read_page(session: Session, *, principal: Principal, scope: Scope, start: int, limit: int,
              include_body: bool, policy: Policy | None) -> Page:
    """Entries from position ``start`` on (at most ``limit``) within ``scope``; ``Forbidden`` for ``include_body``
    when the scope does not allow bodies. With a body, ``body`` is the canonical text exactly as stored and
    signed (verify ``signature`` over its UTF-8 bytes). An entry whose stored version is missing or no longer
    hashes as logged carries ``"stored": false`` and no body."""
    if include_body and not scope.bodies:
        raise Forbidden("include=body is for callers that read everything of these passports (the responsible "
                        "operator, organisations it authorised in writing, its appointed backup provider); "
                        "authorities read bodies through the passport API")
    size = integrity_log.size(session)  # read first: every leaf below it is visible to the query below
    if start > size:
        raise Conflict(f"cursor {encode_cursor(start)} is beyond this log ({size} leaves): it is not a cursor of "
                       "this repository's feed (a log never shrinks)", details=[
                           FieldError("cursor", "feed.cursorBeyondLog", f"at most {encode_cursor(size)}")])
    latest = integrity_log.latest_checkpoint(session)
    rows = session.execute(_query(start=start, limit=limit, operators=scope.operators)).all()
    authorised = access.authorised_operator_ids(session, agent_org_id=principal.org_id) \
        if include_body and principal.org_id else frozenset()
    entries = []
    for row in rows:
        with_body = include_body and row[12] is not None and body_allowed(
            principal, scope, operator_id=row[12], authorised=authorised, policy=policy)
        if include_body and not with_body and row[12] is not None:
            raise Forbidden(f"you may not read the body of passport {row[1]}")  # never reached within the scope
        entries.append(_entry(row, with_body=with_body))
    full = len(rows) == limit
    # a full page ends at its last entry; a short one saw every committed leaf up to the query's snapshot
    nxt = rows[-1][0] + 1 if full else max(start, size, rows[-1][0] + 1 if rows else 0)
    return Page(entries, nxt, full, max(size, nxt), latest.size if latest else 0)


def committed_size(session: Session) -> int:
    return integrity_log.size(session)


def audit_detail(page: Page, *, start: int, include_body: bool, operator_id: str | None) -> list[str]:
    """The access-log detail of a page: a summary (cursor range, count, filter) and, when bodies were served,
    every ``dppId@version`` whose body was returned. Metadata-only pages list no passports (their ids, versions
    and hashes are public in the transparency log anyway)."""
    detail = [f"feed {encode_cursor(start)}..{page.next_cursor}", f"entries={len(page.entries)}",
              f"include={'body' if include_body else 'metadata'}"]
    if operator_id is not None:
        detail.append(f"operatorId={operator_id}")
    if include_body:
        detail.extend(f"{e['dppId']}@{e['version']}" for e in page.entries if "body" in e)
    return detail


# ------------------------------------------------------------------------------------------------ appointments
def appoint(session: Session, *, operator_org_id: str, provider_org_id: str, reference: str,
            now: str | None = None) -> BackupAppointment:
    """The operator organisation appoints the provider organisation (role backupProvider) its backup provider.
    ``NotFound`` for an unknown provider, ``Conflict`` for one of another role or for oneself; appointing again
    re-activates a revoked appointment with the new reference."""
    provider = session.get(Organisation, provider_org_id)
    if provider is None:
        raise NotFound(f"no organisation {provider_org_id}")
    if provider.role != Role.backup_provider.value:
        raise Conflict(f"organisation {provider_org_id} is a {provider.role}, not a {Role.backup_provider.value}")
    if provider_org_id == operator_org_id:
        raise Conflict("an operator cannot be its own backup provider (the copy must be independent, HARD-2)")
    if not reference or len(reference) > 512:
        raise BadRequest("reference must name the backup agreement (1..512 characters)", details=[
            FieldError("$.reference", "backup.reference", "1..512 characters")])
    at = now or timestamp()
    row = session.get(BackupAppointment, (operator_org_id, provider_org_id))
    if row is None:
        row = BackupAppointment(operator_org_id=operator_org_id, provider_org_id=provider_org_id,
                                reference=reference, created_at=at)
        session.add(row)
    else:
        row.reference, row.created_at, row.revoked_at = reference, at, None
    session.flush()
    return row


def revoke(session: Session, *, operator_org_id: str, provider_org_id: str, now: str | None = None) -> None:
    """End an appointment (kept, with ``revoked_at``); ``NotFound`` when there is no live one."""
    result = session.execute(
        update(BackupAppointment)
        .where(BackupAppointment.operator_org_id == operator_org_id,
               BackupAppointment.provider_org_id == provider_org_id, BackupAppointment.revoked_at.is_(None))
        .values(revoked_at=now or timestamp()).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound(f"organisation {provider_org_id} is not a live backup provider of this operator")


def appointments(session: Session, *, operator_org_id: str) -> Iterable[BackupAppointment]:
    return session.scalars(select(BackupAppointment).where(BackupAppointment.operator_org_id == operator_org_id)
                           .order_by(BackupAppointment.provider_org_id)).all()


def appointment_json(row: BackupAppointment) -> dict[str, Any]:
    return {"providerOrgId": row.provider_org_id, "reference": row.reference, "createdAt": row.created_at,
            "revokedAt": row.revoked_at}

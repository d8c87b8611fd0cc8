"""The access log: append records, query them within the viewer's visibility, export CSV, flag unusual patterns.

Records are only appended (``record``, ``record_many``); nothing here updates or deletes one. Writes
of passport data log in the transaction of the change (``record``): the record commits or rolls back
with it. Reads go through ``dbp.audit.durable.ReadLogWriter``, which batches ``record_many``.

Visibility (``query``, ``summary``): authorities see every record; an economic operator or a service
provider sees the accesses to passports it is the responsible operator of and the accesses made by its
own organisation; anyone else sees its own organisation's accesses; the anonymous public sees nothing
(``Unauthorized``).
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any, NamedTuple, cast, overload

import orjson
from sqlalchemy import ColumnElement, Table, and_, false, func, insert, or_, select, true
from sqlalchemy.orm import Session

from dbp import clock
from dbp.access.principal import Principal, Role
from dbp.audit.models import AccessLog
from dbp.clock import timestamp
from dbp.csvcells import formula_safe
from dbp.errors import BadRequest, FieldError, Unauthorized


class Action(StrEnum):
    """What was done to passport data. Stored as its value; other short names are accepted too."""

    read = "read"
    read_element = "readElement"
    read_version = "readVersion"
    read_at = "readAt"
    read_evidence = "readEvidence"
    search = "search"
    export = "export"
    create = "create"
    update = "update"
    update_element = "updateElement"
    delete = "delete"
    waste = "waste"
    recycle = "recycle"
    successor = "successor"
    grant = "grant"
    revoke_grant = "revokeGrant"
    transfer_responsibility = "transferResponsibility"
    attach_attestation = "attachAttestation"
    token = "token"


class Outcome(StrEnum):
    granted = "granted"
    denied = "denied"


# Actions that read passport data: the "distinct passports read" of the summary counts these.
READ_ACTIONS = frozenset({Action.read, Action.read_element, Action.read_version, Action.read_at, Action.search,
                          Action.export, Action.read_evidence})

# Summary thresholds: a principal is flagged when it read more than READ_FACTOR × the median number of
# distinct passports of the principals with its role and at least READ_MINIMUM passports; or when it was
# denied at least DENIAL_MINIMUM times.
READ_FACTOR = 3
READ_MINIMUM = 20
DENIAL_MINIMUM = 5

MAX_LIMIT = 1000
_MAX_ID = 2**63 - 1


@overload
def _fit(value: str, width: int | None) -> str: ...
@overload
def _fit(value: None, width: int | None) -> None: ...
@overload
def _fit(value: str | None, width: int | None) -> str | None: ...
def _fit(value: str | None, width: int | None) -> str | None:
    """``value`` storable in a column of ``width`` characters on every database (PostgreSQL refuses NUL).

    A value that does not fit is cut (its last character becomes "…") rather than failing the insert,
    which for a batched read record would refuse every read of the batch.
    """
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if width is not None and len(value) > width:
        value = value[: width - 1] + "…"
    return value


class AccessRecord(NamedTuple):
    """One access to passport data, ready to be stored: the column values in :data:`COLUMNS` order, each
    already cut to fit its column. ``detail`` is the stored JSON text (a list of the access groups
    returned, or of the fields changed). A tuple, not a dataclass: every read builds one, and a frozen
    dataclass costs several times as much to construct."""

    at: str
    request_id: str
    principal: str
    principal_kind: str
    org_id: str | None
    role: str | None
    purpose: str | None
    dpp_id: str | None
    passport_operator_id: str | None
    action: str
    detail: str
    outcome: str
    reason: str | None = None

    @classmethod
    def of(cls, principal: Principal, *, action: Action | str, dpp_id: str | None = None,
           passport_operator_id: str | None = None, detail: Sequence[str] | None, outcome: Outcome | str,
           reason: str | None = None, request_id: str, at: str | None = None) -> AccessRecord:
        """The record of ``principal`` doing ``action`` now (or ``at``, a ``timestamp()`` string).

        Raises ValueError for an outcome other than granted / denied (a programming error).
        """
        if outcome not in ("granted", "denied"):
            raise ValueError(f"outcome must be 'granted' or 'denied', got {outcome!r}")
        return cls(
            _fit(at or timestamp(), 27),
            _fit(request_id, 128),
            _fit(principal.subject, 256),
            _fit(str(principal.kind), 16),
            _fit(principal.org_id, 64),
            None if principal.role is None else _fit(str(principal.role), 32),
            _fit(principal.purpose, 64),
            _fit(dpp_id, 256),
            _fit(passport_operator_id, 512),
            _fit(str(action), 32),
            _fit(orjson.dumps(list(detail or ())).decode(), None),
            str(outcome),
            _fit(reason, None),
        )

    def values(self) -> tuple[str | None, ...]:
        """The column values to insert, in the order of :data:`COLUMNS`."""
        return tuple(self)

    def row(self) -> dict[str, Any]:
        """The column values to insert by column name."""
        return self._asdict()


COLUMNS = AccessRecord._fields


# ------------------------------------------------------------------------------------ appending
_TABLE = cast(Table, AccessLog.__table__)  # Core executemany: no ORM unit-of-work per row


def record(session: Session, rec: AccessRecord) -> None:
    """Insert ``rec`` in the caller's transaction: it commits or rolls back with the change it logs."""
    session.execute(insert(_TABLE), [rec.row()])


def record_many(session: Session, recs: Iterable[AccessRecord]) -> None:
    """Insert ``recs`` in one executemany, in order (ids ascend in the order given), in the caller's transaction."""
    rows = [r.row() for r in recs]
    if rows:
        session.execute(insert(_TABLE), rows)


# ------------------------------------------------------------------------------------ querying
def _visible(viewer: Principal) -> ColumnElement[bool]:
    """The records ``viewer`` may see. Raises Unauthorized for the anonymous public."""
    if viewer.is_anonymous:
        raise Unauthorized("the access log is available to authenticated operators and authorities only")
    if viewer.is_authority:
        return true()
    # Never compare with None: "org_id IS NULL" would reveal every anonymous access.
    own_org = AccessLog.org_id == viewer.org_id if viewer.org_id is not None else None
    if viewer.role in (Role.economic_operator, Role.service_provider) and viewer.operator_id is not None:
        own_passports = AccessLog.passport_operator_id == viewer.operator_id
        return own_passports if own_org is None else or_(own_passports, own_org)
    return false() if own_org is None else own_org


def parse_instant(value: str | None, *, name: str, end_of_day: bool) -> str | None:
    """``clock.parse_instant``, with None or "" meaning no bound."""
    if value is None or value == "":
        return None
    return clock.parse_instant(value, name=name, end_of_day=end_of_day)


def _window(since: str | None, until: str | None) -> list[ColumnElement[bool]]:
    lo = parse_instant(since, name="since", end_of_day=False)
    hi = parse_instant(until, name="until", end_of_day=True)
    conds: list[ColumnElement[bool]] = []
    if lo is not None:
        conds.append(AccessLog.at >= lo)
    if hi is not None:
        conds.append(AccessLog.at <= hi)
    return conds


def encode_cursor(last_id: int) -> str:
    return str(last_id)


def decode_cursor(cursor: str | None) -> int | None:
    """The id a cursor stands for (records older than it follow). Raises BadRequest for any other text."""
    if not cursor:
        return None
    if cursor.isascii() and cursor.isdigit() and len(cursor) <= 19 and cursor[0] != "0" and int(cursor) <= _MAX_ID:
        return int(cursor)
    raise BadRequest("cursor is not one this access log issued",
                     details=[FieldError("cursor", "cursor.invalid", "pass nextCursor unchanged")])


def item(row: AccessLog) -> dict[str, Any]:
    """A stored record as the API shows it."""
    return {"id": row.id, "at": row.at, "requestId": row.request_id, "principal": row.principal,
            "principalKind": row.principal_kind, "orgId": row.org_id, "role": row.role, "purpose": row.purpose,
            "dppId": row.dpp_id, "passportOperatorId": row.passport_operator_id, "action": row.action,
            "detail": orjson.loads(row.detail), "outcome": row.outcome, "reason": row.reason}


def query(session: Session, *, viewer: Principal, dpp_id: str | None = None, principal: str | None = None,
          org_id: str | None = None, purpose: str | None = None, outcome: str | None = None,
          action: str | None = None, since: str | None = None, until: str | None = None,
          cursor: str | None = None, limit: int = 100) -> dict[str, Any]:
    """The records ``viewer`` may see that match every given filter, newest first, ``limit`` at a time.

    ``since`` / ``until`` are ISO 8601 (inclusive; a bare date means the start / the end of that UTC day).
    ``nextCursor`` is None on the last page. Raises Unauthorized for the anonymous public, BadRequest for
    an unknown outcome, a bad instant, a foreign cursor or a limit outside 1..1000.
    """
    conds = [_visible(viewer), *_window(since, until)]
    if outcome is not None and outcome not in ("granted", "denied"):
        raise BadRequest(f"outcome must be granted or denied, got {outcome!r}",
                         details=[FieldError("outcome", "outcome.enum", "expected granted or denied")])
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be 1..{MAX_LIMIT}, got {limit}",
                         details=[FieldError("limit", "limit.range", f"expected 1..{MAX_LIMIT}")])
    for column, value in ((AccessLog.dpp_id, dpp_id), (AccessLog.principal, principal),
                          (AccessLog.org_id, org_id), (AccessLog.purpose, purpose),
                          (AccessLog.outcome, outcome), (AccessLog.action, action)):
        if value is not None:
            conds.append(column == value)
    before = decode_cursor(cursor)
    if before is not None:
        conds.append(AccessLog.id < before)
    rows = list(session.scalars(select(AccessLog).where(and_(*conds)).order_by(AccessLog.id.desc())
                                .limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return {"items": [item(r) for r in rows[:limit]], "nextCursor": next_cursor}


# ------------------------------------------------------------------------------------ CSV
CSV_COLUMNS = ("id", "at", "requestId", "principal", "principalKind", "orgId", "role", "purpose", "dppId",
               "passportOperatorId", "action", "detail", "outcome", "reason")

def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = orjson.dumps(value).decode()
    return formula_safe(str(value))


def to_csv(items: Iterable[dict[str, Any]]) -> bytes:
    """UTF-8 CSV (RFC 4180: CRLF line ends, fields with comma, quote or line break quoted, quotes doubled)
    with a header row. ``detail`` is its JSON list. A text cell that a spreadsheet would run as a formula
    (starting with = + - @ tab or CR) is prefixed with a single quote."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_COLUMNS)
    for it in items:
        writer.writerow([_cell(it.get(col)) for col in CSV_COLUMNS])
    return out.getvalue().encode()


# ------------------------------------------------------------------------------------ summary
def summary(session: Session, *, viewer: Principal, since: str | None = None,
            until: str | None = None) -> dict[str, Any]:
    """Unusual patterns among the records ``viewer`` may see within [since, until]:

    * ``unusualReadVolume``: principals that read (granted) more than 3× as many distinct passports as the
      median principal of the same role, and at least 20;
    * ``repeatedDenials``: principals denied at least 5 times.

    Each list is ordered by its count, highest first. Raises like ``query``.
    """
    base = [_visible(viewer), *_window(since, until)]
    who = (AccessLog.principal_kind, AccessLog.principal, AccessLog.org_id, AccessLog.role)

    reads = session.execute(
        select(*who, func.count(AccessLog.dpp_id.distinct()), func.count())
        .where(and_(*base, AccessLog.outcome == Outcome.granted.value,
                    AccessLog.action.in_([a.value for a in READ_ACTIONS]), AccessLog.dpp_id.is_not(None)))
        .group_by(*who)
    ).all()
    by_role: dict[str | None, list[int]] = {}
    for r in reads:
        by_role.setdefault(r[3], []).append(r[4])
    medians = {role: statistics.median(counts) for role, counts in by_role.items()}
    volume: list[dict[str, Any]] = []
    for kind, principal, org, role, distinct, total in reads:
        median = medians[role]
        if distinct >= READ_MINIMUM and distinct > READ_FACTOR * median:
            volume.append({
                "principal": principal, "principalKind": kind, "orgId": org, "role": role,
                "distinctPassportsRead": distinct, "reads": total, "roleMedian": median,
                "principalsOfRole": len(by_role[role]),
                "reason": (f"read {distinct} distinct passports, {distinct / median:.1f}× the median of {median:g} "
                           f"among {len(by_role[role])} principals of role {role or 'none'}"),
            })
    volume.sort(key=lambda e: (-e["distinctPassportsRead"], e["principal"]))

    denials = session.execute(
        select(*who, func.count(), func.count(AccessLog.dpp_id.distinct()), func.max(AccessLog.at))
        .where(and_(*base, AccessLog.outcome == Outcome.denied.value))
        .group_by(*who).having(func.count() >= DENIAL_MINIMUM)
    ).all()
    denied: list[dict[str, Any]] = [{
        "principal": principal, "principalKind": kind, "orgId": org, "role": role, "denials": count,
        "distinctPassports": passports, "lastDenial": last,
        "reason": f"denied {count} times (threshold {DENIAL_MINIMUM}) on {passports} distinct passports",
    } for kind, principal, org, role, count, passports, last in denials]
    denied.sort(key=lambda e: (-e["denials"], e["principal"]))

    return {
        "since": parse_instant(since, name="since", end_of_day=False),
        "until": parse_instant(until, name="until", end_of_day=True),
        "thresholds": {"readFactor": READ_FACTOR, "readMinimum": READ_MINIMUM, "denialMinimum": DENIAL_MINIMUM},
        "unusualReadVolume": volume,
        "repeatedDenials": denied,
    }

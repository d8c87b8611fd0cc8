"""Digests of the access log: a SHA-256 that commits to a range of ``access_log`` rows, as the transparency log's
``accessLogDigest`` leaves record them (appended by ``dbp.passports.tamper``). Pure: imports no other domain.

**Row encoding.** One row encodes as the RFC 8785 canonical JSON of the object of *every* column by name — ``id``
(an integer) and the 13 columns of ``COLUMNS`` (``at``, ``request_id``, ``principal``, ``principal_kind``,
``org_id``, ``role``, ``purpose``, ``dpp_id``, ``passport_operator_id``, ``action``, ``detail``, ``outcome``,
``reason``: strings or ``null``) — members sorted by name, no whitespace, UTF-8, followed by one line feed
(0x0A)::

    {"action":"read","at":"2027-02-18T10:00:00.000000Z","detail":"[\\"public\\"]","dpp_id":"urn:…","id":17,…}\\n

For these value types (ASCII member names, strings without lone surrogates, integers below 2**53) orjson with
sorted keys writes exactly the RFC 8785 bytes (``dbp.integrity.canonical`` explains why; the test suite checks the
two agree). A string never holds a raw line feed (JSON escapes it), so the line feed ends each row unambiguously.

**Range digest.** ``SHA-256(row(a) || row(b) || …)`` over the rows with ids in [fromId, toId], in ascending id
order, as lowercase hex, with ``count`` the number of rows. Ids need not be dense (a rolled-back transaction
leaves a gap in a sequence); a row deleted, inserted or altered inside a digested range changes the digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dbp.audit.models import AccessLog
from dbp.audit.service import COLUMNS

#: Every column of ``access_log``, in the order ``fetch`` returns them.
DIGEST_COLUMNS = ("id", *COLUMNS)
_SELECT = [AccessLog.id, *(getattr(AccessLog, c) for c in COLUMNS)]
#: Rows per query when streaming a range.
BATCH = 5000


def row_bytes(row: Sequence[Any]) -> bytes:
    """The encoding of one row given as values in ``DIGEST_COLUMNS`` order (see the module docstring)."""
    if len(row) != len(DIGEST_COLUMNS):
        raise ValueError(f"access-log row: expected {len(DIGEST_COLUMNS)} values, got {len(row)}")
    return orjson.dumps(dict(zip(DIGEST_COLUMNS, row, strict=True)), option=orjson.OPT_SORT_KEYS) + b"\n"


@dataclass
class RangeDigest:
    """Incremental digest of consecutive rows (fed in ascending id order)."""

    count: int = 0
    first_id: int | None = None
    last_id: int | None = None

    def __post_init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(self, row: Sequence[Any]) -> None:
        row_id = row[0]
        if self.last_id is not None and row_id <= self.last_id:
            raise ValueError(f"access-log rows out of order: id {row_id} after {self.last_id}")
        self._hash.update(row_bytes(row))
        self.count += 1
        if self.first_id is None:
            self.first_id = row_id
        self.last_id = row_id

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def digest_rows(rows: Iterable[Sequence[Any]]) -> tuple[str, int]:
    """(lowercase hex SHA-256, count) of ``rows`` in the given (ascending id) order."""
    d = RangeDigest()
    for row in rows:
        d.update(row)
    return d.hexdigest(), d.count


def fetch(session: Session, *, after: int, upto: int, batch: int = BATCH) -> Iterator[list[tuple[Any, ...]]]:
    """The rows with ``after < id <= upto`` in ascending id order, in batches of at most ``batch`` rows."""
    last = after
    while last < upto:
        rows = [tuple(r) for r in session.execute(
            select(*_SELECT).where(AccessLog.id > last, AccessLog.id <= upto).order_by(AccessLog.id).limit(batch))]
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def digest_range(session: Session, *, after: int, upto: int) -> tuple[str, int]:
    """``digest_rows`` of the stored rows with ``after < id <= upto``."""
    d = RangeDigest()
    for rows in fetch(session, after=after, upto=upto):
        for row in rows:
            d.update(row)
    return d.hexdigest(), d.count


def max_id(session: Session) -> int:
    """The highest row id (0 for an empty log)."""
    return int(session.scalar(select(func.max(AccessLog.id))) or 0)


def upper_bound(session: Session, *, after: int, limit: int) -> int:
    """The id of the ``limit``-th row after ``after`` (or the highest id when there are fewer): the end of a
    range of at most ``limit`` rows."""
    found = session.scalar(select(AccessLog.id).where(AccessLog.id > after).order_by(AccessLog.id)
                           .offset(limit - 1).limit(1))
    return int(found) if found is not None else max(after, max_id(session))

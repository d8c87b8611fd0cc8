"""Storage of the access log: one append-only row per access to passport data (granted or denied).

Rows are only ever inserted; no code path updates or deletes them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dbp.db import Base

# Timestamps are fixed-width ISO 8601 UTC strings ("2026-11-29T12:00:00.000000Z"), as in the passport
# tables: they sort chronologically as text and read the same on SQLite and PostgreSQL.
TS = String(27)

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity sequence.
ID = BigInteger().with_variant(Integer, "sqlite")


class AccessLog(Base):
    """Who accessed which passport data, when, for what purpose, and with what outcome."""

    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    at: Mapped[str] = mapped_column(TS, index=True)
    request_id: Mapped[str] = mapped_column(String(128))
    principal: Mapped[str] = mapped_column(String(256))
    principal_kind: Mapped[str] = mapped_column(String(16))
    org_id: Mapped[str | None] = mapped_column(String(64), index=True)
    role: Mapped[str | None] = mapped_column(String(32))
    purpose: Mapped[str | None] = mapped_column(String(64))
    dpp_id: Mapped[str | None] = mapped_column(String(256), index=True)
    # the passport's responsible operator at the time of the access: operators query accesses to their passports
    passport_operator_id: Mapped[str | None] = mapped_column(String(512), index=True)
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)  # JSON list: access groups returned, or fields changed
    outcome: Mapped[str] = mapped_column(String(16))  # granted | denied
    reason: Mapped[str | None] = mapped_column(Text)


class AccessLogIntake(Base):
    """SQLite only (``dbp.audit.staging``): per read-log staging file, the highest staged record id already
    moved into ``access_log``. Updated in the transaction that moves the records, so none is moved twice."""

    __tablename__ = "access_log_intake"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)  # the staging file's random id
    moved_upto: Mapped[int] = mapped_column(BigInteger)

"""Storage of replication: which backup provider an economic operator appointed (ESPR Art. 10(4), HARD-2).

``backup_appointments`` — one row per (operator organisation, provider organisation): the operator names the
independent DPP service provider that keeps the backup copy of its passports. While not revoked, the provider
follows that operator's change feed with the canonical bodies (``dbp.replication.service.feed_scope``). An
appointment gives no write right and no right on the ordinary passport read paths (unlike a written
authorisation, ``access.models.Authorisation``, which lets the agent act for the operator). Revoked rows stay.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from dbp.db import Base

TS = String(27)  # fixed-width ISO 8601 UTC, as everywhere


class BackupAppointment(Base):
    __tablename__ = "backup_appointments"

    operator_org_id: Mapped[str] = mapped_column(String(64), ForeignKey("organisations.id"), primary_key=True)
    provider_org_id: Mapped[str] = mapped_column(String(64), ForeignKey("organisations.id"), primary_key=True,
                                                 index=True)
    reference: Mapped[str] = mapped_column(String(512))  # the backup agreement it rests on
    created_at: Mapped[str] = mapped_column(TS)
    revoked_at: Mapped[str | None] = mapped_column(TS, nullable=True)

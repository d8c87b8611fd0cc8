"""Storage of replication: which backup provider an economic operator appointed (ESPR Art. 10(4), HARD-2).

``backup_appointments`` — one row per (operator organisation, provider organisation): the operator names the
independent DPP service provider that keeps the backup copy of its passports. While not revoked, the provider
follows that operator's change feed with the canonical bodies (``dbp.replication.service.feed_scope``). An
appointment gives no write right and no right on the ordinary passport read paths (unlike a written
authorisation, ``access.models.Authorisation``, which lets the agent act for the operator). Revoked rows stay.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, SmallInteger, String, Text
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


# ------------------------------------------------------------------------------------------------ backup node
# What a backup node (role ``backup``, ``dbp.replication.follower``) holds of the repositories it follows. Every
# row below is written only after the verification that ``dbp.replication.verify`` describes; nothing is ever
# updated in place but a source's cursor and health.

INDEX = BigInteger().with_variant(Integer, "sqlite")


class BackupSource(Base):
    """A repository this backup follows: where, as whom, the pinned log key, and how far it got."""

    __tablename__ = "backup_sources"

    source_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # a short name chosen by the backup
    url: Mapped[str] = mapped_column(String(2048))  # the repository's base URL (…/api/v1 is appended)
    origin: Mapped[str] = mapped_column(String(512))  # its log's origin (the checkpoint's first line)
    verifier_key: Mapped[str] = mapped_column(Text)  # pinned C2SP verifier key; moves only by a co-signed note
    trusted_keys: Mapped[str] = mapped_column(Text)  # JSON {kid: {x, createdAt, retiredAt}} of version keys
    client_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    client_secret: Mapped[str | None] = mapped_column(Text, nullable=True)  # Fernet under DBP_SECRET_KEY
    next_position: Mapped[int] = mapped_column(INDEX, default=0)  # the feed cursor: next log position to read
    tree_size: Mapped[int] = mapped_column(INDEX, default=0)  # of the latest verified checkpoint (0: none yet)
    log_size: Mapped[int] = mapped_column(INDEX, default=0)  # the repository's log size last reported
    status: Mapped[str] = mapped_column(String(16))  # following | failing | halted
    halted_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[str] = mapped_column(TS)
    last_attempt_at: Mapped[str | None] = mapped_column(TS, nullable=True)
    last_success_at: Mapped[str | None] = mapped_column(TS, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive failed rounds (back-off exponent)
    next_attempt_at: Mapped[str | None] = mapped_column(TS, nullable=True)


class BackupNode(Base):
    """Every complete subtree of a source's log, as the backup recomputed it from the leaves it fetched (level 0:
    the leaf hashes): the backup's own copy of the log's tree, for proofs once the repository is gone."""

    __tablename__ = "backup_nodes"

    source_id: Mapped[str] = mapped_column(String(64), ForeignKey("backup_sources.source_id"), primary_key=True)
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class BackupCheckpoint(Base):
    """Every signed checkpoint the backup verified and found consistent with the one before (it is a witness)."""

    __tablename__ = "backup_checkpoints"

    source_id: Mapped[str] = mapped_column(String(64), ForeignKey("backup_sources.source_id"), primary_key=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary)
    note: Mapped[str] = mapped_column(Text)  # the exact signed note
    verified_at: Mapped[str] = mapped_column(TS)


class BackupVersion(Base):
    """A verified copy of one passport version: the signed canonical bytes and what the log committed to."""

    __tablename__ = "backup_versions"
    __table_args__ = (Index("ix_backup_versions_dpp_id_version", "dpp_id", "version"),
                      Index("uq_backup_versions_source_position", "source_id", "position", unique=True))

    source_id: Mapped[str] = mapped_column(String(64), ForeignKey("backup_sources.source_id"), primary_key=True)
    dpp_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(BigInteger)  # the leaf index in the source's log
    created_at: Mapped[str] = mapped_column(TS)
    change: Mapped[str | None] = mapped_column(String(128), nullable=True)
    operator_id: Mapped[str | None] = mapped_column(String(512), nullable=True)
    dpp_status: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    public_sha256: Mapped[str] = mapped_column(String(64))
    kid: Mapped[str] = mapped_column(String(256))
    signature: Mapped[str] = mapped_column(Text)
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    verified_at: Mapped[str] = mapped_column(TS)


class BackupRejection(Base):
    """A feed entry the backup refused, with the step that failed; retried each round until it verifies
    (``resolved_at``) — a transport fault heals, a forged entry stays reported."""

    __tablename__ = "backup_rejections"
    __table_args__ = (Index("uq_backup_rejections_source_position", "source_id", "position", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source_id: Mapped[str] = mapped_column(String(64), ForeignKey("backup_sources.source_id"))
    position: Mapped[int] = mapped_column(BigInteger)
    dpp_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    step: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    first_at: Mapped[str] = mapped_column(TS)
    last_at: Mapped[str] = mapped_column(TS)
    resolved_at: Mapped[str | None] = mapped_column(TS, nullable=True)


class BackupAlert(Base):
    """What the witness check caught (rollback, fork, rewritten history, bad signature, origin change), with the
    evidence (both signed notes, the proof); the source is halted until an operator looks."""

    __tablename__ = "backup_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source_id: Mapped[str] = mapped_column(String(64), ForeignKey("backup_sources.source_id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    evidence: Mapped[str] = mapped_column(Text)  # JSON
    at: Mapped[str] = mapped_column(TS)

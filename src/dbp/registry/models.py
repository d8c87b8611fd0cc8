"""The registry node's tables (the role of the Commission's DPP registry, Implementing Regulation (EU) 2026/1778),
and the repository's record of what it registered there.

Registry side: one ``registrations`` row per registered battery passport (its current state), its identifiers
in other schemes (``registration_aliases``), every change as a versioned event (``registration_events``, IR
Art. 10: create/modify/delete logged, registered data versioned with time stamps), and the directory of nodes
(``registry_nodes``: repositories, backups) that the resolver routes through. Repository side:
``registry_receipts``, one row per local passport: which version was registered, the registration id and the
signed proof, or why the last attempt failed and when to retry.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dbp.db import Base

TS = String(27)  # fixed-width ISO 8601 UTC, as in passports


class Registration(Base):
    """A registered passport, as the registry holds it now (its history is in ``registration_events``).

    ``revision`` is the optimistic lock: every UPDATE is ``… WHERE registration_id = :id AND revision = :old``
    (SQLAlchemy ``version_id_col``, the service sets the new revision), so two concurrent changes cannot both
    become revision N+1 — the second finds no row and is refused (``StaleDataError`` → 409)."""

    __tablename__ = "registrations"

    registration_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # persistent, never reused
    # dbp.identifiers.product_key of product_id: unique across every registration and every alias
    product_key: Mapped[str] = mapped_column(String(2100), unique=True, index=True)
    product_id: Mapped[str] = mapped_column(String(2048))  # as registered (the link in the QR code)
    dpp_id: Mapped[str] = mapped_column(String(256), unique=True, index=True)  # one registration per passport
    operator_id: Mapped[str] = mapped_column(String(512), index=True)
    facility_id: Mapped[str | None] = mapped_column(String(512), nullable=True)
    commodity_code: Mapped[str | None] = mapped_column(String(16), nullable=True)
    granularity: Mapped[str] = mapped_column(String(16))  # item | batch | model
    endpoint: Mapped[str] = mapped_column(String(2048))  # the repository's API base URL
    backup_node_id: Mapped[str | None] = mapped_column(String(128), nullable=True)  # registry_nodes.node_id
    dpp_version: Mapped[int] = mapped_column(Integer)  # the passport version read at (re-)registration
    version_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 (hex) of the bytes read, the public view
    # active | superseded (a successor passport is registered: resolve to it) | retired
    status: Mapped[str] = mapped_column(String(16), index=True)
    successor_registration_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    predecessor_dpp_ids: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list, from the passport
    revision: Mapped[int] = mapped_column(Integer)  # 1 at registration, +1 per change
    registered_at: Mapped[str] = mapped_column(TS)
    updated_at: Mapped[str] = mapped_column(TS)
    registrant: Mapped[str] = mapped_column(String(256))  # principal id of who registered it
    registrant_org: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __mapper_args__ = {"version_id_col": revision, "version_id_generator": False}  # noqa: RUF012


class RegistrationAlias(Base):
    """Another scheme's identifier of a registered battery (an IEC 61406 link, a 15459 id): resolves like the
    canonical one. Its ``key`` shares the uniqueness of ``registrations.product_key`` (checked by the service:
    a key is in at most one of the two tables)."""

    __tablename__ = "registration_aliases"

    key: Mapped[str] = mapped_column(String(2100), primary_key=True)
    registration_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("registrations.registration_id"), index=True)
    written: Mapped[str] = mapped_column(String(2048))
    scheme: Mapped[str] = mapped_column(String(16))


class RegistrationEvent(Base):
    """One change of a registration: the whole registration after the change (canonical JSON), who and when.
    Appended, never updated (IR 2026/1778 Art. 10)."""

    __tablename__ = "registration_events"
    __table_args__ = (UniqueConstraint("registration_id", "revision"),)  # one event per revision

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    registration_id: Mapped[str] = mapped_column(String(64), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))  # registered | updated | rerouted | custody | superseded | retired
    at: Mapped[str] = mapped_column(TS)
    actor: Mapped[str] = mapped_column(String(256))
    actor_org: Mapped[str | None] = mapped_column(String(64), nullable=True)
    data: Mapped[str] = mapped_column(Text)  # the registration after the change
    proof: Mapped[str | None] = mapped_column(Text, nullable=True)  # the signed proof issued for this revision


class RegistryNode(Base):
    """A node of the federation: a repository (an operator's passport store) or a backup (an independent
    provider holding copies). The resolver routes around a repository whose status is not ``active``."""

    __tablename__ = "registry_nodes"

    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # repository | backup | registry
    operator_id: Mapped[str | None] = mapped_column(String(512), nullable=True, index=True)
    endpoint: Mapped[str] = mapped_column(String(2048), unique=True)  # API base URL
    keys: Mapped[str | None] = mapped_column(Text, nullable=True)  # its public keys (JWKS JSON)
    status: Mapped[str] = mapped_column(String(16))  # active | exited | unreachable
    # who set the status: "commission", or "probe" (dbp.registry.health reverts only its own markings)
    status_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    updated_at: Mapped[str] = mapped_column(TS)


class RegistryReceipt(Base):
    """Repository side: the registration of a local passport — the version registered and the registry's signed
    proof — or the last failure and when to try again. Kept current by the auto-registration worker."""

    __tablename__ = "registry_receipts"

    dpp_id: Mapped[str] = mapped_column(String(256), ForeignKey("passports.dpp_id"), primary_key=True)
    registration_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    registered_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    version_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    proof: Mapped[str | None] = mapped_column(Text, nullable=True)
    registered_at: Mapped[str | None] = mapped_column(TS, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[str | None] = mapped_column(TS, nullable=True)

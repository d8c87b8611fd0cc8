"""Organisations, their users, API clients, device keys, written authorisations, grants and the
token signing keys. Secrets are stored only as hashes; signing keys only encrypted."""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dbp.db import Base

TS = String(27)  # fixed-width ISO 8601 UTC, as in passports


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(512))
    operator_id: Mapped[str] = mapped_column(String(512), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[str] = mapped_column(TS)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(64), ForeignKey("organisations.id"), index=True)
    username: Mapped[str] = mapped_column(String(256), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))  # argon2id
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[str] = mapped_column(TS)


class ApiClient(Base):
    """OAuth2 client-credentials client. The secret is 256 random bits, stored as SHA-256."""

    __tablename__ = "api_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(64), ForeignKey("organisations.id"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(TS)
    revoked_at: Mapped[str | None] = mapped_column(TS, nullable=True)


class ApiKey(Base):
    """A device key (battery management gateway): ``dbpk_<key_id>_<secret>``; only the hash is kept."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(64), ForeignKey("organisations.id"), index=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    dpp_ids: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list; None = the org's batteries
    created_at: Mapped[str] = mapped_column(TS)
    revoked_at: Mapped[str | None] = mapped_column(TS, nullable=True)


class Authorisation(Base):
    """An economic operator's written authorisation of another organisation to act for it (Art. 77(4))."""

    __tablename__ = "authorisations"

    operator_org_id: Mapped[str] = mapped_column(String(64), ForeignKey("organisations.id"), primary_key=True)
    agent_org_id: Mapped[str] = mapped_column(String(64), ForeignKey("organisations.id"), primary_key=True)
    reference: Mapped[str] = mapped_column(String(512))  # the written authorisation it rests on
    created_at: Mapped[str] = mapped_column(TS)
    revoked_at: Mapped[str | None] = mapped_column(TS, nullable=True)


class Grant(Base):
    """The responsible operator grants an organisation read access to one passport, for a purpose,
    until an expiry (purpose-bound legitimate interest, Art. 77(2))."""

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dpp_id: Mapped[str] = mapped_column(String(256), ForeignKey("passports.dpp_id"))
    grantee_org_id: Mapped[str] = mapped_column(String(64), ForeignKey("organisations.id"))
    purpose: Mapped[str] = mapped_column(String(64))
    access_groups: Mapped[str] = mapped_column(String(256))  # comma-separated AccessGroup values
    granted_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[str] = mapped_column(TS)
    expires_at: Mapped[str] = mapped_column(TS)
    revoked_at: Mapped[str | None] = mapped_column(TS, nullable=True)

    __table_args__ = (Index("ix_grants_dpp_id_grantee_org_id", "dpp_id", "grantee_org_id"),)


class SigningKey(Base):
    """Ed25519 key that signs access tokens. The private key is encrypted with DBP_SECRET_KEY."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_encrypted: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(TS)
    retired_at: Mapped[str | None] = mapped_column(TS, nullable=True)

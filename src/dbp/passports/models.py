"""Storage: one row per passport (searchable columns), append-only versions (canonical bytes)."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dbp.db import Base

# Timestamps are fixed-width ISO 8601 UTC strings ("2026-11-29T12:00:00.000000Z"): they sort
# chronologically as text and read the same on SQLite and PostgreSQL.
TS = String(27)


class Passport(Base):
    """The current state of a passport; the fields people search by, extracted from its current version."""

    __tablename__ = "passports"

    dpp_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(2048), unique=True)
    # dbp.identifiers.product_key of product_id: one battery written two ways (another GS1 domain, an element
    # string, GTIN-13) is one key, so it cannot get two passports; lookups by product identifier use it
    product_key: Mapped[str | None] = mapped_column(String(2100), unique=True, index=True)
    current_version: Mapped[int] = mapped_column(Integer)
    dpp_status: Mapped[str] = mapped_column(String(16), index=True)
    battery_status: Mapped[str | None] = mapped_column(String(16), index=True)
    category: Mapped[str | None] = mapped_column(String(16), index=True)
    chemistry: Mapped[str | None] = mapped_column(String(256), index=True)
    manufacturer: Mapped[str | None] = mapped_column(String(512), index=True)
    model: Mapped[str | None] = mapped_column(String(256), index=True)
    batch: Mapped[str | None] = mapped_column(String(256), index=True)
    facility: Mapped[str | None] = mapped_column(String(512), index=True)
    operator_id: Mapped[str] = mapped_column(String(512), index=True)
    manufactured: Mapped[str | None] = mapped_column(String(10), index=True)
    created_at: Mapped[str] = mapped_column(TS)
    updated_at: Mapped[str] = mapped_column(TS)


class ProductAlias(Base):
    """A key (``dbp.identifiers.product_key``) of one of a passport's ``productIdentifierAliases``: together with
    ``passports.product_key`` no key names two batteries (the service checks both tables; each is unique)."""

    __tablename__ = "product_aliases"

    key: Mapped[str] = mapped_column(String(2100), primary_key=True)
    dpp_id: Mapped[str] = mapped_column(String(256), ForeignKey("passports.dpp_id"), index=True)


class PassportVersion(Base):
    """One immutable version: its RFC 8785 canonical JSON and that text's SHA-256. Never updated."""

    __tablename__ = "passport_versions"

    dpp_id: Mapped[str] = mapped_column(String(256), ForeignKey("passports.dpp_id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[str] = mapped_column(TS)
    change: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    canonical: Mapped[str] = mapped_column(Text)
    # The public view (Annex XIII point 1 only), rendered once when the version is written: the
    # anonymous read — by far the most frequent — serves these bytes as stored.
    public_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    public_canonical: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Where each attribute's member lies in ``canonical`` (dbp.passports.redaction.index_of): any other
    # access view is cut out of the stored bytes with it instead of being parsed and re-serialised.
    view_index: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Detached compact JWS of ``canonical`` by the repository key (dbp.integrity.signing); None before 0007.
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_passport_versions_dpp_id_created_at", "dpp_id", "created_at"),)


class PassportLink(Base):
    """Successor passport ← predecessor passport (Art. 77(7): new passport linked to 1..n originals)."""

    __tablename__ = "passport_links"

    successor_id: Mapped[str] = mapped_column(String(256), ForeignKey("passports.dpp_id"), primary_key=True)
    predecessor_id: Mapped[str] = mapped_column(String(256), ForeignKey("passports.dpp_id"), primary_key=True)
    operation: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[str] = mapped_column(TS)

    __table_args__ = (Index("ix_passport_links_predecessor_id", "predecessor_id"),)

"""``resolver_links``: the links an economic operator configures for its batteries, beyond the built-in ones.

A link applies to every registered passport of ``operator_id`` (the operator of the passport the identifier
currently resolves to), narrowed to one GTIN (``gtin``) or to one battery (``product_key``) when set. ``href`` is
a template (``dbp.resolver.linkset.expand``); ``link_type`` a GS1 Web Vocabulary term as a CURIE (``gs1:pip``).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dbp.db import Base

TS = String(27)  # fixed-width ISO 8601 UTC, as elsewhere


class ResolverLink(Base):
    __tablename__ = "resolver_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    operator_id: Mapped[str] = mapped_column(String(512), index=True)
    gtin: Mapped[str | None] = mapped_column(String(14), nullable=True)  # 14 digits, check digit valid
    product_key: Mapped[str | None] = mapped_column(String(2100), nullable=True)  # dbp.identifiers.product_key
    link_type: Mapped[str] = mapped_column(String(64))  # gs1:{term}
    href: Mapped[str] = mapped_column(String(2048))  # template, https
    title: Mapped[str] = mapped_column(String(256))
    media_type: Mapped[str | None] = mapped_column(String(128), nullable=True)
    hreflang: Mapped[str | None] = mapped_column(String(128), nullable=True)  # comma-separated BCP 47 tags
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[str] = mapped_column(TS)
    created_by: Mapped[str] = mapped_column(String(256))

"""resolver_links: the links operators configure for their batteries on the GS1 resolver

Revision ID: 0012
Revises: 0011

See ``dbp.resolver.models``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resolver_links",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("operator_id", sa.String(length=512), nullable=False),
        sa.Column("gtin", sa.String(length=14), nullable=True),
        sa.Column("product_key", sa.String(length=2100), nullable=True),
        sa.Column("link_type", sa.String(length=64), nullable=False),
        sa.Column("href", sa.String(length=2048), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column("media_type", sa.String(length=128), nullable=True),
        sa.Column("hreflang", sa.String(length=128), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.String(length=27), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resolver_links")),
    )
    op.create_index(op.f("ix_resolver_links_operator_id"), "resolver_links", ["operator_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_resolver_links_operator_id"), table_name="resolver_links")
    op.drop_table("resolver_links")

"""attestations: verified supplier credentials (application/vc+jwt) attached to passports

Revision ID: 0009
Revises: 0008

One row per (passport, token): the token as uploaded and what its verification found (issuer, key, types, validity),
the access group that may read it, who attached it and when (``dbp.passports.attestations``). Inserted, never updated.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attestations",
        sa.Column("dpp_id", sa.String(length=256), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=512), nullable=False),
        sa.Column("kid", sa.String(length=1024), nullable=False),
        sa.Column("credential_id", sa.String(length=2048), nullable=True),
        sa.Column("types", sa.Text(), nullable=False),
        sa.Column("valid_from", sa.String(length=64), nullable=True),
        sa.Column("valid_until", sa.String(length=64), nullable=True),
        sa.Column("access_group", sa.String(length=40), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("attached_at", sa.String(length=27), nullable=False),
        sa.Column("attached_by", sa.String(length=256), nullable=False),
        sa.Column("attached_by_org", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["dpp_id"], ["passports.dpp_id"], name=op.f("fk_attestations_dpp_id_passports")),
        sa.PrimaryKeyConstraint("dpp_id", "sha256", name=op.f("pk_attestations")),
    )


def downgrade() -> None:
    op.drop_table("attestations")

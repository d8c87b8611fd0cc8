"""backup_appointments: the backup provider each economic operator appointed (change feed, issue 6)

Revision ID: 0013
Revises: 0012

See ``dbp.replication.models``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backup_appointments",
        sa.Column("operator_org_id", sa.String(length=64), nullable=False),
        sa.Column("provider_org_id", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=512), nullable=False),
        sa.Column("created_at", sa.String(length=27), nullable=False),
        sa.Column("revoked_at", sa.String(length=27), nullable=True),
        sa.ForeignKeyConstraint(["operator_org_id"], ["organisations.id"],
                                name=op.f("fk_backup_appointments_operator_org_id_organisations")),
        sa.ForeignKeyConstraint(["provider_org_id"], ["organisations.id"],
                                name=op.f("fk_backup_appointments_provider_org_id_organisations")),
        sa.PrimaryKeyConstraint("operator_org_id", "provider_org_id", name=op.f("pk_backup_appointments")),
    )
    op.create_index(op.f("ix_backup_appointments_provider_org_id"), "backup_appointments", ["provider_org_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_backup_appointments_provider_org_id"), table_name="backup_appointments")
    op.drop_table("backup_appointments")

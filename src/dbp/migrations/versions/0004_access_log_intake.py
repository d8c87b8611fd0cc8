"""access log intake: high-water mark of read records moved from SQLite's staging file

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_log_intake",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("moved_upto", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_access_log_intake")),
    )


def downgrade() -> None:
    op.drop_table("access_log_intake")

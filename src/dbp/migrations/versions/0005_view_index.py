"""view index of each passport version: access views cut out of the stored canonical bytes

Revision ID: 0005
Revises: 0004

Versions written before this revision keep a NULL index; their views are redacted as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("passport_versions") as batch:
        batch.add_column(sa.Column("view_index", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("passport_versions") as batch:
        batch.drop_column("view_index")

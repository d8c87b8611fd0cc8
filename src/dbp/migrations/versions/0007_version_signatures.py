"""signature of each passport version: a detached compact JWS (EdDSA) over its canonical bytes

Revision ID: 0007
Revises: 0006

Versions written before this revision keep a NULL signature (they are logged, not signed).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("passport_versions") as batch:
        batch.add_column(sa.Column("signature", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("passport_versions") as batch:
        batch.drop_column("signature")

"""registry_nodes.status_by: who set a node's status — the Commission or the registry's own probes (issue 6)

Revision ID: 0015
Revises: 0014

Probes (``dbp.registry.health``) revert only the ``unreachable`` markings they made themselves; a status the
Commission set is a decision they never change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registry_nodes") as batch:
        batch.add_column(sa.Column("status_by", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registry_nodes") as batch:
        batch.drop_column("status_by")

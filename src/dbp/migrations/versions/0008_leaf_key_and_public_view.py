"""log leaves commit to the signing key and the public view; kind-specific members of other leaf kinds

Revision ID: 0008
Revises: 0007

* ``kid`` — the key that signed the version (NULL for versions logged before signing existed);
* ``public_sha256`` — SHA-256 of the version's public view (Annex XIII point 1), so the public can verify
  what it is shown through the log without seeing the rest;
* ``detail`` — RFC 8785 canonical JSON of the members a leaf kind adds (an access-log digest's id range and
  count), NULL for passport versions.

Leaves logged before this revision keep NULLs and their leaf bytes are unchanged (absent members are omitted).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("log_leaves") as batch:
        batch.add_column(sa.Column("kid", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("public_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("detail", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("log_leaves") as batch:
        batch.drop_column("detail")
        batch.drop_column("public_sha256")
        batch.drop_column("kid")

"""access log: append-only record of every access to passport data

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('access_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.String(length=27), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('principal', sa.String(length=256), nullable=False),
    sa.Column('principal_kind', sa.String(length=16), nullable=False),
    sa.Column('org_id', sa.String(length=64), nullable=True),
    sa.Column('role', sa.String(length=32), nullable=True),
    sa.Column('purpose', sa.String(length=64), nullable=True),
    sa.Column('dpp_id', sa.String(length=256), nullable=True),
    sa.Column('passport_operator_id', sa.String(length=512), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_access_log'))
    )
    with op.batch_alter_table('access_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_access_log_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_access_log_dpp_id'), ['dpp_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_access_log_org_id'), ['org_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_access_log_passport_operator_id'), ['passport_operator_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('access_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_access_log_passport_operator_id'))
        batch_op.drop_index(batch_op.f('ix_access_log_org_id'))
        batch_op.drop_index(batch_op.f('ix_access_log_dpp_id'))
        batch_op.drop_index(batch_op.f('ix_access_log_at'))

    op.drop_table('access_log')

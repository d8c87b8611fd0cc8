"""backup node: followed repositories, their verified log trees, checkpoints, copies, rejections, alerts (issue 6)

Revision ID: 0014
Revises: 0013

See ``dbp.replication.models`` (the backup node part).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TS = sa.String(length=27)
INDEX = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _source_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["source_id"], ["backup_sources.source_id"],
                                   name=op.f(f"fk_{table}_source_id_backup_sources"))


def upgrade() -> None:
    op.create_table(
        "backup_sources",
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("origin", sa.String(length=512), nullable=False),
        sa.Column("verifier_key", sa.Text(), nullable=False),
        sa.Column("trusted_keys", sa.Text(), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=True),
        sa.Column("client_secret", sa.Text(), nullable=True),
        sa.Column("next_position", INDEX, nullable=False),
        sa.Column("tree_size", INDEX, nullable=False),
        sa.Column("log_size", INDEX, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("halted_reason", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_attempt_at", TS, nullable=True),
        sa.Column("last_success_at", TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("source_id", name=op.f("pk_backup_sources")),
    )
    op.create_table(
        "backup_nodes",
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        _source_fk("backup_nodes"),
        sa.PrimaryKeyConstraint("source_id", "level", "idx", name=op.f("pk_backup_nodes")),
    )
    op.create_table(
        "backup_checkpoints",
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("verified_at", TS, nullable=False),
        _source_fk("backup_checkpoints"),
        sa.PrimaryKeyConstraint("source_id", "tree_size", name=op.f("pk_backup_checkpoints")),
    )
    op.create_table(
        "backup_versions",
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("dpp_id", sa.String(length=256), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("change", sa.String(length=128), nullable=True),
        sa.Column("operator_id", sa.String(length=512), nullable=True),
        sa.Column("dpp_status", sa.String(length=64), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("public_sha256", sa.String(length=64), nullable=False),
        sa.Column("kid", sa.String(length=256), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("canonical", sa.LargeBinary(), nullable=False),
        sa.Column("verified_at", TS, nullable=False),
        _source_fk("backup_versions"),
        sa.PrimaryKeyConstraint("source_id", "dpp_id", "version", name=op.f("pk_backup_versions")),
    )
    op.create_index("ix_backup_versions_dpp_id_version", "backup_versions", ["dpp_id", "version"])
    op.create_index("uq_backup_versions_source_position", "backup_versions", ["source_id", "position"], unique=True)
    op.create_table(
        "backup_rejections",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("dpp_id", sa.String(length=256), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_at", TS, nullable=False),
        sa.Column("last_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        _source_fk("backup_rejections"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_rejections")),
    )
    op.create_index("uq_backup_rejections_source_position", "backup_rejections", ["source_id", "position"],
                    unique=True)
    op.create_table(
        "backup_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("at", TS, nullable=False),
        _source_fk("backup_alerts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_alerts")),
    )
    op.create_index(op.f("ix_backup_alerts_source_id"), "backup_alerts", ["source_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_backup_alerts_source_id"), table_name="backup_alerts")
    op.drop_table("backup_alerts")
    op.drop_index("uq_backup_rejections_source_position", table_name="backup_rejections")
    op.drop_table("backup_rejections")
    op.drop_index("uq_backup_versions_source_position", table_name="backup_versions")
    op.drop_index("ix_backup_versions_dpp_id_version", table_name="backup_versions")
    op.drop_table("backup_versions")
    op.drop_table("backup_checkpoints")
    op.drop_table("backup_nodes")
    op.drop_table("backup_sources")

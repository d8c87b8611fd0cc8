"""registry: registrations, their aliases and versioned events, the node directory; repository receipts

Revision ID: 0011
Revises: 0010

See ``dbp.registry.models``. The registry's tables and the repository's ``registry_receipts`` live in one schema so
that the embedded all-roles process runs on one database; separate deployments simply leave the other side's
tables empty.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registrations",
        sa.Column("registration_id", sa.String(length=64), nullable=False),
        sa.Column("product_key", sa.String(length=2100), nullable=False),
        sa.Column("product_id", sa.String(length=2048), nullable=False),
        sa.Column("dpp_id", sa.String(length=256), nullable=False),
        sa.Column("operator_id", sa.String(length=512), nullable=False),
        sa.Column("facility_id", sa.String(length=512), nullable=True),
        sa.Column("commodity_code", sa.String(length=16), nullable=True),
        sa.Column("granularity", sa.String(length=16), nullable=False),
        sa.Column("endpoint", sa.String(length=2048), nullable=False),
        sa.Column("backup_node_id", sa.String(length=128), nullable=True),
        sa.Column("dpp_version", sa.Integer(), nullable=False),
        sa.Column("version_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("successor_registration_id", sa.String(length=64), nullable=True),
        sa.Column("predecessor_dpp_ids", sa.Text(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("registered_at", sa.String(length=27), nullable=False),
        sa.Column("updated_at", sa.String(length=27), nullable=False),
        sa.Column("registrant", sa.String(length=256), nullable=False),
        sa.Column("registrant_org", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("registration_id", name=op.f("pk_registrations")),
    )
    op.create_index(op.f("ix_registrations_product_key"), "registrations", ["product_key"], unique=True)
    op.create_index(op.f("ix_registrations_dpp_id"), "registrations", ["dpp_id"], unique=True)
    op.create_index(op.f("ix_registrations_operator_id"), "registrations", ["operator_id"], unique=False)
    op.create_index(op.f("ix_registrations_status"), "registrations", ["status"], unique=False)
    op.create_index(op.f("ix_registrations_successor_registration_id"), "registrations",
                    ["successor_registration_id"], unique=False)
    op.create_table(
        "registration_aliases",
        sa.Column("key", sa.String(length=2100), nullable=False),
        sa.Column("registration_id", sa.String(length=64), nullable=False),
        sa.Column("written", sa.String(length=2048), nullable=False),
        sa.Column("scheme", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["registration_id"], ["registrations.registration_id"],
                                name=op.f("fk_registration_aliases_registration_id_registrations")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_registration_aliases")),
    )
    op.create_index(op.f("ix_registration_aliases_registration_id"), "registration_aliases", ["registration_id"],
                    unique=False)
    op.create_table(
        "registration_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("registration_id", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", sa.String(length=27), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("actor_org", sa.String(length=64), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("proof", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registration_events")),
        sa.UniqueConstraint("registration_id", "revision",
                            name=op.f("uq_registration_events_registration_id")),
    )
    op.create_index(op.f("ix_registration_events_registration_id"), "registration_events", ["registration_id"],
                    unique=False)
    op.create_table(
        "registry_nodes",
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("operator_id", sa.String(length=512), nullable=True),
        sa.Column("endpoint", sa.String(length=2048), nullable=False),
        sa.Column("keys", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.String(length=27), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_registry_nodes")),
        sa.UniqueConstraint("endpoint", name=op.f("uq_registry_nodes_endpoint")),
    )
    op.create_index(op.f("ix_registry_nodes_operator_id"), "registry_nodes", ["operator_id"], unique=False)
    op.create_table(
        "registry_receipts",
        sa.Column("dpp_id", sa.String(length=256), nullable=False),
        sa.Column("registration_id", sa.String(length=64), nullable=True),
        sa.Column("registered_version", sa.Integer(), nullable=True),
        sa.Column("version_hash", sa.String(length=64), nullable=True),
        sa.Column("proof", sa.Text(), nullable=True),
        sa.Column("registered_at", sa.String(length=27), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.String(length=27), nullable=True),
        sa.ForeignKeyConstraint(["dpp_id"], ["passports.dpp_id"], name=op.f("fk_registry_receipts_dpp_id_passports")),
        sa.PrimaryKeyConstraint("dpp_id", name=op.f("pk_registry_receipts")),
    )


def downgrade() -> None:
    op.drop_table("registry_receipts")
    op.drop_index(op.f("ix_registry_nodes_operator_id"), table_name="registry_nodes")
    op.drop_table("registry_nodes")
    op.drop_index(op.f("ix_registration_events_registration_id"), table_name="registration_events")
    op.drop_table("registration_events")
    op.drop_index(op.f("ix_registration_aliases_registration_id"), table_name="registration_aliases")
    op.drop_table("registration_aliases")
    for name in ("successor_registration_id", "status", "operator_id", "dpp_id", "product_key"):
        op.drop_index(op.f(f"ix_registrations_{name}"), table_name="registrations")
    op.drop_table("registrations")

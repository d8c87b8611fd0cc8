"""identities, authorisations, grants, signing keys; public view of each passport version

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.String(length=27)


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("operator_id", sa.String(length=512), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisations")),
        sa.UniqueConstraint("operator_id", name=op.f("uq_organisations_operator_id")),
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("private_encrypted", sa.Text(), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("retired_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=256), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f("fk_users_org_id_organisations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_index(op.f("ix_users_org_id"), "users", ["org_id"], unique=False)
    op.create_table(
        "api_clients",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f("fk_api_clients_org_id_organisations")),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_api_clients")),
    )
    op.create_index(op.f("ix_api_clients_org_id"), "api_clients", ["org_id"], unique=False)
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("dpp_ids", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f("fk_api_keys_org_id_organisations")),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
    )
    op.create_index(op.f("ix_api_keys_org_id"), "api_keys", ["org_id"], unique=False)
    op.create_table(
        "authorisations",
        sa.Column("operator_org_id", sa.String(length=64), nullable=False),
        sa.Column("agent_org_id", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=512), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["agent_org_id"], ["organisations.id"],
                                name=op.f("fk_authorisations_agent_org_id_organisations")),
        sa.ForeignKeyConstraint(["operator_org_id"], ["organisations.id"],
                                name=op.f("fk_authorisations_operator_org_id_organisations")),
        sa.PrimaryKeyConstraint("operator_org_id", "agent_org_id", name=op.f("pk_authorisations")),
    )
    op.create_table(
        "grants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("dpp_id", sa.String(length=256), nullable=False),
        sa.Column("grantee_org_id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("access_groups", sa.String(length=256), nullable=False),
        sa.Column("granted_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["dpp_id"], ["passports.dpp_id"], name=op.f("fk_grants_dpp_id_passports")),
        sa.ForeignKeyConstraint(["grantee_org_id"], ["organisations.id"],
                                name=op.f("fk_grants_grantee_org_id_organisations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
    )
    op.create_index("ix_grants_dpp_id_grantee_org_id", "grants", ["dpp_id", "grantee_org_id"], unique=False)
    with op.batch_alter_table("passport_versions") as batch:
        batch.add_column(sa.Column("public_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("public_canonical", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("passport_versions") as batch:
        batch.drop_column("public_canonical")
        batch.drop_column("public_sha256")
    op.drop_index("ix_grants_dpp_id_grantee_org_id", table_name="grants")
    op.drop_table("grants")
    op.drop_table("authorisations")
    for table in ("api_keys", "api_clients", "users"):
        op.drop_index(op.f(f"ix_{table}_org_id"), table_name=table)
        op.drop_table(table)
    op.drop_table("signing_keys")
    op.drop_table("organisations")

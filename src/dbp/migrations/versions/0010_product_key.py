"""passports.product_key and product_aliases: one battery, one passport, however its identifier is written

Revision ID: 0010
Revises: 0009

``dbp.identifiers.product_key`` of ``product_id`` (a GS1 Digital Link on another domain, its element string or a
GTIN-13 are one key), unique, and what lookups by product identifier use. Existing rows are backfilled; a stored
identifier the parsers refuse (written before they existed) keeps its own text as key, prefixed ``unparsed:``,
so the migration never fails on old data and such a passport still resolves by its exact identifier. Two
rows that turn out to be one battery keep their data; the later passport's key is marked ``duplicate:{dppId}:``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dbp.identifiers import IdentifierError, product_key

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _key(product_id: str) -> str:
    try:
        return product_key(product_id)
    except IdentifierError:
        return "unparsed:" + product_id


def upgrade() -> None:
    op.add_column("passports", sa.Column("product_key", sa.String(length=2100), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT dpp_id, product_id FROM passports")).fetchall()
    seen: set[str] = set()
    keys = []
    for dpp_id, product_id in sorted(rows):
        key = _key(product_id)
        if key in seen:  # one battery stored twice under two spellings: kept, marked, found by `dbp` admins
            key = f"duplicate:{dpp_id}:{key}"
        seen.add(key)
        keys.append({"k": key, "d": dpp_id})
    if keys:
        conn.execute(sa.text("UPDATE passports SET product_key = :k WHERE dpp_id = :d"), keys)
    op.create_index(op.f("ix_passports_product_key"), "passports", ["product_key"], unique=True)
    op.create_table(
        "product_aliases",
        sa.Column("key", sa.String(length=2100), nullable=False),
        sa.Column("dpp_id", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(["dpp_id"], ["passports.dpp_id"], name=op.f("fk_product_aliases_dpp_id_passports")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_product_aliases")),
    )
    op.create_index(op.f("ix_product_aliases_dpp_id"), "product_aliases", ["dpp_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_product_aliases_dpp_id"), table_name="product_aliases")
    op.drop_table("product_aliases")
    op.drop_index(op.f("ix_passports_product_key"), table_name="passports")
    op.drop_column("passports", "product_key")

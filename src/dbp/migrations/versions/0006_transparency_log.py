"""transparency log: leaves, complete-subtree hashes, state, signed checkpoints, checkpoint signing keys

Revision ID: 0006
Revises: 0005

Versions stored before this revision are logged here, in the order they were written (createdAt, dppId,
version), so that every version of every passport has its leaf.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.String(length=27)
INDEX = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BATCH = 1000


def upgrade() -> None:
    op.create_table(
        "log_leaves",
        sa.Column("leaf_index", INDEX, autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("dpp_id", sa.String(length=256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index", name=op.f("pk_log_leaves")),
    )
    op.create_index("ix_log_leaves_dpp_id_version", "log_leaves", ["dpp_id", "version"])
    op.create_table(
        "log_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_log_nodes")),
    )
    op.create_table(
        "log_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_log_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_state")),
    )
    op.create_table(
        "log_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_log_checkpoints")),
    )
    op.create_table(
        "log_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("private_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("retired_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_log_keys")),
    )
    _log_existing_versions()


def _log_existing_versions() -> None:
    """Append a leaf per stored version, as ``log.append`` did at this revision: only this revision's columns
    (later revisions add columns this one must not write), the complete subtrees, the state row."""
    from dbp.clock import timestamp
    from dbp.integrity import log, merkle

    conn = op.get_bind()
    versions = sa.table("passport_versions", sa.column("dpp_id"), sa.column("version"), sa.column("sha256"),
                        sa.column("created_at"))
    leaves = sa.table("log_leaves", *(sa.column(c) for c in ("leaf_index", "kind", "dpp_id", "version", "sha256",
                                                             "at", "leaf_hash")))
    nodes = sa.table("log_nodes", sa.column("level"), sa.column("idx"), sa.column("hash"))
    order = (versions.c.created_at, versions.c.dpp_id, versions.c.version)
    after: tuple[str, str, int] | None = None
    frontier = merkle.Frontier()
    while True:
        query = sa.select(versions.c.dpp_id, versions.c.version, versions.c.sha256, versions.c.created_at)
        if after is not None:
            query = query.where(sa.tuple_(*order) > sa.tuple_(after[0], after[1], after[2]))
        rows = conn.execute(query.order_by(*order).limit(BATCH)).all()
        if not rows:
            break
        leaf_rows: list[dict[str, object]] = []
        node_rows: list[dict[str, object]] = []
        for d, v, sha, at in rows:
            digest = log.Leaf(d, v, sha, at).leaf_hash()
            leaf_rows.append({"leaf_index": frontier.size, "kind": log.KIND_VERSION, "dpp_id": d, "version": v,
                              "sha256": sha, "at": at, "leaf_hash": digest})
            node_rows.extend({"level": n.level, "idx": n.index, "hash": n.digest} for n in frontier.append(digest))
        conn.execute(leaves.insert(), leaf_rows)
        conn.execute(nodes.insert(), node_rows)
        after = (rows[-1][3], rows[-1][0], rows[-1][1])
    if frontier.size:
        state = sa.table("log_state", sa.column("id"), sa.column("size"), sa.column("frontier"),
                         sa.column("updated_at"))
        conn.execute(state.insert(), [{"id": 1, "size": frontier.size, "frontier": b"".join(frontier.hashes),
                                       "updated_at": timestamp()}])


def downgrade() -> None:
    op.drop_index("ix_log_leaves_dpp_id_version", table_name="log_leaves")
    for table in ("log_keys", "log_checkpoints", "log_state", "log_nodes", "log_leaves"):
        op.drop_table(table)

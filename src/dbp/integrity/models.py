"""Storage of the repository's transparency log (``dbp.integrity.log``) and of the key that signs its checkpoints.

* ``log_leaves`` — one row per leaf, in log order: the fields the leaf commits to (its canonical bytes are
  re-derived from them, ``log.Leaf.encode``) and its RFC 9162 leaf hash. Inserted, never updated or deleted.
* ``log_nodes`` — the hash of every complete subtree (level, index) = leaves [index * 2**level,
  (index + 1) * 2**level), level 0 included, written once when its last leaf is appended
  (``merkle.Frontier.append``). Proofs read O(log n) of these rows, never the leaves.
* ``log_state`` — one row (id 1): the log's size and its frontier (the hashes of the maximal complete
  subtrees of [0, size), concatenated), so an append reads one row and rebuilds nothing. Appenders lock it.
* ``log_checkpoints`` — the latest signed checkpoint (C2SP signed note); older ones are deleted when a newer
  one is stored (witnesses keep their own copies; proofs need only the stored nodes).
* ``log_keys`` — the repository's Ed25519 key: it signs checkpoints and passport versions (``signing``), its
  private half encrypted at rest with a key derived from DBP_SECRET_KEY.

Integrity imports no other domain, so there is no foreign key to ``passport_versions``: the log stands on its
own, and a leaf outlives anything else.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, LargeBinary, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dbp.db import Base

# Fixed-width ISO 8601 UTC strings, as in every other table (dbp.clock).
TS = String(27)
# SQLite: INTEGER PRIMARY KEY is the rowid (no second index); PostgreSQL: BIGINT (leaf indexes are uint64).
INDEX = BigInteger().with_variant(Integer, "sqlite")

STATE_ID = 1


class LogLeaf(Base):
    """Leaf ``leaf_index`` of the log: what it commits to and its leaf hash SHA-256(0x00 || leaf bytes)."""

    __tablename__ = "log_leaves"

    leaf_index: Mapped[int] = mapped_column(INDEX, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32))
    dpp_id: Mapped[str] = mapped_column(String(256))
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    at: Mapped[str] = mapped_column(TS)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary)
    kid: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the key that signed the version
    public_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)  # of its public view
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)  # other kinds' members, canonical JSON

    # inclusion proofs look leaves up by (dppId, version). Not unique: a version the database forgot (rows deleted
    # underneath the repository) and that is written again is logged again — both leaves stay, visibly.
    __table_args__ = (Index("ix_log_leaves_dpp_id_version", "dpp_id", "version"),)


class LogNode(Base):
    """The hash of the complete subtree of the 2**level leaves starting at ``idx * 2**level``. Never updated."""

    __tablename__ = "log_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class LogState(Base):
    """The single row (id 1) appenders lock: the log's size and its frontier (popcount(size) 32-byte hashes,
    largest subtree first). Missing means the empty log."""

    __tablename__ = "log_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    frontier: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[str] = mapped_column(TS)

    __table_args__ = (CheckConstraint(f"id = {STATE_ID}", name="single_row"),)


class LogCheckpoint(Base):
    """A signed checkpoint: the C2SP signed note of (origin, size, root), as served."""

    __tablename__ = "log_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary)
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(TS)


class LogKey(Base):
    """The repository's Ed25519 key (signs checkpoints and versions): raw public key, raw private key encrypted
    (Fernet) with a key derived from DBP_SECRET_KEY. The newest key without ``retired_at`` signs."""

    __tablename__ = "log_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    private_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(TS)
    retired_at: Mapped[str | None] = mapped_column(TS, nullable=True)

"""The repository's transparency log: an RFC 9162 Merkle tree over every passport version, stored, signed and
served. Keyword-only functions over a SQLAlchemy ``Session``; they flush, the caller commits.

**Leaves.** A leaf commits to one passport version, or to a digest of access-log entries. Its bytes are the
RFC 8785 canonical JSON of::

    {"at": "<version's createdAt, 2027-02-18T10:00:00.000000Z>", "dppId": "<passport id>",
     "kid": "<key that signed the version>", "kind": "passportVersion",
     "publicSha256": "<SHA-256 of its public view>",
     "sha256": "<lowercase hex SHA-256 of the version's canonical bytes>", "version": <version number>}

(``kid`` and ``publicSha256`` are absent for versions logged before signing existed) or, for a digest,
``{"at", "count", "fromId", "kind": "accessLogDigest", "sha256", "toId"}`` (members sorted by key, no
whitespace, UTF-8; ``Leaf.encode``); its hash is SHA-256(0x00 || bytes) (RFC 9162 §2.1.1).

**Appending** (``append``) happens in the caller's transaction, so a version and its leaf commit or roll back
together. Appenders are serialised on the one ``log_state`` row (SELECT … FOR UPDATE on PostgreSQL; SQLite's
write transactions already are, BEGIN IMMEDIATE): take it after every other lock of the transaction (the passport
rows), so two writers never wait on each other in opposite orders. One call appends any number of leaves with
one executemany per table: the leaf rows and every complete subtree they complete (``merkle.Frontier``); the new
size and frontier replace the state row. Nothing is ever rebuilt.

**Checkpoints** (``checkpoint``) are C2SP signed notes of (origin, size, root), made when the log grew since the
latest one and stored in place of it; ``Checkpointer`` makes them every second in the server. The signing key
lives in ``log_keys``, created on first use, its private half encrypted with a key derived from DBP_SECRET_KEY.

**Proofs and leaves** are served only within the latest checkpoint, so every answer can be checked against a
signed root: ``inclusion_proof`` / ``consistency_proof`` fetch exactly the complete subtrees the RFC 9162 proof
is made of (``merkle.inclusion_plan`` / ``consistency_plan``) in one query. Fails closed: malformed arguments
raise ``BadRequest``, sizes beyond the latest checkpoint and unknown leaves ``NotFound``, and storage that does
not hold what the log promises (a missing node, a corrupt frontier, a log shorter than its checkpoint)
``VerificationError``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from sqlalchemy import Table, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from dbp.clock import timestamp
from dbp.db import transaction
from dbp.errors import BadRequest, Conflict, FieldError, NotFound, ServiceUnavailable, VerificationError
from dbp.integrity import merkle
from dbp.integrity.canonical import canonical_bytes
from dbp.integrity.checkpoint import Checkpoint, Ed25519Signer, VerifierKey, sign_checkpoint
from dbp.integrity.models import STATE_ID, LogCheckpoint, LogKey, LogLeaf, LogNode, LogState

log = logging.getLogger("dbp.integrity")

KIND_VERSION = "passportVersion"
KIND_ACCESS_DIGEST = "accessLogDigest"
#: At most this many leaves per ``leaves`` call.
MAX_LEAVES = 1000
#: Seconds between two looks of the ``Checkpointer`` at the log (the issue wants at least one per second).
CHECKPOINT_INTERVAL = 1.0
#: Days a retired key keeps co-signing checkpoints after a rotation (witnesses that pinned it follow meanwhile).
ROTATION_OVERLAP_DAYS = 30
#: Seconds between two looks at which key is active (a rotation in another process is followed within this).
KEY_CHECK_INTERVAL = 1.0
#: Seconds between two reloads of the co-signing keys even when the active key did not change.
COSIGNER_REFRESH = 3600.0
#: The largest size or index the API accepts (PostgreSQL BIGINT).
MAX_INDEX = 2**63 - 1

# Core tables: appends are executemany INSERTs without the ORM's per-row work.
_LEAVES = cast(Table, LogLeaf.__table__)
_NODES = cast(Table, LogNode.__table__)
_STATE = cast(Table, LogState.__table__)
_CHECKPOINTS = cast(Table, LogCheckpoint.__table__)

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_KID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


# --- leaves ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leaf:
    """What one leaf commits to. ``ValueError`` on construction from fields that are not a stored version's
    (or, for ``accessLogDigest`` leaves, a digest's).

    A ``passportVersion`` leaf: the version's id, number, content hash and time, and — for versions written since
    signing — the key that signed it (``kid``) and the SHA-256 of its public view (``publicSha256``), so the
    public can check the view it is shown against the log. An ``accessLogDigest`` leaf (``digest_leaf``): the
    SHA-256 over a range of access-log entries, with ``detail`` {fromId, toId, count}; its ``dpp_id`` is "" and
    ``version`` 0 (stored so, never in its bytes)."""

    dpp_id: str
    version: int
    sha256: str
    at: str
    kind: str = KIND_VERSION
    kid: str | None = None
    public_sha256: str | None = None
    detail: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.sha256, str) or not _HEX64.fullmatch(self.sha256):
            raise ValueError(f"leaf sha256: expected 64 lowercase hex digits, got {self.sha256!r:.80}")
        if not isinstance(self.at, str) or not _TS.fullmatch(self.at):
            raise ValueError(f"leaf at: expected a stored timestamp, got {self.at!r:.40}")
        if self.kind == KIND_ACCESS_DIGEST:
            self._check_digest()
            return
        if self.kind != KIND_VERSION:
            raise ValueError(f"leaf kind: expected {KIND_VERSION!r} or {KIND_ACCESS_DIGEST!r}, got {self.kind!r:.40}")
        if not isinstance(self.dpp_id, str) or not 0 < len(self.dpp_id) <= 256:
            raise ValueError(f"leaf dppId: expected 1..256 characters, got {self.dpp_id!r:.80}")
        if type(self.version) is not int or not 1 <= self.version <= 2**31 - 1:
            raise ValueError(f"leaf version: expected an integer >= 1, got {self.version!r:.40}")
        if self.kid is not None and (not isinstance(self.kid, str) or not _KID.fullmatch(self.kid)):
            raise ValueError(f"leaf kid: expected a key id, got {self.kid!r:.80}")
        if self.public_sha256 is not None and (not isinstance(self.public_sha256, str)
                                               or not _HEX64.fullmatch(self.public_sha256)):
            raise ValueError(f"leaf publicSha256: expected 64 lowercase hex digits, got {self.public_sha256!r:.80}")
        if self.detail is not None:
            raise ValueError("leaf detail: a passportVersion leaf has none")

    def _check_digest(self) -> None:
        if self.dpp_id != "" or self.version != 0 or self.kid is not None or self.public_sha256 is not None:
            raise ValueError("accessLogDigest leaf: expected no dppId, version, kid or publicSha256")
        d = self.detail
        if not isinstance(d, dict) or set(d) != {"fromId", "toId", "count"} or not all(
                type(v) is int and 0 <= v <= MAX_INDEX for v in d.values()) or d["fromId"] > d["toId"]:
            raise ValueError(f"accessLogDigest leaf detail: expected {{fromId <= toId, count}} integers, "
                             f"got {d!r:.120}")

    def as_json(self) -> dict[str, Any]:
        if self.kind == KIND_ACCESS_DIGEST:
            assert self.detail is not None
            return {"at": self.at, "kind": self.kind, "sha256": self.sha256, **self.detail}
        out: dict[str, Any] = {"at": self.at, "dppId": self.dpp_id, "kind": self.kind, "sha256": self.sha256,
                               "version": self.version}
        if self.kid is not None:
            out["kid"] = self.kid
        if self.public_sha256 is not None:
            out["publicSha256"] = self.public_sha256
        return out

    def encode(self) -> bytes:
        """The leaf bytes: RFC 8785 canonical JSON of ``as_json()``."""
        return canonical_bytes(self.as_json())

    def leaf_hash(self) -> bytes:
        """RFC 9162 §2.1.1: SHA-256(0x00 || leaf bytes)."""
        return merkle.hash_leaf(self.encode())

    def row(self) -> dict[str, Any]:
        """The ``log_leaves`` columns of this leaf (but its index and hash)."""
        return {"kind": self.kind, "dpp_id": self.dpp_id, "version": self.version, "sha256": self.sha256,
                "at": self.at, "kid": self.kid, "public_sha256": self.public_sha256,
                "detail": None if self.detail is None else canonical_bytes(self.detail).decode("ascii")}


def digest_leaf(*, sha256: str, from_id: int, to_id: int, count: int, at: str) -> Leaf:
    """The leaf of an access-log digest: ``sha256`` over the ``count`` entries with ids in [from_id, to_id]."""
    return Leaf("", 0, sha256, at, KIND_ACCESS_DIGEST, detail={"fromId": from_id, "toId": to_id, "count": count})


@dataclass(frozen=True, slots=True)
class StoredLeaf:
    index: int
    leaf: Leaf
    leaf_hash: bytes

    def as_json(self) -> dict[str, Any]:
        return {"leafIndex": self.index, "leaf": self.leaf.as_json(), "leafData": b64(self.leaf.encode()),
                "leafHash": b64(self.leaf_hash)}


def b64(data: bytes) -> str:
    """Standard padded base64 (RFC 4648 §4), as checkpoints write hashes."""
    return base64.b64encode(data).decode("ascii")


# --- state -----------------------------------------------------------------------------------------------------


def _insert_ignore(session: Session, table: Any, row: dict[str, Any]) -> None:
    """INSERT … ON CONFLICT DO NOTHING (SQLite and PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    stmt = (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)).values(**row)
    session.execute(stmt.on_conflict_do_nothing())


def _frontier(size: int, blob: bytes) -> merkle.Frontier:
    blob = bytes(blob)
    try:
        return merkle.Frontier(size, [blob[i:i + merkle.HASH_SIZE] for i in range(0, len(blob), merkle.HASH_SIZE)])
    except ValueError as exc:
        raise VerificationError(f"log state: expected the frontier of {size} leaves, got {len(blob)} bytes "
                                f"({exc})") from None


def _state(session: Session, *, lock: bool) -> merkle.Frontier:
    """The log's frontier; with ``lock`` the state row is locked (created if missing) until the transaction ends."""
    stmt = select(LogState.size, LogState.frontier).where(LogState.id == STATE_ID)
    if lock:
        stmt = stmt.with_for_update()
    row = session.execute(stmt).first()
    if row is None and lock:
        _insert_ignore(session, _STATE,
                       {"id": STATE_ID, "size": 0, "frontier": b"", "updated_at": timestamp()})
        row = session.execute(stmt).first()
    if row is None:
        return merkle.Frontier()
    return _frontier(row[0], row[1])


def lock(session: Session) -> int:
    """Take the log's lock (the one ``append`` takes) until the transaction ends; returns the log's size. For
    writers that must be ordered with appends (access-log digests)."""
    return _state(session, lock=True).size


def size(session: Session) -> int:
    """The number of leaves appended and committed (or appended in this transaction)."""
    return int(session.scalar(select(LogState.size).where(LogState.id == STATE_ID)) or 0)


def append(session: Session, *, leaves: Sequence[Leaf]) -> range:
    """Append ``leaves`` in order in the caller's transaction; returns their leaf indexes. Locks the log until the
    transaction ends. ``ValueError`` for something that is not a ``Leaf``."""
    if not leaves:
        return range(0)
    frontier = _state(session, lock=True)
    kids = {leaf.kid for leaf in leaves if isinstance(leaf, Leaf) and leaf.kid is not None}
    if kids:  # a rotation commits under this lock: a version signed just before it must not be logged after it
        retired = session.scalars(select(LogKey.kid).where(LogKey.kid.in_(kids), LogKey.retired_at.is_not(None)))
        if retired.first() is not None:
            raise Conflict("the repository's signing key was rotated while this was written; retry the request")
    first = frontier.size
    leaf_rows: list[dict[str, Any]] = []
    node_rows: list[dict[str, Any]] = []
    for leaf in leaves:
        if not isinstance(leaf, Leaf):
            raise ValueError(f"expected a Leaf, got {type(leaf).__name__}")
        digest = leaf.leaf_hash()
        leaf_rows.append({"leaf_index": frontier.size, **leaf.row(), "leaf_hash": digest})
        node_rows.extend({"level": s.level, "idx": s.index, "hash": s.digest} for s in frontier.append(digest))
    session.execute(insert(_LEAVES), leaf_rows)
    session.execute(insert(_NODES), node_rows)
    result = session.execute(
        update(_STATE).where(LogState.id == STATE_ID, LogState.size == first)
        .values(size=frontier.size, frontier=b"".join(frontier.hashes), updated_at=timestamp()))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise VerificationError(f"log state: expected size {first} under the lock, found it changed")
    return range(first, frontier.size)


# --- reading ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root_hash: bytes
    note: str
    created_at: str


def latest_checkpoint(session: Session) -> StoredCheckpoint | None:
    row = session.execute(select(LogCheckpoint.size, LogCheckpoint.root_hash, LogCheckpoint.note,
                                 LogCheckpoint.created_at).order_by(LogCheckpoint.size.desc()).limit(1)).first()
    return None if row is None else StoredCheckpoint(row[0], bytes(row[1]), row[2], row[3])


def require_checkpoint(session: Session) -> StoredCheckpoint:
    latest = latest_checkpoint(session)
    if latest is None:
        raise ServiceUnavailable("the log has no signed checkpoint yet; one is made every second, retry shortly")
    return latest


def _int(name: str, value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_INDEX:
        raise BadRequest(f"{name} must be an integer in 0..{MAX_INDEX}, got {value!r:.40}",
                         details=[FieldError(name, "log.integer", f"expected an integer in 0..{MAX_INDEX}")])
    return value


def _within(name: str, value: int, latest: StoredCheckpoint) -> None:
    if value > latest.size:
        raise NotFound(f"{name} {value} is beyond the latest signed checkpoint (tree size {latest.size}); "
                       "ask for a size it covers, or wait for the next checkpoint",
                       details=[FieldError(name, "log.beyondCheckpoint", f"at most {latest.size}")])


def stored_leaf(row: Any) -> StoredLeaf:
    """A ``log_leaves`` row (``LEAF_COLUMNS``) as a leaf; ``VerificationError`` when it is not a well-formed one."""
    index, kind, dpp_id, version, sha, at, digest, kid, public_sha, detail = row
    try:
        parsed = None if detail is None else orjson.loads(detail)
        leaf = Leaf(dpp_id, version, sha, at, kind, kid, public_sha, parsed)
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise VerificationError(f"log leaf {index}: expected a well-formed leaf, got {exc}") from None
    return StoredLeaf(index, leaf, bytes(digest))


LEAF_COLUMNS = (LogLeaf.leaf_index, LogLeaf.kind, LogLeaf.dpp_id, LogLeaf.version, LogLeaf.sha256, LogLeaf.at,
                LogLeaf.leaf_hash, LogLeaf.kid, LogLeaf.public_sha256, LogLeaf.detail)


def leaf_at(session: Session, *, index: int) -> StoredLeaf:
    """The leaf at ``index``; NotFound beyond the latest checkpoint."""
    latest = require_checkpoint(session)
    if _int("leafIndex", index) >= latest.size:
        raise NotFound(f"leaf {index} is not covered by the latest signed checkpoint (tree size {latest.size})",
                       details=[FieldError("leafIndex", "log.beyondCheckpoint", f"below {latest.size}")])
    row = session.execute(select(*LEAF_COLUMNS).where(LogLeaf.leaf_index == index)).first()
    if row is None:
        raise VerificationError(f"log storage: expected leaf {index} (within the latest checkpoint), got none")
    return stored_leaf(row)


def find_leaf(session: Session, *, dpp_id: str, version: int) -> StoredLeaf:
    """The latest leaf of passport version (``dpp_id``, ``version``); NotFound if it is not logged."""
    if "\x00" in dpp_id or not 0 < len(dpp_id) <= 256:
        raise NotFound(f"no log leaf for passport {dpp_id!r:.80}")
    row = session.execute(select(*LEAF_COLUMNS).where(LogLeaf.dpp_id == dpp_id, LogLeaf.version == version)
                          .order_by(LogLeaf.leaf_index.desc()).limit(1)).first()
    if row is None:
        raise NotFound(f"no log leaf for version {version} of passport {dpp_id}")
    return stored_leaf(row)


def leaves(session: Session, *, start: int, end: int) -> list[StoredLeaf]:
    """Leaves [start, end) in order: at most ``MAX_LEAVES``, within the latest checkpoint."""
    _int("start", start)
    _int("end", end)
    if start >= end:
        raise BadRequest(f"start must be below end, got start={start}, end={end}",
                         details=[FieldError("start", "log.range", "expected start < end")])
    if end - start > MAX_LEAVES:
        raise BadRequest(f"at most {MAX_LEAVES} leaves per request, asked for {end - start}",
                         details=[FieldError("end", "log.rangeTooLarge", f"expected end - start <= {MAX_LEAVES}")])
    _within("end", end, require_checkpoint(session))
    rows = session.execute(select(*LEAF_COLUMNS).where(LogLeaf.leaf_index >= start, LogLeaf.leaf_index < end)
                           .order_by(LogLeaf.leaf_index)).all()
    found = [stored_leaf(r) for r in rows]
    if [s.index for s in found] != list(range(start, end)):
        raise VerificationError(f"log storage: expected leaves {start}..{end - 1}, got {len(found)} of them")
    return found


def _proof(session: Session, plan: merkle.ProofPlan) -> list[bytes]:
    """The proof hashes of ``plan`` from the stored complete subtrees, fetched in one query."""
    wanted = {node for nodes in plan for node in nodes}
    if not wanted:
        return []
    # One equality pair per node, OR-ed: SQLite answers a row-value IN ((level, idx) IN (VALUES …)) with a
    # scan of the whole table (~150 ms at 10^6 leaves), the OR of keys with one primary-key search each.
    # Plain SQL: building the same as an expression costs more than the query (~40 comparisons).
    mark = "?" if session.get_bind().dialect.paramstyle == "qmark" else "%s"
    where = " OR ".join([f"(level = {mark} AND idx = {mark})"] * len(wanted))
    params = tuple(value for node in wanted for value in (node.level, node.index))
    rows = session.connection().exec_driver_sql(
        f"SELECT level, idx, hash FROM {LogNode.__tablename__} WHERE {where}", params).all()
    stored = {merkle.Node(level, idx): bytes(digest) for level, idx, digest in rows}

    def subtree_hash(start: int, end: int) -> bytes:
        node = merkle.node_for_range(start, end)
        digest = stored.get(node)
        if digest is None:
            raise VerificationError(f"log storage: expected the hash of leaves [{start}, {end}), got none")
        return digest

    return merkle.build_proof(plan, subtree_hash)


def inclusion_proof(session: Session, *, index: int, size: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 inclusion proof of leaf ``index`` in the tree of ``size`` leaves (<= the latest
    checkpoint's size)."""
    _int("leafIndex", index)
    _int("treeSize", size)
    if index >= size:
        raise BadRequest(f"leaf index {index} is not in a tree of {size} leaves",
                         details=[FieldError("leafIndex", "log.indexBeyondSize", "expected leafIndex < treeSize")])
    _within("treeSize", size, require_checkpoint(session))
    return _proof(session, merkle.inclusion_plan(index, size))


def consistency_proof(session: Session, *, size1: int, size2: int) -> list[bytes]:
    """RFC 9162 §2.1.4.1 consistency proof from the tree of ``size1`` leaves to the tree of ``size2``
    (<= the latest checkpoint's size)."""
    _int("from", size1)
    _int("to", size2)
    if size1 > size2:
        raise BadRequest(f"from must not exceed to, got from={size1}, to={size2}",
                         details=[FieldError("from", "log.sizeOrder", "expected from <= to")])
    _within("to", size2, require_checkpoint(session))
    return _proof(session, merkle.consistency_plan(size1, size2))


# --- checkpoints -----------------------------------------------------------------------------------------------


def origin_of(base_url: str) -> str:
    """The log's origin line (and key name): the public base URL without scheme, plus ``/log``
    (``https://dpp.example.com`` → ``dpp.example.com/log``)."""
    parts = urlsplit(base_url)
    return f"{parts.netloc}{parts.path.rstrip('/')}/log"


def needs_checkpoint(session: Session) -> bool:
    """True when the log has no checkpoint, or has grown past the latest one."""
    latest = latest_checkpoint(session)
    return latest is None or size(session) != latest.size


def checkpoint(session: Session, *, signers: Sequence[Ed25519Signer], origin: str) -> StoredCheckpoint | None:
    """Sign and store a checkpoint of the current log when it has none or grew since the latest (which it
    replaces); None when nothing changed. ``VerificationError`` if the log is shorter than its latest checkpoint."""
    frontier = _state(session, lock=True)
    latest = latest_checkpoint(session)
    if latest is not None and latest.size == frontier.size:
        return None
    if latest is not None and latest.size > frontier.size:
        raise VerificationError(f"log state: expected at least the {latest.size} leaves of the latest checkpoint, "
                                f"got {frontier.size}")
    root = frontier.root()
    note = sign_checkpoint(Checkpoint(origin, frontier.size, root), signers).decode("utf-8")
    stored = StoredCheckpoint(frontier.size, root, note, timestamp())
    _insert_ignore(session, _CHECKPOINTS, {"size": stored.size, "root_hash": root, "note": note,
                                                      "created_at": stored.created_at})
    session.execute(delete(_CHECKPOINTS).where(LogCheckpoint.size < stored.size))
    return stored


# --- the signing key -------------------------------------------------------------------------------------------


def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"dbp/log-key-encryption/" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def create_key(session: Session, *, secret_key: str) -> str:
    """Add a new checkpoint signing key (it signs from now on); returns its kid."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    kid = f"lk-{uuid.uuid4().hex[:16]}"
    session.add(LogKey(kid=kid, public_key=key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
                       private_encrypted=_fernet(secret_key).encrypt(private).decode("ascii"), created_at=timestamp()))
    session.flush()
    return kid


def _active_key(session: Session) -> LogKey | None:
    return session.scalars(select(LogKey).where(LogKey.retired_at.is_(None))
                           .order_by(LogKey.created_at.desc(), LogKey.kid.desc()).limit(1)).first()


def load_key(session: Session, *, secret_key: str) -> tuple[LogKey, Ed25519PrivateKey, bool]:
    """The active key's row and private key, and whether it was created now; creates the key on first use
    (under the log lock, so concurrent processes end up with one). ``VerificationError`` if the stored key
    cannot be decrypted with ``secret_key`` or is not the key its public half says."""
    created = False
    row = _active_key(session)
    if row is None:
        _state(session, lock=True)
        row = _active_key(session)
        if row is None:
            create_key(session, secret_key=secret_key)
            created = True
            row = _active_key(session)
    assert row is not None
    return row, decrypt_key(row, secret_key), created


def load_signer(session: Session, *, secret_key: str, origin: str) -> Ed25519Signer:
    """The checkpoint signer of the active key under the key name ``origin`` (``load_key``)."""
    _, key, _ = load_key(session, secret_key=secret_key)
    return Ed25519Signer(origin, key)


def active_kid(session: Session) -> str | None:
    """The kid of the key that signs now (None before the first one exists): one small query."""
    return session.scalar(select(LogKey.kid).where(LogKey.retired_at.is_(None))
                          .order_by(LogKey.created_at.desc(), LogKey.kid.desc()).limit(1))


def rotate_key(session: Session, *, secret_key: str) -> str:
    """Retire every active repository key (they stay published and keep verifying what they signed) and create
    the one that signs versions and checkpoints from now on; returns its kid. Under the log lock, so no version
    is logged with a key retired under it (``append`` refuses those)."""
    _state(session, lock=True)
    now = timestamp()
    session.execute(update(LogKey).where(LogKey.retired_at.is_(None)).values(retired_at=now))
    return create_key(session, secret_key=secret_key)


def decrypt_key(row: LogKey, secret_key: str) -> Ed25519PrivateKey:
    """The private key of ``row``; ``VerificationError`` if it does not decrypt with ``secret_key`` or is not the
    private half of the row's public key (a key written into ``log_keys`` by anything but dbp)."""
    try:
        key = Ed25519PrivateKey.from_private_bytes(_fernet(secret_key).decrypt(row.private_encrypted.encode()))
    except (InvalidToken, ValueError):
        raise VerificationError(f"log signing key {row.kid}: cannot decrypt it (DBP_SECRET_KEY changed, or the "
                                "row was tampered with)") from None
    if key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) != bytes(row.public_key):
        raise VerificationError(f"log signing key {row.kid}: expected the private key of its stored public key")
    return key


def cosigners(session: Session, *, secret_key: str, origin: str, overlap_days: int = ROTATION_OVERLAP_DAYS
              ) -> list[Ed25519Signer]:
    """The checkpoint signers: the active key first, then every key retired less than ``overlap_days`` ago, so
    that witnesses that pinned a retired key keep verifying checkpoints while they learn the new one."""
    since = timestamp(datetime.now(UTC) - timedelta(days=overlap_days))
    rows = session.scalars(select(LogKey).where(or_(LogKey.retired_at.is_(None), LogKey.retired_at > since))
                           .order_by(LogKey.retired_at.is_(None).desc(), LogKey.created_at.desc())).all()
    return [Ed25519Signer(origin, decrypt_key(row, secret_key)) for row in rows]


class Checkpointer:
    """Keeps the log's checkpoint fresh: every ``interval`` seconds, if the log grew, a new signed checkpoint.

    ``tick`` looks through ``read_factory`` first (on SQLite that takes no write lock) and opens a write
    transaction only when there is something to sign. ``start`` / ``stop`` run it as a task on the event loop,
    the database work in a worker thread; an error is logged and tried again at the next tick.
    """

    def __init__(self, factory: sessionmaker[Session], *, secret_key: str, origin: str,
                 read_factory: sessionmaker[Session] | None = None, interval: float = CHECKPOINT_INTERVAL) -> None:
        self.factory = factory
        self.read_factory = read_factory or factory
        self.secret_key = secret_key
        self.origin = origin
        self.interval = interval
        self._signers: list[Ed25519Signer] | None = None
        self._kid: str | None = None
        self._checked_at = 0.0
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None

    def signers(self) -> list[Ed25519Signer]:
        """The active key's signer first, then recently retired ones (``cosigners``); re-read when the active
        key changed (``dbp keys rotate`` in another process), else cached."""
        with self._lock:
            now = time.monotonic()
            if self._signers is not None and now - self._checked_at < KEY_CHECK_INTERVAL:
                return self._signers  # the hot path (served checkpoints, verifier key) costs no query
            with self.read_factory() as session:
                try:
                    kid = active_kid(session)
                finally:
                    session.rollback()
            self._checked_at = now
            if self._signers is None or kid is None or kid != self._kid or now - self._loaded_at > COSIGNER_REFRESH:
                with transaction(self.factory) as session:
                    load_key(session, secret_key=self.secret_key)  # creates the first key
                    self._signers = cosigners(session, secret_key=self.secret_key, origin=self.origin)
                    self._kid = active_kid(session)
                    self._loaded_at = now  # re-read hourly: a retired key stops co-signing after the overlap
            return self._signers

    def signer(self) -> Ed25519Signer:
        return self.signers()[0]

    def current_signer(self) -> Ed25519Signer | None:
        """The active key's signer as last loaded, without any database work (for the event loop); None before
        the first load. ``tick`` refreshes it every second in a worker thread."""
        signers = self._signers
        return signers[0] if signers else None

    def verifier(self) -> VerifierKey:
        return self.signer().verifier

    def tick(self) -> StoredCheckpoint | None:
        signers = self.signers()  # follows a rotation within a second, off the event loop
        with self.read_factory() as session:
            try:
                if not needs_checkpoint(session):
                    return None
            finally:
                session.rollback()
        with transaction(self.factory) as session:
            return checkpoint(session, signers=signers, origin=self.origin)

    async def _run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await asyncio.to_thread(self.tick)
            except Exception:
                log.exception("log checkpoint not made; trying again in %s s", self.interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval)

    def start(self) -> None:
        """Run ``tick`` every ``interval`` seconds on the running event loop until ``stop``."""
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._stopping), name="dbp-log-checkpoints")

    async def stop(self) -> None:
        """Stop ticking; returns once a tick in progress has finished."""
        if self._task is None or self._stopping is None:
            return
        self._stopping.set()
        await self._task
        self._task = None

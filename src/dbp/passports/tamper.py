"""Tamper evidence across domains: passport versions against their log leaves, the access log against its digests
in the log, and the appending of those digests. ``dbp audit-log verify`` and the sentinel (``dbp.sentinel``) run
``FullCheck``: ``dbp.integrity.audit.LogAudit`` (the log by itself), then ``VersionAudit``, then
``AccessLogAudit``; every problem is a numbered ``Finding`` naming the first bad entry.

**Versions** (``VersionAudit``), streamed in (dppId, version) order, each batch with the leaves of exactly its key
range in the same snapshot (so a version committed meanwhile never looks unlogged): the SHA-256 of the stored
canonical bytes equals the ``sha256`` column and what the version's leaf commits to; the public view's SHA-256
equals ``public_sha256`` and the leaf's ``publicSha256``; the JWS verifies over the canonical bytes with a published
key (``signing.verify_version``) and names the leaf's ``kid``; the leaf's time is the version's; exactly one
``passportVersion`` leaf per version, and no leaf for a version that is not stored.

**Access log** (``AccessLogAudit``): the ``accessLogDigest`` leaves, in log order, cover consecutive id ranges
from id 1 without gap or overlap, and each range's stored rows digest (``dbp.audit.digest``) to the leaf's
``sha256`` and ``count``. Rows above the last digest are not yet covered (at most one digest interval's worth).

**Digests** (``append_access_digest``): under the lock ``log.append`` takes (the ``log_state`` row), the rows with
ids in (last digested id, max id] — at most ``MAX_DIGEST_ROWS`` per leaf — are digested and one leaf appended, in
one transaction. The high-water mark is the log itself (the last digest leaf's ``toId``), so there is no second
copy to disagree, a restart resumes where the log says, and two processes cannot cover a range twice: the second
waits for the lock and then sees the first one's leaf. On PostgreSQL the transaction also takes
``LOCK TABLE access_log IN SHARE MODE``: it waits for every transaction that inserted access-log rows and has not
finished, so no row with an id at or below the max id can commit after the digest (sequence ids are handed out
before commit). Lock order is log_state, then access_log — the order of a passport write, which appends its leaf
before its access record. On SQLite write transactions are serial; staged read records get their ids when they are
moved, so callers move them first (``ReadLogWriter.flush``) for the digest to cover them.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select, text, tuple_
from sqlalchemy.orm import Session, sessionmaker

from dbp.audit import digest as access_digest
from dbp.audit.models import AccessLog
from dbp.clock import timestamp
from dbp.db import transaction
from dbp.errors import VerificationError
from dbp.integrity import log
from dbp.integrity.audit import Finding, Findings, LogAudit, SessionScope
from dbp.integrity.models import LogLeaf
from dbp.integrity.signing import kid_of, verify_version
from dbp.passports.models import PassportVersion

#: Rows of access_log one digest leaf covers at most (a larger backlog gets several leaves).
MAX_DIGEST_ROWS = 10_000  # rows per leaf: a digest holds the log lock (and on PostgreSQL SHARE on access_log)
VERSION_BATCH = 200

_VERSION_COLUMNS = (PassportVersion.dpp_id, PassportVersion.version, PassportVersion.created_at,
                    PassportVersion.sha256, PassportVersion.canonical, PassportVersion.public_sha256,
                    PassportVersion.public_canonical, PassportVersion.signature)


def _sha(text_value: str | None) -> str | None:
    return None if text_value is None else hashlib.sha256(text_value.encode("utf-8")).hexdigest()


# --- versions ↔ leaves -----------------------------------------------------------------------------------------


class VerifiedSignatures:
    """Signatures already verified by this process, so a repeated sweep need not verify them again: keyed by
    SHA-256 of (the canonical bytes' SHA-256, the JWS, the public key) — the same three give the same verdict.
    At most ``limit`` entries (~80 bytes each); when full, it is emptied and refilled."""

    def __init__(self, limit: int = 250_000) -> None:
        self.limit = limit
        self._seen: set[bytes] = set()

    @staticmethod
    def key(sha: str, signature: str, public_key: bytes | None) -> bytes | None:
        if public_key is None:
            return None
        return hashlib.sha256(b"%s\x00%s\x00%s" % (sha.encode(), signature.encode(), public_key)).digest()[:16]

    def __contains__(self, key: bytes) -> bool:
        return key in self._seen

    def add(self, key: bytes) -> None:
        if len(self._seen) >= self.limit:
            self._seen.clear()
        self._seen.add(key)


class VersionAudit:
    """Every stored version against its leaf (see the module docstring)."""

    def __init__(self, *, keys: dict[str, bytes], findings: Findings, batch: int = VERSION_BATCH,
                 verified: VerifiedSignatures | None = None) -> None:
        self.keys = keys
        self.findings = findings
        self.batch = batch
        self.checked = 0
        self.verified = verified

    def steps(self, scope: SessionScope) -> Iterator[int]:
        """Yields the number of versions checked after each batch. Each batch: the next ``batch`` versions in
        (dppId, version) order and every passportVersion leaf in the same key range, in one snapshot; past the
        last version, the leaves left over (strays) a bounded batch at a time."""
        last: tuple[str, int] | None = None
        while True:
            with scope() as s:
                q = select(*_VERSION_COLUMNS).order_by(PassportVersion.dpp_id, PassportVersion.version)
                lq = select(*log.LEAF_COLUMNS).where(LogLeaf.kind == log.KIND_VERSION)
                if last is not None:
                    q = q.where(tuple_(PassportVersion.dpp_id, PassportVersion.version) > tuple_(*last))
                    lq = lq.where(tuple_(LogLeaf.dpp_id, LogLeaf.version) > tuple_(*last))
                rows = s.execute(q.limit(self.batch)).all()
                more = len(rows) == self.batch
                if more:
                    lq = lq.where(tuple_(LogLeaf.dpp_id, LogLeaf.version) <= tuple_(rows[-1][0], rows[-1][1]))
                else:
                    lq = lq.limit(self.batch * 4)
                leaf_rows = s.execute(lq.order_by(LogLeaf.dpp_id, LogLeaf.version, LogLeaf.leaf_index)).all()
            if not more and len(leaf_rows) == self.batch * 4:
                # more strays than one batch: stop this round before the last key fetched (it may be partial)
                edge = (leaf_rows[-1][2], leaf_rows[-1][3])
                kept = [r for r in leaf_rows if (r[2], r[3]) != edge]
                if kept:
                    more = True
                    leaf_rows = kept
                    rows = [r for r in rows if (r[0], r[1]) < edge]
            leaves: dict[tuple[str, int], list[Any]] = defaultdict(list)
            for leaf_row in leaf_rows:
                leaves[(leaf_row[2], leaf_row[3])].append(leaf_row)
            for row in rows:
                self._version(row, leaves.pop((row[0], row[1]), []))
            for (dpp_id, version), stray in leaves.items():
                for leaf_row in stray:
                    self.findings.add(Finding(f"leaf {leaf_row[0]}", f"commits to version {version} of {dpp_id}, "
                                              "which is not stored", (leaf_row[0], leaf_row[0] + 1), (dpp_id,)))
            self.checked += len(rows)
            yield self.checked
            if not more:
                return
            keys = [(r[0], r[1]) for r in rows[-1:]] + [(r[2], r[3]) for r in leaf_rows[-1:]]
            last = max(keys)

    def check_keys(self, session: Session, keys: list[tuple[str, int]]) -> None:
        """Check just the versions ``keys`` (dppId, version) with their leaves, in ``session``'s snapshot."""
        wanted = set(keys)
        ids = sorted({k[0] for k in wanted})
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            leaves: dict[tuple[str, int], list[Any]] = defaultdict(list)
            for leaf_row in session.execute(select(*log.LEAF_COLUMNS).where(
                    LogLeaf.kind == log.KIND_VERSION, LogLeaf.dpp_id.in_(chunk)).order_by(LogLeaf.leaf_index)):
                leaves[(leaf_row[2], leaf_row[3])].append(leaf_row)
            for row in session.execute(select(*_VERSION_COLUMNS).where(PassportVersion.dpp_id.in_(chunk))):
                if (row[0], row[1]) in wanted:
                    self._version(row, leaves.get((row[0], row[1]), []))
                    self.checked += 1

    def _version(self, row: Any, leaf_rows: list[Any]) -> None:
        dpp_id, version, created_at, sha, canonical, public_sha, public_canonical, signature = row
        where = f"version {version} of {dpp_id}"
        problems: list[str] = []
        actual = _sha(canonical) or ""
        if actual != sha:
            problems.append(f"expected sha256 {sha} of its canonical bytes, got {actual}")
        actual_public = _sha(public_canonical)
        if actual_public != public_sha:
            problems.append(f"expected publicSha256 {public_sha} of its public view, got {actual_public}")
        signed_kid: str | None = None
        if signature is not None:
            try:
                signed_kid = kid_of(signature)
                memo = None if self.verified is None else self.verified.key(actual, signature,
                                                                             self.keys.get(signed_kid))
                if memo is None or self.verified is None or memo not in self.verified:
                    verify_version(signature, (canonical or "").encode("utf-8"), self.keys)
                    if memo is not None and self.verified is not None:
                        self.verified.add(memo)
            except VerificationError as exc:
                problems.append(f"signature: {exc.message.removeprefix('version signature: ')}")
        leaf_range: tuple[int, int] | None = None
        if not leaf_rows:
            problems.append("expected a log leaf committing to it, got none")
        elif len(leaf_rows) > 1:
            problems.append(f"expected exactly one log leaf, got {len(leaf_rows)} "
                            f"(leaves {', '.join(str(r[0]) for r in leaf_rows)})")
            leaf_range = (leaf_rows[0][0], leaf_rows[0][0] + 1)
        else:
            index = leaf_rows[0][0]
            leaf_range = (index, index + 1)
            try:
                leaf = log.stored_leaf(leaf_rows[0]).leaf
            except VerificationError:
                problems.append(f"its leaf {index} is malformed")
            else:
                if leaf.sha256 != actual:
                    problems.append(f"leaf {index} commits to sha256 {leaf.sha256}, its canonical bytes have {actual}")
                if leaf.public_sha256 is not None and leaf.public_sha256 != actual_public:
                    problems.append(f"leaf {index} commits to publicSha256 {leaf.public_sha256}, its public view "
                                    f"has {actual_public}")
                if leaf.kid != signed_kid:
                    problems.append(f"leaf {index} names key {leaf.kid}, its signature {signed_kid}")
                if leaf.at != created_at:
                    problems.append(f"leaf {index} has time {leaf.at}, the version {created_at}")
        if problems:
            self.findings.add(Finding(where, "; ".join(problems), leaf_range, (dpp_id,)))


# --- access log ↔ digests --------------------------------------------------------------------------------------


class AccessLogAudit:
    """Every ``accessLogDigest`` leaf against the access_log rows it covers (see the module docstring)."""

    def __init__(self, *, findings: Findings, size: int | None = None, batch: int = 1000) -> None:
        self.findings = findings
        self.size = size  # only leaves below this (the log size the log audit checked); None: all
        self.batch = batch
        self.rows = 0
        self.covered_upto = 0

    def steps(self, scope: SessionScope) -> Iterator[int]:
        """Yields the number of access-log rows checked after each digest."""
        after = -1
        while True:
            with scope() as s:
                q = select(*log.LEAF_COLUMNS).where(LogLeaf.kind == log.KIND_ACCESS_DIGEST,
                                                    LogLeaf.leaf_index > after)
                if self.size is not None:
                    q = q.where(LogLeaf.leaf_index < self.size)
                rows = s.execute(q.order_by(LogLeaf.leaf_index).limit(self.batch)).all()
            for row in rows:
                with scope() as s:
                    self._digest(s, row)
                yield self.rows
            if len(rows) < self.batch:
                return
            after = rows[-1][0]

    def _digest(self, session: Session, row: Any) -> None:
        index = row[0]
        try:
            leaf = log.stored_leaf(row).leaf
        except VerificationError:
            return  # the log audit reports the malformed leaf
        assert leaf.detail is not None
        first, last, count = leaf.detail["fromId"], leaf.detail["toId"], leaf.detail["count"]
        if first != self.covered_upto + 1:
            gap = (f"entries {self.covered_upto + 1}..{first - 1} are covered by no digest"
                   if first > self.covered_upto + 1 else f"entries {first}..{self.covered_upto} are covered twice")
            self.findings.add(Finding(f"access-log entries {first}..{last}", f"leaf {index} starts at {first}; "
                                      f"expected {self.covered_upto + 1} ({gap})"))
        actual, n = access_digest.digest_range(session, after=first - 1, upto=last)
        self.rows += n
        if actual != leaf.sha256 or n != count:
            self.findings.add(Finding(f"access-log entries {first}..{last}", f"digest mismatch: leaf {index} "
                                      f"commits to {leaf.sha256} over {count} entries, the stored entries give "
                                      f"{actual} over {n}"))
        self.covered_upto = max(self.covered_upto, last)


# --- the whole check -------------------------------------------------------------------------------------------


@dataclass
class FullCheck:
    """Log, versions, access log — in that order. ``steps`` yields (phase, done) after each batch."""

    origin: str | None = None
    check_extra: bool = True
    log_batch: int = 2048
    version_batch: int = VERSION_BATCH
    verified: VerifiedSignatures | None = None
    secret_key: str | None = None  # to check that every log key is one this repository made (LogAudit)
    findings: Findings = field(default_factory=Findings)
    log_size: int = 0
    versions: int = 0
    access_rows: int = 0
    access_covered_upto: int = 0

    def steps(self, scope: SessionScope) -> Iterator[tuple[str, int]]:
        audit = LogAudit(origin=self.origin, batch=self.log_batch, check_extra=self.check_extra,
                         findings=self.findings, secret_key=self.secret_key)
        for done in audit.steps(scope):
            self.log_size = audit.size
            yield "log", done
        start = self.findings.total
        versions = VersionAudit(keys=audit.keys, findings=self.findings, batch=self.version_batch,
                                verified=self.verified)
        for done in versions.steps(scope):
            self.versions = done
            yield "versions", done
        access = AccessLogAudit(findings=self.findings, size=audit.size)
        for done in access.steps(scope):
            self.access_rows = done
            yield "access", done
        self.access_covered_upto = access.covered_upto
        with scope() as s:
            self._name_passports(s, start)

    def _name_passports(self, session: Session, upto: int) -> None:
        """Log findings name the passports whose leaves they concern."""
        for i, f in enumerate(self.findings.items[:upto]):
            if f.leaves is None or f.dpp_ids:
                continue
            ids = session.scalars(select(LogLeaf.dpp_id).where(
                LogLeaf.leaf_index >= f.leaves[0], LogLeaf.leaf_index < f.leaves[1],
                LogLeaf.kind == log.KIND_VERSION).distinct()).all()
            self.findings.items[i] = Finding(f.where, f.message, f.leaves, tuple(sorted(ids)))

    def run(self, scope: SessionScope) -> Findings:
        for _ in self.steps(scope):
            pass
        return self.findings

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.findings.total == 0, "logSize": self.log_size, "versions": self.versions,
                "accessLogEntries": self.access_rows, "accessLogDigestedUpTo": self.access_covered_upto,
                "findings": [{"number": n, **f.as_json()} for n, f in enumerate(self.findings.items, 1)],
                "findingsTotal": self.findings.total}


# --- appending access-log digests ------------------------------------------------------------------------------


def last_digested_id(session: Session, *, hint: int = 0) -> tuple[int, int]:
    """(toId of the latest accessLogDigest leaf, its leaf index) — (0, -1) when there is none. ``hint``: a leaf
    index at or below the latest digest leaf, where the backward search may stop."""
    for low in ((hint, 0) if hint > 0 else (0,)):
        row = session.execute(select(LogLeaf.detail, LogLeaf.leaf_index).where(
            LogLeaf.kind == log.KIND_ACCESS_DIGEST, LogLeaf.leaf_index >= low)
            .order_by(LogLeaf.leaf_index.desc()).limit(1)).first()
        if row is not None:
            detail = orjson.loads(row[0]) if row[0] else {}
            to_id = detail.get("toId") if isinstance(detail, dict) else None
            if type(to_id) is not int:
                raise VerificationError(f"log leaf {row[1]}: expected an accessLogDigest with a toId, "
                                        f"got {row[0]!r:.80}")
            return to_id, int(row[1])
    return 0, -1


@dataclass(frozen=True)
class DigestLeaf:
    index: int
    leaf: log.Leaf


def append_access_digest(session: Session, *, max_rows: int = MAX_DIGEST_ROWS, hint: int = 0) -> DigestLeaf | None:
    """Append one accessLogDigest leaf for the rows not yet digested (at most ``max_rows`` of them), in the
    caller's transaction; None when there are none. Locks the log (and on PostgreSQL access_log, SHARE) until
    the transaction ends."""
    log.lock(session)  # the lock log.append takes: digesters and appenders serialise on it
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"LOCK TABLE {AccessLog.__tablename__} IN SHARE MODE"))
    after, _ = last_digested_id(session, hint=hint)
    upto = access_digest.upper_bound(session, after=after, limit=max_rows)
    if upto <= after:
        return None
    sha, count = access_digest.digest_range(session, after=after, upto=upto)
    if count == 0:
        return None
    leaf = log.digest_leaf(sha256=sha, from_id=after + 1, to_id=upto, count=count, at=timestamp())
    index = log.append(session, leaves=[leaf])
    return DigestLeaf(index.start, leaf)


def digest_access_log(factory: sessionmaker[Session], *, max_rows: int = MAX_DIGEST_ROWS, hint: int = 0,
                      ) -> list[DigestLeaf]:
    """Digest every row not yet digested, one transaction (and leaf) per ``max_rows`` rows."""
    out: list[DigestLeaf] = []
    while True:
        with transaction(factory) as session:
            made = append_access_digest(session, max_rows=max_rows, hint=hint)
        if made is None:
            return out
        out.append(made)
        hint = made.index



"""``dbp backup verify``: re-check everything a backup holds, from its own database alone (no repository needed —
that is the point of a backup whose operator is gone).

Per source, in one pass over its stored leaves (level 0 of ``backup_nodes``, in index order):

* every stored complete subtree (every level) is recomputed from the leaves and must equal the stored node (the
  nodes answer inclusion proofs, so a changed node would make the backup hand out bad evidence);
* at every stored checkpoint's size, the recomputed root must be the checkpoint's root, and the signed note must
  verify with a key the backup trusts for that source and name that size and root;
* every held version is verified again as on arrival (``verify.verify_entry_in_tree``: shape, content hash,
  signature with a trusted key, leaf hash, and that leaf is the one held at its position), against the newest
  checkpoint whose root the held leaves reproduce, and names the operator of its passport's newest signed body.

Problems are listed with what was expected and what was found (the first ``MAX_PROBLEMS`` per source) and
counted; nothing is changed. Exit code of the command: 0 all good, 3 a problem found, 1 could not run.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dbp.errors import ProofError, VerificationError
from dbp.integrity import merkle
from dbp.integrity.checkpoint import VerifierKey, verify_checkpoint
from dbp.replication import backup, verify
from dbp.replication.models import BackupCheckpoint, BackupNode, BackupSource, BackupVersion

MAX_PROBLEMS = 50
BATCH = 2000


@dataclass
class SourceCheck:
    source_id: str
    leaves: int = 0
    nodes: int = 0
    checkpoints: int = 0
    versions: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def as_json(self) -> dict[str, Any]:
        return {"sourceId": self.source_id, "ok": self.ok, "leaves": self.leaves, "nodes": self.nodes,
                "checkpoints": self.checkpoints, "versions": self.versions, "problemCount": self.problem_count,
                "problems": self.problems}


Progress = Callable[[str, int, int], None]  # (what, done, total)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _check_tree(session: Session, source: BackupSource, result: SourceCheck, progress: Progress | None
                ) -> set[int]:
    """The sizes of the checkpoints whose signed root the held leaves reproduce (problems recorded on the way)."""
    checkpoints = {c.tree_size: c for c in session.scalars(
        select(BackupCheckpoint).where(BackupCheckpoint.source_id == source.source_id))}
    verifiers = [VerifierKey(source.origin, raw) for raw in {k.public_key for k in backup.key_periods(source)}]
    for size, cp in checkpoints.items():
        result.checkpoints += 1
        try:
            seen = verify_checkpoint(cp.note.encode(), origin=source.origin, verifiers=verifiers).checkpoint
        except ProofError as exc:
            result.problem(f"checkpoint {size}: expected a note signed by a trusted key, got one that is not ({exc})")
            continue
        if seen.size != size or seen.root_hash != bytes(cp.root_hash):
            result.problem(f"checkpoint {size}: expected the note to name size {size} and root "
                           f"{_b64(bytes(cp.root_hash))}, got size {seen.size} root {_b64(seen.root_hash)}")
    # the inner nodes (about one per leaf): each must be popped by the leaf that completes it
    matched: set[int] = set()
    stored = {(int(level), int(idx)): bytes(digest) for level, idx, digest in session.execute(
        select(BackupNode.level, BackupNode.idx, BackupNode.hash).where(
            BackupNode.source_id == source.source_id, BackupNode.level > 0))}
    tree = merkle.Frontier()
    position = 0
    while True:
        rows = session.execute(select(BackupNode.idx, BackupNode.hash).where(
            BackupNode.source_id == source.source_id, BackupNode.level == 0, BackupNode.idx >= position)
            .order_by(BackupNode.idx).limit(BATCH)).all()
        if not rows:
            break
        for idx, digest in rows:
            if int(idx) != tree.size:
                result.problem(f"leaves: expected leaf {tree.size} next, got leaf {idx} (a leaf is missing)")
                return matched
            for subtree in tree.append(bytes(digest)):
                if subtree.level == 0:
                    continue
                held = stored.pop((subtree.level, subtree.index), None)
                result.nodes += 1
                if held != subtree.digest:
                    result.problem(f"node level {subtree.level} index {subtree.index}: expected {_b64(subtree.digest)}"
                                   f" from the leaves, got {_b64(held) if held else 'none'}")
            if tree.size in checkpoints:
                root = tree.root()
                if root != bytes(checkpoints[tree.size].root_hash):
                    result.problem(f"checkpoint {tree.size}: expected the held leaves to hash to its root "
                                   f"{_b64(bytes(checkpoints[tree.size].root_hash))}, got {_b64(root)}")
                else:
                    matched.add(tree.size)
        result.leaves = tree.size
        position = tree.size
        if progress is not None:
            progress(f"{source.source_id} tree", tree.size, source.tree_size)
    if tree.size != source.tree_size:
        result.problem(f"leaves: expected {source.tree_size} leaves held, got {tree.size}")
    for size in sorted(s for s in checkpoints if s > tree.size):  # a signed root nothing held reproduces
        result.problem(f"checkpoint {size}: expected the leaves it signs to be held, got only {tree.size} leaves")
    # leaves past the newest checkpoint are a prefix of a longer tree still being audited (several rounds): no
    # version may lie there, which the versions' check enforces
    for (level, idx) in sorted(stored)[:5]:
        result.problem(f"node level {level} index {idx}: held, but no leaves held complete it")
    return matched


def _check_versions(session: Session, source: BackupSource, result: SourceCheck, progress: Progress | None,
                    matched: set[int]) -> None:
    """Every held version against the newest checkpoint whose root the held leaves reproduced."""
    keys = backup.raw_keys(source)
    latest = session.get(BackupCheckpoint, (source.source_id, max(matched))) if matched else None
    if latest is None:
        if session.scalar(select(func.count()).select_from(BackupVersion)
                          .where(BackupVersion.source_id == source.source_id)):
            result.problem("versions: none checked — no signed checkpoint's root is reproduced by the held leaves")
        return
    verifiers = [VerifierKey(source.origin, raw) for raw in set(keys.values())]
    try:
        checkpoint = verify_checkpoint(latest.note.encode(), origin=source.origin, verifiers=verifiers)
    except ProofError:
        return  # reported by the tree check
    audited = verify.AuditedTree(latest.tree_size, bytes(latest.root_hash), checkpoint)
    total = session.scalar(select(func.count()).select_from(BackupVersion)
                           .where(BackupVersion.source_id == source.source_id)) or 0
    after = -1
    newest_of: dict[str, tuple[int, str | None]] = {}
    operators: dict[str, set[str | None]] = {}
    while True:
        rows = session.scalars(select(BackupVersion).where(
            BackupVersion.source_id == source.source_id, BackupVersion.position > after)
            .order_by(BackupVersion.position).limit(BATCH // 4)).all()
        if not rows:
            break
        hashes = backup.leaf_hashes(session, source_id=source.source_id, positions=[r.position for r in rows])
        for row in rows:
            result.versions += 1
            entry = entry_of(row)
            try:
                held = hashes.get(row.position)
                if held is None:
                    raise VerificationError(f"inclusion: no leaf held at position {row.position}")
                verify.verify_entry_in_tree(entry, body=bytes(row.canonical), keys=keys, audited=audited,
                                            leaf_hash=held)
            except VerificationError as exc:
                result.problem(f"{row.dpp_id}@{row.version} (position {row.position}): {exc.message}")
            newest = newest_of.get(row.dpp_id)
            if newest is None or row.version > newest[0]:
                newest_of[row.dpp_id] = (row.version, backup.operator_of(bytes(row.canonical)))
            operators.setdefault(row.dpp_id, set()).add(row.operator_id)
        after = rows[-1].position
        session.expunge_all()
        if progress is not None:
            progress(f"{source.source_id} versions", result.versions, total)
    for dpp_id, named_by_rows in operators.items():  # every version: the operator its newest signed body names
        named = newest_of[dpp_id][1]
        if named_by_rows != {named}:
            result.problem(f"{dpp_id}: expected every version held to name the operator of its newest signed body "
                           f"{named!r:.80}, got {sorted(map(str, named_by_rows))!r:.200}")


def entry_of(row: BackupVersion) -> dict[str, Any]:
    """The feed entry a held version came from (what ``verify_entry_in_tree`` checks)."""
    from dbp.integrity.log import Leaf

    leaf = Leaf(row.dpp_id, row.version, row.sha256, row.created_at, kid=row.kid, public_sha256=row.public_sha256)
    return {"position": row.position, "kind": verify.KIND, "dppId": row.dpp_id, "version": row.version,
            "createdAt": row.created_at, "change": row.change, "operatorId": row.operator_id,
            "dppStatus": row.dpp_status, "sha256": row.sha256, "signature": row.signature, "kid": row.kid,
            "publicSha256": row.public_sha256, "leafHash": _b64(leaf.leaf_hash())}


def recheck(session: Session, *, source_id: str | None = None, progress: Progress | None = None
            ) -> list[SourceCheck]:
    """Re-check every source (or ``source_id``) from the database (module docstring)."""
    chosen = [backup.get_source(session, source_id=source_id)] if source_id else backup.sources(session)
    results = []
    for source in chosen:
        result = SourceCheck(source.source_id)
        matched = _check_tree(session, source, result, progress)
        _check_versions(session, source, result, progress, matched)
        results.append(result)
    return results

"""Full re-check of the stored transparency log (``dbp audit-log verify``; the tamper sentinel runs it too).

What is checked, in one streaming pass over the leaves in index order (bounded memory: one batch of leaves, one
batch of node rows per tree level, and the nodes that did not match until their parent is checked):

1. **Leaves.** Every index in [0, size) is stored; each row's columns make a well-formed leaf
   (``log.stored_leaf``) whose RFC 9162 leaf hash SHA-256(0x00 || canonical bytes) (§2.1.1) is its stored
   ``leaf_hash``. The recomputed hash — what the leaf's *fields* commit to — is the truth from here on.
2. **Nodes.** Feeding the recomputed leaf hashes through ``merkle.Frontier`` yields every complete subtree in
   the order it completes (level by level within each aligned block); each is compared with its stored
   ``log_nodes`` row, read level by level in index order through one cursor per level. A node whose children (or
   whose leaf) already failed is a consequence, not reported again; so a single altered leaf, leaf hash or node
   gives one finding, naming it.
3. **State.** ``log_state``'s frontier is the hashes of the maximal complete subtrees of [0, size)
   (RFC 9162 §2.1.1's split), as the log committed to them; no leaf or node is stored beyond ``size``
   (``check_extra``; the sentinel, which runs while the log grows, skips it).
4. **Checkpoint.** The latest signed note verifies (C2SP signed-note, Ed25519) with a repository key from
   ``log_keys`` under the note's own origin (and ``origin``, when given); its size is at most the log's; its
   root hash equals the ``root_hash`` column and MTH of the stored tree at that size (§2.1.1).

Every problem is a ``Finding`` ("leaf 1234: expected leaf hash X, got Y") carrying the leaf range it concerns,
so a caller can name the passports affected; findings come in log order. Pure integrity: reads only the log
tables. ``steps`` yields after each batch so a background caller can throttle it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dbp.errors import VerificationError
from dbp.integrity import log, merkle
from dbp.integrity.checkpoint import VerifierKey, parse_note, verify_checkpoint
from dbp.integrity.models import STATE_ID, LogKey, LogLeaf, LogNode, LogState

#: Rows per query.
BATCH = 2048
#: Findings kept; beyond this they are only counted.
MAX_FINDINGS = 1000

#: A session for one step: a context manager (one read transaction per step, or the same one for every step).
SessionScope = Callable[[], AbstractContextManager[Session]]


def hx(data: bytes | None) -> str:
    return "none" if data is None else data.hex()


@dataclass(frozen=True)
class Finding:
    """One problem: ``where`` names the first bad entry, ``message`` says what was expected and what was found.
    ``leaves`` is the half-open range of leaf indexes it concerns (None: the whole repository, e.g. the
    checkpoint); ``dpp_ids`` the passports it concerns, when known."""

    where: str
    message: str
    leaves: tuple[int, int] | None = None
    dpp_ids: tuple[str, ...] = ()

    def text(self) -> str:
        return f"{self.where}: {self.message}"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"where": self.where, "message": self.message}
        if self.leaves is not None:
            out["leaves"] = list(self.leaves)
        if self.dpp_ids:
            out["dppIds"] = list(self.dpp_ids)
        return out


@dataclass
class Findings:
    """Findings in the order found, at most ``limit`` kept (``total`` counts all)."""

    limit: int = MAX_FINDINGS
    items: list[Finding] = field(default_factory=list)
    total: int = 0

    def add(self, finding: Finding) -> None:
        self.total += 1
        if len(self.items) < self.limit:
            self.items.append(finding)


class _LevelCursor:
    """Stored nodes of one level in index order, fetched ``batch`` at a time (keyset)."""

    def __init__(self, level: int, batch: int) -> None:
        self.level = level
        self.batch = batch
        self.rows: deque[tuple[int, bytes]] = deque()
        self.fetched_upto = -1  # every stored idx <= this has been fetched

    def get(self, session: Session, idx: int) -> bytes | None:
        while self.rows and self.rows[0][0] < idx:
            self.rows.popleft()
        if not self.rows and idx > self.fetched_upto:
            found = session.execute(select(LogNode.idx, LogNode.hash).where(
                LogNode.level == self.level, LogNode.idx >= idx).order_by(LogNode.idx).limit(self.batch)).all()
            self.rows.extend((int(i), bytes(h)) for i, h in found)
            self.fetched_upto = int(found[-1][0]) if len(found) == self.batch else 2**63
        if self.rows and self.rows[0][0] == idx:
            return self.rows.popleft()[1]
        return None


def _node_name(level: int, idx: int) -> str:
    return f"node (level {level}, index {idx})"


def _range(level: int, idx: int) -> tuple[int, int]:
    return idx << level, (idx + 1) << level


class LogAudit:
    """One full re-check of the log (see the module docstring). Run ``steps`` to the end, then read
    ``findings``; ``size`` is the log size checked, ``checked`` the leaves done so far."""

    def __init__(self, *, origin: str | None = None, batch: int = BATCH, check_extra: bool = True,
                 findings: Findings | None = None, secret_key: str | None = None) -> None:
        self.origin = origin
        # with the repository's secret, every key in log_keys must be one dbp made (its private half decrypts
        # with the secret to its public half): a key inserted by someone with only database access is refused
        self.secret_key = secret_key
        self.batch = batch
        self.check_extra = check_extra
        self.findings = findings if findings is not None else Findings()
        self.size = 0
        self.checked = 0
        self.keys: dict[str, bytes] = {}  # kid -> raw Ed25519 public key, every key in log_keys
        self._flagged_leaves: set[int] = set()
        self._flagged_nodes: set[tuple[int, int]] = set()
        self._targets: set[tuple[int, int]] = set()
        self._committed: dict[tuple[int, int], bytes] = {}  # the value the log committed to, for target nodes
        self._cursors: dict[int, _LevelCursor] = {}

    def _add(self, where: str, message: str, leaves: tuple[int, int] | None) -> None:
        self.findings.add(Finding(where, message, leaves))

    # --- the pass ----------------------------------------------------------------------------------------------

    def steps(self, scope: SessionScope) -> Iterator[int]:
        """Check the whole log; yields the number of leaves checked after each batch."""
        with scope() as s:
            state = s.execute(select(LogState.size, LogState.frontier).where(LogState.id == STATE_ID)).first()
            latest = log.latest_checkpoint(s)
            self.keys = self._authentic_keys(s)
            stored_max = s.scalar(select(func.max(LogLeaf.leaf_index)))
        self.size = int(state[0]) if state is not None else 0
        frontier_blob = bytes(state[1]) if state is not None else b""
        if state is None and stored_max is not None:
            self._add("log state", f"expected a state row for the {int(stored_max) + 1} stored leaves, got none",
                      None)
            self.size = int(stored_max) + 1
        cp_size = latest.size if latest is not None and latest.size <= self.size else None
        for n in merkle.root_nodes(self.size) + (merkle.root_nodes(cp_size) if cp_size else ()):
            self._targets.add((n.level, n.index))
        frontier = merkle.Frontier()
        while self.checked < self.size:
            with scope() as s:
                rows = s.execute(select(*log.LEAF_COLUMNS).where(
                    LogLeaf.leaf_index >= self.checked, LogLeaf.leaf_index < self.size)
                    .order_by(LogLeaf.leaf_index).limit(self.batch)).all()
                end = self.size if len(rows) < self.batch else int(rows[-1][0]) + 1
                by_index = {int(r[0]): r for r in rows}
                for index in range(self.checked, end):
                    digest = self._leaf(s, index, by_index.get(index))
                    for sub in frontier.append(digest):
                        self._node(s, sub)
                self.checked = end
            yield self.checked
        with scope() as s:
            self._state(frontier_blob)
            if self.check_extra:
                self._extra(s)
            if latest is not None:
                self._checkpoint(latest)
        yield self.checked

    def _authentic_keys(self, session: Session) -> dict[str, bytes]:
        """kid -> public key of every key in ``log_keys``; with ``secret_key``, only those whose private half
        decrypts to them (the others are findings, and nothing they signed verifies)."""
        rows = session.scalars(select(LogKey).order_by(LogKey.created_at, LogKey.kid)).all()
        keys: dict[str, bytes] = {}
        for row in rows:
            if self.secret_key is not None:
                try:
                    log.decrypt_key(row, self.secret_key)
                except VerificationError as exc:
                    self._add(f"key {row.kid}", f"expected a key this repository made, got one that fails: {exc}",
                              None)
                    continue
            keys[row.kid] = bytes(row.public_key)
        return keys

    def _leaf(self, session: Session, index: int, row: Any) -> bytes:
        if row is None:
            self._flagged_leaves.add(index)
            self._add(f"leaf {index}", f"expected a stored leaf (the log has {self.size}), got none",
                      (index, index + 1))
            stored_node = self._cursor(0).get(session, index)  # keep going with what the tree says
            self._cursors[0].rows.appendleft((index, stored_node or bytes(32)))
            return stored_node or bytes(32)
        stored = bytes(row[6])
        try:
            recomputed = log.stored_leaf(row).leaf.leaf_hash()
        except VerificationError as exc:
            self._flagged_leaves.add(index)
            self._add(f"leaf {index}", exc.message.removeprefix(f"log leaf {index}: "), (index, index + 1))
            return stored if len(stored) == merkle.HASH_SIZE else bytes(32)
        if recomputed != stored:
            self._flagged_leaves.add(index)
            self._add(f"leaf {index}", f"expected leaf hash {hx(recomputed)} (of its fields), got {hx(stored)}",
                      (index, index + 1))
        return recomputed

    def _cursor(self, level: int) -> _LevelCursor:
        cursor = self._cursors.get(level)
        if cursor is None:
            cursor = self._cursors[level] = _LevelCursor(level, self.batch)
        return cursor

    def _node(self, session: Session, sub: merkle.Subtree) -> None:
        key = (sub.level, sub.index)
        if sub.level == 0:
            consequence = sub.index in self._flagged_leaves
            self._flagged_leaves.discard(sub.index)
        else:
            left, right = (sub.level - 1, 2 * sub.index), (sub.level - 1, 2 * sub.index + 1)
            consequence = left in self._flagged_nodes or right in self._flagged_nodes
            self._flagged_nodes.discard(left)
            self._flagged_nodes.discard(right)
        stored = self._cursor(sub.level).get(session, sub.index)
        start, end = _range(sub.level, sub.index)
        committed = stored
        if stored is None:
            self._flagged_nodes.add(key)
            self._add(_node_name(*key), f"expected the hash of leaves [{start}, {end}) "
                      f"{hx(sub.digest)}, got no stored node", (start, end))
            committed = sub.digest
        elif stored != sub.digest:
            self._flagged_nodes.add(key)
            if not consequence:
                self._add(_node_name(*key), f"expected {hx(sub.digest)} (the hash of leaves [{start}, {end})), "
                          f"got {hx(stored)}", (start, end))
                committed = sub.digest
        if key in self._targets:
            assert committed is not None
            self._committed[key] = committed

    def _state(self, blob: bytes) -> None:
        nodes = merkle.root_nodes(self.size)
        if len(blob) != merkle.HASH_SIZE * len(nodes):
            self._add("log state", f"expected a frontier of {len(nodes)} hashes for size {self.size}, "
                      f"got {len(blob)} bytes", None)
            return
        for k, node in enumerate(nodes):
            got = blob[k * merkle.HASH_SIZE:(k + 1) * merkle.HASH_SIZE]
            want = self._committed.get((node.level, node.index))
            if want is not None and got != want:
                self._add("log state", f"frontier hash {k} (leaves [{node.start}, {node.end})): expected "
                          f"{hx(want)}, got {hx(got)}", None)

    def _extra(self, session: Session) -> None:
        beyond = session.scalar(select(func.min(LogLeaf.leaf_index)).where(LogLeaf.leaf_index >= self.size))
        if beyond is not None:
            self._add(f"leaf {int(beyond)}", f"expected no leaf at or beyond the log size {self.size}, got one",
                      (int(beyond), int(beyond) + 1))
        top = session.scalar(select(func.max(LogNode.level)))
        for level in range(int(top if top is not None else -1) + 1):
            idx = session.scalar(select(func.min(LogNode.idx)).where(LogNode.level == level,
                                                                       LogNode.idx >= self.size >> level))
            if idx is not None:
                self._add(_node_name(level, int(idx)), f"expected no complete subtree beyond the log size "
                          f"{self.size}, got one", None)

    def _checkpoint(self, latest: log.StoredCheckpoint) -> None:
        where = f"checkpoint (size {latest.size})"
        if latest.size > self.size:
            self._add(where, f"expected at most the log size {self.size}, got {latest.size}", None)
            return
        try:
            origin = parse_note(latest.note.encode("utf-8")).text.split("\n", 1)[0]
            if self.origin is not None and origin != self.origin:
                raise VerificationError(f"expected origin {self.origin!r}, got {origin!r:.200}")
            verifiers = [VerifierKey(origin, key) for key in self.keys.values()]
            parsed = verify_checkpoint(latest.note.encode("utf-8"), origin=origin, verifiers=verifiers).checkpoint
        except (VerificationError, ValueError) as exc:
            self._add(where, f"signed note: {getattr(exc, 'message', exc)}", None)
            return
        if parsed.size != latest.size or parsed.root_hash != latest.root_hash:
            self._add(where, f"expected the signed size and root ({parsed.size}, {hx(parsed.root_hash)}) in its "
                      f"columns, got ({latest.size}, {hx(latest.root_hash)})", None)
            return
        def committed(start: int, end: int) -> bytes:
            node = merkle.node_for_range(start, end)
            return self._committed[(node.level, node.index)]

        root = merkle.root_from_subtrees(latest.size, committed)
        if root != parsed.root_hash:
            self._add(where, f"expected root {hx(root)} (of the stored tree of {latest.size} leaves), got "
                      f"{hx(parsed.root_hash)}", None)

    def run(self, scope: SessionScope) -> Findings:
        """``steps`` to the end; the findings."""
        for _ in self.steps(scope):
            pass
        return self.findings

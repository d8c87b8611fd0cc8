"""Custody transfer of a backup copy: ``dbp backup export`` writes everything a node holds of a source (optionally
one operator's passports) as a custody file; ``dbp restore`` imports it into another node — the successor that
takes over the passports of an operator that exited (insolvency, repurposing, waste) — which then serves them
(``/backup/api/v1/dpps/…``) with their whole history. Nothing is re-signed: every version keeps the original
operator's JWS, and every proof is recomputed from the original log's leaves against the original signed
checkpoints, so the history still verifies against the original operator's keys.

**The file** (NDJSON, one JSON object per line, in this order): a header ``{"format": "dbp-custody/1",
"sourceId", "url", "origin", "verifierKey", "trustedKeys", "treeSize", "operatorIds", "exportedAt"}``; every
verified checkpoint ``{"checkpoint": {"treeSize", "rootHash", "note"}}``; the log's leaf hashes in order
``{"leaves": {"start", "hashes": [base64, …]}}`` (all of them: the tree needs every leaf, and leaf hashes are
public in the transparency log anyway); every version held ``{"version": {…feed entry fields…, "body"}}``; and a
trailer ``{"end": {"versions", "sha256"}}`` whose digest covers every line before it (a cut or altered file is
refused before anything is stored).

**Restore is fail-closed** (``restore``): the keys are anchored in ``anchor`` — the original log's verifier key
obtained independently (from the registry's node directory, a witness, the operator's publication); a key the
file lists is trusted only when a checkpoint in the file is signed by it *and* by a key already trusted
(rotation, co-signed); then everything is stored in one transaction and re-checked by ``recheck`` (every node,
every checkpoint root and signature, every version: hash, signature, leaf, inclusion) before it is committed.
Any problem → nothing is stored, and the problems are reported. The restored source has status ``custody``:
served, not followed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from dbp.clock import timestamp
from dbp.errors import BadRequest, Conflict, FieldError, ProofError
from dbp.integrity import merkle
from dbp.integrity.checkpoint import VerifierKey, parse_verifier_key, verify_note
from dbp.replication import backup, recheck
from dbp.replication.models import BackupCheckpoint, BackupNode, BackupSource, BackupVersion

FORMAT = "dbp-custody/1"
LEAVES_PER_LINE = 10_000
MAX_LINE = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class _Digest:
    def __init__(self) -> None:
        self.h = hashlib.sha256()

    def line(self, obj: Any) -> bytes:
        data = orjson.dumps(obj) + b"\n"
        self.h.update(data)
        return data


# ------------------------------------------------------------------------------------------------ export
def export(session: Session, *, source_id: str, operator_ids: frozenset[str] | None,
           progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """The custody file of ``source_id`` (module docstring), line by line; ``operator_ids`` keeps only the
    versions of those operators' passports (None: every version held)."""
    source = backup.get_source(session, source_id=source_id)
    digest = _Digest()
    yield digest.line({"format": FORMAT, "sourceId": source.source_id, "url": source.url, "origin": source.origin,
                       "verifierKey": source.verifier_key, "trustedKeys": backup.trusted_keys(source),
                       "treeSize": source.tree_size, "operatorIds": sorted(operator_ids) if operator_ids else None,
                       "exportedAt": timestamp()})
    for cp in session.scalars(select(BackupCheckpoint).where(BackupCheckpoint.source_id == source_id)
                              .order_by(BackupCheckpoint.tree_size)):
        yield digest.line({"checkpoint": {"treeSize": cp.tree_size, "rootHash": _b64(bytes(cp.root_hash)),
                                          "note": cp.note}})
    start = 0
    while start < source.tree_size:
        rows = session.execute(select(BackupNode.idx, BackupNode.hash).where(
            BackupNode.source_id == source_id, BackupNode.level == 0, BackupNode.idx >= start)
            .order_by(BackupNode.idx).limit(LEAVES_PER_LINE)).all()
        if not rows:
            break
        yield digest.line({"leaves": {"start": start, "hashes": [_b64(bytes(h)) for _, h in rows]}})
        start = int(rows[-1][0]) + 1
    count, after = 0, -1
    while True:
        stmt = select(BackupVersion).where(BackupVersion.source_id == source_id, BackupVersion.position > after)
        if operator_ids is not None:
            stmt = stmt.where(BackupVersion.operator_id.in_(sorted(operator_ids)))
        rows_v = session.scalars(stmt.order_by(BackupVersion.position).limit(500)).all()
        if not rows_v:
            break
        for row in rows_v:
            entry = recheck.entry_of(row)
            entry["body"] = bytes(row.canonical).decode("utf-8")
            yield digest.line({"version": entry})
            count += 1
        after = rows_v[-1].position
        session.expunge_all()
        if progress is not None:
            progress(count)
    yield orjson.dumps({"end": {"versions": count, "sha256": digest.h.hexdigest()}}) + b"\n"


# ------------------------------------------------------------------------------------------------ restore
@dataclass
class Restored:
    source_id: str
    origin: str = ""
    versions: int = 0
    passports: int = 0
    leaves: int = 0
    checkpoints: int = 0
    keys: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {"sourceId": self.source_id, "origin": self.origin, "ok": self.ok, "versions": self.versions,
                "passports": self.passports, "leaves": self.leaves, "checkpoints": self.checkpoints,
                "trustedKeys": self.keys, "problems": self.problems}


def _refuse(message: str) -> BadRequest:
    return BadRequest(f"custody file: {message}", details=[FieldError("file", "custody.file", message[:300])])


def _lines(stream: IO[bytes]) -> Iterable[tuple[bytes, dict[str, Any]]]:
    for number, raw in enumerate(stream, start=1):
        if len(raw) > MAX_LINE:
            raise _refuse(f"line {number} is longer than {MAX_LINE} bytes")
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _refuse(f"line {number} is not JSON") from None
        if not isinstance(obj, dict) or len(obj) < 1:
            raise _refuse(f"line {number}: expected a JSON object")
        yield raw, obj


def _accepted_keys(header: dict[str, Any], checkpoints: list[dict[str, Any]], anchor: VerifierKey,
                   origin: str) -> dict[str, dict[str, Any]]:
    """The listed keys a checkpoint in the file proves, starting from ``anchor`` (co-signatures, transitively)."""
    listed = header.get("trustedKeys")
    if not isinstance(listed, dict):
        raise _refuse("the header's trustedKeys is not an object")
    candidates: dict[bytes, tuple[str, dict[str, Any]]] = {}
    for kid, meta in listed.items():
        try:
            raw = base64.urlsafe_b64decode(str(meta["x"]) + "=" * (-len(str(meta["x"])) % 4))
            VerifierKey(origin, raw)
            retired = meta.get("retiredAt")
            if not isinstance(meta["createdAt"], str) or not (retired is None or isinstance(retired, str)):
                continue
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error):
            continue
        if raw in candidates:  # one kid per key: a second name for a key is not taken
            continue
        candidates[raw] = (str(kid)[:256], {"x": meta["x"], "createdAt": meta["createdAt"], "retiredAt": retired})
    trusted = {anchor.public_key}
    grew = True
    while grew:
        grew = False
        verifiers = [VerifierKey(origin, raw) for raw in candidates]
        if anchor.public_key not in candidates:
            verifiers.append(anchor)
        for cp in checkpoints:
            try:
                signed = {k.public_key for k in verify_note(str(cp.get("note", "")).encode(), verifiers).verified_by}
            except (ProofError, ValueError):
                continue
            if signed & trusted and not signed <= trusted:
                trusted |= signed
                grew = True
    return {kid: meta for raw, (kid, meta) in candidates.items() if raw in trusted}


def restore(session: Session, stream: IO[bytes], *, source_id: str, anchor: str | None,
            progress: Callable[[str, int], None] | None = None) -> Restored:
    """Import a custody file as the source ``source_id`` (module docstring). Returns the report; the caller
    commits only when ``ok`` (``BadRequest`` / ``Conflict`` for a file or id that cannot be taken at all)."""
    backup.check_source_id(source_id)
    if session.get(BackupSource, source_id) is not None:
        raise Conflict(f"source {source_id} exists already on this node")
    result = Restored(source_id)
    lines = iter(_lines(stream))
    digest = hashlib.sha256()
    try:
        raw, header = next(lines)
    except StopIteration:
        raise _refuse("it is empty") from None
    if header.get("format") != FORMAT:
        raise _refuse(f"expected format {FORMAT}, got {str(header.get('format'))[:40]!r}")
    digest.update(raw if raw.endswith(b"\n") else raw + b"\n")
    origin = header.get("origin")
    if not isinstance(origin, str) or not origin:
        raise _refuse("the header names no log origin")
    result.origin = origin
    try:
        anchor_key = parse_verifier_key(anchor or str(header.get("verifierKey", "")))
    except ProofError as exc:
        raise _refuse(f"the log key is not a verifier key: {exc}") from None
    if anchor_key.name != origin:
        raise _refuse(f"the log key is for {anchor_key.name!r}, the file's log is {origin!r}")
    if session.scalar(select(BackupSource.source_id).where(BackupSource.origin == origin)) is not None:
        raise Conflict(f"this node holds the log {origin} already")

    checkpoints: list[dict[str, Any]] = []
    tree = merkle.Frontier()
    nodes: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    end: dict[str, Any] | None = None
    for raw, obj in lines:
        if end is not None:
            raise _refuse("lines after the trailer")
        if "end" in obj:
            end = obj["end"]
            continue
        digest.update(raw if raw.endswith(b"\n") else raw + b"\n")
        if "checkpoint" in obj:
            checkpoints.append(obj["checkpoint"])
        elif "leaves" in obj:
            part = obj["leaves"]
            if not isinstance(part, dict) or part.get("start") != tree.size or not isinstance(part.get("hashes"),
                                                                                              list):
                raise _refuse(f"expected leaves from {tree.size} on")
            for text in part["hashes"]:
                try:
                    leaf = base64.b64decode(str(text), validate=True)
                    subtrees = tree.append(leaf)
                except (ValueError, binascii.Error):
                    raise _refuse(f"leaf {tree.size} is not a base64 hash") from None
                nodes.extend({"source_id": source_id, "level": s.level, "idx": s.index, "hash": s.digest}
                             for s in subtrees)
            if progress is not None:
                progress("leaves", tree.size)
        elif "version" in obj and isinstance(obj["version"], dict):
            versions.append(obj["version"])
        else:
            raise _refuse(f"unexpected line {sorted(obj)[:3]}")
    if end is None:
        raise _refuse("it has no trailer (cut short?)")
    if not isinstance(end, dict) or end.get("sha256") != digest.hexdigest() or end.get("versions") != len(versions):
        raise _refuse("the trailer does not match the lines before it (the file was cut or altered)")
    if tree.size != header.get("treeSize"):
        raise _refuse(f"expected {header.get('treeSize')} leaves, got {tree.size}")

    sizes = [cp.get("treeSize") if isinstance(cp, dict) else None for cp in checkpoints]
    if len(set(map(str, sizes))) != len(sizes):
        raise _refuse("a checkpoint appears twice")
    if len({(v.get("dppId"), v.get("version")) for v in versions}) != len(versions) or \
            len({v.get("position") for v in versions}) != len(versions):
        raise _refuse("a version (or a log position) appears twice")
    keys = _accepted_keys(header, checkpoints, anchor_key, origin)
    result.keys = sorted(keys)
    session.add(BackupSource(source_id=source_id, url=str(header.get("url", ""))[:2048], origin=origin,
                             verifier_key=anchor_key.encode(), trusted_keys=orjson.dumps(keys).decode(),
                             client_id=None, client_secret=None, next_position=tree.size, tree_size=tree.size,
                             log_size=tree.size, status=backup.CUSTODY, created_at=timestamp(), failures=0,
                             halted_reason=f"restored from the custody file of {header.get('sourceId')!s:.64}"))
    session.flush()
    for i in range(0, len(nodes), 5000):
        session.execute(insert(BackupNode), nodes[i:i + 5000])
    for cp in checkpoints:
        try:
            root = base64.b64decode(str(cp["rootHash"]), validate=True)
            session.add(BackupCheckpoint(source_id=source_id, tree_size=int(cp["treeSize"]), root_hash=root,
                                         note=str(cp["note"]), verified_at=timestamp()))
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise _refuse("a checkpoint line lacks treeSize, rootHash or note") from None
    at = timestamp()
    for entry in versions:
        try:
            session.add(BackupVersion(
                source_id=source_id, dpp_id=str(entry["dppId"])[:256], version=int(entry["version"]),
                position=int(entry["position"]), created_at=str(entry["createdAt"]), change=entry.get("change"),
                operator_id=backup.operator_of(str(entry["body"]).encode("utf-8")),  # the signed body's, not the file's
                dpp_status=entry.get("dppStatus"), sha256=str(entry["sha256"]),
                public_sha256=str(entry["publicSha256"]), kid=str(entry["kid"]), signature=str(entry["signature"]),
                canonical=str(entry["body"]).encode("utf-8"), verified_at=at))
        except (KeyError, TypeError, ValueError):
            raise _refuse("a version line lacks a field of a feed entry") from None
    session.flush()
    backup.settle_operators(session, source_id=source_id, dpp_ids={str(v.get("dppId")) for v in versions})
    session.flush()
    checked = recheck.recheck(session, source_id=source_id)[0]
    result.problems = checked.problems
    if checked.problem_count > len(checked.problems):
        result.problems.append(f"… and {checked.problem_count - len(checked.problems)} more")
    if not checkpoints:
        result.problems.append("the file holds no signed checkpoint: nothing can be verified")
    result.versions, result.leaves, result.checkpoints = checked.versions, checked.leaves, checked.checkpoints
    result.passports = len({v.get("dppId") for v in versions})
    return result

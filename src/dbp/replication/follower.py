"""The backup node's follower: one round (``follow_once``) takes a source (a repository this backup follows) from
where it stopped to the repository's latest signed checkpoint, verifying everything before storing it.

A round, in order:

1. **Checkpoint and keys.** ``GET {url}/api/v1/log/checkpoint`` must be a checkpoint of the source's origin
   signed by the *pinned* log key. The repository's keys (``GET /api/v1/log/keys``) are offered as further
   verifiers: a key that co-signed a checkpoint with the pinned key (rotation, ``dbp keys rotate``) becomes
   trusted, and the pin moves to it when it is the repository's active key. Version keys are trusted only when
   their public key signed a verified checkpoint — the keys list alone, unauthenticated, is never enough.
2. **Witness.** Against the latest checkpoint the backup verified (``dbp.integrity.witness.judge``): a smaller
   tree is a rollback, the same size with another root a fork, a larger one needs a consistency proof
   (``/api/v1/log/proof/consistency``) — else the log rewrote its history. Each halts the source with an alert
   holding both signed notes (``backup.halt``).
3. **Leaves.** The leaves from the backup's tree size to the new one (``/api/v1/log/leaves``, 1,000 a request)
   are hashed here from their data and appended to the backup's own tree (``verify.audit_leaves``); its root
   must be the checkpoint's (``verify.check_audited_root``). The new nodes and the checkpoint are stored in one
   transaction. So the backup holds the log's tree itself and proves inclusion without the repository.
4. **Feed.** ``GET /api/v1/feed?include=body`` from the source's cursor, as the appointed backup provider (client
   credentials at the repository). Every entry below the verified tree size is checked
   (``verify.verify_entry_in_tree``: shape, content hash, signature with a trusted key, leaf hash, and that leaf
   is the one the backup holds at that position) and stored (idempotent), or recorded as a rejection with the
   step and reason — and the cursor moves past it either way, so a forged entry never stops replication. Each
   page is one transaction with the cursor: a crash or a dropped connection resumes from the last page stored,
   nothing lost, nothing twice. Entries at or past the verified tree size wait for the next round. While a page is
   checked and stored, the next one (known from the page alone: it starts past its last entry) is fetched in a
   second thread — only a page the round would read next anyway; an error fetching it stops the round when that
   page's turn comes, as if it had been fetched then.
5. **Rejections** still open are fetched again (one entry each) and stored if they now verify: a fault in
   transport heals, a forgery stays reported.

Errors that stop a round before its end (unreachable, timeouts, HTTP errors, oversize or malformed answers) are
``FollowError``: the round's committed pages stay, the source backs off exponentially (``backup.
schedule_failure``). ``Follower`` runs rounds for every source in a thread (the role ``backup`` of ``dbp serve``,
or ``dbp backup run``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from sqlalchemy.orm import Session, sessionmaker

from dbp.clock import timestamp
from dbp.db import transaction
from dbp.errors import ProofError, VerificationError
from dbp.integrity import merkle, witness
from dbp.integrity.checkpoint import (
    VerifierKey,
    parse_checkpoint,
    parse_note,
    parse_verifier_key,
    verify_checkpoint,
)
from dbp.integrity.signing import unb64url
from dbp.replication import backup, verify
from dbp.replication.models import BackupSource

log = logging.getLogger("dbp.replication")

FEED_PAGE = 500
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
LEAVES_PAGE = 1000
MAX_FEED_BYTES = 64 * 1024 * 1024  # a page too large for it is asked for again with half the entries
MAX_LEAVES_BYTES = 4 * 1024 * 1024
MAX_KEYS_BYTES = 256 * 1024
MAX_TOKEN_BYTES = 64 * 1024
RETRY_REJECTIONS = 20  # per round, the least recently tried first
RESCAN_FETCH = 1000  # entries a rescan fetches in one round at most
RESCAN_SECONDS = 600.0  # the Follower rescans every source this often (and once at start)
RESCAN_BUDGET = 30.0  # seconds a rescan may take in one round (the other sources wait meanwhile)
#: Leaves audited in one round at most (~32 MB of tree per 100,000 leaves is held until checked); a longer log is
#: audited over several rounds, each part proven a prefix of the signed tree by a consistency proof.
MAX_ROUND_LEAVES = 2_000_000


class FollowError(Exception):
    """A round could not finish (the message says what to check); it is retried with back-off."""


class TooLarge(FollowError):
    """An answer larger than the limit taken for it."""


# ------------------------------------------------------------------------------------------------ HTTP
class RepositoryClient:
    """The repository's API as a backup reads it: bounded answers, timeouts, no redirects, bearer tokens from
    client credentials (refreshed once on 401). Also a ``witness.Transport``."""

    def __init__(self, url: str, *, client_id: str | None, client_secret: str | None, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.client_id, self.client_secret = client_id, client_secret
        self.timeout = timeout
        self._http = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False,
                                  transport=transport, headers={"User-Agent": "dbp-backup"})
        self._token: tuple[str, float] | None = None

    def close(self) -> None:
        self._http.close()

    def get(self, url: str, *, accept: str, limit: int, headers: dict[str, str] | None = None) -> witness.Answer:
        return self._request("GET", url, accept=accept, limit=limit, headers=headers)

    def _request(self, method: str, url: str, *, accept: str, limit: int, headers: dict[str, str] | None = None,
                 data: dict[str, str] | None = None) -> witness.Answer:
        """One request: at most ``limit`` bytes, within ``timeout`` per read and 3 × ``timeout`` in all."""
        deadline = time.monotonic() + 3 * self.timeout
        try:
            with self._http.stream(method, url, headers={"Accept": accept, **(headers or {})},
                                   data=data) as response:
                length = response.headers.get("content-length", "")
                if length.isdigit() and int(length) > limit:
                    raise TooLarge(f"{method} {url}: answer of {length} bytes announced, at most {limit} taken")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise TooLarge(f"{method} {url}: answer larger than {limit} bytes; refused")
                    if time.monotonic() > deadline:
                        raise FollowError(f"{method} {url}: no complete answer within {3 * self.timeout:g} s")
                return witness.Answer(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                                      bytes(body))
        except httpx.TimeoutException:
            raise FollowError(f"{method} {url}: no answer within {self.timeout:g} s (is the repository up?)") from None
        except httpx.HTTPError as exc:
            raise FollowError(f"{method} {url}: cannot reach the repository ({type(exc).__name__}: {exc})") from None

    def _json(self, path: str, *, limit: int, auth: bool = False) -> Any:
        url = self.url + path
        answer = self.get(url, accept="application/json", limit=limit, headers=self._auth() if auth else None)
        if answer.status == 401 and auth:
            self._token = None
            answer = self.get(url, accept="application/json", limit=limit, headers=self._auth())
        if answer.status != 200:
            raise FollowError(f"GET {url}: expected 200, got {answer.status}: {_error_text(answer.body)}")
        try:
            return orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            raise FollowError(f"GET {url}: expected JSON, got {answer.body[:80]!r}") from None

    def _auth(self) -> dict[str, str]:
        if not self.client_id or not self.client_secret:
            return {}
        if self._token is None or self._token[1] < time.monotonic():
            url = self.url + "/api/v1/auth/token"
            r = self._request("POST", url, accept="application/json", limit=MAX_TOKEN_BYTES, data={
                "grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret})
            if r.status != 200:
                raise FollowError(f"POST {url}: the repository refused the backup's client credentials "
                                  f"({r.status}: {_error_text(r.body)}); check the client id and secret")
            try:
                data = orjson.loads(r.body)
                token, expires = str(data["access_token"])[:8192], data.get("expires_in", 60)
                seconds = min(max(int(expires), 0), 86400) if type(expires) in (int, float) else 60
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError):
                raise FollowError(f"POST {url}: expected a token answer, got {r.body[:80]!r}") from None
            self._token = (token, time.monotonic() + max(seconds - 30, 5))
        return {"Authorization": f"Bearer {self._token[0]}"}

    def checkpoint(self) -> witness.Answer:
        try:
            return witness.fetch_checkpoint(self, self.url)
        except witness.WitnessError as exc:
            raise FollowError(str(exc)) from None

    def consistency(self, size1: int, size2: int) -> list[bytes]:
        try:
            return witness.fetch_consistency(self, self.url, size1=size1, size2=size2)
        except witness.WitnessError as exc:
            raise FollowError(str(exc)) from None

    def keys(self) -> list[dict[str, Any]]:
        data = self._json("/api/v1/log/keys", limit=MAX_KEYS_BYTES)
        keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(keys, list):
            raise FollowError(f"GET {self.url}/api/v1/log/keys: expected {{keys: [...]}}")
        return keys

    def leaves(self, start: int, end: int) -> list[Any]:
        data = self._json(f"/api/v1/log/leaves?start={start}&end={end}", limit=MAX_LEAVES_BYTES)
        leaves = data.get("leaves") if isinstance(data, dict) else None
        if not isinstance(leaves, list) or len(leaves) != end - start:
            raise FollowError(f"GET {self.url}/api/v1/log/leaves?start={start}&end={end}: expected {{leaves: [...]}} "
                              f"with {end - start} leaves")
        return leaves

    def feed(self, position: int, limit: int, *, include: str = "body") -> dict[str, Any]:
        data = self._json(f"/api/v1/feed?cursor=f1.{position}&limit={limit}&include={include}",
                          limit=MAX_FEED_BYTES, auth=True)
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list) \
                or not isinstance(data.get("nextCursor"), str):
            raise FollowError(f"GET {self.url}/api/v1/feed: expected a feed page {{entries, nextCursor}}")
        if len(data["entries"]) > limit:
            raise FollowError(f"GET {self.url}/api/v1/feed: asked for at most {limit} entries, got "
                              f"{len(data['entries'])}")
        return data


def _error_text(body: bytes) -> str:
    try:
        return str(orjson.loads(body)["message"][0]["text"])[:300]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return body[:200].decode("utf-8", "replace")


# ------------------------------------------------------------------------------------------------ a round
@dataclass
class RoundReport:
    source_id: str
    outcome: str = "ok"  # ok | halted | failed | skipped
    message: str = ""
    leaves: int = 0
    stored: int = 0
    rejected: int = 0
    healed: int = 0
    rescanned: int = 0  # entries the rescan found missing behind the cursor
    tree_size: int = 0
    cursor: int = 0
    log_size: int = 0
    seconds: float = 0.0
    pages: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"sourceId": self.source_id, "outcome": self.outcome, "message": self.message, "leaves": self.leaves,
                "stored": self.stored, "rejected": self.rejected, "healed": self.healed, "treeSize": self.tree_size,
                "cursor": f"f1.{self.cursor}", "logSize": self.log_size, "seconds": round(self.seconds, 3)}


Progress = Callable[[RoundReport], None]


def _read(factory: sessionmaker[Session], source_id: str) -> BackupSource:
    with factory() as session:
        row = backup.get_source(session, source_id=source_id)
        session.expunge(row)
        return row


def _halt(factory: sessionmaker[Session], report: RoundReport, kind: str, message: str,
          evidence: dict[str, Any]) -> RoundReport:
    with transaction(factory) as session:
        backup.halt(session, source_id=report.source_id, kind=kind, message=message, evidence=evidence)
    log.error("backup source %s halted: %s", report.source_id, message)
    report.outcome, report.message = "halted", message
    return report


def _served_keys(keys: list[dict[str, Any]], origin: str) -> dict[str, tuple[bytes, dict[str, Any]]]:
    """kid -> (raw key, {x, createdAt, retiredAt}) of the well-formed keys the repository lists."""
    out: dict[str, tuple[bytes, dict[str, Any]]] = {}
    ids: dict[bytes, bytes] = {}
    for item in keys[:100]:
        try:
            jwk = item["jwk"]
            kid, x = str(jwk["kid"]), str(jwk["x"])
            raw = unb64url(x, "x")
            retired = item.get("retiredAt")
            if len(raw) != 32 or not isinstance(item.get("createdAt"), str) or len(kid) > 256 or not (
                    retired is None or isinstance(retired, str)):
                continue
            key_id = VerifierKey(origin, raw).key_id
        except (KeyError, TypeError, ValueError, VerificationError):
            continue
        if key_id in ids and ids[key_id] != raw:  # two keys one note key ID: neither can be told apart
            continue
        ids[key_id] = raw
        out[kid] = (raw, {"x": x, "createdAt": item["createdAt"][:32], "retiredAt": retired[:32] if retired else None})
    return out


def follow_once(factory: sessionmaker[Session], client: RepositoryClient, *, source_id: str,
                progress: Progress | None = None, max_entries: int | None = None, rescan: bool = False
                ) -> RoundReport:
    """One round for ``source_id`` (module docstring); with ``rescan`` also step 6. ``FollowError`` when it could
    not finish (the caller backs off); a halt is returned as the report's outcome, not raised."""
    started = time.monotonic()
    report = RoundReport(source_id)
    source = _read(factory, source_id)
    if source.status in backup.NOT_FOLLOWED:
        report.outcome, report.message = "skipped", f"{source.status}: {source.halted_reason}"
        return report

    # 1. checkpoint and keys
    answer = client.checkpoint()
    try:
        origin = witness.note_origin(answer.body)
    except witness.WitnessError as exc:
        raise FollowError(str(exc)) from None
    if origin != source.origin:  # read from a note not verified yet: reported and retried, not a halt
        raise FollowError(f"origin changed: expected {source.url} to serve the log {source.origin!r}, found "
                          f"{origin!r:.200} (is the URL still the repository's?)")
    pinned = parse_verifier_key(source.verifier_key)
    served = _served_keys(client.keys(), origin)
    verifiers = [pinned] + [VerifierKey(origin, raw) for raw, _ in served.values() if raw != pinned.public_key]
    try:
        verified = verify_checkpoint(answer.body, origin=origin, verifiers=verifiers)
    except (ProofError, ValueError) as exc:
        return _halt(factory, report, "bad-signature", f"bad signature: the checkpoint does not verify ({exc})",
                     {"expectedKey": source.verifier_key, "note": answer.body.decode("utf-8", "replace")})
    if pinned not in verified.verified_by:
        return _halt(factory, report, "bad-signature", "bad signature: expected a checkpoint signed by the pinned "
                     f"key {pinned.encode()}, found one signed only by other keys (a rotation the backup did not see "
                     "co-signed; if the rotation is legitimate: dbp backup remove, then add with the new --key)",
                     {"expectedKey": source.verifier_key, "note": answer.body.decode("utf-8", "replace")})
    signers = {k.public_key for k in verified.verified_by}
    seen = witness.Seen(verified.checkpoint, answer.body.decode("utf-8"))

    # 2. witness
    with factory() as session:
        latest_row = backup.latest_checkpoint(session, source_id=source_id)
        same_size = backup.checkpoint_at(session, source_id=source_id, size=seen.size)
        latest = _stored_seen(latest_row.note) if latest_row is not None else None
        earlier = _stored_seen(same_size.note) if same_size is not None and bytes(same_size.root_hash) != seen.root \
            else None
    proof = None
    if earlier is None and latest is not None and witness.needs_proof(latest, seen):
        proof = client.consistency(latest.size, seen.size)
    verdict = witness.judge(latest, seen, earlier=earlier, proof=proof)
    if verdict.outcome.alarming:
        return _halt(factory, report, verdict.outcome.value, verdict.message,
                     {"verifierKey": pinned.encode(), **verdict.evidence})

    # trust: every served key whose public key signed this checkpoint, plus those trusted before
    # append-only: a known kid keeps its key and createdAt; retiredAt is set once
    trusted = backup.trusted_keys(source)
    trusted_x = {k["x"] for k in trusted.values()}
    created = {raw: meta["createdAt"] for raw, meta in served.values() if raw in signers or meta["x"] in trusted_x}
    created.update({unb64url(k["x"], "x"): k["createdAt"] for k in trusted.values()})  # a known key keeps its date
    for kid, (raw, meta) in served.items():
        known = trusted.get(kid)
        if known is not None:
            retired = meta["retiredAt"]
            # a retirement is taken only from a rotation seen signed: a key made after this one (its successor)
            # signed this checkpoint — an older key still co-signing during the overlap proves nothing
            rotated = any(other != raw and created.get(other, "") > known["createdAt"] for other in signers)
            if known["x"] == meta["x"] and known.get("retiredAt") is None and isinstance(retired, str) and rotated \
                    and _TIMESTAMP.fullmatch(retired):
                with factory() as session:  # never before a version it signed that is held here
                    newest = backup.newest_signed(session, source_id=source_id, kid=kid)
                if retired > known["createdAt"] and (newest is None or retired >= newest):
                    trusted[kid] = {**known, "retiredAt": retired}
        elif raw in signers or meta["x"] in trusted_x:
            trusted[kid] = meta
    active = [raw for raw, meta in served.values() if raw in signers and meta.get("retiredAt") is None]
    new_pin = VerifierKey(origin, active[0]).encode() if active and active[0] != pinned.public_key else None

    # 3. leaves: up to MAX_ROUND_LEAVES a round; a part short of the checkpoint is proven a prefix of its tree
    if seen.size < source.tree_size:
        raise FollowError(f"the checkpoint's tree ({seen.size} leaves) is smaller than the prefix of a larger signed "
                          f"tree the backup audited ({source.tree_size}); not followed until it grows past it")
    target = min(seen.size, source.tree_size + MAX_ROUND_LEAVES)
    if target > source.tree_size:
        with factory() as session:
            tree = backup.frontier(session, source=source)
        subtrees: list[merkle.Subtree] = []
        start = source.tree_size
        try:
            while start < target:
                end = min(start + LEAVES_PAGE, target)
                tree, completed = verify.audit_leaves(tree, client.leaves(start, end), start=start)
                subtrees.extend(completed)
                report.leaves += end - start
                start = end
            if target == seen.size:
                verify.check_audited_root(tree, verified)
            else:
                merkle.verify_consistency(size1=target, size2=seen.size, root1=tree.root(), root2=seen.root,
                                          proof=client.consistency(target, seen.size))
        except VerificationError as exc:  # nothing is stored; the next round fetches them again
            raise FollowError(f"the log's leaves are not its signed tree: {exc.message}") from None
        with transaction(factory) as session:
            row = backup.get_source(session, source_id=source_id)
            if row.tree_size != source.tree_size:
                raise FollowError("another follower moved this source meanwhile; this round stops")
            backup.store_tree(session, source=row, subtrees=subtrees, size=target, root=seen.root, note=seen.note,
                              signed=target == seen.size)
            row.trusted_keys = orjson.dumps(trusted).decode()
            if new_pin:
                row.verifier_key = new_pin
        if target < seen.size:  # the rest of the tree next round; the feed waits for the whole signed tree
            report.tree_size = target
            report.cursor = source.next_position
            return _succeeded(factory, report, started, f"audited {target} of {seen.size} leaves")
    elif trusted != backup.trusted_keys(source) or new_pin:
        with transaction(factory) as session:
            row = backup.get_source(session, source_id=source_id)
            row.trusted_keys = orjson.dumps(trusted).decode()
            if new_pin:
                row.verifier_key = new_pin
    report.tree_size = max(seen.size, source.tree_size)
    audited = verify.AuditedTree(report.tree_size, seen.root, verified)
    keys = backup.raw_keys_of(trusted)

    # 4. feed
    position = source.next_position
    sizes = [FEED_PAGE]  # entries per page: halved for the rest of the round when a page is too large
    ahead: tuple[int, Future[dict[str, Any]]] | None = None  # the next page, fetched while this one is checked
    fetcher: ThreadPoolExecutor | None = None
    try:
        while position < report.tree_size and (max_entries is None or report.stored < max_entries):
            page = ahead[1].result() if ahead is not None and ahead[0] == position else \
                _page(client, position, sizes)
            ahead = None
            entries = page["entries"]
            log_size = page.get("logSize", report.log_size)
            if type(log_size) is not int or not 0 <= log_size < merkle.MAX_TREE_SIZE:
                raise FollowError(f"the feed answered logSize {log_size!r:.30}: not a log size")
            report.log_size = log_size
            next_position = _cursor_position(page["nextCursor"])
            taken, reached_end = _take(entries, report.tree_size, position)
            last_page = reached_end or len(entries) < sizes[0]
            if last_page:
                # a short page saw every committed leaf up to its snapshot: jump to nextCursor, within the tree
                new_position = min(max(next_position, position), report.tree_size) if not reached_end else \
                    (taken[-1][0] + 1 if taken else position)
            else:
                new_position = taken[-1][0] + 1
            if not last_page and position < new_position < report.tree_size and max_entries is None:
                # the round reads that page next whatever this one holds: fetch it meanwhile (one page ahead)
                fetcher = fetcher or ThreadPoolExecutor(1, thread_name_prefix="dbp-backup-fetch")
                ahead = (new_position, fetcher.submit(_page, client, new_position, sizes))
            with transaction(factory) as session:
                hashes = backup.leaf_hashes(session, source_id=source_id, positions=[p for p, _ in taken])
                passed = [ok for pos, entry in taken
                          if (ok := _check(session, report, source_id, entry, pos, keys, audited, hashes.get(pos)))
                          is not None]
                _keep(session, report, source_id, passed)
                row = backup.get_source(session, source_id=source_id)
                row.next_position = max(row.next_position, new_position)
                row.log_size = report.log_size
            report.pages.append(len(taken))
            if progress is not None:
                report.cursor = new_position
                progress(report)
            if new_position <= position:
                break
            position = new_position
            if last_page:
                break
    finally:
        if fetcher is not None:  # a page still in flight (the round stopped early) is awaited and dropped
            fetcher.shutdown(wait=True, cancel_futures=True)
    report.cursor = position

    # 5. rejections
    with factory() as session:
        pending = [(r.position, r.dpp_id) for r in backup.open_rejections(session, source_id=source_id,
                                                                          limit=RETRY_REJECTIONS)]
    for pos, _ in pending:
        if pos >= report.tree_size:
            continue
        page = client.feed(pos, 1)
        entry = page["entries"][0] if page["entries"] else None
        if not isinstance(entry, dict) or entry.get("position") != pos:
            with transaction(factory) as session:  # tried: it goes to the back of the queue
                backup.reject(session, source_id=source_id, entry=None, position=pos, step="scope",
                              reason="the feed lists no entry at this position for this backup any more")
            continue
        with transaction(factory) as session:
            hashes = backup.leaf_hashes(session, source_id=source_id, positions=[pos])
            healed = _check(session, report, source_id, entry, pos, keys, audited, hashes.get(pos), retry=True)
            before = report.stored
            if healed is not None:
                _keep(session, report, source_id, [healed])
            if report.stored > before:
                report.healed += 1

    if rescan:
        _rescan(factory, client, report, source_id, keys, audited)

    return _succeeded(factory, report, started, f"{report.stored} stored, {report.rejected} rejected, "
                      f"{report.healed} healed; tree {report.tree_size}, cursor f1.{report.cursor}")


def _succeeded(factory: sessionmaker[Session], report: RoundReport, started: float, message: str) -> RoundReport:
    with transaction(factory) as session:
        row = backup.get_source(session, source_id=report.source_id)
        row.status, row.failures, row.last_error, row.next_attempt_at = backup.FOLLOWING, 0, None, None
        row.last_attempt_at = row.last_success_at = timestamp()
    report.seconds = time.monotonic() - started
    report.message = message
    return report


def _rescan(factory: sessionmaker[Session], client: RepositoryClient, report: RoundReport, source_id: str,
            keys: dict[str, bytes], audited: verify.AuditedTree) -> None:
    """Step 6: the entries the feed lists below the cursor that are neither held nor open rejections — the feed's
    scope grew behind the cursor (an operator appointed this backup later, a passport's responsibility moved to
    one that did) — fetched one by one and verified like any other; at most ``RESCAN_FETCH`` per round. The
    metadata pages cost no bodies."""
    missing: list[int] = []
    position = 0
    deadline = time.monotonic() + RESCAN_BUDGET
    while position < report.cursor and len(missing) < RESCAN_FETCH and time.monotonic() < deadline:
        page = client.feed(position, 1000, include="metadata")
        positions = [e["position"] for e in page["entries"] if isinstance(e, dict)
                     and type(e.get("position")) is int and position <= e["position"] < report.cursor]
        with factory() as session:
            known = backup.known_positions(session, source_id=source_id, positions=positions)
        missing.extend(p for p in positions if p not in known)
        nxt = _cursor_position(page["nextCursor"])
        if nxt <= position or not page["entries"]:
            break
        position = nxt
    for pos in missing[:RESCAN_FETCH]:
        if time.monotonic() > deadline:
            break
        page = client.feed(pos, 1)
        entry = page["entries"][0] if page["entries"] else None
        if not isinstance(entry, dict) or entry.get("position") != pos:
            continue
        with transaction(factory) as session:
            hashes = backup.leaf_hashes(session, source_id=source_id, positions=[pos])
            checked = _check(session, report, source_id, entry, pos, keys, audited, hashes.get(pos))
            if checked is not None:
                _keep(session, report, source_id, [checked])
    report.rescanned = len(missing)


def _page(client: RepositoryClient, position: int, sizes: list[int]) -> dict[str, Any]:
    """The feed page at ``position`` with at most ``sizes[0]`` entries, asking again with half as many while the
    answer is too large (very large passports); ``sizes[0]`` keeps the size that fitted."""
    while True:
        try:
            return client.feed(position, sizes[0])
        except TooLarge:
            if sizes[0] == 1:
                raise
            sizes[0] = max(sizes[0] // 2, 1)


def _stored_seen(note: str) -> witness.Seen:
    """A checkpoint the backup verified when it stored it (its signature is not checked again here)."""
    return witness.Seen(parse_checkpoint(parse_note(note.encode()).text), note)


def _cursor_position(cursor: str) -> int:
    if not cursor.startswith("f1.") or not cursor[3:].isascii() or not cursor[3:].isdigit() or len(cursor) > 32:
        raise FollowError(f"the feed answered a cursor that is not one: {cursor!r:.40}")
    return int(cursor[3:])


def _take(entries: list[Any], tree_size: int, start: int) -> tuple[list[tuple[int, Any]], bool]:
    """(position, entry) of the entries below ``tree_size``, in order; True if an entry at or past it was met
    (the rest waits for the next round). ``FollowError`` for a page out of order (not a feed of this log)."""
    taken: list[tuple[int, Any]] = []
    last = start - 1
    for entry in entries:
        pos = entry.get("position") if isinstance(entry, dict) else None
        if type(pos) is not int or pos <= last:
            raise FollowError(f"the feed answered entries out of order (position {pos!r:.20} after {last})")
        if pos >= tree_size:
            return taken, True
        taken.append((pos, entry))
        last = pos
    return taken, False


def _check(session: Session, report: RoundReport, source_id: str, entry: dict[str, Any], pos: int,
           keys: dict[str, bytes], audited: verify.AuditedTree, leaf_hash: bytes | None, *, retry: bool = False
           ) -> verify.VerifiedEntry | None:
    """The entry at ``pos``, verified; or None when it failed a step (recorded as a rejection, logged)."""
    body_text = entry.get("body")
    try:
        if leaf_hash is None:
            raise VerificationError(f"inclusion: the backup holds no leaf at position {pos}")
        if not isinstance(body_text, str):
            raise VerificationError("shape: expected the entry's body (include=body), got none")
        return verify.verify_entry_in_tree(entry, body=body_text.encode("utf-8"), keys=keys, audited=audited,
                                           leaf_hash=leaf_hash)
    except VerificationError as exc:
        step = exc.message.split(":", 1)[0]
        backup.reject(session, source_id=source_id, entry=entry, position=pos, step=step, reason=exc.message)
        if not retry:
            report.rejected += 1
        log.warning("backup source %s: entry at position %d rejected: %s", source_id, pos, exc.message)
        return None


def _keep(session: Session, report: RoundReport, source_id: str, verified: list[verify.VerifiedEntry]) -> None:
    """Store the verified entries (one look-up and one insert for a page; a version held already is not written
    again) and resolve any open rejection at their positions."""
    # one passport, one source: a repository cannot log a version of a passport another repository holds here
    elsewhere = backup.held_elsewhere(session, source_id=source_id, dpp_ids={v.dpp_id for v in verified})
    kept = []
    for v in verified:
        other = elsewhere.get(v.dpp_id)
        if other is None:
            # the operator the access rules use comes from the signed body, not from the feed's metadata
            kept.append(({**v.entry, "operatorId": backup.operator_of(v.body, v.entry.get("operatorId"))}, v.body))
            continue
        _refuse(session, report, source_id, v, "source", "foreign-passport",
                f"source: passport {v.dpp_id} is held from source {other}; one passport has one source (a repository "
                "cannot log versions of another repository's passports)", {"heldFrom": other})
    outcomes = backup.store_copies(session, source_id=source_id, copies=kept)
    report.stored += sum(1 for o in outcomes if o is True)
    for (entry, body), outcome in zip(kept, outcomes, strict=True):
        if outcome is None:  # the log holds two different signed bodies for one version: equivocation
            v = verify.VerifiedEntry(entry["position"], entry["dppId"], entry["version"], entry["sha256"],
                                     entry["kid"], b"", body, 0, b"", entry)
            _refuse(session, report, source_id, v, "equivocation", "equivocation",
                    f"equivocation: version {entry['version']} of {entry['dppId']} is held with another body; the "
                    f"repository logged and signed a second one at position {entry['position']}", {})
    backup.resolve_rejections(session, source_id=source_id, positions=[
        e["position"] for (e, _), o in zip(kept, outcomes, strict=True) if o is not None])
    backup.settle_operators(session, source_id=source_id, dpp_ids={
        e["dppId"] for (e, _), o in zip(kept, outcomes, strict=True) if o is True})


def _refuse(session: Session, report: RoundReport, source_id: str, v: verify.VerifiedEntry, step: str, kind: str,
            reason: str, evidence: dict[str, Any]) -> None:
    """A verified entry the backup still may not keep: rejected, and alerted the first time it is refused for
    this reason (however often it is retried)."""
    before = backup.reject(session, source_id=source_id, entry=v.entry, position=v.position, step=step,
                           reason=reason)
    if before != step:
        backup.alert(session, source_id=source_id, kind=kind, message=reason, evidence={
            "entry": {k: v.entry.get(k) for k in ("position", "dppId", "version", "sha256", "kid")}, **evidence})
        report.rejected += 1
        log.warning("backup source %s: %s", source_id, reason)


# ------------------------------------------------------------------------------------------------ the loop
class Follower:
    """Rounds for every source that is due, in a daemon thread, every ``interval`` seconds (sooner while a
    source is behind). ``stop`` returns within one HTTP timeout."""

    def __init__(self, factory: sessionmaker[Session], *, secret_key: str, interval: float = 1.0,
                 timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        self.factory, self.secret_key, self.interval, self.timeout = factory, secret_key, interval, timeout
        self.transport = transport
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rescanned: dict[str, float] = {}  # source id -> monotonic time of its last rescan

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dbp-backup-follower", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.timeout * 3 + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            try:
                busy = self.round_all()
            except Exception:  # a broken database: logged, tried again
                log.exception("backup follower: round failed")
            self._stop.wait(0.05 if busy else self.interval)

    def round_all(self, *, force: bool = False) -> bool:
        """One round for each due source; True if one of them is still behind."""
        with self.factory() as session:
            due = [(s.source_id, s.url, s.client_id, s.client_secret) for s in backup.sources(session)
                   if s.status not in backup.NOT_FOLLOWED and (force or s.next_attempt_at is None
                                                             or s.next_attempt_at <= timestamp())]
        behind = False
        for source_id, url, client_id, sealed in due:
            if self._stop.is_set():
                break
            try:
                secret = backup.open_secret(sealed, secret_key=self.secret_key)
            except Exception:  # a secret sealed under another DBP_SECRET_KEY: this source fails, the others go on
                with transaction(self.factory) as session:
                    backup.schedule_failure(session, source_id=source_id, error="cannot decrypt this source's client "
                                            "secret: was it added under another DBP_SECRET_KEY? (dbp backup remove "
                                            "and add it again)")
                continue
            report = self.round(source_id, url, client_id, secret)
            behind = behind or (report.outcome == "ok" and report.cursor < report.tree_size)
        return behind

    def round(self, source_id: str, url: str, client_id: str | None, secret: str | None) -> RoundReport:
        client = RepositoryClient(url, client_id=client_id, client_secret=secret, timeout=self.timeout,
                                  transport=self.transport)
        try:
            due = time.monotonic() - self._rescanned.get(source_id, -RESCAN_SECONDS) >= RESCAN_SECONDS
            report = follow_once(self.factory, client, source_id=source_id, rescan=due)
            if due and report.outcome == "ok":
                self._rescanned[source_id] = time.monotonic()
        except Exception as exc:  # one source's failure never stops the others: it backs off alone
            message = str(exc) if isinstance(exc, FollowError) else f"unexpected {type(exc).__name__}: {exc}"
            if not isinstance(exc, FollowError):
                log.exception("backup source %s: round failed", source_id)
            try:
                with transaction(self.factory) as session:
                    backup.schedule_failure(session, source_id=source_id, error=message, now=datetime.now(UTC))
            except Exception:  # the database itself: the next pass tries again
                log.exception("backup source %s: cannot record the failure", source_id)
            log.warning("backup source %s: %s (backing off)", source_id, message)
            report = RoundReport(source_id, "failed", message)
        finally:
            client.close()
        return report

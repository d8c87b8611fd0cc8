"""A witness of a repository's transparency log: it fetches the log's signed checkpoints, checks that each new one
is consistent with the last one it accepted, keeps what it saw, and reports a log that rewrote its history,
rolled back or showed two different trees.

What a round (``witness_round``) guarantees:

* The checkpoint (``GET {url}/api/v1/log/checkpoint``, a C2SP signed note) is accepted only with a valid signature
  by the log's *pinned* verifier key (C2SP vkey, key name = log origin): given by the operator (``--key``), or
  trusted on first use from the ``X-Log-Verifier-Key`` header, which the caller is told about. A pinned key is
  never replaced silently.
* Against the latest accepted checkpoint (``judge``, pure): a smaller tree is a **rollback**; the same size with
  another root — or any size at which the witness already holds a signed note with another root — is a **fork**
  (two notes signed by the log's key: evidence anyone can check); a larger tree is accepted only with an
  RFC 9162 §2.1.4 consistency proof (``GET /api/v1/log/proof/consistency?from=&to=``) that verifies against both
  signed roots, otherwise the log has **rewritten its history**. A note that does not verify with the pinned key
  is a **bad signature**; a URL that now serves another log is an **origin change**. Each is stored as an alert
  with its evidence (the signed notes, the proof) and reported; the latest accepted checkpoint stays as it was.
* Network failures, HTTP errors, oversize answers (``MAX_NOTE_BYTES`` / ``MAX_PROOF_BYTES``), answers that are
  not a signed checkpoint or a proof, and configuration mistakes raise ``WitnessError`` with an actionable message;
  nothing is stored then. Every request has a connect/read timeout and an overall deadline.

State (``WitnessStore``) is a small SQLite file: per log its pinned key, latest accepted checkpoint (the exact
signed note), every verified checkpoint seen, and the alerts with their evidence. Writes of one round happen in
one transaction; the latest checkpoint only moves from the value the round started from (compare and set), so
two witnesses sharing a file cannot lose an update.

The decision logic (``open_note``, ``judge``, ``parse_consistency``) is pure; HTTP sits behind the ``Transport``
protocol (``HttpTransport``, or an in-memory one in tests), storage behind ``WitnessStore``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from dbp.clock import timestamp
from dbp.errors import ProofError
from dbp.integrity import merkle
from dbp.integrity.checkpoint import (
    MAX_NOTE_BYTES,
    Checkpoint,
    VerifierKey,
    parse_checkpoint,
    parse_note,
    parse_verifier_key,
    verify_checkpoint,
)

DEFAULT_STATE = Path("var/witness.sqlite3")
CHECKPOINT_PATH = "/api/v1/log/checkpoint"
CONSISTENCY_PATH = "/api/v1/log/proof/consistency"
KEY_HEADER = "x-log-verifier-key"
#: A consistency proof has at most ~2 * 64 hashes of 44 base64 characters; its JSON stays far below this.
MAX_PROOF_BYTES = 64 * 1024
MAX_PROOF_HASHES = 2 * 64
#: A verifier key, an error text: shown, never trusted, cut to this.
MAX_SHOWN = 300
DEFAULT_TIMEOUT = 10.0


class Outcome(StrEnum):
    """What one round concluded. The first three are fine; every other one is an alert."""

    FIRST = "first"
    UNCHANGED = "unchanged"
    CONSISTENT = "consistent"
    ROLLBACK = "rollback"
    FORK = "fork"
    REWRITTEN = "history-rewritten"
    BAD_SIGNATURE = "bad-signature"
    ORIGIN_CHANGED = "origin-changed"

    @property
    def alarming(self) -> bool:
        return self not in (Outcome.FIRST, Outcome.UNCHANGED, Outcome.CONSISTENT)


class WitnessError(Exception):
    """The round could not decide anything (network, HTTP error, malformed or oversize answer, configuration).
    The message says what was expected, what was found, and what to do; nothing was stored."""


# --- pure decisions --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """A checkpoint whose signature by the pinned key verified: its body and the exact signed note."""

    checkpoint: Checkpoint
    note: str

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checkpoint.root_hash

    def describe(self) -> str:
        return f"size {self.size} root {_b64(self.root)}"


@dataclass(frozen=True)
class Judgement:
    outcome: Outcome
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def note_origin(note: bytes) -> str:
    """The origin line of a served checkpoint note, *unverified* (to choose the key that must verify it).
    ``WitnessError`` if ``note`` is not a signed checkpoint note at all."""
    try:
        return parse_checkpoint(parse_note(note).text).origin
    except ProofError as exc:
        raise WitnessError(f"expected a C2SP signed checkpoint note, got something else: {exc}") from None


def open_note(note: bytes, key: VerifierKey) -> Seen:
    """The checkpoint of ``note`` if it carries a valid signature by ``key`` over a checkpoint of the log named
    like the key (C2SP tlog-checkpoint: the log's key name is its origin). ``ProofError`` otherwise."""
    verified = verify_checkpoint(note, origin=key.name, verifiers=[key])
    return Seen(verified.checkpoint, note.decode("utf-8"))


def needs_proof(latest: Seen | None, new: Seen) -> bool:
    """Whether ``judge`` needs a consistency proof from ``latest`` to ``new`` (the tree grew)."""
    return latest is not None and new.size > latest.size


def judge(latest: Seen | None, new: Seen, *, earlier: Seen | None = None,
          proof: Sequence[bytes] | None = None) -> Judgement:
    """Decide about ``new`` given the latest accepted checkpoint ``latest`` (None: nothing accepted yet),
    ``earlier`` — a verified checkpoint already seen with ``new``'s size and another root, if any — and, when
    ``needs_proof`` and there is no such ``earlier``, the consistency ``proof`` from ``latest`` to ``new``.
    ``ValueError`` if a needed proof is missing or ``earlier`` does not have ``new``'s size and another root."""
    if earlier is not None:
        if earlier.size != new.size or earlier.root == new.root:
            raise ValueError("earlier: expected a checkpoint of the same size with another root")
        return Judgement(
            Outcome.FORK,
            f"fork: the log signed two different trees of size {new.size}: expected root {_b64(earlier.root)} "
            f"(seen before), found root {_b64(new.root)}",
            {"notes": {"earlier": earlier.note, "found": new.note}})
    if latest is None:
        return Judgement(Outcome.FIRST, f"first checkpoint: {new.describe()}")
    if new.size < latest.size:
        return Judgement(
            Outcome.ROLLBACK,
            f"rollback: expected a tree of at least {latest.size} leaves (already seen signed), found one of "
            f"{new.size}",
            {"notes": {"latest": latest.note, "found": new.note}})
    if new.size == latest.size:
        if new.root == latest.root:
            return Judgement(Outcome.UNCHANGED, f"unchanged: {new.describe()}")
        return Judgement(
            Outcome.FORK,
            f"fork: the log signed two different trees of size {new.size}: expected root {_b64(latest.root)}, "
            f"found root {_b64(new.root)}",
            {"notes": {"latest": latest.note, "found": new.note}})
    if proof is None:
        raise ValueError(f"a consistency proof from {latest.size} to {new.size} is needed")
    evidence = {"notes": {"latest": latest.note, "found": new.note},
                "proof": {"from": latest.size, "to": new.size, "hashes": [_b64(h) for h in proof]}}
    try:  # RFC 9162 §2.1.4.2
        merkle.verify_consistency(size1=latest.size, size2=new.size, root1=latest.root, root2=new.root, proof=proof)
    except ProofError as exc:
        evidence["error"] = {"reason": exc.reason, "message": str(exc)}
        return Judgement(
            Outcome.REWRITTEN,
            f"history rewritten: expected the tree of {new.size} leaves to extend the signed tree of {latest.size} "
            f"(root {_b64(latest.root)}), found that the log's consistency proof does not verify ({exc})",
            evidence)
    return Judgement(Outcome.CONSISTENT, f"consistent: {latest.size} → {new.size} leaves, root {_b64(new.root)}")


def parse_consistency(body: bytes, *, size1: int, size2: int) -> list[bytes]:
    """The hashes of a consistency proof answer ``{"from", "to", "hashes": [base64, …]}`` for exactly
    ``size1`` → ``size2``. ``WitnessError`` for anything else (the hashes themselves are checked by ``judge``)."""
    def refuse(message: str) -> WitnessError:
        return WitnessError(f"consistency proof {size1} → {size2}: {message}")

    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise refuse(f"expected JSON, got {body[:80]!r}") from None
    if not isinstance(data, dict):
        raise refuse(f"expected a JSON object, got {type(data).__name__}")
    for name, want in (("from", size1), ("to", size2)):
        got = data.get(name)
        if type(got) is not int or got != want:
            raise refuse(f"expected {name!r} = {want}, got {got!r:.40}")
    hashes = data.get("hashes")
    if not isinstance(hashes, list) or len(hashes) > MAX_PROOF_HASHES:
        got = f"{len(hashes)} entries" if isinstance(hashes, list) else type(hashes).__name__
        raise refuse(f"expected a list of at most {MAX_PROOF_HASHES} hashes, got {got}")
    out: list[bytes] = []
    for i, text in enumerate(hashes):
        try:
            raw = base64.b64decode(text, validate=True) if isinstance(text, str) else b""
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != merkle.HASH_SIZE or _b64(raw) != text:
            raise refuse(f"hashes[{i}]: expected a base64 32-byte hash, got {text!r:.60}")
        out.append(raw)
    return out


def normalise_url(url: str) -> str:
    """The repository's base URL without a trailing slash. ``ValueError`` unless it is http(s) with a host and
    without query or fragment."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"expected the repository's base URL, like https://dpp.example.com, got {url!r:.200}")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


# --- transport -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, headers (lower-case names) and the body, read up to the caller's limit."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Fetches ``url`` with GET. Raises ``WitnessError`` when there is no answer (unreachable, timeout) or the
    body is larger than ``limit`` bytes."""

    def get(self, url: str, *, accept: str, limit: int) -> Answer: ...


class HttpTransport:
    """``Transport`` over httpx: no redirects followed, no proxy from the environment unless ``trust_env``,
    ``timeout`` seconds per connect/read and three times that for a whole answer, bodies streamed and cut at
    ``limit``."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, trust_env: bool = False) -> None:
        self.timeout = timeout
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=trust_env,
                                    headers={"User-Agent": "dbp-witness", "Accept-Encoding": "identity"})

    def close(self) -> None:
        self._client.close()

    def get(self, url: str, *, accept: str, limit: int) -> Answer:
        deadline = time.monotonic() + 3 * self.timeout
        try:
            with self._client.stream("GET", url, headers={"Accept": accept}) as response:
                length = response.headers.get("content-length", "")
                if length.isdigit() and int(length) > limit:
                    raise WitnessError(f"GET {url}: expected at most {limit} bytes, the server announces {length}; "
                                       "refused (a hostile or misconfigured server)")
                body = bytearray()
                for chunk in response.iter_raw():
                    body += chunk
                    if len(body) > limit:
                        raise WitnessError(f"GET {url}: expected at most {limit} bytes, got more; refused "
                                           "(a hostile or misconfigured server)")
                    if time.monotonic() > deadline:
                        raise WitnessError(f"GET {url}: no complete answer within {3 * self.timeout:g} s")
                headers = {k.lower(): v for k, v in response.headers.items()}
                encoding = headers.get("content-encoding", "identity")
                if encoding not in ("identity", ""):
                    raise WitnessError(f"GET {url}: expected an uncompressed answer, got content-encoding "
                                       f"{encoding!r:.40}")
                return Answer(response.status_code, headers, bytes(body))
        except httpx.TimeoutException:
            raise WitnessError(f"GET {url}: no answer within {self.timeout:g} s (is the repository up? is --url "
                               "right?)") from None
        except httpx.HTTPError as exc:
            raise WitnessError(f"GET {url}: cannot reach the repository ({type(exc).__name__}: {exc}); check "
                               "--url and that the repository is running") from None


def _error_text(answer: Answer) -> str:
    """The message of an EN 18222 error object, or the start of the body; for showing, never trusted."""
    try:
        data = json.loads(answer.body)
        text = str(data["message"][0]["text"])
    except (ValueError, KeyError, IndexError, TypeError, RecursionError):
        text = answer.body[:200].decode("utf-8", "replace")
    return text[:MAX_SHOWN]


def fetch_checkpoint(transport: Transport, base_url: str) -> Answer:
    """The served checkpoint note (200, text/plain). ``WitnessError`` for anything else."""
    url = base_url + CHECKPOINT_PATH
    answer = transport.get(url, accept="text/plain", limit=MAX_NOTE_BYTES)
    if answer.status == 503:
        raise WitnessError(f"GET {url}: the log has no signed checkpoint yet ({_error_text(answer)}); retry shortly")
    if answer.status != 200:
        raise WitnessError(f"GET {url}: expected 200 with the signed checkpoint, got {answer.status}: "
                           f"{_error_text(answer)} (is --url the repository's base URL?)")
    kind = answer.headers.get("content-type", "")
    if not kind.startswith("text/plain"):
        raise WitnessError(f"GET {url}: expected a signed note (text/plain), got {kind[:80]!r} (is --url the "
                           "repository's base URL?)")
    return answer


def fetch_consistency(transport: Transport, base_url: str, *, size1: int, size2: int) -> list[bytes]:
    """The log's consistency proof from ``size1`` to ``size2`` leaves (``parse_consistency``)."""
    url = f"{base_url}{CONSISTENCY_PATH}?from={size1}&to={size2}"
    answer = transport.get(url, accept="application/json", limit=MAX_PROOF_BYTES)
    if answer.status != 200:
        raise WitnessError(f"GET {url}: expected 200 with a consistency proof, got {answer.status}: "
                           f"{_error_text(answer)}. The log signed both checkpoints, so it must be able to prove "
                           f"them consistent; the checkpoint of {size2} leaves is not accepted")
    return parse_consistency(answer.body, size1=size1, size2=size2)


# --- state -----------------------------------------------------------------------------------------------------


_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    verifier_key TEXT NOT NULL,
    pinned TEXT NOT NULL CHECK (pinned IN ('given', 'tofu')),
    pinned_at TEXT NOT NULL,
    url TEXT NOT NULL,
    latest_size TEXT,
    latest_root BLOB,
    latest_note TEXT,
    latest_at TEXT,
    checked_at TEXT
);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL REFERENCES logs (origin),
    size TEXT NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    url TEXT NOT NULL,
    outcome TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    times_seen INTEGER NOT NULL DEFAULT 1,
    UNIQUE (origin, size, root)
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    url TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    evidence TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    times_seen INTEGER NOT NULL DEFAULT 1
);
"""
_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class LogRecord:
    origin: str
    key: VerifierKey
    pinned: str
    pinned_at: str
    url: str
    latest: Seen | None
    latest_at: str | None
    checked_at: str | None


@dataclass(frozen=True)
class Alert:
    id: int
    origin: str
    url: str
    kind: str
    message: str
    evidence: dict[str, Any]
    first_seen: str
    last_seen: str
    times_seen: int


def _seen(note: str) -> Seen:
    return Seen(parse_checkpoint(parse_note(note.encode("utf-8")).text), note)


class WitnessStore:
    """The witness's SQLite file (created with its directory on first use). ``WitnessError`` if it is not one."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                raise WitnessError(f"witness state {self.path}: expected schema version {_SCHEMA_VERSION}, got "
                                   f"{version}")
            with self.transaction():
                self._create()
        except (sqlite3.Error, OSError) as exc:
            raise WitnessError(f"witness state {self.path}: cannot open it as a SQLite file ({exc}); pass another "
                               "--state") from None

    def _create(self) -> None:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)
        self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> WitnessStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE: a second witness process waits, up to 30 s)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # reading

    def _record(self, row: Any) -> LogRecord:
        origin, key, pinned, pinned_at, url, note, latest_at, checked_at = row
        return LogRecord(origin, parse_verifier_key(key), pinned, pinned_at, url,
                         _seen(note) if note is not None else None, latest_at, checked_at)

    _LOG_COLUMNS = "origin, verifier_key, pinned, pinned_at, url, latest_note, latest_at, checked_at"

    def log(self, origin: str) -> LogRecord | None:
        row = self._db.execute(f"SELECT {self._LOG_COLUMNS} FROM logs WHERE origin = ?", (origin,)).fetchone()
        return None if row is None else self._record(row)

    def log_at(self, url: str) -> LogRecord | None:
        """The log last fetched from ``url``."""
        row = self._db.execute(f"SELECT {self._LOG_COLUMNS} FROM logs WHERE url = ? ORDER BY checked_at DESC "
                               "LIMIT 1", (url,)).fetchone()
        return None if row is None else self._record(row)

    def logs(self) -> list[LogRecord]:
        return [self._record(r) for r in self._db.execute(f"SELECT {self._LOG_COLUMNS} FROM logs ORDER BY origin")]

    def other_root(self, origin: str, seen: Seen) -> Seen | None:
        """A verified checkpoint of ``origin`` already seen with ``seen``'s size and another root, if any."""
        row = self._db.execute("SELECT note FROM checkpoints WHERE origin = ? AND size = ? AND root != ? "
                               "ORDER BY id LIMIT 1", (origin, str(seen.size), seen.root)).fetchone()
        return None if row is None else _seen(row[0])

    def history(self, origin: str) -> list[tuple[Seen, str, str, str, int]]:
        """Every verified checkpoint of ``origin`` seen: (checkpoint, outcome, first seen, last seen, times)."""
        rows = self._db.execute("SELECT note, outcome, first_seen, last_seen, times_seen FROM checkpoints "
                                "WHERE origin = ? ORDER BY id", (origin,))
        return [(_seen(note), outcome, first, last, times) for note, outcome, first, last, times in rows]

    def alerts(self, origin: str | None = None) -> list[Alert]:
        where, args = ("WHERE origin = ?", (origin,)) if origin else ("", ())
        rows = self._db.execute("SELECT id, origin, url, kind, message, evidence, first_seen, last_seen, times_seen "
                                f"FROM alerts {where} ORDER BY id", args)
        return [Alert(i, o, u, k, m, json.loads(e), f, la, t) for i, o, u, k, m, e, f, la, t in rows]

    def alert(self, alert_id: int) -> Alert | None:
        return next((a for a in self.alerts() if a.id == alert_id), None)

    # writing (inside ``transaction``)

    def pin(self, origin: str, key: VerifierKey, *, how: str, url: str) -> None:
        self._db.execute("INSERT INTO logs (origin, verifier_key, pinned, pinned_at, url) VALUES (?, ?, ?, ?, ?)",
                         (origin, key.encode(), how, timestamp(), url))

    def saw(self, origin: str, seen: Seen, *, url: str, outcome: Outcome) -> None:
        now = timestamp()
        self._db.execute(
            "INSERT INTO checkpoints (origin, size, root, note, url, outcome, first_seen, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (origin, size, root) DO UPDATE SET "
            "last_seen = excluded.last_seen, times_seen = times_seen + 1",
            (origin, str(seen.size), seen.root, seen.note, url, outcome.value, now, now))
        self._db.execute("UPDATE logs SET url = ?, checked_at = ? WHERE origin = ?", (url, now, origin))

    def advance(self, origin: str, seen: Seen, *, previous: Seen | None) -> None:
        """Make ``seen`` the latest accepted checkpoint, if the latest is still ``previous``."""
        moved = self._db.execute(
            "UPDATE logs SET latest_size = ?, latest_root = ?, latest_note = ?, latest_at = ? "
            "WHERE origin = ? AND latest_note IS ?",
            (str(seen.size), seen.root, seen.note, timestamp(), origin, previous.note if previous else None))
        if moved.rowcount != 1:
            raise WitnessError(f"witness state {self.path}: another witness process accepted a checkpoint of "
                               f"{origin} meanwhile; run again")

    def raise_alert(self, origin: str, *, url: str, kind: Outcome, message: str, evidence: dict[str, Any]) -> int:
        """Store an alert (the same evidence twice is one alert, seen twice); returns its id."""
        body = json.dumps({"kind": kind.value, "origin": origin, **evidence}, sort_keys=True, ensure_ascii=False)
        fingerprint = hashlib.sha256(body.encode("utf-8")).hexdigest()
        now = timestamp()
        self._db.execute(
            "INSERT INTO alerts (origin, url, kind, message, evidence, fingerprint, first_seen, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET "
            "last_seen = excluded.last_seen, times_seen = times_seen + 1, url = excluded.url",
            (origin, url, kind.value, message, body, fingerprint, now, now))
        row = self._db.execute("SELECT id FROM alerts WHERE fingerprint = ?", (fingerprint,)).fetchone()
        return int(row[0])


# --- one round -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundResult:
    """What one round found. ``alert_id`` is set for every alarming ``outcome``; ``pinned`` is "given" or "tofu"
    when the round pinned the log's key."""

    url: str
    origin: str
    outcome: Outcome
    message: str
    seen: Seen | None
    previous: Seen | None
    alert_id: int | None = None
    pinned: str | None = None
    key: str | None = None


def _choose_key(store: WitnessStore, answer: Answer, *, url: str, origin: str,
                keys: Sequence[VerifierKey]) -> tuple[VerifierKey, str | None]:
    """The key that must verify the checkpoint of ``origin``, and how it is to be pinned (None: already)."""
    given = {k.name: k for k in keys}
    record = store.log(origin)
    if record is not None:
        if origin in given and given[origin] != record.key:
            raise WitnessError(f"log {origin}: the witness state {store.path} pins key {record.key.encode()}, "
                               f"--key gives {given[origin].encode()}; a pinned key is never replaced silently (if "
                               "the log really changed its key, witness it with a fresh --state)")
        return record.key, None
    if origin in given:
        return given[origin], "given"
    if keys:
        raise WitnessError(f"{url} serves the log {origin!r:.200}, but --key names "
                           f"{', '.join(sorted(given))}; pass that log's verifier key")
    served = answer.headers.get(KEY_HEADER)
    if not served:
        raise WitnessError(f"{url} does not publish its verifier key ({KEY_HEADER} header); pass it with --key")
    try:
        key = parse_verifier_key(served)
    except ProofError as exc:
        raise WitnessError(f"{url}: the published verifier key is malformed: {exc}") from None
    if key.name != origin:
        raise WitnessError(f"{url}: expected a verifier key named like the log's origin {origin!r:.200}, "
                           f"got one named {key.name!r:.200}")
    return key, "tofu"


def witness_round(store: WitnessStore, transport: Transport, url: str, *,
                  keys: Sequence[VerifierKey] = ()) -> RoundResult:
    """Fetch the checkpoint at ``url`` (a repository base URL, ``normalise_url``), verify it with the pinned (or
    given, or on first use served) key, judge it against what the witness accepted before (fetching a
    consistency proof when the tree grew), store the outcome, and return it. ``WitnessError`` when nothing could
    be decided; nothing is stored then."""
    answer = fetch_checkpoint(transport, url)
    origin = note_origin(answer.body)
    by_url = store.log_at(url)
    if by_url is not None and by_url.origin != origin:
        message = (f"origin changed: expected {url} to serve the log {by_url.origin!r}, found the log "
                   f"{origin!r:.200}")
        with store.transaction():
            alert_id = store.raise_alert(by_url.origin, url=url, kind=Outcome.ORIGIN_CHANGED, message=message,
                                         evidence={"notes": {"latest": by_url.latest.note if by_url.latest else None,
                                                             "found": answer.body.decode("utf-8", "replace")}})
        return RoundResult(url, by_url.origin, Outcome.ORIGIN_CHANGED, message, None, by_url.latest, alert_id)
    key, how = _choose_key(store, answer, url=url, origin=origin, keys=keys)
    try:
        seen = open_note(answer.body, key)
    except ProofError as exc:
        if how == "tofu":
            raise WitnessError(f"{url}: the served checkpoint does not verify with the served key: {exc}") from None
        message = (f"bad signature: expected a checkpoint signed by {key.encode()}, found one that is not ({exc}); "
                   f"the server publishes the key {answer.headers.get(KEY_HEADER, 'none')!s:.{MAX_SHOWN}}. If "
                   "the log changed its key legitimately, witness it with a fresh --state and its new --key")
        with store.transaction():
            if how is not None:
                store.pin(origin, key, how=how, url=url)
            alert_id = store.raise_alert(origin, url=url, kind=Outcome.BAD_SIGNATURE, message=message, evidence={
                "expectedKey": key.encode(), "note": answer.body.decode("utf-8", "replace"),
                "servedKey": answer.headers.get(KEY_HEADER, "")[:MAX_SHOWN]})
        record = store.log(origin)
        return RoundResult(url, origin, Outcome.BAD_SIGNATURE, message, None, record.latest if record else None,
                           alert_id, how, key.encode())
    record = store.log(origin)
    latest = record.latest if record else None
    earlier = store.other_root(origin, seen)
    proof: list[bytes] | None = None
    if earlier is None and needs_proof(latest, seen):
        assert latest is not None
        proof = fetch_consistency(transport, url, size1=latest.size, size2=seen.size)
    verdict = judge(latest, seen, earlier=earlier, proof=proof)
    raised: int | None = None
    with store.transaction():
        if how is not None:
            store.pin(origin, key, how=how, url=url)
        store.saw(origin, seen, url=url, outcome=verdict.outcome)
        if verdict.outcome in (Outcome.FIRST, Outcome.CONSISTENT):
            store.advance(origin, seen, previous=latest)
        elif verdict.outcome.alarming:
            raised = store.raise_alert(origin, url=url, kind=verdict.outcome, message=verdict.message,
                                       evidence={"verifierKey": key.encode(), **verdict.evidence})
    return RoundResult(url, origin, verdict.outcome, verdict.message, seen, latest, raised, how, key.encode())


def watch(rounds: Callable[[], None], *, interval: float, stop: Callable[[], bool],
          sleep: Callable[[float], None] = time.sleep) -> None:
    """Call ``rounds`` every ``interval`` seconds (measured start to start) until ``stop()``."""
    while True:
        started = time.monotonic()
        rounds()
        if stop():
            return
        sleep(max(0.0, interval - (time.monotonic() - started)))

"""The transparency log's hot reads, answered before FastAPI: ``GET /api/v1/log/checkpoint``,
``GET /api/v1/log/proof/inclusion`` and ``GET /api/v1/log/proof/consistency``.

Issue 4 asks for proofs at 10^6 leaves with p99 <= 5 ms over HTTP. Measured (``python -m bench.log``, py-spy):
through the routes a proof cost ~1 ms of server CPU, almost all of it FastAPI — dependency resolution, three
thread-pool hops for the session and the endpoint, the ORM building the checkpoint and leaf queries — while the
database work is ~50 µs (the O(log n) stored subtree hashes in one primary-key query). Here the same answer is
built from plain DB-API queries: on SQLite on the event loop, on one autocommit connection of our own (WAL: each
statement sees the last commit); on PostgreSQL in a worker thread of our own, on its own autocommit connection
(``dbp.rawreads``). Other databases: the routes answer.

**Same answers.** The bytes are the routes' (``dbp.integrity.routes``): the same leaf (``log.stored_leaf`` of the
columns ``log.LEAF_COLUMNS`` names), the same proof (``merkle.inclusion_plan`` / ``consistency_plan``,
``merkle.build_proof``), the same member order (orjson), the same headers in the same order (Starlette's
``Response`` puts the given headers first, then ``content-length`` and ``content-type``;
``CorrelationAndLimits`` appends ``x-correlation-id``). Only successes are answered here. Anything else goes to
the routes, which remain the documented operations and produce every error object — and those requests the
routes answer 200 too but in a form not worth copying here: a query string with unknown, repeated, empty or
escaped member names, a number not in plain decimal (a sign, leading zeros, ``_``, ``.0``, escapes, more than
19 digits), a ``dppId`` of raw non-ASCII bytes or escapes that are not UTF-8, NUL anywhere, an unusual
``Accept``; and a size beyond the latest checkpoint, an unknown leaf, storage that does not hold what the log
promises, any exception.
``tests/integrity/test_log_fast_path.py`` compares both byte for byte.

**Freshness.** Nothing is cached but the verifier key's text (re-derived whenever the checkpointer's signer
object changes): the latest checkpoint is read on every request (one row), so a checkpoint made a moment ago
is served at once, and a log emptied underneath (tests) is seen at once.
"""

from __future__ import annotations

import re
from binascii import b2a_base64
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import unquote_plus

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from dbp.http import client_correlation_id, new_correlation_id
from dbp.integrity import log, merkle
from dbp.integrity.models import LogCheckpoint, LogLeaf, LogNode
from dbp.rawreads import Query, RawReads

T = TypeVar("T")
Headers = list[tuple[bytes, bytes]]
Answer = tuple[Headers, bytes]

PREFIX = "/api/v1/log/"
CHECKPOINT = "/api/v1/log/checkpoint"
INCLUSION = "/api/v1/log/proof/inclusion"
CONSISTENCY = "/api/v1/log/proof/consistency"

# What FastAPI would parse to the same integer: only the canonical decimal form, within 0..MAX_INDEX.
_DECIMAL = re.compile(rb"0|[1-9][0-9]{0,18}")
_MAX_VERSION = 2**31 - 1
_MAX_DPP_ID = 256

_NO_CACHE = (b"cache-control", b"no-cache")
_VARY = (b"vary", b"Accept")
_JSON = (b"content-type", b"application/json")
_NOTE = (b"content-type", b"text/plain; charset=utf-8")

_CHECKPOINT_SQL = (f"SELECT size, root_hash, note, created_at FROM {LogCheckpoint.__tablename__} "
                   "ORDER BY size DESC LIMIT 1")


def _leaf_sql() -> tuple[str, str]:
    """(by index, by passport version) over the columns ``log.stored_leaf`` reads, in its order."""
    columns = ", ".join(c.name for c in log.LEAF_COLUMNS)
    table = LogLeaf.__tablename__
    return (f"SELECT {columns} FROM {table} WHERE leaf_index = ?",
            f"SELECT {columns} FROM {table} WHERE dpp_id = ? AND version = ? ORDER BY leaf_index DESC LIMIT 1")


class _Refused(Exception):
    """Not answered here: the route answers (and says why)."""


def _latest(query: Query) -> log.StoredCheckpoint:
    rows = query(_CHECKPOINT_SQL, ())
    if not rows:
        raise _Refused("no checkpoint")
    size, root, note, created_at = rows[0]
    return log.StoredCheckpoint(size, bytes(root), note, created_at)


def b64(data: bytes) -> str:
    """``log.b64`` (standard padded base64) in one call instead of three."""
    return b2a_base64(data, newline=False).decode("ascii")


def _proof(query: Query, plan: merkle.ProofPlan) -> list[bytes]:
    """The proof hashes of ``plan``, as ``log._proof`` fetches them (one query, an OR of primary keys) and
    ``merkle.build_proof`` folds them (each element the right fold of its subtrees' hashes), without building a
    ``Node`` per stored row: at 10^6 leaves that was a fifth of a proof's CPU time."""
    wanted = {(node.level, node.index) for nodes in plan for node in nodes}
    if not wanted:
        return []
    where = " OR ".join(["(level = ? AND idx = ?)"] * len(wanted))
    params = [value for key in wanted for value in key]
    stored = {(level, idx): bytes(digest)
              for level, idx, digest in query(f"SELECT level, idx, hash FROM {LogNode.__tablename__} WHERE {where}",
                                              params)}
    if len(stored) != len(wanted) or any(len(digest) != merkle.HASH_SIZE for digest in stored.values()):
        raise _Refused("missing or malformed node")  # the route raises its VerificationError / ProofError
    hashes = []
    for nodes in plan:
        last = nodes[-1]
        digest = stored[last.level, last.index]
        for node in reversed(nodes[:-1]):
            digest = merkle.hash_children(stored[node.level, node.index], digest)
        hashes.append(digest)
    return hashes


def _params(query_string: bytes, allowed: frozenset[str]) -> dict[str, bytes]:
    """The members of a plain query string (``a=1&b=2``: each member once, named plainly, allowed, not empty) as
    raw bytes; ``_Refused`` for anything else (the route decides what it means)."""
    out: dict[str, bytes] = {}
    if not query_string:
        return out
    for part in query_string.split(b"&"):
        name, eq, value = part.partition(b"=")
        key = name.decode("latin-1")
        if not eq or not value or key not in allowed or key in out:
            raise _Refused("query string")
        out[key] = value
    return out


def _integer(raw: bytes, limit: int = log.MAX_INDEX) -> int:
    """The integer FastAPI makes of ``raw`` when it is in canonical decimal form within 0..``limit``."""
    if not _DECIMAL.fullmatch(raw):
        raise _Refused("not a canonical integer")
    value = int(raw)
    if value > limit:
        raise _Refused("out of range")
    return value


def _optional(raw: bytes | None) -> int | None:
    return None if raw is None else _integer(raw)


def _text(raw: bytes) -> str:
    """A query value as Starlette decodes it (``parse_qsl`` of the latin-1 query string: ``+`` is a space,
    percent-escapes are UTF-8); ``_Refused`` for raw non-ASCII bytes or escapes that are not UTF-8, which
    Starlette would turn into other characters."""
    if not raw.isascii():
        raise _Refused("raw non-ASCII")
    value = unquote_plus(raw.decode("ascii"), encoding="utf-8", errors="strict")
    return value


class FastLogReads:
    """Answers the log's checkpoint and proof reads (see the module docstring) — ``(headers, body)`` of a
    ``200`` — or None to let the routes answer. ``state`` is the application's (``engine``,
    ``checkpointer``); the database connection is opened at the first request."""

    _INCLUSION = frozenset({"leafIndex", "dppId", "version", "treeSize"})
    _CONSISTENCY = frozenset({"from", "to"})

    def __init__(self, state: Any) -> None:
        self.state = state
        self._store: RawReads | None = None
        self._verifier: tuple[object, bytes] | None = None
        self._leaf_by_index, self._leaf_by_version = _leaf_sql()
        self._routes: dict[str, Callable[[Scope], Awaitable[Answer]]] = {
            CHECKPOINT: self._checkpoint, INCLUSION: self._inclusion, CONSISTENCY: self._consistency}

    async def __call__(self, scope: Scope) -> Answer | None:
        route = self._routes.get(scope["path"])
        if route is None:
            return None
        try:
            if b"%00" in scope["query_string"] or b"\x00" in scope["query_string"]:
                return None  # CorrelationAndLimits refuses NUL with its own error object
            return await route(scope)
        except Exception:  # _Refused, or anything unforeseen: the route answers, with its error object
            return None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _db(self) -> RawReads:
        if self._store is None:
            # the nodes of a 10^6-leaf log are ~2 million rows behind a separate primary-key index: a larger page
            # cache than the default 2 MB keeps more of the upper B-tree levels (measured: -15 % on the query)
            self._store = RawReads(self.state.engine, name="log-reads", unsupported=lambda d: _Refused(f"database {d}"),
                                   closed=lambda: _Refused("closed"), keep=(_Refused,),
                                   sqlite_pragmas=("cache_size=-32768",))
        return self._store

    @staticmethod
    def _cid(scope: Scope) -> bytes:
        return (client_correlation_id(scope["headers"]) or new_correlation_id()).encode()

    # --- GET /api/v1/log/checkpoint ------------------------------------------------------------------------

    async def _checkpoint(self, scope: Scope) -> Answer:
        if scope["query_string"]:
            raise _Refused("a query string")  # the route ignores it; not worth copying how
        accept = ""
        for name, value in scope["headers"]:
            if name == b"accept":  # the first one, as Starlette's Headers.get reads it
                accept = value.decode("latin-1")
                break
        wants_json = _wants_json(accept)
        verifier = await self._verifier_key()
        latest = await self._db().run(_latest)
        cid = self._cid(scope)
        if wants_json:
            body = orjson.dumps({"origin": self.state.checkpointer.origin, "size": latest.size,
                                 "rootHash": b64(latest.root_hash), "note": latest.note,
                                 "verifierKey": verifier.decode("latin-1"), "createdAt": latest.created_at})
            return [_NO_CACHE, _VARY, (b"content-length", str(len(body)).encode()), _JSON,
                    (b"x-correlation-id", cid)], body
        body = latest.note.encode("utf-8")
        return [_NO_CACHE, _VARY, (b"x-log-verifier-key", verifier), (b"content-length", str(len(body)).encode()),
                _NOTE, (b"x-correlation-id", cid)], body

    async def _verifier_key(self) -> bytes:
        """``str(checkpointer.verifier().encode())`` as the route sends it; the first call (which may create the
        key) in a worker thread, later ones take the checkpointer's current signer without a query."""
        checkpointer = self.state.checkpointer
        cached = self._verifier
        # never database work on the event loop: the checkpointer refreshes its signer in its own thread
        signer = checkpointer.current_signer() or await run_in_threadpool(checkpointer.signer)
        if cached is None or cached[0] is not signer:
            cached = (signer, str(signer.verifier.encode()).encode("latin-1"))
            self._verifier = cached
        return cached[1]

    # --- GET /api/v1/log/proof/inclusion -------------------------------------------------------------------

    async def _inclusion(self, scope: Scope) -> Answer:
        params = _params(scope["query_string"], self._INCLUSION)
        tree_size = _optional(params.get("treeSize"))
        if "leafIndex" in params:
            if "dppId" in params or "version" in params:
                raise _Refused("two ways of naming the leaf")
            index = _integer(params["leafIndex"])
            body = await self._db().run(lambda q: self._by_index(q, index, tree_size))
        else:
            raw_id, raw_version = params.get("dppId"), params.get("version")
            if raw_id is None or raw_version is None:
                raise _Refused("no leaf named")
            dpp_id = _text(raw_id)
            if not 0 < len(dpp_id) <= _MAX_DPP_ID or not dpp_id.isprintable():
                raise _Refused("dppId")
            version = _integer(raw_version, _MAX_VERSION)
            if not version:
                raise _Refused("version 0")
            body = await self._db().run(lambda q: self._by_version(q, dpp_id, version, tree_size))
        headers = [_NO_CACHE] if tree_size is None else []
        return [*headers, (b"content-length", str(len(body)).encode()), _JSON,
                (b"x-correlation-id", self._cid(scope))], body

    def _size(self, query: Query, tree_size: int | None, out: dict[str, Any]) -> int:
        latest = _latest(query)
        if tree_size is None:
            out["checkpoint"] = latest.note
            return latest.size
        if tree_size > latest.size:
            raise _Refused("beyond the latest checkpoint")
        return tree_size

    def _by_index(self, query: Query, index: int, tree_size: int | None) -> bytes:
        out: dict[str, Any] = {}
        size = self._size(query, tree_size, out)
        if index >= size:
            raise _Refused("leaf beyond the tree")
        hashes = _proof(query, merkle.inclusion_plan(index, size))
        rows = query(self._leaf_by_index, (index,))
        if not rows:
            raise _Refused("missing leaf")
        return self._inclusion_body(log.stored_leaf(rows[0]), size, hashes, out)

    def _by_version(self, query: Query, dpp_id: str, version: int, tree_size: int | None) -> bytes:
        out: dict[str, Any] = {}
        size = self._size(query, tree_size, out)
        rows = query(self._leaf_by_version, (dpp_id, version))
        if not rows:
            raise _Refused("no such leaf")
        stored = log.stored_leaf(rows[0])
        if stored.index >= size:
            raise _Refused("leaf not yet in the tree")
        hashes = _proof(query, merkle.inclusion_plan(stored.index, size))
        return self._inclusion_body(stored, size, hashes, out)

    @staticmethod
    def _inclusion_body(stored: log.StoredLeaf, size: int, hashes: list[bytes], out: dict[str, Any]) -> bytes:
        return orjson.dumps({**stored.as_json(), "treeSize": size, "hashes": [b64(h) for h in hashes], **out})

    # --- GET /api/v1/log/proof/consistency -----------------------------------------------------------------

    async def _consistency(self, scope: Scope) -> Answer:
        params = _params(scope["query_string"], self._CONSISTENCY)
        if "from" not in params:
            raise _Refused("no from")
        size1 = _integer(params["from"])
        to = _optional(params.get("to"))

        def answer(query: Query) -> bytes:
            out: dict[str, Any] = {}
            size2 = self._size(query, to, out)
            if size1 > size2:
                raise _Refused("from > to")
            hashes = _proof(query, merkle.consistency_plan(size1, size2))
            return orjson.dumps({"from": size1, "to": size2, "hashes": [b64(h) for h in hashes], **out})

        body = await self._db().run(answer)
        headers = [_NO_CACHE] if to is None else []
        return [*headers, (b"content-length", str(len(body)).encode()), _JSON,
                (b"x-correlation-id", self._cid(scope))], body


def checkpoint_wants_json(accept: str) -> bool | None:
    """Which checkpoint representation an ``Accept`` header asks for: True JSON, False the signed note, None
    neither (the route answers 406). Shared with ``routes``, so both paths decide alike."""
    json_at, text_at = accept.find("application/json"), accept.find("text/plain")
    if json_at >= 0 and (text_at < 0 or json_at < text_at):
        return True
    if accept and text_at < 0 and not any(t in accept for t in ("*/*", "text/*")):
        return None
    return False


def _wants_json(accept: str) -> bool:
    """``checkpoint_wants_json``, with ``_Refused`` where the route answers 406."""
    wants = checkpoint_wants_json(accept)
    if wants is None:
        raise _Refused("not acceptable")
    return wants



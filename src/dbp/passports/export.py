"""``GET /api/v1/export/dpps``: the current version of every passport a search matches, streamed as NDJSON.

What a client gets, and what it may rely on:

* One line per passport, in ``dppId`` order: exactly the bytes ``GET /api/v1/dpps/{dppId}`` answers the
  same caller at that moment: the stored canonical version for its responsible operator (and organisations
  it authorised), the stored public view (Annex XIII point 1) for the anonymous public and whoever gets
  point 1 only, and the same redacted view a read renders for everyone else. The decision is
  ``guard.decide_on``, the read's own; nothing here decides access. Point 1 is public, so no matching
  passport is left out: a caller who may read nothing more gets its public view, as a read would give it.
* The last line is a trailer object (no ``dppId``): ``{"exportComplete": true, "count": N,
  "nextCursor": null | "…"}``. ``nextCursor`` is set when ``limit`` ended the export before the last
  match: pass it as ``cursor`` to continue. A stream without the trailer was cut off: discard it or resume
  from the last ``dppId`` received. A failure after the first line ends the stream with
  ``{"exportComplete": false, "count": N, "nextCursor": "…", "error": <EN 18222 result object>}``;
  ``nextCursor`` then resumes right after the last passport sent.
* Every exported passport has its access-log record (action ``export``, the access groups returned,
  outcome ``granted``), committed before the passport's bytes are sent: pages of :data:`PAGE_SIZE` are
  read, decided, logged with ``ReadLogWriter.append_many`` and only then written out. If the log cannot
  store a page, nothing of that page is sent: before the first byte the answer is a 503 error object,
  later the error trailer.
* Errors found before streaming starts (filters, cursor, limit, purpose, credentials, the first page)
  are answered as usual, with a status and the EN 18222 error object. A malformed ``X-Purpose`` is
  also logged as a denied export.

Not a snapshot: pages are separate reads (keyset by ``dppId``), so a passport changed while the export
runs appears in the version current when its page is read. Memory is bounded by one page.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import Query, Request
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from dbp.access.deps import authenticate
from dbp.access.policy import PUBLIC, ReadDecision
from dbp.access.principal import Principal
from dbp.audit.service import AccessRecord, Action
from dbp.deps import in_read_session
from dbp.errors import BadRequest, DbpError, NotAcceptable, ResultMessage, ServiceUnavailable
from dbp.http import correlation_id
from dbp.passports import guard, service
from dbp.passports.redaction import redacted_bytes, view_from_index
from dbp.passports.service import StoredVersion

log = logging.getLogger("dbp")

MEDIA_TYPE = "application/x-ndjson"
PAGE_SIZE = 100  # passports read, decided, logged (one durable append) and sent together
DEFAULT_LIMIT = 10_000
MAX_LIMIT = 100_000

ExportLimit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="at most this many passports; the trailer's "
                                   "nextCursor continues the export")]

DESCRIPTION = (
    "Streams `application/x-ndjson`: one line per passport that matches the filters (those of `GET /dpps`), in "
    "`dppId` order, each exactly the caller's view that `GET /dpps/{dppId}` returns; then a trailer line "
    '`{"exportComplete": true, "count": N, "nextCursor": null}` (`nextCursor` set when `limit` cut the export '
    "short). A stream without the trailer is incomplete. Every passport is in the access log (action `export`) "
    "before its line is sent.")
RESPONSES: dict[int | str, dict[str, Any]] = {"200": {"content": {MEDIA_TYPE: {"schema": {"type": "string"}}}}}


def accept_ndjson(request: Request) -> None:
    """An Accept header that excludes NDJSON gets 406 (absent, ``*/*`` and ``application/*`` are fine)."""
    accept = request.headers.get("accept", "")
    if accept and not any(t in accept for t in (MEDIA_TYPE, "application/*", "*/*")):
        raise NotAcceptable(f"this resource is available as {MEDIA_TYPE}")


async def caller(request: Request) -> Principal:
    """The caller, authenticated as on every route (bad credentials: 401, logged there). A malformed
    ``X-Purpose`` is a 400 that is also logged, as a denied export of the caller its credentials name."""
    try:
        return await authenticate(request)
    except BadRequest as exc:
        headers = [(k, v) for k, v in request.scope["headers"] if k != b"x-purpose"]
        plain = Request({**request.scope, "headers": headers, "state": {"correlation_id": correlation_id(request)}},
                        request.receive)
        who = await authenticate(plain)
        await guard.log_read(request, who, action=Action.export, dpp_id=None, operator_id=None, detail=[],
                             outcome="denied", reason=exc.message)
        raise


@dataclass(frozen=True)
class _Page:
    chunk: bytes  # the page's NDJSON lines
    count: int
    next_cursor: str | None  # where the following page starts; None when this was the last


def _read_page(session: Session, *, filters: dict[str, str | None], manufactured_from: str | None,
               manufactured_to: str | None, cursor: str | None,
               size: int) -> tuple[list[tuple[StoredVersion, StoredVersion | None]], str | None]:
    """One search page (its filters and keyset cursor), then the current versions of the passports on it."""
    found = service.search(session, filters=filters, manufactured_from=manufactured_from,
                           manufactured_to=manufactured_to, cursor=cursor, limit=size)
    versions = service.current_versions(session, dpp_ids=[item["dppId"] for item in found["items"]])
    return versions, found["nextCursor"]


def _stored_view(full: StoredVersion, public: StoredVersion | None, decision: ReadDecision) -> bytes | None:
    """The stored bytes a read answers for ``decision``, if it is a stored one (else it must be rendered)."""
    if decision.everything:
        return full.body
    if decision.groups == PUBLIC and public is not None:
        return public.body
    return None


def _view(full: StoredVersion, public: StoredVersion | None, decision: ReadDecision) -> bytes:
    """The bytes a read answers for ``decision``: the stored version, the stored public view, or the view
    ``guard.view_on`` gives: joined from the version's view index, else redacted (not through the shared
    ``ViewCache``: an export of versions without an index would evict the entries hot reads live on)."""
    stored = _stored_view(full, public, decision)
    if stored is not None:
        return stored
    if full.view_index is not None:
        cut = view_from_index(full.body, full.view_index, decision.groups)
        if cut is not None:
            return cut[0]
    return redacted_bytes(full.body, decision.groups)[0]


def _cheap(full: StoredVersion, public: StoredVersion | None, decision: ReadDecision) -> bool:
    """Stored bytes or a join of index ranges (microseconds): no need to leave the event loop."""
    return _stored_view(full, public, decision) is not None or full.view_index is not None


def _lines(pairs: list[tuple[StoredVersion, StoredVersion | None]], decisions: list[ReadDecision]) -> bytes:
    return b"".join(_view(full, public, d) + b"\n" for (full, public), d in zip(pairs, decisions, strict=True))


class _Export:
    def __init__(self, request: Request, principal: Principal, *, filters: dict[str, str | None],
                 manufactured_from: str | None, manufactured_to: str | None, limit: int) -> None:
        self.request = request
        self.state = request.app.state
        self.principal = principal
        self.filters = filters
        self.manufactured_from = manufactured_from
        self.manufactured_to = manufactured_to
        self.limit = limit
        self.sent = 0
        self.cid = correlation_id(request)

    async def page(self, cursor: str | None) -> _Page:
        """Read, decide and log the next page; raises before anything of it may be sent."""
        size = min(PAGE_SIZE, self.limit - self.sent)
        pairs, next_cursor = await in_read_session(self.request, lambda s: _read_page(
            s, filters=self.filters, manufactured_from=self.manufactured_from,
            manufactured_to=self.manufactured_to, cursor=cursor, size=size))
        decisions = [await guard.decide_on(self.state, self.principal, full.operator_id, full.dpp_id)
                     for full, _ in pairs]
        records = [AccessRecord.of(self.principal, action=Action.export, dpp_id=full.dpp_id,
                                   passport_operator_id=full.operator_id, detail=sorted(g.value for g in d.groups),
                                   outcome="granted", reason=d.reason, request_id=self.cid)
                   for (full, _), d in zip(pairs, decisions, strict=True)]
        if all(_cheap(full, public, d) for (full, public), d in zip(pairs, decisions, strict=True)):
            chunk = _lines(pairs, decisions)
        else:
            chunk = await run_in_threadpool(_lines, pairs, decisions)  # redaction: keep the loop free
        await self.state.read_log.append_many(records)  # ServiceUnavailable: this page is not sent
        return _Page(chunk, len(pairs), next_cursor)

    async def stream(self, first: _Page) -> AsyncIterator[bytes]:
        page = first
        while True:
            if page.chunk:
                yield page.chunk
            self.sent += page.count
            if page.next_cursor is None or self.sent >= self.limit:
                break
            try:
                page = await self.page(page.next_cursor)
            except Exception as exc:  # the status line is gone: say so in the trailer, with where to resume
                yield self.trailer(complete=False, next_cursor=page.next_cursor, error=self.error(exc))
                return
        yield self.trailer(complete=True, next_cursor=page.next_cursor)

    def trailer(self, *, complete: bool, next_cursor: str | None, error: dict[str, Any] | None = None) -> bytes:
        out: dict[str, Any] = {"exportComplete": complete, "count": self.sent, "nextCursor": next_cursor}
        if error is not None:
            out["error"] = error
        return orjson.dumps(out) + b"\n"

    def error(self, exc: Exception) -> dict[str, Any]:
        """The EN 18222 result object of a failure in mid-stream (no stack trace, as everywhere)."""
        if isinstance(exc, OperationalError):
            log.warning("database unavailable during an export: %s", exc.orig)
            exc = ServiceUnavailable("the database is busy or unreachable; resume from nextCursor")
        if not isinstance(exc, DbpError):
            log.error("export failed, correlation id %s", self.cid, exc_info=exc)
            exc = DbpError("internal error; quote the correlation id when reporting it")
        msg = ResultMessage(text=exc.message, correlation_id=self.cid, details=[d.as_dict() for d in exc.details],
                            timestamp=datetime.now(UTC).isoformat().replace("+00:00", "Z"))
        return {"statusCode": exc.status_code, "message": [msg.as_dict()]}


async def respond(request: Request, principal: Principal, *, filters: dict[str, str | None],
                  manufactured_from: str | None, manufactured_to: str | None, cursor: str | None,
                  limit: int) -> Response:
    """The export response. The first page is read and logged before the status line, so a bad cursor,
    an unreachable database or an access log that cannot store records is an ordinary error answer."""
    export = _Export(request, principal, filters=filters, manufactured_from=manufactured_from,
                     manufactured_to=manufactured_to, limit=limit)
    first = await export.page(cursor)
    return StreamingResponse(export.stream(first), media_type=MEDIA_TYPE, headers={"Cache-Control": "no-store"})

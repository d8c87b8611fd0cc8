"""The change feed over HTTP (``dbp.replication.service`` says what it holds, in which order, and who reads what):

* ``GET /api/v1/feed?cursor=&limit=&operatorId=&include=body&wait=`` — one page ``{entries, nextCursor, hasMore,
  logSize, treeSize, checkpoint}``; ``limit`` 1..1000 (default 100); ``wait`` 0..30 seconds: long-poll, answered
  as soon as an entry at or past the cursor commits, else after ``wait`` seconds with an empty page (its
  ``nextCursor`` may have moved past leaves that are not entries for this caller);
* ``GET /api/v1/feed/stream`` — the same entries as Server-Sent Events (``text/event-stream``): ``event: version``,
  ``id:`` = the cursor after that entry (so ``Last-Event-ID`` resumes exactly after it; it wins over ``cursor``),
  ``data:`` = the entry; a ``: heartbeat`` comment every ``heartbeat`` seconds without news. A stream ends after
  ``maxSeconds`` (default 60, at most 3600) with ``event: end`` carrying the cursor: clients reconnect (EventSource
  does, with ``Last-Event-ID``). That bound is also how long a stopping server waits for a stream (uvicorn tells
  the application nothing before it has drained connections); the caller's rights are re-checked before every
  batch, so a revoked appointment ends the stream;
* ``POST /api/v1/backup-providers`` ``{"providerOrgId", "reference"}``, ``GET /api/v1/backup-providers``,
  ``DELETE /api/v1/backup-providers/{providerOrgId}`` — an economic operator appoints (lists, revokes) the
  independent backup provider that follows its feed with bodies.

Access log: every page answered is one ``feed`` record (granted) with a summary detail — cursor range, number of
entries, ``include`` and filter — and, when bodies were served, each ``dppId@version`` served; a stream writes one
per batch it sends. Refusals (anonymous 401, 403 with the reason) are recorded as denied. Errors are the EN 18222
error object. No database transaction is open while a request waits.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal, TypeVar, cast

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from dbp.access.deps import PrincipalDep
from dbp.access.principal import Principal, Role
from dbp.audit import service as audit
from dbp.db import transaction
from dbp.errors import DbpError, Forbidden, Unauthorized
from dbp.http import correlation_id, json_response
from dbp.passports import guard
from dbp.replication import feed, service
from dbp.replication.service import Page, Scope

router = APIRouter(tags=["change feed"])
T = TypeVar("T")

ACTION = cast(audit.Action, "feed")  # stored as its value; audit.Action names the passport API's actions
MAX_WAIT = 30.0
HEARTBEAT = 15.0
STREAM_SECONDS = 60.0
MAX_STREAM_SECONDS = 3600.0

Cursor = Annotated[str | None, Query(max_length=service.MAX_CURSOR_LENGTH)]
Limit = Annotated[int, Query(ge=1, le=service.MAX_LIMIT)]
Include = Annotated[Literal["body", "metadata"], Query()]
OperatorId = Annotated[str | None, Query(alias="operatorId", min_length=1, max_length=512)]


def _read(state: Any, work: Callable[[Session], T]) -> T:
    with state.read_sessionmaker() as session:
        try:
            return work(session)
        finally:
            session.rollback()


async def _in_read(state: Any, work: Callable[[Session], T]) -> T:
    return await run_in_threadpool(_read, state, work)


async def _deny(request: Request, principal: Principal, exc: DbpError, operator_id: str | None) -> None:
    await guard.log_read(request, principal, action=ACTION, dpp_id=None, operator_id=operator_id,
                         detail=[f"{request.method} {request.url.path}"[:512]], outcome="denied", reason=exc.message)


async def _scope(request: Request, principal: Principal, operator_id: str | None) -> Scope:
    """The caller's scope, narrowed to ``operator_id``; a refusal is logged, then raised."""
    state = request.app.state
    try:
        service.check_operator(operator_id)
        if principal.is_anonymous:  # no database work for the public
            raise Unauthorized("the change feed needs credentials (POST /api/v1/auth/token)")
        scope = await _in_read(state, lambda s: service.feed_scope(s, principal=principal, policy=state.policy))
        return scope.narrowed(operator_id)
    except (Unauthorized, Forbidden) as exc:
        await _deny(request, principal, exc, operator_id)
        raise


async def _page(request: Request, principal: Principal, scope: Scope, *, start: int, limit: int,
                include_body: bool, operator_id: str | None) -> Page:
    state = request.app.state
    try:
        return await _in_read(state, lambda s: service.read_page(
            s, principal=principal, scope=scope, start=start, limit=limit, include_body=include_body,
            policy=state.policy))
    except Forbidden as exc:
        await _deny(request, principal, exc, operator_id)
        raise


async def _log_page(request: Request, principal: Principal, page: Page, *, start: int, include_body: bool,
                    operator_id: str | None, reason: str) -> None:
    await guard.log_read(request, principal, action=ACTION, dpp_id=None, operator_id=operator_id,
                         detail=service.audit_detail(page, start=start, include_body=include_body,
                                                     operator_id=operator_id), reason=reason)


@router.get("/api/v1/feed", summary="The change feed: ordered, resumable, each entry signed and log-positioned")
async def get_feed(request: Request, principal: PrincipalDep, cursor: Cursor = None, limit: Limit = 100,
                   include: Include = "metadata", operator_id: OperatorId = None,
                   wait: Annotated[float, Query(ge=0, le=MAX_WAIT, allow_inf_nan=False)] = 0) -> Response:
    start = service.decode_cursor(cursor)
    scope = await _scope(request, principal, operator_id)
    include_body = include == "body"
    page = await _page(request, principal, scope, start=start, limit=limit, include_body=include_body,
                       operator_id=operator_id)
    deadline = time.monotonic() + wait
    watcher: feed.LogWatcher = request.app.state.feed_watcher
    while not page.entries and (remaining := deadline - time.monotonic()) > 0:
        if not await watcher.wait_past(page.next_position, remaining):
            break
        page = await _page(request, principal, scope, start=page.next_position, limit=limit,
                           include_body=include_body, operator_id=operator_id)
    await _log_page(request, principal, page, start=start, include_body=include_body, operator_id=operator_id,
                    reason=scope.reason)
    return json_response(page.as_json(), headers={"Cache-Control": "no-store"})


def _event(entry: dict[str, Any]) -> bytes:
    cursor = service.encode_cursor(entry["position"] + 1)
    return b"id: %s\nevent: version\ndata: %s\n\n" % (cursor.encode(), orjson.dumps(entry))


@router.get("/api/v1/feed/stream", summary="The change feed as Server-Sent Events (resume with Last-Event-ID)")
async def stream_feed(request: Request, principal: PrincipalDep, cursor: Cursor = None, limit: Limit = 100,
                      include: Include = "metadata", operator_id: OperatorId = None,
                      heartbeat: Annotated[float, Query(ge=0.05, le=60, allow_inf_nan=False)] = HEARTBEAT,
                      max_seconds: Annotated[float, Query(alias="maxSeconds", ge=0.1, le=MAX_STREAM_SECONDS,
                                                          allow_inf_nan=False)] = STREAM_SECONDS) -> Response:
    last = request.headers.get("last-event-id")
    start = service.decode_cursor(last if last else cursor)
    scope = await _scope(request, principal, operator_id)
    include_body = include == "body"
    first = await _page(request, principal, scope, start=start, limit=limit, include_body=include_body,
                        operator_id=operator_id)  # refusals (include=body) answer as an error, not a stream
    watcher: feed.LogWatcher = request.app.state.feed_watcher
    deadline = time.monotonic() + max_seconds

    async def events() -> AsyncIterator[bytes]:
        nonlocal scope
        page: Page | None = first
        position = start
        yield b"retry: 1000\n\n"
        while True:
            if page is None:
                try:
                    scope = await _scope(request, principal, operator_id)
                    page = await _page(request, principal, scope, start=position, limit=limit,
                                       include_body=include_body, operator_id=operator_id)
                except DbpError as exc:  # rights revoked, database gone: say so and end
                    yield b"event: error\ndata: %s\n\n" % orjson.dumps({"message": exc.message})
                    return
            if page.entries:
                await _log_page(request, principal, page, start=position, include_body=include_body,
                                operator_id=operator_id, reason=scope.reason)
                for entry in page.entries:
                    yield _event(entry)
            position, full, page = page.next_position, page.full, None
            remaining = deadline - time.monotonic()
            if remaining <= 0 or watcher.closed:
                yield b"event: end\ndata: %s\n\n" % orjson.dumps({"nextCursor": service.encode_cursor(position)})
                return
            if full:
                continue
            if not await watcher.wait_past(position, min(heartbeat, remaining)):
                if await request.is_disconnected():
                    return
                yield b": heartbeat\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# ------------------------------------------------------------------------------------------ backup providers
class Appointment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    providerOrgId: str = Field(min_length=1, max_length=64)
    reference: str = Field(min_length=1, max_length=512)


def _appointing_org(principal: Principal) -> str:
    if principal.is_anonymous:
        raise Unauthorized("appointing a backup provider needs credentials")
    if principal.role is not Role.economic_operator or principal.org_id is None:
        raise Forbidden("only an economic operator appoints its backup provider")
    return principal.org_id


@router.post("/api/v1/backup-providers", status_code=201, summary="Appoint the backup provider of your passports")
async def appoint(request: Request, principal: PrincipalDep, body: Appointment) -> Response:
    org = _appointing_org(principal)

    def work(session: Session) -> dict[str, Any]:
        row = service.appoint(session, operator_org_id=org, provider_org_id=body.providerOrgId,
                              reference=body.reference)
        audit.record(session, audit.AccessRecord.of(
            principal, action="appointBackup", passport_operator_id=principal.operator_id,
            detail=[body.providerOrgId], outcome="granted", reason=body.reference,
            request_id=correlation_id(request)))
        return service.appointment_json(row)

    return json_response(await run_in_threadpool(_write, request.app.state, work), status_code=201)


@router.get("/api/v1/backup-providers", summary="The backup providers you appointed (live and revoked)")
async def list_appointments(request: Request, principal: PrincipalDep) -> Response:
    org = _appointing_org(principal)
    rows = await _in_read(request.app.state, lambda s: [
        service.appointment_json(r) for r in service.appointments(s, operator_org_id=org)])
    return json_response({"items": rows})


@router.delete("/api/v1/backup-providers/{provider_org_id}", status_code=204, summary="Revoke an appointment")
async def revoke(request: Request, principal: PrincipalDep, provider_org_id: str) -> Response:
    org = _appointing_org(principal)

    def work(session: Session) -> None:
        service.revoke(session, operator_org_id=org, provider_org_id=provider_org_id)
        audit.record(session, audit.AccessRecord.of(
            principal, action="revokeBackup", passport_operator_id=principal.operator_id,
            detail=[provider_org_id], outcome="granted", request_id=correlation_id(request)))

    await run_in_threadpool(_write, request.app.state, work)
    return Response(status_code=204)


def _write(state: Any, work: Callable[[Session], T]) -> T:
    with transaction(state.sessionmaker) as session:
        return work(session)


def install(app: Any) -> None:
    """Routes and the log watcher of ``create_app``'s app."""
    feed.install(app.state)
    app.include_router(router)

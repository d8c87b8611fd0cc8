"""The access log over HTTP: ``GET /api/v1/access-log`` (JSON or CSV) and ``GET /api/v1/access-log/summary``.

Read-only; who sees which records is decided by ``dbp.audit.service`` (anonymous callers get 401).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from dbp.access.deps import PrincipalDep
from dbp.audit import service
from dbp.deps import ReadSessionDep
from dbp.errors import NotAcceptable
from dbp.http import json_response


async def _settled(request: Request) -> None:
    """Every read record committed so far is in ``access_log`` before the query runs (on SQLite they
    are committed to a staging file first: ``dbp.audit.staging``)."""
    await request.app.state.read_log.flush()


# every query sees every committed record
router = APIRouter(prefix="/api/v1", dependencies=[Depends(_settled)])

Filter = Annotated[str | None, Query(max_length=512)]
Instant = Annotated[str | None, Query(max_length=64, description="ISO 8601 instant (a bare date: that UTC day)")]
CSV_TYPE = "text/csv"


def _wants_csv(request: Request, fmt: str | None) -> bool:
    """CSV for ``format=csv`` or an Accept header naming text/csv before (or without) application/json."""
    if fmt is not None:
        return fmt == "csv"
    accept = request.headers.get("accept", "")
    if not accept:
        return False
    csv_at, json_at = accept.find(CSV_TYPE), accept.find("application/json")
    if csv_at >= 0 and (json_at < 0 or csv_at < json_at):
        return True
    if json_at < 0 and "*/*" not in accept and "application/*" not in accept:
        raise NotAcceptable("the access log is available as application/json or text/csv")
    return False


@router.get("/access-log", summary="Query the access log (JSON, or CSV with format=csv / Accept: text/csv)",
            tags=["access log"])
def access_log(
    request: Request, viewer: PrincipalDep, session: ReadSessionDep,
    dppId: Filter = None, principal: Filter = None, org: Filter = None, purpose: Filter = None,
    outcome: Literal["granted", "denied"] | None = None, action: Filter = None,
    since: Instant = None, until: Instant = None, cursor: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = 100,
    format: Literal["json", "csv"] | None = None,
) -> Response:
    csv = _wants_csv(request, format)
    page = service.query(session, viewer=viewer, dpp_id=dppId, principal=principal, org_id=org, purpose=purpose,
                         outcome=outcome, action=action, since=since, until=until, cursor=cursor, limit=limit)
    headers = {"Cache-Control": "no-store", "Vary": "Accept"}
    if page["nextCursor"] is not None:
        headers["X-Next-Cursor"] = page["nextCursor"]
    if not csv:
        return json_response(page, headers=headers)
    headers["Content-Disposition"] = 'attachment; filename="access-log.csv"'
    return Response(service.to_csv(page["items"]), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/access-log/summary", summary="Unusual access patterns (read volume far above peers, repeated denials)",
            tags=["access log"])
def access_log_summary(viewer: PrincipalDep, session: ReadSessionDep, since: Instant = None,
                       until: Instant = None) -> Response:
    return json_response(service.summary(session, viewer=viewer, since=since, until=until),
                         headers={"Cache-Control": "no-store"})

"""The backup node over HTTP (role ``backup``):

* ``GET /backup/api/v1/dpps/{dppId}[?version=]`` — the newest verified copy (or that version), with the same
  access rules as the repository (``dbp.passports.guard.view_on``: the policy decides which view the caller
  reads) and the same durable access-log record before it is answered. The registry lists a backup node with
  the endpoint ``{base}/backup``, so the resolver's ``{endpoint}/api/v1/dpps/{dppId}`` lands here when the
  operator's repository is gone. Headers as on the repository (ETag, X-DPP-Version, X-DPP-Signature for the
  full signed version, X-DPP-Access; 304 for a matching If-None-Match) plus ``X-DPP-Served-By: backup`` and the
  source it came from. JSON only (no HTML page).
* ``GET /backup/api/v1/dpps/{dppId}/evidence[?version=]`` — the evidence bundle of that copy, built from the
  backup's own tree and the repository's signed checkpoint (``backup.bundle``): ``dbp verify`` checks it
  against the original operator's keys.
* ``GET /api/v1/backup/status`` — per source: status, cursor, tree size, lag (``lagLeaves``), counts,
  rejections, alerts, last error. ``GET /api/v1/backup/rejections`` and ``/api/v1/backup/alerts`` list what was
  refused and what the witness caught. For the backup provider's own clients (role ``backupProvider``) and the
  authorities (the Commission, market surveillance, notified bodies): 401 anonymous, 403 anyone else. No secrets
  are in them.

Copies have a view cache of their own (``state.backup_views``): the repository role's cache is keyed by passport
and version, and a copy must never be answered with a view made from other bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from dbp.access.deps import PrincipalDep
from dbp.access.principal import Principal, Role
from dbp.audit.service import Action
from dbp.clock import timestamp
from dbp.deps import in_read_session
from dbp.errors import Forbidden, Unauthorized
from dbp.http import json_response
from dbp.integrity.evidence import bundle_json
from dbp.passports import guard
from dbp.passports.attributes import AccessGroup
from dbp.passports.redaction import ViewCache
from dbp.passports.routes import not_modified
from dbp.passports.service import StoredVersion
from dbp.replication import backup
from dbp.replication.models import BackupVersion

router = APIRouter(tags=["backup node"])
PUBLIC = frozenset({AccessGroup.public})

DppId = Annotated[str, Path(max_length=256)]
Version = Annotated[int | None, Query(ge=1, le=2**31 - 1)]
SourceId = Annotated[str | None, Query(alias="sourceId", max_length=64)]
Limit = Annotated[int, Query(ge=1, le=1000)]


def _stored(copy: BackupVersion) -> StoredVersion:
    return StoredVersion(copy.dpp_id, copy.version, copy.created_at, copy.sha256, bytes(copy.canonical),
                         copy.operator_id, None, copy.signature, copy.public_sha256)


def _headers(copy: BackupVersion, v: StoredVersion) -> dict[str, str]:
    return {**v.headers(), "X-DPP-Served-By": "backup", "X-DPP-Backup-Source": copy.source_id,
            "X-DPP-Backup-Verified-At": copy.verified_at}


async def _copy(request: Request, dpp_id: str, version: int | None) -> BackupVersion:
    def read(s: Any) -> BackupVersion:
        row = backup.current_copy(s, dpp_id=dpp_id, version=version)
        s.expunge(row)
        return row
    return await in_read_session(request, read)


@router.get("/backup/api/v1/dpps/{dppId}", summary="A passport as the backup holds it (verified copy)")
async def read_copy(request: Request, principal: PrincipalDep, dppId: DppId, version: Version = None) -> Response:
    copy = await _copy(request, dppId, version)
    v, decision = await guard.view_on(request.app.state, principal, _stored(copy), views=_views(request))
    await guard.log_read(request, principal, action=Action.read if version is None else Action.read_version,
                         dpp_id=copy.dpp_id, operator_id=copy.operator_id,
                         detail=[*sorted(g.value for g in decision.groups), f"backup:{copy.source_id}"],
                         reason=decision.reason)
    access = {"X-DPP-Access": ", ".join(sorted(g.value for g in decision.groups))}
    if not_modified(request, v):
        return Response(status_code=304, headers={"ETag": v.etag, **access})
    return Response(v.body, media_type="application/json", headers={**_headers(copy, v), **access})


@router.get("/backup/api/v1/dpps/{dppId}/evidence", summary="Evidence bundle of a verified copy")
async def read_copy_evidence(request: Request, principal: PrincipalDep, dppId: DppId,
                             version: Version = None) -> Response:
    copy = await _copy(request, dppId, version)
    full = _stored(copy)
    _, decision = await guard.view_on(request.app.state, principal, full, views=_views(request))
    if decision.everything:
        view, document = "full", full.body
    else:
        view = "public"
        document, _ = _views(request).get(copy.dpp_id, copy.version, PUBLIC, full.body, None)
    made = await in_read_session(request, lambda s: backup.bundle(s, copy=copy, view=view, document=document,
                                                                    issued_at=timestamp()))
    await guard.log_read(request, principal, action=Action.read_evidence, dpp_id=copy.dpp_id,
                         operator_id=copy.operator_id, detail=[view, f"backup:{copy.source_id}"],
                         reason=decision.reason)
    return Response(bundle_json(made), media_type="application/json",
                    headers={"X-DPP-Served-By": "backup", "X-DPP-Backup-Source": copy.source_id,
                             "Cache-Control": "no-store"})


def _known(principal: Principal) -> None:
    if principal.is_anonymous:
        raise Unauthorized("the backup's status needs credentials (POST /api/v1/auth/token)")
    if principal.role is not Role.backup_provider and not principal.is_authority:
        raise Forbidden("the backup's status is for the backup provider and the authorities")


def _views(request: Request) -> ViewCache:
    state = request.app.state
    views: ViewCache | None = getattr(state, "backup_views", None)
    if views is None:
        views = state.backup_views = ViewCache()
    return views


@router.get("/api/v1/backup/status", summary="Per followed repository: cursor, lag, counts, health")
async def get_status(request: Request, principal: PrincipalDep) -> Response:
    _known(principal)
    rows = await in_read_session(request, lambda s: [st.as_json() for st in backup.status(s)])
    return json_response({"sources": rows}, headers={"Cache-Control": "no-store"})


@router.get("/api/v1/backup/rejections", summary="Feed entries the backup refused, with the failed step")
async def get_rejections(request: Request, principal: PrincipalDep, source_id: SourceId = None,
                         limit: Limit = 100) -> Response:
    return await _staff_list(request, principal, "rejections", backup.rejections_json, source_id, limit,
                             unknown_source=False)


@router.get("/api/v1/backup/alerts", summary="What the backup's witness check caught, with the evidence")
async def get_alerts(request: Request, principal: PrincipalDep, source_id: SourceId = None,
                     limit: Limit = 100) -> Response:
    return await _staff_list(request, principal, "alerts", backup.alerts_json, source_id, limit)


async def _staff_list(request: Request, principal: Principal, key: str, rows_of: Callable[..., list[Any]],
                      source_id: str | None, limit: int, *, unknown_source: bool = True) -> Response:
    """``{key: rows}`` for the backup's staff; with ``unknown_source``, an unknown ``sourceId`` is a 404 rather
    than an empty list."""
    _known(principal)

    def work(s: Any) -> list[Any]:
        rows = rows_of(s, source_id=source_id, limit=limit)
        if unknown_source and source_id is not None and not rows:
            backup.get_source(s, source_id=source_id)  # NotFound if unknown
        return rows

    return json_response({key: await in_read_session(request, work)}, headers={"Cache-Control": "no-store"})

"""EN 18222 operations under /api/v1 (JSON), plus the lifecycle operations of Art. 77(7)-(8).

Routes parse the request, call one service function, commit the request's one transaction and
return stored bytes. Request bodies are read raw (strict parsing happens in the service) and are
described in OpenAPI through ``openapi_extra``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date as _date
from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from dbp.access.deps import PrincipalDep
from dbp.access.principal import Principal, Role
from dbp.audit import service as audit
from dbp.audit.service import Action
from dbp.deps import SettingsDep, in_read_session, in_transaction
from dbp.errors import (
    BadRequest,
    FieldError,
    Forbidden,
    NotAcceptable,
    NotFound,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from dbp.http import accepted_representation, correlation_id, json_response
from dbp.integrity.canonical import DuplicateMember, unique_members
from dbp.passports import export, guard, lifecycle, paths, service, views
from dbp.passports.reads import normalise_product_path
from dbp.passports.redaction import changed_attributes, group_of
from dbp.passports.schemas import attribute_catalogue, passport_json_schema
from dbp.passports.service import StoredVersion

router = APIRouter(prefix="/api/v1")

PASSPORT_REF = {"$ref": "#/components/schemas/BatteryPassport"}
PASSPORT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": PASSPORT_REF}}}}
MERGE_PATCH_BODY = {"requestBody": {"required": True, "content": {
    "application/merge-patch+json": {"schema": {"type": "object"}},
    "application/json": {"schema": {"type": "object"}}}}}
ANY_JSON_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}}
PASSPORT_RESPONSE: dict[int | str, dict[str, Any]] = {"200": {"content": {"application/json": {"schema": PASSPORT_REF},
                                         "text/html": {"schema": {"type": "string"}}}}}

DppIdPath = Annotated[str, Path(max_length=256, description="passport identifier, e.g. urn:uuid:…")]
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=1024)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[str | None, Query(max_length=600)]
Filter = Annotated[str | None, Query(max_length=512)]
Instant = Annotated[str, Query(max_length=64, description="ISO 8601 instant; a bare date means its end (UTC)")]
MonthOrDate = Annotated[str | None, Query(pattern=r"^[0-9]{4}-[0-9]{2}(-[0-9]{2})?$")]


def version_response(v: StoredVersion, *, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(v.body, status_code=status_code, media_type="application/json",
                    headers={**v.headers(), **(headers or {})})


def _wants_html(request: Request) -> bool:
    kind = accepted_representation(request.headers.get("accept", ""))
    if kind is None:
        raise NotAcceptable("this resource is available as application/json or text/html")
    return kind == "html"


def _accept_json(request: Request) -> None:
    """Reads that only have a JSON representation: an Accept header that excludes JSON gets 406."""
    accept = request.headers.get("accept", "")
    if accept and not any(t in accept for t in ("application/json", "application/*", "*/*")):
        raise NotAcceptable("this resource is available as application/json")


JSON_ONLY = [Depends(_accept_json)]


def _require_json(request: Request) -> None:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/json", "application/merge-patch+json", ""):
        raise UnsupportedMediaType(f"content type {ctype!r} is not accepted; send application/json")


def _check_json(body: bytes) -> None:
    """Refuse what is not I-JSON (RFC 7493): bad syntax, NaN/Infinity, BOM, bad UTF-8, lone surrogates, and
    duplicate member names, which parsers resolve differently (the stored canonical form must be unambiguous)."""
    try:
        orjson.loads(body)
        json.loads(body, object_pairs_hook=unique_members)
    except DuplicateMember as exc:
        raise BadRequest(f"request body repeats the member name {exc.args[0]!r}",
                         details=[FieldError("$", "json.duplicateKey", "member names must be unique")]) from None
    except (ValueError, RecursionError) as exc:  # orjson.JSONDecodeError is a ValueError; Python's depth is lower
        raise BadRequest(f"request body is not valid JSON: {exc}",
                         details=[FieldError("$", "json.syntax", str(exc))]) from None


async def _body(request: Request, *, optional: bool = False) -> bytes:
    _require_json(request)
    body = await request.body()
    if body.strip() or not optional:
        await run_in_threadpool(_check_json, body)  # up to ~30 ms for 1 MiB: keep it off the event loop
    return body


def _calendar(name: str, value: str | None) -> None:
    """The month or date filters must exist on the calendar (the pattern alone lets 2026-13 through)."""
    if value is None:
        return
    try:
        if not value.isascii():
            raise ValueError(value)
        _date.fromisoformat(value if len(value) == 10 else f"{value}-01")
    except ValueError:
        raise BadRequest(f"{name} is not a calendar month or date", details=[
            FieldError(name, "date.calendar", "YYYY-MM or YYYY-MM-DD on the calendar")]) from None


def not_modified(request: Request, v: StoredVersion) -> bool:
    """The request's If-None-Match names ``v``'s ETag (or ``*``): answer 304."""
    inm = request.headers.get("if-none-match")
    return inm is not None and (inm.strip() == "*" or v.etag in [t.strip() for t in inm.split(",")])


async def _serve(request: Request, principal: Principal, v: StoredVersion | None, missing: str, *,
                 action: Action = Action.read) -> Response:
    """Answer a read with the caller's view of ``v`` (HTML or JSON), logged before it is sent."""
    if v is None:
        raise NotFound(missing)
    html = _wants_html(request)
    view, decision = await guard.viewed(request, principal, v, action=action)
    access = {"X-DPP-Access": ", ".join(sorted(g.value for g in decision.groups))}
    if html:
        page = views.passport_page(request, view)
        page.headers.update(access)
        return page
    if not_modified(request, view):
        return Response(status_code=304, headers={"ETag": view.etag, **access})
    return version_response(view, headers=access)


@router.get("/schema", summary="JSON Schema of the battery passport", tags=["schema"], dependencies=JSON_ONLY)
def get_schema() -> Response:
    return json_response(passport_json_schema())


@router.get("/schema/attributes", summary="Per-attribute metadata (access group, level, unit, …)",
            tags=["schema"], dependencies=JSON_ONLY)
def get_attributes() -> Response:
    items = attribute_catalogue()
    return json_response({"count": len(items), "attributes": items})


@router.post("/dpps", status_code=201, summary="CreateDPP", tags=["EN 18222"], openapi_extra=PASSPORT_BODY)
async def create_dpp(request: Request, settings: SettingsDep, principal: PrincipalDep) -> Response:
    body = await _body(request)
    parsed = orjson.loads(body)
    claimed = parsed.get("economicOperatorId") if isinstance(parsed, dict) else None
    return await _create(request, settings, principal, claimed, Action.create,
                         lambda s: service.create_passport(s, body=body))


@dataclass(frozen=True)
class SearchQuery:
    """The passport filters of search and export: column filters and the manufacturing date range."""

    filters: dict[str, str | None]
    manufactured_from: str | None
    manufactured_to: str | None

    def described(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.filters.items() if v is not None] or ["all"]


def search_query(
    category: Filter = None, chemistry: Filter = None, manufacturer: Filter = None, model: Filter = None,
    status: Filter = None, batteryStatus: Filter = None, batch: Filter = None, facility: Filter = None,
    operator: Filter = None, manufacturedFrom: MonthOrDate = None, manufacturedTo: MonthOrDate = None,
) -> SearchQuery:
    """The filters of ``GET /dpps`` and ``GET /export/dpps`` (one declaration, so both take the same ones)."""
    _calendar("manufacturedFrom", manufacturedFrom)
    _calendar("manufacturedTo", manufacturedTo)
    lo = manufacturedFrom if manufacturedFrom is None or len(manufacturedFrom) == 10 else f"{manufacturedFrom}-01"
    hi = manufacturedTo if manufacturedTo is None or len(manufacturedTo) == 10 else f"{manufacturedTo}-31"
    return SearchQuery({"category": category, "chemistry": chemistry, "manufacturer": manufacturer,
                        "model": model, "status": status, "batteryStatus": batteryStatus, "batch": batch,
                        "facility": facility, "operator": operator}, lo, hi)


SearchQueryDep = Annotated[SearchQuery, Depends(search_query)]


async def _restrict_battery_status(request: Request, principal: Principal, q: SearchQuery, *,
                                   action: Action) -> SearchQuery:
    """Annex XIII 4(c): the battery status is legitimate-interest data; only an operator may filter its own
    fleet by it (the filter is then narrowed to its passports). Anyone else: 403, logged."""
    if q.filters["batteryStatus"] is None:
        return q
    if principal.role not in (Role.economic_operator, Role.service_provider) or principal.operator_id is None:
        raise await guard.denied(request, principal, action=action, dpp_id=None, operator_id=None,
                                 reason="battery status is not public (Annex XIII 4(c)); operators may "
                                        "filter their own passports by it")
    return replace(q, filters={**q.filters, "operator": principal.operator_id})


@router.get("/dpps", summary="Search passports (recall and fleet queries)", tags=["EN 18222"],
            dependencies=JSON_ONLY)
async def search_dpps(request: Request, principal: PrincipalDep, query: SearchQueryDep, cursor: Cursor = None,
                      limit: Limit = 100) -> Response:
    q = await _restrict_battery_status(request, principal, query, action=Action.search)
    result = await in_read_session(request, lambda s: service.search(
        s, filters=q.filters, manufactured_from=q.manufactured_from, manufactured_to=q.manufactured_to,
        cursor=cursor, limit=limit))
    await guard.log_read(request, principal, action=Action.search, dpp_id=None, operator_id=None,
                         detail=q.described(), reason=f"{len(result['items'])} public summaries")
    return json_response(result)


@router.get("/export/dpps", tags=["export"], dependencies=[Depends(export.accept_ndjson)],
            summary="Export passports as NDJSON: the caller's view of each current version, then a trailer",
            description=export.DESCRIPTION, responses=export.RESPONSES)
async def export_dpps(request: Request, principal: Annotated[Principal, Depends(export.caller)],
                      query: SearchQueryDep, cursor: Cursor = None, limit: export.ExportLimit = export.DEFAULT_LIMIT,
                      ) -> Response:
    q = await _restrict_battery_status(request, principal, query, action=Action.export)
    return await export.respond(request, principal, filters=q.filters, manufactured_from=q.manufactured_from,
                                manufactured_to=q.manufactured_to, cursor=cursor, limit=limit)


@router.get("/dpps/{dppId}", summary="ReadDPPById", tags=["EN 18222"], responses=PASSPORT_RESPONSE)
async def read_dpp(request: Request, dppId: DppIdPath, principal: PrincipalDep) -> Response:
    v = await request.app.state.reader.by_id(dppId)
    return await _serve(request, principal, v, f"no passport {dppId}")


@router.patch("/dpps/{dppId}", summary="UpdateDPPById (JSON Merge Patch, RFC 7396)", tags=["EN 18222"],
              openapi_extra=MERGE_PATCH_BODY)
async def update_dpp(request: Request, dppId: DppIdPath, principal: PrincipalDep,
                     if_match: IfMatch = None) -> Response:
    body = await _body(request)

    def work(s: Session) -> StoredVersion:
        # Validate and stage the new version first (bad input is a 4xx whoever sends it), then judge
        # the rights on what actually changes; a refusal rolls the staged version back.
        current = service.read_current(s, dpp_id=dppId)
        v = service.patch_passport(s, dpp_id=dppId, body=body, if_match=if_match)
        changed = _check_write(s, principal, "update", current, v)
        _log_write(s, request, principal, Action.update, v, changed)
        return v

    return version_response(await _write(request, principal, work, action=Action.update, dpp_id=dppId))


@router.delete("/dpps/{dppId}", summary="DeleteDPPById (archives; data are never deleted)", tags=["EN 18222"])
async def delete_dpp(request: Request, dppId: DppIdPath, principal: PrincipalDep,
                     if_match: IfMatch = None) -> Response:
    def work(s: Session) -> StoredVersion:
        current = service.read_current(s, dpp_id=dppId)
        _check_write(s, principal, "delete", current)
        v = service.archive_passport(s, dpp_id=dppId, if_match=if_match)
        _log_write(s, request, principal, Action.delete, v, ["dppStatus", "endOfLife"])
        return v

    return version_response(await _write(request, principal, work, action=Action.delete, dpp_id=dppId))


@router.get("/dpps/{dppId}/versions", summary="List the versions of a passport", tags=["EN 18222"],
            dependencies=JSON_ONLY)
async def versions(request: Request, dppId: DppIdPath, principal: PrincipalDep) -> Response:
    items, operator_id = await in_read_session(
        request, lambda s: (service.list_versions(s, dpp_id=dppId), service.operator_of(s, dpp_id=dppId)))
    await guard.log_read(request, principal, action=Action.read_version, dpp_id=dppId, operator_id=operator_id,
                         detail=["versionList"], reason="version numbers, times and hashes are public")
    return json_response({"dppId": dppId, "versions": items})


@router.get("/dpps/{dppId}/versions/{version}", summary="Read one version", tags=["EN 18222"],
            responses=PASSPORT_RESPONSE, dependencies=JSON_ONLY)
async def read_version(request: Request, dppId: DppIdPath, version: Annotated[int, Path(ge=1, le=2**31 - 1)],
                       principal: PrincipalDep) -> Response:
    v = await in_read_session(request, lambda s: service.read_version(s, dpp_id=dppId, version=version))
    view, decision = await guard.viewed(request, principal, v, action=Action.read_version)
    return version_response(view, headers={"X-DPP-Access": ", ".join(sorted(g.value for g in decision.groups))})


@router.get("/dpps/{dppId}/elements/{elementPath:path}", summary="ReadDataElement", tags=["EN 18222"],
            dependencies=JSON_ONLY)
async def read_element(request: Request, dppId: DppIdPath, elementPath: str, principal: PrincipalDep) -> Response:
    path = paths.parse_element_path(elementPath)
    v = await in_read_session(request, lambda s: service.read_current(s, dpp_id=dppId))
    view, decision = await guard.view_for(request, principal, v)
    group = group_of(path)
    if group is not None and group not in decision.groups:
        raise await guard.denied(request, principal, action=Action.read_element, dpp_id=dppId,
                                 operator_id=v.operator_id, detail=[paths.display(path)],
                                 reason=f"{paths.display(path)} is {group.value} data; {decision.reason}")
    # Read from the caller's view, so a path above attribute level (a whole cluster) is filtered too.
    value = paths.get_element(orjson.loads(view.body), path)
    await guard.log_read(request, principal, action=Action.read_element, dpp_id=dppId, operator_id=v.operator_id,
                         detail=[paths.display(path)], reason=decision.reason)
    return Response(orjson.dumps(value), media_type="application/json")


@router.patch("/dpps/{dppId}/elements/{elementPath:path}", summary="UpdateDataElement", tags=["EN 18222"],
              openapi_extra=ANY_JSON_BODY)
async def update_element(request: Request, dppId: DppIdPath, elementPath: str, principal: PrincipalDep,
                         if_match: IfMatch = None) -> Response:
    paths.parse_element_path(elementPath)  # a malformed path is a 400 for anyone, before credentials
    body = await _body(request)

    def work(s: Session) -> StoredVersion:
        current = service.read_current(s, dpp_id=dppId)
        v = service.patch_element(s, dpp_id=dppId, element_path=elementPath, body=body, if_match=if_match)
        changed = _check_write(s, principal, "updateElement", current, v)
        _log_write(s, request, principal, Action.update_element, v, changed)
        return v

    return version_response(await _write(request, principal, work, action=Action.update_element, dpp_id=dppId))


@router.get("/dppsByProductId/{productId:path}", summary="ReadDPPByProductId (current passport of a product)",
            tags=["EN 18222"], responses=PASSPORT_RESPONSE)
async def read_by_product(request: Request, productId: str, principal: PrincipalDep) -> Response:
    if len(productId) > 2048:
        raise ValidationFailed("product identifier too long", details=[
            FieldError("productId", "productId.length", "at most 2048 characters")])
    v = await request.app.state.reader.by_product_id(normalise_product_path(productId))
    return await _serve(request, principal, v, f"no passport for product {productId}")


@router.get("/dppsByIdAndDate/{dppId}", summary="ReadDPPVersionByIdAndDate (point in time)", tags=["EN 18222"],
            responses=PASSPORT_RESPONSE, dependencies=JSON_ONLY)
async def read_at(request: Request, dppId: DppIdPath, date: Instant, principal: PrincipalDep) -> Response:
    at = service.parse_instant(date)
    v = await in_read_session(request, lambda s: service.read_at(s, dpp_id=dppId, at=at))
    view, decision = await guard.viewed(request, principal, v, action=Action.read_at)
    return version_response(view, headers={"X-DPP-Access": ", ".join(sorted(g.value for g in decision.groups))})


@router.get("/dppsByProductIdAndDate/{productId:path}", tags=["EN 18222"], responses=PASSPORT_RESPONSE,
            dependencies=JSON_ONLY, summary="ReadDPPVersionByProductIdAndDate (the 2025 draft's form of the same)")
async def read_product_at(request: Request, productId: str, date: Instant, principal: PrincipalDep) -> Response:
    at = service.parse_instant(date)
    product = normalise_product_path(productId[:2049])
    v = await in_read_session(request, lambda s: service.read_at(
        s, dpp_id=service.dpp_id_of_product(s, product_id=product), at=at))
    view, decision = await guard.viewed(request, principal, v, action=Action.read_at)
    return version_response(view, headers={"X-DPP-Access": ", ".join(sorted(g.value for g in decision.groups))})


@router.post("/dppsByProductIds", summary="ReadDPPIdsByProductIds", tags=["EN 18222"], openapi_extra={
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["productIds"], "properties": {
            "productIds": {"type": "array", "items": {"type": "string"}, "maxItems": 1000},
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000}, "cursor": {"type": "string"}}}}}}})
async def ids_by_products(request: Request, principal: PrincipalDep, limit: Annotated[int | None, Query(ge=1, le=1000)]
                          = None, cursor: Cursor = None) -> Response:
    data = service._json_body(await _body(request))
    if isinstance(data, list):
        data = {"productIds": data}
    ids = data.get("productIds") if isinstance(data, dict) else None
    errors = [FieldError(f"$.{k}", "schema.extra_forbidden", "not allowed")
              for k in sorted(set(data) - {"productIds", "limit", "cursor"})] if isinstance(data, dict) else []
    if not isinstance(ids, list) or not 1 <= len(ids) <= 1000 or not all(
            isinstance(i, str) and 0 < len(i) <= 2048 and "\x00" not in i for i in ids):
        errors.append(FieldError("$.productIds", "productIds.list", "1..1000 product identifiers (strings)"))
    body_limit = data.get("limit", 100) if isinstance(data, dict) else 100
    if limit is None and (not isinstance(body_limit, int) or isinstance(body_limit, bool)
                          or not 1 <= body_limit <= 1000):
        errors.append(FieldError("$.limit", "limit.range", "an integer 1..1000"))
    body_cursor = data.get("cursor") if isinstance(data, dict) else None
    if body_cursor is not None and not isinstance(body_cursor, str):
        errors.append(FieldError("$.cursor", "cursor.invalid", "pass nextCursor unchanged"))
    if errors or not isinstance(data, dict):
        raise ValidationFailed("invalid ReadDPPIdsByProductIds request", details=errors)
    assert isinstance(ids, list)
    result = await in_read_session(request, lambda s: service.ids_by_product_ids(
        s, product_ids=ids, cursor=cursor or body_cursor, limit=limit or body_limit))
    await guard.log_read(request, principal, action=Action.search, dpp_id=None, operator_id=None,
                         detail=["productIds"], reason=f"{len(result['items'])} passport ids")
    return json_response(result)


@router.post("/lifecycle/successors", status_code=201, tags=["lifecycle"],
             summary="Second life: new passport linked to 1..n predecessors (Art. 77(7))",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                 "type": "object", "required": ["operation", "predecessorDppIds", "passport"], "properties": {
                     "operation": {"enum": [o.value for o in lifecycle.SecondLifeOperation]},
                     "predecessorDppIds": {"type": "array", "items": {"type": "string"}},
                     "passport": PASSPORT_REF}}}}}})
async def successors(request: Request, settings: SettingsDep, principal: PrincipalDep) -> Response:
    body = await _body(request)
    data = orjson.loads(body)
    passport = data.get("passport") if isinstance(data, dict) else None
    gp = passport.get("generalProductInformation") if isinstance(passport, dict) else None
    if gp is not None and not isinstance(gp, dict):  # create_successor copies it as an object (500 otherwise)
        raise ValidationFailed("passport does not match the schema", details=[FieldError(
            "$.passport.generalProductInformation", "schema.model_type", "expected an object")])
    claimed = passport.get("economicOperatorId") if isinstance(passport, dict) else None
    return await _create(request, settings, principal, claimed, Action.successor,
                         lambda s: lifecycle.create_successor(s, body=body))


@router.post("/dpps/{dppId}/waste", tags=["lifecycle"],
             summary="Waste: responsibility moves to another operator, same passport (Art. 77(7))",
             openapi_extra=ANY_JSON_BODY)
async def waste(request: Request, dppId: DppIdPath, principal: PrincipalDep, if_match: IfMatch = None) -> Response:
    body = await _body(request)

    claim = orjson.loads(body)
    new_operator = claim.get("responsibleOperatorId") if isinstance(claim, dict) else None

    def work(s: Session) -> StoredVersion:
        current = service.read_current(s, dpp_id=dppId)
        _check_write(s, principal, "waste", current)
        if not guard.speaks_for(s, principal, current.operator_id or "") and new_operator != principal.operator_id:
            # A recycler or waste operator takes responsibility itself; only the operator may name another.
            raise _Refused("a recycler or waste operator records waste with itself as the responsible operator",
                           dppId, current.operator_id)
        v = lifecycle.mark_waste(s, dpp_id=dppId, body=body, if_match=if_match)
        _log_write(s, request, principal, Action.waste, v, ["generalProductInformation.batteryStatus",
                                                            "economicOperatorId"])
        return v

    return version_response(await _write(request, principal, work, action=Action.waste, dpp_id=dppId))


@router.post("/dpps/{dppId}/recycle", tags=["lifecycle"],
             summary="Recycled: the passport ceases — archived, read-only, kept (Art. 77(8))")
async def recycle(request: Request, dppId: DppIdPath, principal: PrincipalDep, if_match: IfMatch = None) -> Response:
    body = await _body(request, optional=True)

    def work(s: Session) -> StoredVersion:
        _check_write(s, principal, "recycle", service.read_current(s, dpp_id=dppId))
        v = lifecycle.mark_recycled(s, dpp_id=dppId, body=body, if_match=if_match)
        _log_write(s, request, principal, Action.recycle, v, ["dppStatus", "endOfLife"])
        return v

    return version_response(await _write(request, principal, work, action=Action.recycle, dpp_id=dppId))


@router.post("/dpps/{dppId}/responsibility", tags=["lifecycle"], openapi_extra=ANY_JSON_BODY,
             summary="Transfer responsibility to another economic operator (Art. 77(4), (7); explicit and logged)")
async def transfer_responsibility(request: Request, dppId: DppIdPath, principal: PrincipalDep,
                                  if_match: IfMatch = None) -> Response:
    data = service._json_body(await _body(request))
    new_operator = data.get("operatorId") if isinstance(data, dict) else None
    reference = data.get("reference") if isinstance(data, dict) else None
    if not isinstance(new_operator, str) or not new_operator or not isinstance(reference, str) or not reference:
        raise ValidationFailed("expected operatorId (the new responsible operator) and reference (the written "
                               "agreement or decision it rests on)", details=[
                                   FieldError("$.operatorId", "responsibility.operator", "operator identifier"),
                                   FieldError("$.reference", "responsibility.reference", "a reference")])
    patch = orjson.dumps({"economicOperatorId": new_operator,
                          "generalProductInformation": {"operatorInformation": None}})

    def work(s: Session) -> StoredVersion:
        current = service.read_current(s, dpp_id=dppId)
        _check_write(s, principal, "transferResponsibility", current)
        v = service.patch_passport(s, dpp_id=dppId, body=patch, if_match=if_match)
        _log_write(s, request, principal, Action.transfer_responsibility, v, ["economicOperatorId"],
                   reason=f"from {current.operator_id} to {new_operator}; {reference}")
        return v

    return version_response(await _write(request, principal, work, action=Action.transfer_responsibility,
                                         dpp_id=dppId))


# ------------------------------------------------------------------------------------------ write helpers
async def _create(request: Request, settings: Any, principal: Principal, claimed: object, action: Action,
                  create: Any) -> Response:
    """A new passport (CreateDPP or a successor): rights are judged on the operator it names; a body
    without a string operator id fails validation in ``create``."""
    def work(s: Session) -> StoredVersion:
        if isinstance(claimed, str):
            refusal = guard.creation_refusal(s, principal, operator_id=claimed,
                                             successor=action is Action.successor)
            if refusal:
                raise Forbidden(refusal)
        v: StoredVersion = create(s)
        _log_write(s, request, principal, action, v, ["*"])
        return v

    v = await _write(request, principal, work, action=action, dpp_id=None)
    return version_response(v, status_code=201,
                            headers={"Location": f"{settings.base_url}/api/v1/dpps/{quote(v.dpp_id, safe=':')}"})
def _check_write(s: Session, principal: Principal, action: str, current: StoredVersion,
                 staged: StoredVersion | None = None) -> list[str]:
    """Refuse (403, logged) unless ``principal`` may make this change; returns the changed attributes."""
    new = orjson.loads(staged.body) if staged is not None else None
    changed = changed_attributes(orjson.loads(current.body), new) if new is not None else []
    refusal = guard.write_refusal(s, principal, action=action, operator_id=current.operator_id or "",
                                  changed=changed if new is not None else None, new_doc=new,
                                  dpp_id=current.dpp_id)
    if refusal:
        raise _Refused(refusal, current.dpp_id, current.operator_id)
    return changed


class _Refused(Forbidden):
    def __init__(self, reason: str, dpp_id: str | None, operator_id: str | None) -> None:
        super().__init__(reason)
        self.dpp_id = dpp_id
        self.operator_id = operator_id


def _log_write(s: Session, request: Request, principal: Principal, action: Action, v: StoredVersion,
               changed: list[str], reason: str | None = None) -> None:
    """The write's access record, in the write's own transaction: both commit or neither."""
    audit.record(s, audit.AccessRecord.of(
        principal, action=action, dpp_id=v.dpp_id, passport_operator_id=v.operator_id, detail=changed,
        outcome="granted", reason=reason or f"version {v.version}", request_id=correlation_id(request)))


async def _write(request: Request, principal: Principal, work: Any, *, action: Action, dpp_id: str | None) -> Any:
    """Run a write; a refusal is logged durably (its transaction rolled back) and answered 403."""
    if principal.is_anonymous:
        await guard.log_read(request, principal, action=action, dpp_id=dpp_id, operator_id=None, detail=[],
                             outcome="denied", reason="no credentials")
        raise Unauthorized("writing passport data needs credentials (POST /api/v1/auth/token, or an API key)")
    try:
        written = await in_transaction(request, work)
    except Forbidden as exc:
        raise await guard.denied(request, principal, action=action, dpp_id=getattr(exc, "dpp_id", dpp_id),
                                 operator_id=getattr(exc, "operator_id", None), reason=exc.message) from None
    view, _ = await guard.view_for(request, principal, written)  # a writer reads back only what it may read
    return view


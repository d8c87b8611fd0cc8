"""The registry node over HTTP (JSON; errors as the EN 18222 result object):

* ``POST /api/v1/registerDPP`` — EN 18222 PostNewDPPToRegistry: 201 ``{registrationId, revision, proof,
  registration}`` for a new registration, 200 for a new revision (or an unchanged one) of the caller's own;
* ``GET /api/v1/registry/registrations?productId=|operatorId=|status=&cursor=&limit=`` — lookups (by product: public,
  what the resolver uses; by operator or status: the operator itself, market surveillance, the Commission);
* ``GET /api/v1/registry/registrations/{registrationId}`` (public), ``…/events`` (its history: the operator and
  authorities), ``…/proof`` (the latest signed proof, public);
* ``POST /api/v1/registry/registrations/{registrationId}/routing`` — new endpoint, successor operator, backup;
* ``GET|POST /api/v1/registry/nodes``, ``GET|PATCH /api/v1/registry/nodes/{nodeId}`` — the node directory
  (reads public, writes the Commission's);
* ``GET /api/v1/registry/export?format=json|csv&operatorId=`` — bulk export of registration data, streamed;
* ``POST /api/v1/registry/proofs/verify`` — ``{proof}`` → ``{valid, reason | payload}`` against this node's keys.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Path, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response, StreamingResponse

from dbp.access.deps import PrincipalDep
from dbp.access.principal import Principal
from dbp.audit.service import AccessRecord
from dbp.clock import timestamp
from dbp.csvcells import formula_safe
from dbp.deps import in_read_session, in_transaction
from dbp.errors import BadRequest, DbpError, FieldError, Forbidden, NotAcceptable, Unauthorized, UnsupportedMediaType
from dbp.http import correlation_id, json_response
from dbp.registry import flow, service
from dbp.registry.fetch import AsgiFetcher, HttpFetcher, NodeFetcher, PassportFetcher, check_endpoint
from dbp.registry.schemas import (
    NodeCreate,
    NodeKind,
    NodePatch,
    NodeStatus,
    RegisterRequest,
    RoutingRequest,
    VerifyRequest,
    parse_body,
)

router = APIRouter(prefix="/api/v1", tags=["registry"])
T = TypeVar("T")

RegistrationIdPath = Annotated[str, Path(max_length=64, pattern=r"^[!-~]+$")]
NodeIdPath = Annotated[str, Path(max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[str | None, Query(max_length=600)]
Filter = Annotated[str | None, Query(min_length=1, max_length=2048)]
JSON_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}
EXPORT_PAGE = 500


def _register_body() -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": RegisterRequest.model_json_schema()}}}}


def node_fetcher(app: Any) -> PassportFetcher:
    """This node's passport reader, built on first use: its own base URL in-process, others over the network."""
    state = app.state
    fetcher: PassportFetcher | None = getattr(state, "registry_fetcher", None)
    if fetcher is None:
        settings = state.settings
        fetcher = NodeFetcher(own=settings.base_url, local=AsgiFetcher(app, base_url=settings.base_url),
                              remote=HttpFetcher(http_hosts=settings.registry_endpoint_http_hosts))
        state.registry_fetcher = fetcher
    return fetcher


def fetcher_of(request: Request) -> PassportFetcher:
    return node_fetcher(request.app)


def node_of(request: Request) -> flow.Node:
    settings = request.app.state.settings
    return flow.Node(base_url=settings.base_url, http_hosts=tuple(settings.registry_endpoint_http_hosts))


async def _body(request: Request) -> bytes:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/json", ""):
        raise UnsupportedMediaType(f"content type {ctype!r} is not accepted; send application/json")
    return await request.body()


def _runners(request: Request) -> tuple[flow.Run[Any], flow.Run[Any]]:
    async def run_read(work: Callable[[Session], T]) -> T:
        return await in_read_session(request, work)

    async def run_write(work: Callable[[Session], T]) -> T:
        return await in_transaction(request, work)

    return run_read, run_write


async def _logged(request: Request, principal: Principal, action: str, work: Awaitable[T]) -> T:
    """``work``; a refusal for lack of rights is in the access log before it is answered."""
    try:
        return await work
    except (Unauthorized, Forbidden) as exc:
        await request.app.state.read_log.append(AccessRecord.of(
            principal, action=f"registry.{action}", detail=[f"{request.method} {request.url.path}"[:512]],
            outcome="denied", reason=exc.message, request_id=correlation_id(request)))
        raise


def _issued(issued: service.Issued) -> Response:
    body: dict[str, Any] = {"registrationId": issued.registration["registrationId"],
                            "revision": issued.registration["revision"], "changed": issued.changed,
                            "proof": issued.proof, "registration": issued.registration}
    if issued.notes:
        body["notes"] = issued.notes
    return json_response(body, status_code=201 if issued.created else 200)


@router.post("/registerDPP", summary="PostNewDPPToRegistry: register a passport, get a signed proof",
             tags=["EN 18222"], openapi_extra=_register_body(), status_code=201)
async def register_dpp(request: Request, principal: PrincipalDep) -> Response:
    async def work() -> service.Issued:
        if principal.is_anonymous:  # before the body is even read: no parser for strangers
            raise Unauthorized("registering a passport needs credentials (POST /api/v1/auth/token)")
        req = parse_body(await _body(request), RegisterRequest)
        run_read, run_write = _runners(request)
        return await flow.register(run_read=run_read, run_write=run_write, fetcher=fetcher_of(request),
                                   node=node_of(request), principal=principal, req=req,
                                   request_id=correlation_id(request))

    return _issued(await _logged(request, principal, "register", work()))


@router.get("/registry/registrations", summary="Registrations by product identifier, operator or status")
async def list_registrations(request: Request, principal: PrincipalDep, productId: Filter = None,
                             operatorId: Filter = None, status: Annotated[str | None, Query(max_length=16)] = None,
                             cursor: Cursor = None, limit: Limit = 100) -> Response:
    if productId is None and operatorId is None and status is None:
        raise BadRequest("name productId, operatorId or status", details=[
            FieldError("productId", "registry.filter", "one filter at least")])

    def work(session: Session) -> dict[str, Any]:
        if operatorId is not None or status is not None:
            service.authorise_operator_read(session, principal, operatorId, "listing registrations")
        return service.find(session, product_id=productId, operator_id=operatorId, status=status, cursor=cursor,
                            limit=limit)

    return json_response(await _logged(request, principal, "list", in_read_session(request, work)))


@router.get("/registry/registrations/{registrationId}", summary="One registration (public)")
async def get_registration(request: Request, registrationId: RegistrationIdPath) -> Response:
    return json_response(await in_read_session(request, lambda s: service.get_json(
        s, registration_id=registrationId)))


@router.get("/registry/registrations/{registrationId}/events",
            summary="A registration's versioned history (the operator and authorities)")
async def get_events(request: Request, principal: PrincipalDep, registrationId: RegistrationIdPath) -> Response:
    def work(session: Session) -> dict[str, Any]:
        reg = service.get(session, registration_id=registrationId)
        if not principal.is_authority:
            service.authorise_operator_read(session, principal, reg.operator_id, "reading a registration's history")
        return {"registrationId": registrationId, "events": service.events(session, registration_id=registrationId)}

    return json_response(await _logged(request, principal, "events", in_read_session(request, work)))


@router.get("/registry/registrations/{registrationId}/proof", summary="The latest signed proof of registration")
async def get_proof(request: Request, registrationId: RegistrationIdPath) -> Response:
    return json_response(await in_read_session(request, lambda s: service.latest_proof(
        s, registration_id=registrationId)))


@router.post("/registry/registrations/{registrationId}/routing", openapi_extra=JSON_BODY,
             summary="Routing change: new endpoint, successor operator (custody), backup provider")
async def reroute(request: Request, principal: PrincipalDep, registrationId: RegistrationIdPath) -> Response:
    async def work() -> service.Issued:
        if principal.is_anonymous:
            raise Unauthorized("changing a registration needs credentials (POST /api/v1/auth/token)")
        change = parse_body(await _body(request), RoutingRequest)
        run_read, run_write = _runners(request)
        return await flow.reroute(run_read=run_read, run_write=run_write, fetcher=fetcher_of(request),
                                  node=node_of(request), principal=principal, registration_id=registrationId,
                                  change=change, request_id=correlation_id(request))

    return _issued(await _logged(request, principal, "routing", work()))


# ----------------------------------------------------------------------------------------------- nodes
@router.get("/registry/nodes", summary="The node directory: repositories and backups, their endpoints and keys")
async def list_nodes(request: Request, kind: NodeKind | None = None, status: NodeStatus | None = None) -> Response:
    return json_response({"items": await in_read_session(request, lambda s: service.list_nodes(
        s, kind=kind.value if kind else None, status=status.value if status else None))})


@router.get("/registry/nodes/{nodeId}", summary="One node of the directory")
async def get_node(request: Request, nodeId: NodeIdPath) -> Response:
    return json_response(await in_read_session(request, lambda s: service.node_json(
        service.get_node(s, node_id=nodeId))))


@router.post("/registry/nodes", summary="Add a node to the directory (Commission)", openapi_extra=JSON_BODY,
             status_code=201)
async def create_node(request: Request, principal: PrincipalDep) -> Response:
    async def work() -> dict[str, Any]:
        service.authorise_commission(principal, "adding a node to the directory")
        body = parse_body(await _body(request), NodeCreate)
        endpoint = check_endpoint(body.endpoint, http_hosts=request.app.state.settings.registry_endpoint_http_hosts,
                                  own=request.app.state.settings.base_url)
        return await in_transaction(request, lambda s: service.create_node(
            s, principal=principal, body=body, endpoint=endpoint, request_id=correlation_id(request)))

    return json_response(await _logged(request, principal, "nodeAdded", work()), status_code=201)


@router.patch("/registry/nodes/{nodeId}", summary="Mark a node exited or unreachable, move it, replace its keys "
              "(Commission)", openapi_extra=JSON_BODY)
async def patch_node(request: Request, principal: PrincipalDep, nodeId: NodeIdPath) -> Response:
    async def work() -> dict[str, Any]:
        service.authorise_commission(principal, "changing the node directory")
        body = parse_body(await _body(request), NodePatch)
        settings = request.app.state.settings
        endpoint = None if body.endpoint is None else check_endpoint(
            body.endpoint, http_hosts=settings.registry_endpoint_http_hosts, own=settings.base_url)
        return await in_transaction(request, lambda s: service.patch_node(
            s, principal=principal, node_id=nodeId, body=body, endpoint=endpoint,
            request_id=correlation_id(request)))

    return json_response(await _logged(request, principal, "nodeChanged", work()))


# ----------------------------------------------------------------------------------------------- proofs
@router.post("/registry/proofs/verify", summary="Verify a proof of registration against this registry's keys",
             openapi_extra=JSON_BODY)
async def verify_proof(request: Request) -> Response:
    body = parse_body(await _body(request), VerifyRequest)
    secret = request.app.state.checkpointer.secret_key
    return json_response(await in_read_session(request, lambda s: service.verify(
        s, token=body.proof, secret_key=secret)))


# ----------------------------------------------------------------------------------------------- export
def safe_cell(value: Any) -> str:
    """A CSV cell that no spreadsheet evaluates (OWASP CSV injection): text starting with = + - @ tab or CR is
    prefixed with an apostrophe; lists are joined with spaces."""
    if value is None:
        return ""
    return formula_safe(" ".join(str(v) for v in value) if isinstance(value, list) else str(value))


def _next_page(operator_id: str | None, after: str) -> Callable[[Session], list[dict[str, Any]]]:
    return lambda s: service.export_page(s, operator_id=operator_id, after=after, limit=EXPORT_PAGE)


def _csv_line(values: list[Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow([safe_cell(v) for v in values])
    return buf.getvalue().encode("utf-8")


@router.get("/registry/export", summary="Bulk export of registration data (JSON or CSV, streamed)")
async def export(request: Request, principal: PrincipalDep,
                 format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
                 operatorId: Filter = None) -> Response:
    accept = request.headers.get("accept", "")
    media = "text/csv; charset=utf-8" if format == "csv" else "application/json"
    if accept and not any(t in accept for t in (media.split(";")[0], "*/*", "text/*" if format == "csv" else
                                                "application/*")):
        raise NotAcceptable(f"this export is {media.split(';')[0]}; ask for it with Accept or leave Accept out")

    def check(session: Session) -> list[dict[str, Any]]:
        service.authorise_operator_read(session, principal, operatorId, "exporting registrations")
        return service.export_page(session, operator_id=operatorId, after=None, limit=EXPORT_PAGE)

    first = await _logged(request, principal, "export", in_read_session(request, check))
    await request.app.state.read_log.append(AccessRecord.of(
        principal, action="registry.export", passport_operator_id=operatorId, detail=[format, operatorId or "*"],
        outcome="granted", request_id=correlation_id(request)))

    async def pages() -> AsyncIterator[list[dict[str, Any]]]:
        page = first
        while page:
            yield page
            if len(page) < EXPORT_PAGE:
                return
            page = await in_read_session(request, _next_page(operatorId, page[-1]["registrationId"]))

    async def as_csv() -> AsyncIterator[bytes]:
        yield _csv_line(list(service.EXPORT_COLUMNS))
        async for page in pages():
            yield b"".join(_csv_line([r[c] for c in service.EXPORT_COLUMNS]) for r in page)

    async def as_json() -> AsyncIterator[bytes]:
        yield orjson.dumps({"format": "dbp.registryExport/1", "exportedAt": timestamp(), "operatorId": operatorId,
                            "registry": request.app.state.settings.base_url})[:-1] + b',"registrations":['
        count = 0
        try:
            async for page in pages():
                for record in page:
                    yield (b"," if count else b"") + orjson.dumps(record)
                    count += 1
        except DbpError as exc:
            yield b'],"count":%d,"exportComplete":false,"error":%s}' % (count, orjson.dumps(exc.message))
            return
        yield b'],"count":%d,"exportComplete":true}' % count

    filename = f"registrations.{format}"
    return StreamingResponse(as_csv() if format == "csv" else as_json(), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                      "Cache-Control": "no-store"})

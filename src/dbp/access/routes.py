"""Authentication and grants: ``POST /api/v1/auth/token`` (OAuth2 client credentials, or password
for portal users), ``GET /api/v1/auth/me``, and the responsible operator's grants per passport."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Annotated, TypeVar
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Path, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from dbp.access import service
from dbp.access.deps import AuthenticatedDep, stated_purpose
from dbp.access.policy import load_policy
from dbp.access.principal import Principal, Role
from dbp.audit import service as audit
from dbp.deps import in_transaction
from dbp.errors import BadRequest, FieldError, Forbidden, Unauthorized, ValidationFailed
from dbp.http import correlation_id, json_response
from dbp.passports import service as passports
from dbp.passports.attributes import AccessGroup

router = APIRouter(prefix="/api/v1", tags=["access"])
T = TypeVar("T")


def _form(body: bytes) -> dict[str, str]:
    try:
        parsed = parse_qs(body.decode("ascii"), strict_parsing=False, max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("send application/x-www-form-urlencoded fields") from None
    return {k: v[0] for k, v in parsed.items() if v}


def _basic(request: Request) -> tuple[str, str] | None:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("basic "):
        return None
    try:
        user, _, secret = base64.b64decode(auth[6:], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise Unauthorized("malformed HTTP Basic credentials") from None
    return user, secret


@router.post("/auth/token", summary="OAuth2 token: client_credentials (or password for portal users)",
             openapi_extra={"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                 "type": "object", "required": ["grant_type"], "properties": {
                     "grant_type": {"enum": ["client_credentials", "password"]}, "client_id": {"type": "string"},
                     "client_secret": {"type": "string"}, "username": {"type": "string"},
                     "password": {"type": "string"}, "purpose": {"type": "string"}, "scope": {"type": "string"}}}}}}})
async def token(request: Request) -> Response:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise BadRequest("the token endpoint takes application/x-www-form-urlencoded (RFC 6749 §4.4.2)")
    form = _form(await request.body())
    grant = form.get("grant_type")
    purpose = stated_purpose(form.get("purpose"))
    factory = request.app.state.read_sessionmaker

    def check() -> Principal:
        with factory() as session:
            if grant == "client_credentials":
                creds = _basic(request) or (form.get("client_id", ""), form.get("client_secret", ""))
                return service.authenticate_client(session, client_id=creds[0], client_secret=creds[1])
            if grant == "password":
                return service.authenticate_password(session, username=form.get("username", ""),
                                                     password=form.get("password", ""))
            raise BadRequest("grant_type must be client_credentials or password",
                             details=[FieldError("grant_type", "oauth2.unsupported_grant_type", str(grant))])

    principal = (await run_in_threadpool(check)).with_purpose(purpose)
    access_token, ttl = request.app.state.tokens.issue(principal, scope=form.get("scope", ""))
    return Response(orjson.dumps({"access_token": access_token, "token_type": "Bearer", "expires_in": ttl,
                                  "scope": form.get("scope", "")}),
                    media_type="application/json", headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.get("/auth/jwks", summary="Public keys that verify this repository's access tokens")
def jwks(request: Request) -> Response:
    return json_response(request.app.state.tokens.jwks())


@router.get("/auth/me", summary="Who the credentials name, and the purposes open to that role")
def me(principal: AuthenticatedDep, request: Request) -> Response:
    policy = load_policy(request.app.state.settings.access_policy_file)
    return json_response({"subject": principal.subject, "kind": principal.kind.value, "orgId": principal.org_id,
                          "operatorId": principal.operator_id, "role": principal.role.value if principal.role else None,
                          "purpose": principal.purpose, "purposes": policy.purposes_of(principal.role)})


# ------------------------------------------------------------------------------------------- grants
async def _logged(request: Request, principal: Principal, work: Callable[[Session], T], dpp_id: str,
                  action: str) -> T:
    """Run a grant operation; a refusal is logged durably (its transaction rolled back) and re-raised."""
    try:
        return await in_transaction(request, work)
    except Forbidden as exc:
        await request.app.state.read_log.append(audit.AccessRecord.of(
            principal, action=action, dpp_id=dpp_id, detail=[], outcome="denied", reason=exc.message,
            request_id=correlation_id(request)))
        raise
DppIdPath = Annotated[str, Path(max_length=256)]


def _owner_check(session: Session, principal: Principal, dpp_id: str) -> str:
    """The passport's operator id, if ``principal`` speaks for it; Forbidden otherwise."""
    operator_id = passports.operator_of(session, dpp_id=dpp_id)
    if principal.role is Role.device or principal.is_authority or (
            principal.operator_id != operator_id and operator_id not in service.authorised_operator_ids(
                session, agent_org_id=principal.org_id or "")):
        raise Forbidden("only the passport's responsible operator (or an organisation it authorised) manages grants")
    return operator_id


@router.post("/dpps/{dppId}/grants", status_code=201, summary="Grant an organisation access for a purpose")
async def create_grant(request: Request, dppId: DppIdPath, principal: AuthenticatedDep) -> Response:
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(data, dict) or set(data) - {"grantee", "purpose", "accessGroups", "expiresAt"}:
        raise ValidationFailed("expected grantee, purpose, accessGroups, expiresAt")
    try:
        groups = [AccessGroup(g) for g in data.get("accessGroups") or []]
        purpose = stated_purpose(str(data.get("purpose") or "")) or ""
        expires = passports.parse_instant(str(data.get("expiresAt") or ""))
    except ValueError:
        raise ValidationFailed("accessGroups must be access group names", details=[
            FieldError("$.accessGroups", "grant.accessGroups", "legitimateInterest and/or "
                       "legitimateInterestAndAuthorities")]) from None
    if not purpose:
        raise ValidationFailed("a grant is for a stated purpose", details=[
            FieldError("$.purpose", "grant.purpose", "e.g. dismantling, marketAccess")])

    def work(session: Session) -> dict[str, object]:
        operator_id = _owner_check(session, principal, dppId)
        grantee = service.org_by_ref(session, ref=str(data.get("grantee") or ""))
        grant = service.create_grant(session, dpp_id=dppId, grantee_org_id=grantee.id, purpose=purpose,
                                     access_groups=groups, expires_at=expires, granted_by=principal.subject)
        audit.record(session, audit.AccessRecord.of(
            principal, action=audit.Action.grant, dpp_id=dppId, passport_operator_id=operator_id,
            detail=[g.value for g in groups], outcome="granted", request_id=correlation_id(request),
            reason=f"grant {grant.id} to {grantee.operator_id} for {purpose} until {expires}"))
        return service.grant_json(grant)

    return json_response(await _logged(request, principal, work, dppId, audit.Action.grant), status_code=201)


@router.get("/dpps/{dppId}/grants", summary="Grants on a passport (its responsible operator only)")
async def list_grants(request: Request, dppId: DppIdPath, principal: AuthenticatedDep) -> Response:
    def work(session: Session) -> list[dict[str, object]]:
        _owner_check(session, principal, dppId)
        return [service.grant_json(g) for g in service.grants_of(session, dpp_id=dppId)]

    return json_response({"dppId": dppId, "grants": await _logged(request, principal, work, dppId, "listGrants")})


@router.delete("/dpps/{dppId}/grants/{grantId}", summary="Revoke a grant")
async def revoke_grant(request: Request, dppId: DppIdPath, grantId: Annotated[str, Path(max_length=64)],
                       principal: AuthenticatedDep) -> Response:
    def work(session: Session) -> dict[str, object]:
        operator_id = _owner_check(session, principal, dppId)
        grant = service.revoke_grant(session, grant_id=grantId, dpp_id=dppId)
        audit.record(session, audit.AccessRecord.of(
            principal, action=audit.Action.revoke_grant, dpp_id=dppId, passport_operator_id=operator_id,
            detail=grant.access_groups.split(","), outcome="granted", request_id=correlation_id(request),
            reason=f"revoked grant {grant.id}"))
        return service.grant_json(grant)

    return json_response(await _logged(request, principal, work, dppId, audit.Action.revoke_grant))

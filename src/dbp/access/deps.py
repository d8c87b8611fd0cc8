"""Who is calling: authentication of every request that reaches a route.

``Authorization: Bearer <token>`` (our own short-lived JWT, verified with a cache) or
``X-API-Key: dbpk_…`` (device keys); neither means the anonymous public. Bad credentials are a
401, never a silent downgrade to public. The purpose comes from ``X-Purpose`` (it wins) or the
token's ``purpose`` claim.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from dbp.access import service
from dbp.access.principal import ANONYMOUS, Principal, PrincipalKind
from dbp.audit.service import AccessRecord
from dbp.errors import BadRequest, FieldError, Unauthorized
from dbp.http import correlation_id

_PURPOSE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")


def stated_purpose(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not _PURPOSE.match(value):
        raise BadRequest("X-Purpose must be a purpose name such as dismantling or marketAccess",
                         details=[FieldError("X-Purpose", "purpose.format", "letters, digits and '-', 1..64")])
    return value


async def authenticate(request: Request) -> Principal:
    cached: Principal | None = request.scope.get("state", {}).get("principal")
    if cached is not None:
        return cached
    try:
        principal = await _credentials(request)
    except Unauthorized as exc:
        await _log_refusal(request, exc.message)
        raise
    purpose = stated_purpose(request.headers.get("x-purpose"))
    if purpose is not None and not principal.is_anonymous:
        principal = principal.with_purpose(purpose)
    request.scope.setdefault("state", {})["principal"] = principal
    return principal


async def _credentials(request: Request) -> Principal:
    headers = request.headers
    auth, key = headers.get("authorization"), headers.get("x-api-key")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("use Authorization: Bearer <access token> (POST /api/v1/auth/token)")
        principal: Principal = request.app.state.tokens.verify(token.strip())
        return principal
    if key is not None:
        factory = request.app.state.read_sessionmaker

        def lookup() -> Principal:
            with factory() as session:
                return service.authenticate_api_key(session, api_key=key)

        return await run_in_threadpool(lookup)
    return ANONYMOUS


async def _log_refusal(request: Request, reason: str) -> None:
    """Refused credentials are an access attempt too: log it, with the passport the path names."""
    path = request.url.path
    dpp_id = path[len(_DPP_PREFIX):].split("/", 1)[0] if path.startswith(_DPP_PREFIX) else None
    unknown = Principal(kind=PrincipalKind.anonymous, subject="unauthenticated")
    await request.app.state.read_log.append(AccessRecord.of(
        unknown, action="authenticate", dpp_id=dpp_id or None, detail=[f"{request.method} {path}"[:512]],
        outcome="denied", reason=reason, request_id=correlation_id(request)))


_DPP_PREFIX = "/api/v1/dpps/"


async def get_principal(request: Request) -> Principal:
    return await authenticate(request)


async def require_authenticated(request: Request) -> Principal:
    principal = await authenticate(request)
    if principal.is_anonymous:
        raise Unauthorized("this operation needs credentials (POST /api/v1/auth/token, or an API key)")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
AuthenticatedDep = Annotated[Principal, Depends(require_authenticated)]

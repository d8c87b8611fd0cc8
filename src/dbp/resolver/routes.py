"""``/api/v1/resolver/links``: the links an economic operator configures on the resolver for its batteries.

Only an economic operator's own credentials (an organisation of role ``economicOperator``) manage the links of
its operator id: anonymous callers get 401, every other caller 403 (another operator, a service provider, a
recycler). Links take effect at the next resolver request (the resolver's answers are kept until the database
changes). The resolver's hot path itself is ``dbp.resolver.serving``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from dbp.access.deps import AuthenticatedDep
from dbp.access.principal import Principal, Role
from dbp.deps import in_read_session, in_transaction
from dbp.errors import Forbidden
from dbp.http import json_response
from dbp.resolver import service
from dbp.resolver.schemas import LinkIn

router = APIRouter(prefix="/api/v1/resolver", tags=["resolver"])


def operator(principal: AuthenticatedDep) -> Principal:
    """The caller, when it speaks for an economic operator (401 anonymous, 403 anyone else)."""
    if principal.role is not Role.economic_operator or not principal.operator_id:
        raise Forbidden("resolver links are managed by the economic operator of the batteries (role "
                        "economicOperator)")
    return principal


OperatorDep = Annotated[Principal, Depends(operator)]


@router.post("/links", status_code=201, summary="Add a link for the operator's batteries (GS1 link type)")
async def add_link(request: Request, body: LinkIn, principal: OperatorDep) -> Response:
    scope_operator = body.operator_id or principal.operator_id
    if scope_operator != principal.operator_id:
        raise Forbidden(f"links of operator {scope_operator} are managed by that operator")
    assert scope_operator is not None
    link = await in_transaction(request, lambda s: service.link_json(service.add_link(
        s, operator_id=scope_operator, link_type=body.link_type, href=body.href, title=body.title, gtin=body.gtin,
        product_id=body.product_id, media_type=body.type, hreflang=body.hreflang, default=body.default,
        created_by=principal.subject)))
    return json_response(link, status_code=201, headers={"Location": f"/api/v1/resolver/links/{link['id']}"})


@router.get("/links", summary="The operator's resolver links")
async def list_links(request: Request, principal: OperatorDep) -> Response:
    links = await in_read_session(request, lambda s: [service.link_json(x) for x in service.list_links(
        s, operator_id=principal.operator_id)])
    return json_response({"items": links})


@router.delete("/links/{linkId}", status_code=204, summary="Remove one of the operator's resolver links")
async def remove_link(request: Request, linkId: Annotated[int, Path(ge=1, le=2**31 - 1)],
                      principal: OperatorDep) -> Response:
    await in_transaction(request, lambda s: service.remove_link(s, link_id=linkId,
                                                                operator_id=principal.operator_id))
    return Response(status_code=204)

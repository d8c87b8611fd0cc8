"""FastAPI dependencies for the caller's identity. (Authentication is being built; until it lands
every caller is the anonymous public.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from dbp.access.principal import ANONYMOUS, Principal


def get_principal(request: Request) -> Principal:
    """The authenticated principal of this request, with its stated purpose (anonymous: the public)."""
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    return principal or ANONYMOUS


PrincipalDep = Annotated[Principal, Depends(get_principal)]

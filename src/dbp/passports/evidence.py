"""``GET /api/v1/dpps/{dppId}/evidence[?version=]`` — the evidence bundle of a passport version
(``dbp.integrity.evidence``): checkable offline with ``dbp verify`` or ``POST /api/v1/verify``.

Which document it holds follows the caller's rights (Art. 77): a caller who may read the whole version gets the
full, signed version; everyone else gets the public view, whose hash the log leaf also commits to. (Views between
the two — e.g. a recycler's — are not committed to by the log, so their evidence is the public view's; the rest
of what such a caller reads is authenticated by the operator's TLS only.) Logged like every read, before it is
answered.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from dbp.access.deps import PrincipalDep
from dbp.audit.service import Action
from dbp.clock import timestamp
from dbp.deps import in_read_session
from dbp.errors import NotFound
from dbp.http import json_response
from dbp.integrity import evidence
from dbp.passports import guard, service
from dbp.passports.attributes import AccessGroup
from dbp.passports.routes import JSON_ONLY

router = APIRouter(prefix="/api/v1")

PUBLIC = frozenset({AccessGroup.public})


@router.get("/dpps/{dppId}/evidence", summary="Evidence bundle of a passport version (offline verification)",
            tags=["integrity"], dependencies=JSON_ONLY)
async def read_evidence(request: Request, principal: PrincipalDep,
                        dppId: Annotated[str, Path(max_length=256)],
                        version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Response:
    def stored(s: Session) -> service.StoredVersion:
        if version is None:
            return service.read_current(s, dpp_id=dppId)
        return service.read_version(s, dpp_id=dppId, version=version)

    v = await in_read_session(request, stored)
    _, decision = await guard.view_for(request, principal, v)
    if decision.everything:
        if v.signature is None:
            raise NotFound(f"version {v.version} of {dppId} was stored before versions were signed: it has no "
                           "signature to put in a bundle (its leaf is logged: GET /api/v1/log/proof/inclusion)")
        view, document, signature = "full", v.body, v.signature
    else:
        view, signature = "public", None
        document, _ = request.app.state.views.get(v.dpp_id, v.version, PUBLIC, v.body, v.view_index)
    origin = request.app.state.checkpointer.origin
    bundle = await in_read_session(request, lambda s: evidence.gather(
        s, dpp_id=v.dpp_id, version=v.version, view=view, document=document, signature=signature, origin=origin,
        issued_at=timestamp()))
    groups = sorted(g.value for g in decision.groups) if view == "full" else [AccessGroup.public.value]
    await guard.log_read(request, principal, action=Action.read_evidence, dpp_id=v.dpp_id,
                         operator_id=v.operator_id, detail=groups, reason=decision.reason)
    return json_response(bundle.as_json(), headers={"Cache-Control": "no-cache", "X-DPP-Evidence-View": view})

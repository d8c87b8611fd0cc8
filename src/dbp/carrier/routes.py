"""``GET /api/v1/dpps/{dppId}/qr``: the battery's QR code (SVG or PNG) carrying its product identifier link.

The product identifier is public (Annex XIII point 1), so anyone may fetch the code; the read is logged like
every read of passport data. Parameters are checked by :func:`dbp.carrier.qr.options` (400 with the error
object naming the parameter); an unknown passport is a 404.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from dbp.access.deps import PrincipalDep
from dbp.audit.service import Action
from dbp.carrier import qr, service
from dbp.deps import in_read_session
from dbp.passports import guard

router = APIRouter(prefix="/api/v1")

# The code stays valid as long as the identifier does (decades); a day's caching, revalidated by ETag after.
CACHE_CONTROL = "public, max-age=86400"
RESPONSES: dict[int | str, dict[str, object]] = {"200": {"content": {
    "image/svg+xml": {"schema": {"type": "string"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}}}}}


@router.get("/dpps/{dppId}/qr", tags=["data carrier"], response_class=Response, responses=RESPONSES,
            summary="QR code of the battery: its product identifier link (never the passport id)")
async def read_qr(
    request: Request, principal: PrincipalDep,
    dppId: Annotated[str, Path(max_length=256, description="passport identifier, e.g. urn:uuid:…")],
    format: Annotated[str | None, Query(max_length=8, description="svg (default) or png")] = None,
    scale: Annotated[int | None, Query(description="pixels per module, 1..40 (default 4)")] = None,
    ecc: Annotated[str | None, Query(max_length=8, description="error correction L, M (default), Q or H")] = None,
    border: Annotated[int | None, Query(description="quiet zone in modules, 0..16 (default 4)")] = None,
) -> Response:
    opts = qr.options(format=format, scale=scale, ecc=ecc, border=border)
    c = await in_read_session(request, lambda s: service.carried(s, dpp_id=dppId))
    image = await run_in_threadpool(qr.encode, c.product_id, opts)  # ~1-10 ms of pure Python drawing
    await guard.log_read(request, principal, action=Action.read_element, dpp_id=dppId, operator_id=c.operator_id,
                         detail=["uniqueProductIdentifier"],
                         reason="the product identifier is public (Annex XIII point 1): QR code")
    etag = f'"{hashlib.sha256(image.data).hexdigest()}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}
    inm = request.headers.get("if-none-match")
    if inm is not None and etag in [t.strip() for t in inm.split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(image.data, media_type=image.media_type, headers=headers)

"""``GET /api/v1/dpps/{dppId}/qr``: the battery's QR code (SVG or PNG) carrying its product identifier link;
``GET /api/v1/qr/labels``: printable label sheets of a batch (PDF, SVG pages, or a ZIP of single files).

The product identifier is public (Annex XIII point 1), so anyone may fetch the code; the read is logged like
every read of passport data. Parameters are checked by :func:`dbp.carrier.qr.options` (400 with the error
object naming the parameter); an unknown passport is a 404.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from dbp.access.deps import AuthenticatedDep, PrincipalDep
from dbp.audit.service import Action
from dbp.carrier import qr, service, sheets
from dbp.deps import in_read_session
from dbp.errors import BadRequest, FieldError, Forbidden
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


# ------------------------------------------------------------------------------ label sheets of a batch

# Rendering costs ~4 ms a label (segno's mask selection, pure Python, under the GIL): an HTTP request prints at
# most 1000 labels (~4 s), the command line ``dbp qr-labels`` up to sheets.MAX_LABELS.
HTTP_MAX_LABELS = 1000
LABEL_FORMATS = ("pdf", "svg", "zip")
LABEL_RESPONSES: dict[int | str, dict[str, object]] = {"200": {"content": {
    "application/pdf": {"schema": {"type": "string", "format": "binary"}},
    "image/svg+xml": {"schema": {"type": "string"}},
    "application/zip": {"schema": {"type": "string", "format": "binary"}}}}}
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _download_name(rows: list[service.LabelRow], *, batch: str | None, model: str | None) -> str:
    """An ASCII file name stem: ``labels-`` and the batch, model or first passport, sanitised and cut."""
    hint = batch or model or (rows[0].batch if len({r.batch for r in rows}) == 1 and rows[0].batch else "") or "batch"
    return "labels-" + (_NAME_UNSAFE.sub("_", hint).strip("._") or "batch")[:60]


def _render(labels: list[sheets.Label], opts: sheets.SheetOptions, fmt: str, files: sheets.FileKind,
            scale: int, title: str) -> tuple[bytes, str, str]:
    """(body, media type, file suffix) — CPU work, run in a worker thread."""
    if fmt == "pdf":
        return sheets.pdf(labels, opts, title=title), "application/pdf", "pdf"
    if fmt == "zip":
        return sheets.zip_files(labels, opts, files=files, scale=scale), "application/zip", "zip"
    pages = sheets.svg_pages(labels, opts)
    if len(pages) == 1:
        return pages[0], "image/svg+xml", "svg"
    return sheets.pages_zip(pages), "application/zip", "svg.zip"


@router.get("/qr/labels", tags=["data carrier"], response_class=Response, responses=LABEL_RESPONSES,
            summary="Printable QR label sheets of a batch of batteries (responsible operator only)")
async def read_labels(
    request: Request, principal: AuthenticatedDep,
    batch: Annotated[str | None, Query(max_length=1024, description="passports.batch (batchNumber)")] = None,
    model: Annotated[str | None, Query(max_length=1024, description="batteryModelIdentifier")] = None,
    operator: Annotated[str | None, Query(max_length=1024, description="responsible operator (one you act for)")]
    = None,
    dppId: Annotated[list[str] | None, Query(description=f"explicit passports (repeat, ≤ {HTTP_MAX_LABELS})")]
    = None,
    format: Annotated[str | None, Query(max_length=8, description="pdf (default), svg or zip")] = None,
    page: Annotated[str | None, Query(max_length=16, description="a4 (default) or letter")] = None,
    columns: Annotated[int | None, Query(description="labels across, 1..12 (default 3)")] = None,
    rows: Annotated[int | None, Query(description="labels down, 1..40 (default 8)")] = None,
    margin: Annotated[float | None, Query(description="page margin in mm, 0..50 (default 10)")] = None,
    gap: Annotated[float | None, Query(description="gap between labels in mm, 0..20 (default 2)")] = None,
    codeSize: Annotated[float | None, Query(description="code side in mm incl. quiet zone, 5..250 (default: "
                                                        "the largest that leaves the caption room)")] = None,
    fontSize: Annotated[float | None, Query(description="largest caption size in pt, 4..16 (default 7)")] = None,
    ecc: Annotated[str | None, Query(max_length=8, description="error correction L, M (default), Q or H")] = None,
    border: Annotated[int | None, Query(description="quiet zone in modules, 2..16 (default 4)")] = None,
    files: Annotated[str | None, Query(max_length=8, description="zip: svg labels (default) or png codes")] = None,
    scale: Annotated[int | None, Query(description="zip of png: pixels per module, 1..40 (default 8)")] = None,
) -> Response:
    """Labels of the passports of a batch (``batch``, ``model``, ``operator``, combinable) or of a list of
    ``dppId``: each a QR code of the ``uniqueProductIdentifier`` with the identifier, model and batch as text.

    ``format=pdf``: one PDF; ``svg``: the page as SVG when the labels fill one page, else a ZIP of
    ``page-001.svg``…; ``zip``: one file per battery (``files=svg`` labels or ``png`` codes) and
    ``manifest.csv``. Who: an authenticated caller acting for the responsible operator (the operator itself or an
    organisation it authorised in writing); filters select among those operators' passports only, so a batch of
    another operator is a 404 like an unknown one, while a listed ``dppId`` of another operator is a 403
    (logged). Anonymous: 401. More than 1000 labels: 400 (use ``dbp qr-labels``). One access-log record.
    """
    fmt = (format or "pdf").lower()
    if fmt not in LABEL_FORMATS:
        raise BadRequest(f"format: expected pdf, svg or zip, got {format!r}",
                         details=[FieldError("format", "labels.format", "pdf, svg or zip")])
    opts = sheets.options(page=page, columns=columns, rows=rows, margin=margin, gap=gap, code_size=codeSize,
                          font_size=fontSize, ecc=ecc, border=border)
    kind, png_scale = sheets.file_kind(files), sheets.png_scale(scale)
    if dppId is not None and len(dppId) > HTTP_MAX_LABELS:
        raise BadRequest(f"dppId: expected at most {HTTP_MAX_LABELS} passports, got {len(dppId)}",
                         details=[FieldError("dppId", "labels.max", f"at most {HTTP_MAX_LABELS}")])

    def select(session: Session) -> list[service.LabelRow]:
        return service.label_rows(session, batch=batch, model=model, operator_id=operator, dpp_ids=dppId,
                                  operators=service.spoken_for(session, principal), limit=HTTP_MAX_LABELS)

    try:
        selected = await in_read_session(request, select)
    except Forbidden as exc:
        raise await guard.denied(request, principal, action=Action.export, dpp_id=None, operator_id=operator,
                                 reason=exc.message, detail=["uniqueProductIdentifier"]) from None
    labels = [service.label_of(r) for r in selected]
    title = f"Battery passport labels: {batch or model or operator or f'{len(labels)} passports'}"
    body, media_type, suffix = await run_in_threadpool(_render, labels, opts, fmt, kind, png_scale, title)
    owners = sorted({r.operator_id for r in selected})
    asked = {k: v for k, v in (("batch", batch), ("model", model), ("operator", operator)) if v is not None}
    reason = (f"label sheet ({fmt}) of {len(selected)} passports"
              + (f", {', '.join(f'{k} {v}' for k, v in asked.items())}" if asked else ", listed by dppId"))
    await guard.log_read(request, principal, action=Action.export, dpp_id=selected[0].dpp_id if len(selected) == 1
                         else None, operator_id=owners[0] if len(owners) == 1 else None,
                         detail=["uniqueProductIdentifier", f"count={len(selected)}"], reason=reason)
    name = f"{_download_name(selected, batch=batch, model=model)}.{suffix}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "private, no-store",
               "X-Content-Type-Options": "nosniff", "X-Label-Count": str(len(selected))}
    return Response(body, media_type=media_type, headers=headers)

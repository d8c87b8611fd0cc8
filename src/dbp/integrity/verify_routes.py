"""``POST /api/v1/verify`` — check an evidence bundle (``dbp.integrity.verify``) on the server.

The body is a bundle, or ``{"bundle": {…}, "trustedCheckpoint": "<signed note>", "consistencyProof": [base64…]}``.
The answer is the verification report (``200`` whether the bundle is valid or not: ``valid``, ``verdict`` and
``failedStep`` say which); a body that is not JSON is a ``400``. For a bundle of this repository (its origin) the
repository's own keys and their signing periods are the trusted ones, and the consistency proof to a given trusted
checkpoint is taken from the log when the request brings none. A bundle of another origin is checked for
consistency only: this server does not know that repository's keys, so it is never ``valid`` here (``verdict``
``unauthenticated``); verify it against its own repository.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from dbp.deps import in_read_session
from dbp.errors import BadRequest, FieldError, NotFound, UnsupportedMediaType, VerificationError
from dbp.http import json_response
from dbp.integrity import evidence, log
from dbp.integrity.checkpoint import MAX_NOTE_BYTES, parse_checkpoint, parse_note
from dbp.integrity.verify import Trusted, verify_bundle

router = APIRouter(prefix="/api/v1", tags=["integrity"])

BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}


def _request(body: bytes) -> tuple[Any, str | None, list[bytes] | None]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"expected a JSON body (an evidence bundle), got {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"expected a JSON object, got {type(data).__name__}")
    if "format" in data:
        return data, None, None
    extra = set(data) - {"bundle", "trustedCheckpoint", "consistencyProof"}
    if "bundle" not in data or extra:
        raise BadRequest("expected an evidence bundle, or {bundle, trustedCheckpoint?, consistencyProof?}",
                         details=[FieldError("$", "verify.shape", f"unexpected members {sorted(extra)}"[:200])])
    trusted = data.get("trustedCheckpoint")
    if trusted is not None and (not isinstance(trusted, str) or len(trusted) > MAX_NOTE_BYTES):
        raise BadRequest("trustedCheckpoint: expected a signed checkpoint note (text)",
                         details=[FieldError("$.trustedCheckpoint", "verify.checkpoint", "expected a string")])
    proof = data.get("consistencyProof")
    hashes: list[bytes] | None = None
    if proof is not None:
        if not isinstance(proof, list) or len(proof) > 128:
            raise BadRequest("consistencyProof: expected at most 128 base64 hashes",
                             details=[FieldError("$.consistencyProof", "verify.proof", "expected a list")])
        try:
            hashes = [base64.b64decode(str(h), validate=True) for h in proof]
        except (binascii.Error, ValueError):
            raise BadRequest("consistencyProof: expected standard base64 hashes",
                             details=[FieldError("$.consistencyProof", "verify.proof", "expected base64")]) from None
    return data["bundle"], trusted, hashes


def _own_consistency(session: Session, trusted_note: str, size: int) -> list[bytes]:
    """The consistency proof between the trusted checkpoint's size and ``size``, from this repository's log."""
    try:
        trusted_size = parse_checkpoint(parse_note(trusted_note.encode("utf-8")).text).size
    except VerificationError:
        return []  # the report's consistency step says what is wrong with it
    small, large = sorted((trusted_size, size))
    try:
        return log.consistency_proof(session, size1=small, size2=large)
    except (NotFound, BadRequest):
        return []


@router.post("/verify", summary="Verify an evidence bundle (numbered steps, a verdict each)", openapi_extra=BODY)
async def verify(request: Request) -> Response:
    if request.headers.get("content-type", "").split(";")[0].strip() not in ("application/json", ""):
        raise UnsupportedMediaType("send the evidence bundle as application/json")
    bundle_data, trusted_note, proof = _request(await request.body())
    origin = request.app.state.checkpointer.origin
    ours = isinstance(bundle_data, dict) and bundle_data.get("origin") == origin

    def trust(session: Session) -> Trusted:
        own = evidence.key_periods(session, secret_key=request.app.state.checkpointer.secret_key) if ours else ()
        keys = {k.kid: k.public_key for k in own} if ours else None
        periods = {k.kid: (k.created_at, k.retired_at) for k in own} if ours else None
        found = proof
        if ours and trusted_note is not None and found is None:
            size = bundle_data.get("treeSize")
            found = _own_consistency(session, trusted_note, size) if type(size) is int else []
        return Trusted(keys=keys, checkpoint=trusted_note, consistency_proof=found or [], periods=periods)

    trusted = await in_read_session(request, trust)
    report = verify_bundle(bundle_data, trusted=trusted)
    return json_response(report.as_json())

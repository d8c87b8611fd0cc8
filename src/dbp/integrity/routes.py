"""The transparency log over HTTP (public, read-only; nothing of a passport but its id, version numbers and
content hashes):

* ``GET /api/v1/log/checkpoint`` — the latest signed checkpoint as a C2SP signed note (``text/plain``), or with
  ``Accept: application/json`` as ``{origin, size, rootHash, note, verifierKey, createdAt}``;
* ``GET /api/v1/log/proof/inclusion?leafIndex=&treeSize=`` or ``?dppId=&version=&treeSize=``;
* ``GET /api/v1/log/proof/consistency?from=&to=``;
* ``GET /api/v1/log/leaves?start=&end=`` (at most 1,000);
* ``GET /api/v1/log/keys`` — every repository key as ``{jwk, createdAt, retiredAt}``: the period it signed in
  (what ``dbp verify --url`` trusts; a JWK Set has no such member).

and the repository's public keys (every key, current and retired: they verify checkpoints and version signatures):

* ``GET /.well-known/jwks.json`` — RFC 7517 JWK Set (OKP / Ed25519, ``kid`` as in the JWS headers);
* ``GET /.well-known/did.json`` — the ``did:web`` document, each key a ``JsonWebKey2020`` verification method
  ``did:web:<host>#<kid>``.

Hashes are standard base64. ``treeSize`` / ``to`` default to the latest checkpoint's size, whose signed note is
then part of the answer (``checkpoint``). Sizes beyond the latest checkpoint are refused (404), malformed
arguments too (400), each with the EN 18222 error object.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from dbp.deps import ReadSessionDep
from dbp.errors import BadRequest, FieldError, NotAcceptable, NotFound
from dbp.http import json_response
from dbp.integrity import evidence, log, signing
from dbp.integrity.log import b64
from dbp.integrity.serving import checkpoint_wants_json

router = APIRouter(prefix="/api/v1/log", tags=["transparency log"])
well_known = APIRouter(prefix="/.well-known", tags=["keys"])

Size = Annotated[int, Query(ge=0, le=log.MAX_INDEX)]
OptionalSize = Annotated[int | None, Query(ge=0, le=log.MAX_INDEX)]
NOTE_TYPE = "text/plain; charset=utf-8"
NO_CACHE = {"Cache-Control": "no-cache"}


def _verifier_key(request: Request) -> str:
    return str(request.app.state.checkpointer.verifier().encode())


def _wants_json(request: Request) -> bool:
    wants = checkpoint_wants_json(request.headers.get("accept", ""))
    if wants is None:
        raise NotAcceptable("the checkpoint is available as text/plain (signed note) or application/json")
    return wants


@router.get("/checkpoint", summary="The latest signed checkpoint (C2SP signed note, or JSON)")
def get_checkpoint(request: Request, session: ReadSessionDep) -> Response:
    latest = log.require_checkpoint(session)
    verifier = _verifier_key(request)
    if _wants_json(request):
        return json_response({"origin": request.app.state.checkpointer.origin, "size": latest.size,
                              "rootHash": b64(latest.root_hash), "note": latest.note, "verifierKey": verifier,
                              "createdAt": latest.created_at}, headers={**NO_CACHE, "Vary": "Accept"})
    return Response(latest.note.encode("utf-8"), media_type=NOTE_TYPE,
                    headers={**NO_CACHE, "Vary": "Accept", "X-Log-Verifier-Key": verifier})


def _tree_size(session: Any, tree_size: int | None, out: dict[str, Any]) -> int:
    """``tree_size``, or the latest checkpoint's size with its note added to ``out``."""
    if tree_size is not None:
        return tree_size
    latest = log.require_checkpoint(session)
    out["checkpoint"] = latest.note
    return latest.size


@router.get("/proof/inclusion", summary="Inclusion proof of a leaf (by leafIndex, or by dppId and version)")
def inclusion(session: ReadSessionDep, leafIndex: OptionalSize = None,
              dppId: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
              version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
              treeSize: OptionalSize = None) -> Response:
    if (leafIndex is None) == (dppId is None) or (dppId is None) != (version is None):
        raise BadRequest("name the leaf either by leafIndex or by dppId and version", details=[
            FieldError("leafIndex", "log.leafChoice", "give leafIndex, or dppId and version")])
    out: dict[str, Any] = {}
    size = _tree_size(session, treeSize, out)
    if leafIndex is not None:
        hashes = log.inclusion_proof(session, index=leafIndex, size=size)  # refuses bad arguments before a lookup
        stored = log.leaf_at(session, index=leafIndex)
    else:
        assert dppId is not None and version is not None
        stored = log.find_leaf(session, dpp_id=dppId, version=version)
        if stored.index >= size:
            raise NotFound(f"version {version} of passport {dppId} is leaf {stored.index}, not in the tree of "
                           f"{size} leaves; ask for a larger treeSize (or wait for the next checkpoint)",
                           details=[FieldError("treeSize", "log.leafNotYetIncluded", f"above {stored.index}")])
        hashes = log.inclusion_proof(session, index=stored.index, size=size)
    body = {**stored.as_json(), "treeSize": size, "hashes": [b64(h) for h in hashes], **out}
    return json_response(body, headers=NO_CACHE if treeSize is None else {})


@router.get("/proof/consistency", summary="Consistency proof between two tree sizes")
def consistency(session: ReadSessionDep, size1: Annotated[int, Query(alias="from", ge=0, le=log.MAX_INDEX)],
                to: OptionalSize = None) -> Response:
    out: dict[str, Any] = {}
    size2 = _tree_size(session, to, out)
    hashes = log.consistency_proof(session, size1=size1, size2=size2)
    return json_response({"from": size1, "to": size2, "hashes": [b64(h) for h in hashes], **out},
                         headers=NO_CACHE if to is None else {})


@router.get("/leaves", summary="Leaves [start, end) of the log (at most 1,000), within the latest checkpoint")
def get_leaves(session: ReadSessionDep, start: Size, end: Size) -> Response:
    found = log.leaves(session, start=start, end=end)
    return json_response({"start": start, "end": end, "leaves": [s.as_json() for s in found]})


@router.get("/keys", summary="The repository's keys with the period each signed in (current and retired)")
def get_keys(request: Request, session: ReadSessionDep) -> Response:
    _published(request)
    keys = evidence.key_periods(session, secret_key=_secret(request))
    return json_response({"keys": [k.as_json() for k in keys]}, headers=NO_CACHE)


def _secret(request: Request) -> str:
    """The repository's secret: only keys it made are published (``signing.authentic``)."""
    return str(request.app.state.checkpointer.secret_key)


def _published(request: Request) -> None:
    request.app.state.checkpointer.signer()  # the active key exists (made on first use) before it is listed


@well_known.get("/jwks.json", summary="The repository's public keys as a JWK Set (current and retired)")
def get_jwks(request: Request, session: ReadSessionDep) -> Response:
    _published(request)
    return json_response(signing.jwks(session, secret_key=_secret(request)), headers=NO_CACHE)


@well_known.get("/did.json", summary="The repository's did:web DID document (its keys, JsonWebKey2020)")
def get_did(request: Request, session: ReadSessionDep) -> Response:
    _published(request)
    doc = signing.did_document(session, base_url=request.app.state.settings.base_url, secret_key=_secret(request))
    return json_response(doc, headers=NO_CACHE)

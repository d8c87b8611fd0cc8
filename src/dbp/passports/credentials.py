"""Verifiable credentials over HTTP (``dbp.integrity.credentials`` does the JOSE and VC work):

* ``GET /api/v1/dpps/{dppId}/credential[?version=n]`` — the caller's view of the current version (or of version
  n) as a VC 2.0 secured with VC-JOSE, ``application/vc+jwt``, issued by this repository's ``did:web`` with its
  active key. The view is decided and the read logged exactly as ``GET /api/v1/dpps/{dppId}`` (or
  ``/versions/{n}``) does it (``guard.viewed``): the public gets the public view in the subject, a recycler the
  groups its purpose allows; whatever refuses or fails there refuses here the same way. A version whose stored
  bytes fail their hash or signature is refused (500 ServerErrorIntegrity), never signed afresh.
* ``POST /api/v1/credentials/verify`` (body: the ``vc+jwt`` token) — the numbered checks and their verdicts, 200
  whatever they find (``verified`` true or false). This repository's own DID is resolved from its database; other
  issuers over HTTPS (``DidWebResolver``), for authenticated callers only (an anonymous request must not make this
  server fetch from the network).
* ``POST /api/v1/dpps/{dppId}/attestations[?accessGroup=]`` (body: a supplier's ``vc+jwt``) — attach a supplier
  attestation, verified on upload (all eight checks, the issuer resolved over HTTPS, and the subject rule of
  ``dbp.passports.attestations``); refused with 422 and the failed check otherwise, nothing stored. Only the
  passport's responsible operator and the organisations it authorised in writing may attach (the passports' own
  write-rights check, ``guard.write_refusal``); refusals are logged like refused writes, an attachment is logged
  in its own transaction (action ``attachAttestation``). The same token again answers 200 with the stored one.
  ``accessGroup`` (default legitimateInterestAndAuthorities) is who may read it.
* ``GET /api/v1/dpps/{dppId}/attestations`` — the attestations whose access group the caller's read decision
  includes (the public: those attached as ``public``), each with its token, logged as a read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from dbp.access.deps import PrincipalDep
from dbp.access.principal import Principal
from dbp.access.secrets import DEVELOPMENT_SECRET
from dbp.audit import service as audit
from dbp.audit.service import Action
from dbp.deps import in_read_session, in_transaction
from dbp.errors import (
    FieldError,
    Forbidden,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
    VerificationError,
)
from dbp.http import correlation_id, json_response
from dbp.integrity import credentials, signing
from dbp.integrity.canonical import sha256_hex
from dbp.passports import attestations, guard, service
from dbp.passports.attributes import AccessGroup
from dbp.passports.models import Passport
from dbp.passports.service import StoredVersion

router = APIRouter(prefix="/api/v1", tags=["verifiable credentials"])

# access-log action of an attachment (a write); not (yet) a member of audit's Action, whose values are its column's
ATTACH = Action.attach_attestation
DppIdPath = Annotated[str, Path(max_length=256, description="passport identifier, e.g. urn:uuid:…")]
VC_SCHEMA = {"type": "string", "description": "compact JWS: header.payload.signature"}
VC_BODY: dict[str, Any] = {"requestBody": {"required": True,
                                           "content": {credentials.MEDIA_TYPE: {"schema": VC_SCHEMA}}}}
VC_RESPONSE: dict[int | str, dict[str, Any]] = {"200": {"content": {credentials.MEDIA_TYPE: {"schema": VC_SCHEMA}}}}


def _accept_vc(request: Request) -> None:
    accept = request.headers.get("accept", "")
    if accept and not any(t in accept for t in (credentials.MEDIA_TYPE, "application/*", "*/*")):
        raise NotAcceptable(f"the credential is available as {credentials.MEDIA_TYPE}")


async def _token(request: Request, *, max_bytes: int) -> str:
    """The request body as a compact token (content type application/vc+jwt, application/jwt or text/plain)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in (credentials.MEDIA_TYPE, "application/jwt", "text/plain", ""):
        raise UnsupportedMediaType(f"content type {ctype!r} is not accepted; send {credentials.MEDIA_TYPE}")
    body = await request.body()
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"a credential of at most {max_bytes} bytes is accepted here, got {len(body)}")
    return body.decode("latin-1").strip()


def _version_signer(request: Request) -> signing.VersionSigner:
    """The signer ``create_app`` attached to the write sessions (the key that signs versions)."""
    signer = (request.app.state.sessionmaker.kw.get("info") or {}).get(signing.SIGNER)
    if isinstance(signer, signing.VersionSigner):
        return signer
    settings = request.app.state.settings
    return signing.VersionSigner(secret_key=settings.secret_key or DEVELOPMENT_SECRET)


def _signing_key(request: Request, v: StoredVersion) -> signing.VersionKey:
    """The repository's active key (worker thread) — only once the stored full version ``v`` passed its own
    integrity check (bytes → sha256 column → the version's JWS by a published key): the repository key must never
    vouch afresh for bytes altered underneath it. ``VerificationError`` (500, ServerErrorIntegrity) if not."""
    request.app.state.checkpointer.signer()  # the active key exists (made on first use), as for jwks.json
    signer = _version_signer(request)
    with request.app.state.read_sessionmaker() as session:
        try:
            actual = sha256_hex(v.body)
            if actual != v.sha256:
                raise VerificationError(f"passport {v.dpp_id} version {v.version}: expected stored bytes hashing to "
                                        f"{v.sha256}, got {actual}; no credential is issued for altered data")
            if not v.signature:
                raise VerificationError(f"passport {v.dpp_id} version {v.version}: expected a signed version, got "
                                        "none; no credential is issued for data whose origin is not proven")
            signing.verify_version(v.signature, v.body,
                                   {row.kid: bytes(row.public_key) for row in signing.public_keys(session)})
            return signer.key(session)
        finally:
            session.rollback()


def resolver(request: Request, principal: Principal) -> credentials.Resolve:
    """This repository's DID from its database; other did:web issuers over HTTPS (not for the anonymous)."""
    settings = request.app.state.settings
    own = signing.did_of(settings.base_url)
    remote = credentials.DidWebResolver(http_hosts=settings.did_web_http_hosts)

    def resolve(did: str) -> Mapping[str, Any]:
        if did == own:
            with request.app.state.read_sessionmaker() as session:
                try:
                    return signing.did_document(session, base_url=settings.base_url)
                finally:
                    session.rollback()
        if principal.is_anonymous:
            raise VerificationError(f"DID document: expected this repository's DID {own} (anonymous callers verify "
                                    f"only its credentials; authenticate to resolve other issuers), got {did}")
        return remote(did)

    return resolve


@router.get("/dpps/{dppId}/credential", responses=VC_RESPONSE,
            summary="The caller's view of a passport version as a verifiable credential (VC 2.0, application/vc+jwt)")
async def get_credential(request: Request, dppId: DppIdPath, principal: PrincipalDep,
                         version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Response:
    _accept_vc(request)
    if version is None:
        v = await request.app.state.reader.by_id(dppId)
        if v is None:
            raise NotFound(f"no passport {dppId}")
        action = Action.read
    else:
        v = await in_read_session(request, lambda s: service.read_version(s, dpp_id=dppId, version=version))
        action = Action.read_version
    view, decision = await guard.viewed(request, principal, v, action=action)
    groups = sorted(g.value for g in decision.groups)
    base_url = request.app.state.settings.base_url

    def issue() -> str:
        key = _signing_key(request, v)
        did = signing.did_of(base_url)
        credential = credentials.passport_credential(
            base_url=base_url, issuer=did, dpp_id=v.dpp_id, version=v.version, created_at=v.created_at,
            version_sha256=v.sha256, view=view.body, access_groups=groups)
        return credentials.sign_credential(credential, kid_url=f"{did}#{key.kid}", private_key=key.private_key)

    token = await run_in_threadpool(issue)
    return Response(token, media_type=credentials.MEDIA_TYPE, headers={
        "X-DPP-Access": ", ".join(groups), "X-DPP-Version": str(v.version), "Cache-Control": "no-cache"})


@router.post("/credentials/verify", openapi_extra=VC_BODY,
             summary="Verify a verifiable credential (application/vc+jwt): numbered checks with verdicts")
async def verify(request: Request, principal: PrincipalDep) -> Response:
    token = await _token(request, max_bytes=credentials.MAX_TOKEN_BYTES)
    report = await run_in_threadpool(credentials.examine, token, resolver(request, principal))
    return json_response({**report.as_json(), "credential": report.credential if report.ok else None})


def _refused(report: credentials.Report) -> ValidationFailed:
    failure = report.failure
    assert failure is not None
    return ValidationFailed(f"the attestation does not verify: step {failure.step} ({failure.name}): "
                            f"{failure.detail}", details=[
                                FieldError(f"$.checks[{c.step - 1}]", f"credential.{c.name.replace(' ', '-')}",
                                           c.detail) for c in report.checks if c.verdict == "fail"])


class _Refused(Forbidden):
    def __init__(self, reason: str, operator_id: str | None) -> None:
        super().__init__(reason)
        self.operator_id = operator_id


def _passport(s: Session, dpp_id: str) -> tuple[str, str | None]:
    row = s.execute(select(Passport.operator_id, Passport.product_id).where(Passport.dpp_id == dpp_id)).one_or_none()
    if row is None:
        raise NotFound(f"no passport {dpp_id}")
    return row[0], row[1]


@router.post("/dpps/{dppId}/attestations", status_code=201, openapi_extra=VC_BODY,
             summary="Attach a supplier attestation (a verifiable credential, verified on upload)")
async def attach_attestation(request: Request, dppId: DppIdPath, principal: PrincipalDep,
                             accessGroup: AccessGroup = AccessGroup.legitimate_interest_and_authorities) -> Response:
    token = await _token(request, max_bytes=attestations.MAX_ATTESTATION_BYTES)
    if principal.is_anonymous:
        await guard.log_read(request, principal, action=ATTACH, dpp_id=dppId, operator_id=None, detail=[],
                             outcome="denied", reason="no credentials")
        raise Unauthorized("attaching attestations needs credentials (POST /api/v1/auth/token, or an API key)")

    def rights(s: Session) -> tuple[str, str | None, str | None]:
        operator_id, product_id = _passport(s, dppId)
        return operator_id, product_id, guard.write_refusal(s, principal, action=ATTACH, operator_id=operator_id,
                                                            dpp_id=dppId)

    # rights first: nobody without them makes this server fetch a DID document
    operator_id, product_id, refusal = await in_read_session(request, rights)
    if refusal:
        raise await guard.denied(request, principal, action=ATTACH, dpp_id=dppId, operator_id=operator_id,
                                 reason=refusal)
    report = await run_in_threadpool(credentials.examine, token, resolver(request, principal),
                                     max_bytes=attestations.MAX_ATTESTATION_BYTES)
    if not report.ok:
        raise _refused(report)
    assert report.header is not None and report.credential is not None and report.issuer and report.kid
    verified = credentials.Verified(report.header, report.credential, report.issuer, report.kid, report)
    names = attestations.passport_names(dpp_id=dppId, product_id=product_id,
                                        base_url=request.app.state.settings.base_url)
    attestations.check_subject(verified, names)

    def work(s: Session) -> tuple[dict[str, Any], bool]:
        operator, _ = _passport(s, dppId)  # the rights again, in the transaction that stores
        refused = guard.write_refusal(s, principal, action=ATTACH, operator_id=operator, dpp_id=dppId)
        if refused:
            raise _Refused(refused, operator)
        out, new = attestations.attach(s, dpp_id=dppId, token=token, verified=verified,
                                       access_group=accessGroup.value, principal_subject=principal.subject,
                                       principal_org=principal.org_id)
        if new:
            audit.record(s, audit.AccessRecord.of(
                principal, action=ATTACH, dpp_id=dppId, passport_operator_id=operator,
                detail=[verified.issuer, accessGroup.value], outcome="granted",
                reason=f"attestation {out['id']} by {verified.issuer}", request_id=correlation_id(request)))
        return out, new

    try:
        out, new = await in_transaction(request, work)
    except _Refused as exc:
        raise await guard.denied(request, principal, action=ATTACH, dpp_id=dppId, operator_id=exc.operator_id,
                                 reason=exc.message) from None
    location = f"{request.app.state.settings.base_url}/api/v1/dpps/{quote(dppId, safe=':')}/attestations"
    return json_response(out, status_code=201 if new else 200, headers={"Location": location})


@router.get("/dpps/{dppId}/attestations", summary="The supplier attestations of a passport the caller may read")
async def list_attestations(request: Request, dppId: DppIdPath, principal: PrincipalDep) -> Response:
    operator_id = await in_read_session(request, lambda s: service.operator_of(s, dpp_id=dppId))
    decision = await guard.decide(request, principal, operator_id, dppId)
    groups = frozenset(g.value for g in decision.groups)
    items = await in_read_session(request, lambda s: attestations.list_for(s, dpp_id=dppId, groups=groups))
    await guard.log_read(request, principal, action=Action.read, dpp_id=dppId, operator_id=operator_id,
                         detail=["attestations", *sorted(groups)],
                         reason=f"{len(items)} attestations; {decision.reason}")
    return json_response({"dppId": dppId, "count": len(items), "attestations": items})

"""The registry's logic (IR 2026/1778 Art. 8-10): registrations, their versioned events and signed proofs, lookups,
routing changes and the node directory. Keyword-only functions over a session; they flush, the caller commits.
Network reads (the passport at the endpoint) happen before, in ``dbp.registry.flow``; what they found arrives
here as ``PassportFacts``.

Guarantees: every change of a registration raises its revision by one and appends one ``registration_events`` row
(the whole registration after the change, who, when, the proof issued) and one access-log record, in the caller's
transaction; a product key is held by at most one registration, as its product identifier or as an alias
(checked here; the unique index on ``registrations.product_key`` settles a race between two new registrations).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from dbp import cursors
from dbp.access import service as access
from dbp.access.principal import Principal, Role
from dbp.audit import service as audit
from dbp.clock import timestamp
from dbp.errors import (
    BadRequest,
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
    VerificationError,
)
from dbp.identifiers import IdentifierError, parse_identifier, product_key
from dbp.integrity import signing
from dbp.integrity.canonical import canonical_bytes
from dbp.registry import proofs
from dbp.registry.fetch import Fetched
from dbp.registry.models import Registration, RegistrationAlias, RegistrationEvent, RegistryNode
from dbp.registry.schemas import NodeCreate, NodeKind, NodePatch, NodeStatus, RegisterRequest, RoutingRequest

ID_PREFIX = "urn:dbp:registration:"
WRITER_ROLES = frozenset({Role.economic_operator, Role.service_provider})
EXPORT_READERS = frozenset({Role.commission, Role.market_surveillance})
STATUSES = ("active", "superseded", "retired")
MAX_PREDECESSORS = 50


# ------------------------------------------------------------------------------------------- who may do what
def may_speak_for(session: Session, principal: Principal, operator_id: str) -> bool:
    """An economic operator with this operator id, or a service provider it authorised in writing (never a device
    key, an authority or another role, whatever organisation they belong to)."""
    if principal.role not in WRITER_ROLES:
        return False
    if principal.operator_id == operator_id:
        return True
    return principal.org_id is not None and operator_id in access.authorised_operator_ids(
        session, agent_org_id=principal.org_id)


def authorise_write(session: Session, principal: Principal, operator_id: str) -> None:
    """Registering or updating a registration of ``operator_id``: Unauthorized (anonymous) or Forbidden (why)."""
    if principal.is_anonymous:
        raise Unauthorized("registering a passport needs credentials (POST /api/v1/auth/token)")
    if may_speak_for(session, principal, operator_id):
        return
    role = principal.role.value if principal.role else "this caller"
    if principal.role not in WRITER_ROLES:
        raise Forbidden(f"{role} may not register passports; only the economic operator or a service provider it "
                        "authorised may")
    raise Forbidden(f"{role} {principal.operator_id or principal.subject} does not speak for operator {operator_id} "
                    "(neither that operator nor authorised by it)")


def authorise_routing(session: Session, principal: Principal, *, current_operator: str, new_operator: str | None
                      ) -> None:
    """Who may ask for a routing change: the Commission always; a custody move (``new_operator``) the new or the
    current operator (or a service provider one of them authorised) — and then only with the evidence
    :func:`check_custody_evidence` requires; any other change the current operator."""
    if principal.is_anonymous:
        raise Unauthorized("changing a registration needs credentials (POST /api/v1/auth/token)")
    if principal.role is Role.commission:
        return
    if new_operator is not None and new_operator != current_operator:
        if may_speak_for(session, principal, new_operator) or may_speak_for(session, principal, current_operator):
            return
        raise Forbidden(f"a custody move to {new_operator} is asked for by that operator, the current operator "
                        f"{current_operator} (or the Commission)")
    authorise_write(session, principal, current_operator)


def is_custody(current_operator: str, new_operator: str | None) -> bool:
    return new_operator is not None and new_operator != current_operator


def check_custody_evidence(evidence: PassportFacts | None, *, endpoint: str, dpp_id: str, new_operator: str) -> None:
    """Art. 77 responsibility transfer: a custody move by anyone but the Commission needs the passport read at the
    CURRENTLY registered endpoint (the repository holding custody) to name the new operator already — the old
    repository recorded the transfer. ``Forbidden`` with the reason otherwise; an unreadable current endpoint
    (``evidence`` None: the operator is gone) leaves the move to the Commission."""
    from dbp.registry.fetch import passport_url

    if evidence is None:
        raise Forbidden(f"a custody move to {new_operator} needs the passport at the registered endpoint {endpoint} "
                        "to name that operator, and it could not be read there; only the Commission moves custody "
                        "of a registration whose repository is gone")
    if evidence.url != passport_url(endpoint, dpp_id):
        raise Forbidden(f"a custody move to {new_operator}: expected the passport read at the registered endpoint "
                        f"{endpoint}, got one read at {evidence.url}")
    named = evidence.doc.get("economicOperatorId")
    if named != new_operator:
        raise Forbidden(f"a custody move to {new_operator}: expected the passport at the registered endpoint "
                        f"{endpoint} (the repository holding custody) to name {new_operator} as its economic "
                        f"operator (the responsibility transfer recorded there), got {named!r:.200}")


def authorise_commission(principal: Principal, what: str) -> None:
    if principal.is_anonymous:
        raise Unauthorized(f"{what} needs credentials (POST /api/v1/auth/token)")
    if principal.role is not Role.commission:
        raise Forbidden(f"{what} is for the Commission (role commission), not "
                        f"{principal.role.value if principal.role else 'this caller'}")


def authorise_operator_read(session: Session, principal: Principal, operator_id: str | None, what: str) -> None:
    """Reading registrations of many passports (by operator, by status, the export): the Commission and market
    surveillance anything, an operator (or its service provider) its own (``operator_id`` must name it)."""
    if principal.is_anonymous:
        raise Unauthorized(f"{what} needs credentials (POST /api/v1/auth/token)")
    if principal.role in EXPORT_READERS:
        return
    if operator_id is None:
        raise Forbidden(f"{what} of every operator is for the Commission and market surveillance; an operator names "
                        "its own operatorId")
    if not may_speak_for(session, principal, operator_id):
        raise Forbidden(f"{principal.role.value if principal.role else 'this caller'} does not speak for operator "
                        f"{operator_id}")


# ------------------------------------------------------------------------------------------- what was read
@dataclass(frozen=True)
class PassportFacts:
    """The passport as the registry read it: the document, its version and the SHA-256 of the exact bytes."""

    url: str
    doc: dict[str, Any]
    version: int
    version_hash: str
    etag_verified: bool


def _unreadable(url: str, rule: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"the passport at {url} is not readable by the registry: {message}",
                            details=[FieldError("$.endpoint", rule, message)])


def read_facts(fetched: Fetched) -> PassportFacts:
    """Checks what the repository answered: HTTP 200, a JSON object, an ``X-DPP-Version``, and an ``ETag`` (when
    sent) equal to the SHA-256 of the bytes served. ``ValidationFailed`` (422) saying what was expected."""
    url = fetched.url
    if fetched.status != 200:
        raise _unreadable(url, "registry.reachable", f"expected HTTP 200, got {fetched.status}")
    if fetched.content_type.split(";")[0].strip().lower() != "application/json":
        raise _unreadable(url, "registry.machineReadable",
                          f"expected application/json, got {fetched.content_type[:80]!r}")
    try:
        doc = orjson.loads(fetched.body)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        raise _unreadable(url, "registry.machineReadable", "expected a passport as a JSON object, got other bytes")
    version = fetched.version or ""
    if not version.isascii() or not version.isdigit() or not 1 <= int(version) <= 2**31 - 1:
        raise _unreadable(url, "registry.version", f"expected an X-DPP-Version header (a version number), got "
                                                   f"{fetched.version!r:.40}")
    digest = hashlib.sha256(fetched.body).hexdigest()
    etag_verified = False
    if fetched.etag is not None:
        tag = fetched.etag.strip()
        tag = tag[2:] if tag.startswith("W/") else tag
        if tag.strip('"') != digest:
            raise _unreadable(url, "registry.etag", f"expected the ETag to be the SHA-256 of the bytes served "
                                                    f"({digest}), got {fetched.etag[:80]!r}")
        etag_verified = True
    return PassportFacts(url, doc, int(version), digest, etag_verified)


def key_of(text: str, where: str) -> str:
    """``identifiers.product_key``; a malformed identifier is a 400 naming the broken rule."""
    try:
        return product_key(text)
    except IdentifierError as exc:
        raise BadRequest(f"{where} is not a valid product identifier: {exc.message}",
                         details=[FieldError(where, exc.rule, exc.details[0].message if exc.details else exc.message)]
                         ) from None


def disagreements(*, product_id: str, dpp_id: str, operator_id: str, facility_id: str | None, granularity: str,
                  doc: dict[str, Any]) -> list[FieldError]:
    """Each registration field the passport contradicts: "expected X (registration), got Y (passport)"."""
    out: list[FieldError] = []

    def differ(name: str, expected: object, got: object) -> None:
        out.append(FieldError(f"$.{name}", "registry.mismatch",
                              f"expected {expected!r} (registration), got {got!r} (passport)"[:600]))

    got = doc.get("uniqueProductIdentifier")
    try:
        same = isinstance(got, str) and product_key(got) == product_key(product_id)
    except IdentifierError:
        same = False
    if not same:
        differ("uniqueProductIdentifier", product_id, got)
    if doc.get("dppId") != dpp_id:
        differ("dppId", dpp_id, doc.get("dppId"))
    if doc.get("economicOperatorId") != operator_id:
        differ("economicOperatorId", operator_id, doc.get("economicOperatorId"))
    if doc.get("facilityId") is not None and doc.get("facilityId") != facility_id:
        differ("facilityId", facility_id, doc.get("facilityId"))
    if (doc.get("granularity") or "item") != granularity:
        differ("granularity", granularity, doc.get("granularity") or "item")
    return out


def check_agreement(url: str, errors: list[FieldError]) -> None:
    if errors:
        raise ValidationFailed(f"the registration data disagree with the passport at {url}", details=errors)


def predecessors_of(facts: PassportFacts) -> list[str]:
    value = facts.doc.get("predecessorDppIds")
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str) and len(v) <= 256][:MAX_PREDECESSORS]


def names_successor(doc: dict[str, Any], dpp_id: str) -> bool:
    """Does a predecessor passport confirm ``dpp_id`` as its successor (``successorDppIds``)?"""
    value = doc.get("successorDppIds")
    return isinstance(value, list) and dpp_id in value


def successors_of(facts: PassportFacts) -> list[str]:
    value = facts.doc.get("successorDppIds")
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str) and len(v) <= 256][:MAX_PREDECESSORS]


def names_predecessor(doc: dict[str, Any], dpp_id: str) -> bool:
    """Does a successor passport confirm ``dpp_id`` as its predecessor (``predecessorDppIds``)?"""
    value = doc.get("predecessorDppIds")
    return isinstance(value, list) and dpp_id in value


def listed_alias_keys(doc: dict[str, Any]) -> set[str]:
    """The product keys of the passport's ``productIdentifierAliases`` (malformed entries ignored)."""
    value = doc.get("productIdentifierAliases")
    out: set[str] = set()
    if isinstance(value, list):
        for text in value[:MAX_PREDECESSORS]:
            if isinstance(text, str):
                try:
                    out.add(product_key(text))
                except IdentifierError:
                    continue
    return out


def unlisted_aliases(aliases: Sequence[str], doc: dict[str, Any]) -> list[FieldError]:
    """Each registration alias the passport does not list in ``productIdentifierAliases`` (compared by
    ``identifiers.product_key``): an alias is evidence-backed or refused, so nobody registers another's identifier
    as an alias of their own battery (identifier squatting).

    What is not verifiable here: that the registrant owns the GS1 company prefix (or the IEC 61406 / ISO 15459
    issuing agency code) of an alias or of the product identifier itself — the registry has no authoritative
    source for prefix ownership; the passport's own statement, read at its endpoint, is the evidence."""
    listed = listed_alias_keys(doc)
    out = []
    for i, text in enumerate(aliases):
        try:
            key = product_key(text)
        except IdentifierError:
            continue  # refused with its rule by _alias_rows
        if key not in listed:
            out.append(FieldError(f"$.aliases[{i}]", "registry.aliasUnlisted",
                                  f"expected it among the passport's productIdentifierAliases, got {text!r:.200}"))
    return out


# ------------------------------------------------------------------------------------------- views
def _aliases(session: Session, registration_id: str) -> list[RegistrationAlias]:
    return list(session.scalars(select(RegistrationAlias).where(RegistrationAlias.registration_id == registration_id)
                                .order_by(RegistrationAlias.key)))


def registration_json(reg: Registration, aliases: Sequence[RegistrationAlias]) -> dict[str, Any]:
    return {
        "registrationId": reg.registration_id, "revision": reg.revision, "status": reg.status,
        "uniqueProductIdentifier": reg.product_id, "productKey": reg.product_key, "dppId": reg.dpp_id,
        "economicOperatorId": reg.operator_id, "facilityId": reg.facility_id, "commodityCode": reg.commodity_code,
        "granularity": reg.granularity, "endpoint": reg.endpoint, "backupProvider": reg.backup_node_id,
        "dppVersion": reg.dpp_version, "versionHash": reg.version_hash,
        "predecessorDppIds": orjson.loads(reg.predecessor_dpp_ids) if reg.predecessor_dpp_ids else [],
        "successorRegistrationId": reg.successor_registration_id,
        "aliases": [{"identifier": a.written, "scheme": a.scheme, "key": a.key} for a in aliases],
        "registeredAt": reg.registered_at, "updatedAt": reg.updated_at,
    }


def get(session: Session, *, registration_id: str) -> Registration:
    reg = session.get(Registration, registration_id)
    if reg is None:
        raise NotFound(f"no registration {registration_id}")
    return reg


def get_json(session: Session, *, registration_id: str) -> dict[str, Any]:
    reg = get(session, registration_id=registration_id)
    return registration_json(reg, _aliases(session, registration_id))


def by_product(session: Session, *, product_id: str) -> Registration | None:
    """The registration holding the product identifier (written in any form of its scheme), as its identifier or
    as an alias; None when there is none. 400 for a malformed identifier."""
    key = key_of(product_id, "productId")
    reg = session.scalar(select(Registration).where(Registration.product_key == key))
    if reg is not None:
        return reg
    held = session.scalar(select(RegistrationAlias.registration_id).where(RegistrationAlias.key == key))
    return None if held is None else session.get(Registration, held)


# ------------------------------------------------------------------------------------------- cursors
_CURSOR = re.compile(r"[!-~]{1,256}")


def encode_cursor(last: str) -> str:
    return cursors.encode(last)


def decode_cursor(cursor: str | None) -> str | None:
    return cursors.decode(cursor, key=_CURSOR, issuer="this registry")


def find(session: Session, *, product_id: str | None = None, operator_id: str | None = None,
         status: str | None = None, cursor: str | None = None, limit: int = 100) -> dict[str, Any]:
    """Registrations matching every filter given, by registrationId, keyset-paginated."""
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}",
                         details=[FieldError("status", "registry.status", f"got {status!r:.40}")])
    stmt = select(Registration)
    if product_id is not None:
        reg = by_product(session, product_id=product_id)
        if reg is None:
            return {"items": [], "nextCursor": None}
        stmt = stmt.where(Registration.registration_id == reg.registration_id)
    if operator_id is not None:
        stmt = stmt.where(Registration.operator_id == operator_id)
    if status is not None:
        stmt = stmt.where(Registration.status == status)
    after = decode_cursor(cursor)
    if after is not None:
        stmt = stmt.where(Registration.registration_id > after)
    rows = list(session.scalars(stmt.order_by(Registration.registration_id).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].registration_id) if len(rows) > limit else None
    rows = rows[:limit]
    aliases = _aliases_of(session, [r.registration_id for r in rows])
    return {"items": [registration_json(r, aliases.get(r.registration_id, [])) for r in rows],
            "nextCursor": next_cursor}


def _aliases_of(session: Session, ids: list[str]) -> dict[str, list[RegistrationAlias]]:
    out: dict[str, list[RegistrationAlias]] = {}
    if ids:
        for a in session.scalars(select(RegistrationAlias).where(RegistrationAlias.registration_id.in_(ids))
                                 .order_by(RegistrationAlias.key)):
            out.setdefault(a.registration_id, []).append(a)
    return out


def events(session: Session, *, registration_id: str) -> list[dict[str, Any]]:
    """The registration's history, oldest first: each revision's data, who changed it, when, and its proof."""
    get(session, registration_id=registration_id)
    rows = session.scalars(select(RegistrationEvent).where(RegistrationEvent.registration_id == registration_id)
                           .order_by(RegistrationEvent.id))
    return [{"revision": e.revision, "kind": e.kind, "at": e.at, "actor": e.actor, "actorOrg": e.actor_org,
             "registration": orjson.loads(e.data), "proof": e.proof} for e in rows]


def latest_proof(session: Session, *, registration_id: str) -> dict[str, Any]:
    reg = get(session, registration_id=registration_id)
    event = session.scalar(select(RegistrationEvent).where(
        RegistrationEvent.registration_id == registration_id, RegistrationEvent.proof.is_not(None))
        .order_by(RegistrationEvent.id.desc()).limit(1))
    if event is None or event.proof is None:  # every registration has one; a hand-edited table may not
        raise NotFound(f"no proof of registration {registration_id}")
    return {"registrationId": reg.registration_id, "revision": event.revision, "proof": event.proof,
            "current": event.revision == reg.revision}


# ------------------------------------------------------------------------------------------- writing
@dataclass
class Issued:
    """The outcome of a registration write: the registration now, the proof of its latest signed revision, and
    whether this call created it (201) or changed it."""

    registration: dict[str, Any]
    proof: str
    created: bool = False
    changed: bool = True
    notes: list[str] = field(default_factory=list)


def _check_backup(session: Session, node_id: str | None) -> None:
    """IR 2026/1778 Art. 8(7)(e): the backup named is a known, active backup provider."""
    if node_id is None:
        return
    node = session.get(RegistryNode, node_id)
    if node is None or node.kind != NodeKind.backup.value or node.status != NodeStatus.active.value:
        got = "unknown" if node is None else f"a {node.kind} node, {node.status}"
        raise BadRequest(f"backupProvider {node_id} is not an active backup node of the registry's directory",
                         details=[FieldError("$.backupProvider", "registry.backupProvider",
                                             f"expected an active backup node, got {got}")])


def _holder(session: Session, key: str) -> tuple[str, str] | None:
    """(registration id, how it is written there) of the registration holding ``key``, if any."""
    row = session.execute(select(Registration.registration_id, Registration.product_id)
                          .where(Registration.product_key == key)).first()
    if row is not None:
        return row[0], row[1]
    alias = session.execute(select(RegistrationAlias.registration_id, RegistrationAlias.written)
                            .where(RegistrationAlias.key == key)).first()
    return None if alias is None else (alias[0], alias[1])


def _alias_rows(session: Session, *, registration_id: str, main_key: str, written: Iterable[str]
                ) -> list[RegistrationAlias]:
    out: dict[str, RegistrationAlias] = {}
    for i, text in enumerate(written):
        where = f"$.aliases[{i}]"
        key = key_of(text, where)
        if key == main_key:
            raise BadRequest(f"alias {text} is the product identifier itself",
                             details=[FieldError(where, "registry.alias", "expected another identifier")])
        holder = _holder(session, key)
        if holder is not None and holder[0] != registration_id:
            raise Conflict(f"identifier {text} is already registered by {holder[0]} (as {holder[1]})",
                           details=[FieldError(where, "registry.aliasTaken", f"held by {holder[0]}")])
        out[key] = RegistrationAlias(key=key, registration_id=registration_id, written=text,
                                     scheme=str(parse_identifier(text).scheme) if not key.startswith("urn:")
                                     else "urn")
    return list(out.values())


def _sign(session: Session, reg: Registration, facts_etag: bool, *, registry: str, at: str) -> str:
    key = signing.signer_of(session).key(session)
    payload = {
        "type": proofs.PROOF_TYPE, "registrationId": reg.registration_id, "revision": reg.revision,
        "uniqueProductIdentifier": reg.product_id, "dppId": reg.dpp_id, "economicOperatorId": reg.operator_id,
        "facilityId": reg.facility_id, "commodityCode": reg.commodity_code, "granularity": reg.granularity,
        "dppVersion": reg.dpp_version, "versionHash": reg.version_hash, "etagVerified": facts_etag,
        "registeredAt": reg.registered_at, "issuedAt": at, "registry": registry,
    }
    return proofs.sign_proof(payload, kid=key.kid, private_key=key.private_key)


def _log(session: Session, reg: Registration, *, kind: str, principal: Principal, at: str, proof: str | None,
         request_id: str) -> dict[str, Any]:
    data = registration_json(reg, _aliases(session, reg.registration_id))
    session.add(RegistrationEvent(registration_id=reg.registration_id, revision=reg.revision, kind=kind, at=at,
                                  actor=principal.subject[:256], actor_org=principal.org_id,
                                  data=canonical_bytes(data).decode(), proof=proof))
    audit.record(session, audit.AccessRecord.of(
        principal, action=f"registry.{kind}", dpp_id=reg.dpp_id, passport_operator_id=reg.operator_id,
        detail=[reg.registration_id, f"revision {reg.revision}"], outcome="granted", request_id=request_id, at=at))
    return data


def _flush(session: Session, what: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"{what} was registered concurrently; retry") from None
    except StaleDataError:  # the optimistic UPDATE … WHERE revision = :old found another revision
        raise Conflict(f"{what} changed concurrently; retry") from None


def _expect_revision(reg: Registration, expected: int | None) -> None:
    """The registration is still at the revision the caller decided on (its network reads took place before this
    transaction): 409 otherwise."""
    if expected is not None and reg.revision != expected:
        raise Conflict(f"registration {reg.registration_id} changed concurrently (revision {expected} read, now "
                       f"{reg.revision}); retry", details=[FieldError("$", "registry.revision",
                                                                     f"expected revision {expected}, got "
                                                                     f"{reg.revision}")])


def register(session: Session, *, principal: Principal, req: RegisterRequest, endpoint: str, facts: PassportFacts,
             confirmed_predecessors: frozenset[str] = frozenset(), confirmed_successors: frozenset[str] = frozenset(),
             registry: str, request_id: str) -> Issued:
    """PostNewDPPToRegistry: a new registration (revision 1), or a new revision of the operator's registration of
    the same product (409 for another operator's or another passport's). Registration data identical to the
    current revision change nothing: the current proof is returned again (a retried call is harmless).

    Another operator's registration is taken over here only as a custody update after a responsibility transfer
    inside the same repository: the request's endpoint is the registered one and the passport read there names
    the requesting operator (event ``custody``); a move to another endpoint goes through the routing change.
    Aliases must be listed in the passport's ``productIdentifierAliases`` (422 otherwise); predecessors are
    stored only when confirmed (their own passport names this one as successor)."""
    authorise_write(session, principal, req.economicOperatorId)
    if req.aliases:
        errors = unlisted_aliases(req.aliases, facts.doc)
        if errors:
            raise ValidationFailed(f"aliases not listed by the passport at {facts.url}", details=errors)
    main_key = key_of(req.uniqueProductIdentifier, "$.uniqueProductIdentifier")
    _check_backup(session, req.backupProvider)
    at = timestamp()
    reg = session.scalar(select(Registration).where(Registration.product_key == main_key))
    if reg is None:
        holder = _holder(session, main_key)
        if holder is not None:
            raise Conflict(f"product {req.uniqueProductIdentifier} is already registered by {holder[0]} (as "
                           f"{holder[1]})", details=[FieldError("$.uniqueProductIdentifier", "registry.taken",
                                                                f"held by {holder[0]}")])
        other = session.scalar(select(Registration.registration_id).where(Registration.dpp_id == req.dppId))
        if other is not None:
            raise Conflict(f"passport {req.dppId} is already registered as {other} for another product",
                           details=[FieldError("$.dppId", "registry.dppTaken", f"held by {other}")])
        reg = Registration(registration_id=f"{ID_PREFIX}{uuid.uuid4()}", product_key=main_key, revision=1,
                           registered_at=at, status="active", registrant=principal.subject[:256],
                           registrant_org=principal.org_id)
        created = True
        custody = False
    else:
        custody = reg.operator_id != req.economicOperatorId
        from dbp.registry.fetch import passport_url

        if custody and not (endpoint == reg.endpoint and facts.url == passport_url(reg.endpoint, reg.dpp_id)
                            and facts.doc.get("economicOperatorId") == req.economicOperatorId):
            raise Conflict(f"product {req.uniqueProductIdentifier} is registered ({reg.registration_id}) by operator "
                           f"{reg.operator_id}; a custody move goes through POST /api/v1/registry/registrations/"
                           "{registrationId}/routing", details=[FieldError("$.economicOperatorId", "registry.operator",
                                                                           f"registered by {reg.operator_id}")])
        if reg.dpp_id != req.dppId:
            raise Conflict(f"product {req.uniqueProductIdentifier} is registered ({reg.registration_id}) with passport "
                           f"{reg.dpp_id}; one product has one passport",
                           details=[FieldError("$.dppId", "registry.dppId", f"registered with {reg.dpp_id}")])
        created = False
    aliases = None if req.aliases is None else _alias_rows(
        session, registration_id=reg.registration_id, main_key=main_key, written=req.aliases)
    claimed = predecessors_of(facts)
    kept = set(confirmed_predecessors)
    if not created:  # confirmed before (stored), or superseded by this registration: still confirmed
        kept.update(orjson.loads(reg.predecessor_dpp_ids) if reg.predecessor_dpp_ids else [])
        kept.update(session.scalars(select(Registration.dpp_id).where(
            Registration.successor_registration_id == reg.registration_id)))
    predecessors = [d for d in dict.fromkeys(claimed) if d in kept]
    values = {"product_id": req.uniqueProductIdentifier, "dpp_id": req.dppId, "operator_id": req.economicOperatorId,
              "facility_id": req.facilityId if req.facilityId is not None else facts.doc.get("facilityId"),
              "commodity_code": req.commodityCode, "granularity": req.granularity.value, "endpoint": endpoint,
              "backup_node_id": req.backupProvider, "dpp_version": facts.version, "version_hash": facts.version_hash,
              "predecessor_dpp_ids": orjson.dumps(predecessors).decode() if predecessors else None}
    same_aliases = aliases is None or {a.key: a.written for a in aliases} == {
        a.key: a.written for a in _aliases(session, reg.registration_id)}
    if not created and not custody and same_aliases and all(getattr(reg, k) == v for k, v in values.items()):
        latest = latest_proof(session, registration_id=reg.registration_id)
        return Issued(get_json(session, registration_id=reg.registration_id), latest["proof"], changed=False)
    for k, v in values.items():
        setattr(reg, k, v)
    reg.updated_at = at
    if custody:
        reg.registrant, reg.registrant_org = principal.subject[:256], principal.org_id
    if created:
        session.add(reg)
    else:
        reg.revision += 1
    _flush(session, f"product {req.uniqueProductIdentifier}")
    if aliases is not None:
        for old in _aliases(session, reg.registration_id):
            session.delete(old)
        session.flush()
        session.add_all(aliases)
        _flush(session, "an alias")
    proof = _sign(session, reg, facts.etag_verified, registry=registry, at=at)
    kind = "registered" if created else "custody" if custody else "updated"
    data = _log(session, reg, kind=kind, principal=principal, at=at, proof=proof, request_id=request_id)
    notes = _supersede(session, reg, predecessors, confirmed_predecessors, principal=principal, at=at,
                       request_id=request_id)
    notes += _superseded_by(session, reg, confirmed_successors, principal=principal, at=at, registry=registry,
                            request_id=request_id)
    if reg.status == "superseded":
        data = registration_json(reg, _aliases(session, reg.registration_id))
    return Issued(data, proof, created=created, notes=notes)


def _superseded_by(session: Session, reg: Registration, confirmed: frozenset[str], *, principal: Principal, at: str,
                   registry: str, request_id: str) -> list[str]:
    """A predecessor registered after its successor: superseded at once when both passports name each other (its
    ``successorDppIds`` the successor, whose passport, read at its registered endpoint, names it among its
    ``predecessorDppIds``: ``confirmed``). The successor's registration then lists it as a confirmed predecessor
    (a new revision and proof of the successor's registration)."""
    if reg.status != "active" or not confirmed:
        return []
    for succ in session.scalars(select(Registration).where(Registration.dpp_id.in_(sorted(confirmed)))
                                .order_by(Registration.registered_at.desc())):
        if succ.registration_id == reg.registration_id:
            continue
        reg.status = "superseded"
        reg.successor_registration_id = succ.registration_id
        reg.revision += 1
        _flush(session, f"registration {reg.registration_id}")
        _log(session, reg, kind="superseded", principal=principal, at=at, proof=None, request_id=request_id)
        listed = orjson.loads(succ.predecessor_dpp_ids) if succ.predecessor_dpp_ids else []
        if reg.dpp_id not in listed and len(listed) < MAX_PREDECESSORS:
            succ.predecessor_dpp_ids = orjson.dumps([*listed, reg.dpp_id]).decode()
            succ.revision += 1
            succ.updated_at = at
            _flush(session, f"registration {succ.registration_id}")
            proof = _sign(session, succ, False, registry=registry, at=at)
            _log(session, succ, kind="updated", principal=principal, at=at, proof=proof, request_id=request_id)
        return [f"this registration is superseded by {succ.registration_id} (passport {succ.dpp_id})"]
    return []


def _supersede(session: Session, successor: Registration, predecessors: list[str], confirmed: frozenset[str], *,
               principal: Principal, at: str, request_id: str) -> list[str]:
    """Art. 77(7): the registrations of the passport's predecessors now resolve to it — those whose own passport
    confirmed the successor (``confirmed``); the others are left as they are, and said so."""
    notes: list[str] = []
    if not predecessors:
        return notes
    rows = session.scalars(select(Registration).where(Registration.dpp_id.in_(predecessors)))
    for old in rows:
        if old.registration_id == successor.registration_id or (
                old.status == "superseded" and old.successor_registration_id == successor.registration_id):
            continue
        if old.dpp_id not in confirmed:
            notes.append(f"predecessor {old.dpp_id} ({old.registration_id}) does not name {successor.dpp_id} as its "
                         "successor at its endpoint; its registration is unchanged")
            continue
        old.status = "superseded"
        old.successor_registration_id = successor.registration_id
        old.revision += 1
        old.updated_at = at
        _flush(session, f"registration {old.registration_id}")
        _log(session, old, kind="superseded", principal=principal, at=at, proof=None, request_id=request_id)
        notes.append(f"registration {old.registration_id} of predecessor {old.dpp_id} is superseded")
    return notes


def reroute(session: Session, *, principal: Principal, registration_id: str, change: RoutingRequest,
            endpoint: str | None, facts: PassportFacts | None, registry: str, request_id: str,
            evidence: PassportFacts | None = None, expected_revision: int | None = None) -> Issued:
    """A routing change (new endpoint, successor operator, backup provider): a new revision and proof, logged as
    ``custody`` when the operator changes, else ``rerouted``. ``facts`` is the passport read at the (new)
    endpoint when the endpoint or the operator changes; ``evidence`` the passport read at the currently
    registered endpoint, which must name the new operator for a custody move by anyone but the Commission
    (:func:`check_custody_evidence`). ``expected_revision``: the revision the caller's reads were based on (409
    when it has changed since)."""
    reg = get(session, registration_id=registration_id)
    new_operator = change.economicOperatorId
    authorise_routing(session, principal, current_operator=reg.operator_id, new_operator=new_operator)
    _expect_revision(reg, expected_revision)
    if is_custody(reg.operator_id, new_operator) and principal.role is not Role.commission:
        assert new_operator is not None
        check_custody_evidence(evidence, endpoint=reg.endpoint, dpp_id=reg.dpp_id, new_operator=new_operator)
    if "backupProvider" in change.model_fields_set:
        _check_backup(session, change.backupProvider)
    at = timestamp()
    custody = new_operator is not None and new_operator != reg.operator_id
    changed = False
    if endpoint is not None and endpoint != reg.endpoint:
        reg.endpoint, changed = endpoint, True
    if custody:
        assert new_operator is not None
        reg.operator_id, changed = new_operator, True
        reg.registrant, reg.registrant_org = principal.subject[:256], principal.org_id
    if "backupProvider" in change.model_fields_set and change.backupProvider != reg.backup_node_id:
        reg.backup_node_id, changed = change.backupProvider, True
    etag = False
    if facts is not None:
        check_agreement(facts.url, disagreements(
            product_id=reg.product_id, dpp_id=reg.dpp_id, operator_id=reg.operator_id, facility_id=reg.facility_id,
            granularity=reg.granularity, doc=facts.doc))
        etag = facts.etag_verified
        if (facts.version, facts.version_hash) != (reg.dpp_version, reg.version_hash):
            reg.dpp_version, reg.version_hash, changed = facts.version, facts.version_hash, True
    if not changed:
        latest = latest_proof(session, registration_id=registration_id)
        return Issued(get_json(session, registration_id=registration_id), latest["proof"], changed=False)
    reg.revision += 1
    reg.updated_at = at
    _flush(session, f"registration {registration_id}")
    proof = _sign(session, reg, etag, registry=registry, at=at)
    data = _log(session, reg, kind="custody" if custody else "rerouted", principal=principal, at=at, proof=proof,
                request_id=request_id)
    return Issued(data, proof)


# ------------------------------------------------------------------------------------------- node directory
def node_json(node: RegistryNode) -> dict[str, Any]:
    return {"nodeId": node.node_id, "kind": node.kind, "operatorId": node.operator_id, "endpoint": node.endpoint,
            "keys": orjson.loads(node.keys) if node.keys else None, "status": node.status,
            "updatedAt": node.updated_at}


def list_nodes(session: Session, *, kind: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    stmt = select(RegistryNode).order_by(RegistryNode.node_id)
    if kind is not None:
        stmt = stmt.where(RegistryNode.kind == kind)
    if status is not None:
        stmt = stmt.where(RegistryNode.status == status)
    return [node_json(n) for n in session.scalars(stmt.limit(10_000))]


def get_node(session: Session, *, node_id: str) -> RegistryNode:
    node = session.get(RegistryNode, node_id)
    if node is None:
        raise NotFound(f"no node {node_id}")
    return node


def _keys_text(keys: Any) -> str | None:
    if keys is None:
        return None
    data = keys.model_dump()
    try:
        proofs.keys_from_jwks(data)
    except VerificationError as exc:
        raise BadRequest(f"keys: {exc}", details=[FieldError("$.keys", "registry.jwks", str(exc)[:200])]) from None
    return canonical_bytes(data).decode()


def _log_node(session: Session, node: RegistryNode, *, principal: Principal, action: str, request_id: str) -> None:
    audit.record(session, audit.AccessRecord.of(
        principal, action=f"registry.{action}", passport_operator_id=node.operator_id,
        detail=[node.node_id, node.status], outcome="granted", request_id=request_id))


def create_node(session: Session, *, principal: Principal, body: NodeCreate, endpoint: str, request_id: str
                ) -> dict[str, Any]:
    authorise_commission(principal, "adding a node to the directory")
    if session.get(RegistryNode, body.nodeId) is not None:
        raise Conflict(f"node {body.nodeId} exists", details=[FieldError("$.nodeId", "registry.nodeTaken", "")])
    taken = session.scalar(select(RegistryNode.node_id).where(RegistryNode.endpoint == endpoint))
    if taken is not None:
        raise Conflict(f"endpoint {endpoint} is node {taken}'s",
                       details=[FieldError("$.endpoint", "registry.endpointTaken", f"held by {taken}")])
    node = RegistryNode(node_id=body.nodeId, kind=body.kind.value, operator_id=body.operatorId, endpoint=endpoint,
                        keys=_keys_text(body.keys), status=body.status.value, status_by="commission",
                        updated_at=timestamp())
    session.add(node)
    _flush(session, f"node {body.nodeId}")
    _log_node(session, node, principal=principal, action="nodeAdded", request_id=request_id)
    return node_json(node)


def patch_node(session: Session, *, principal: Principal, node_id: str, body: NodePatch, endpoint: str | None,
               request_id: str) -> dict[str, Any]:
    """Mark a node exited or unreachable (the resolver then routes to the backup), move it, or replace its keys."""
    authorise_commission(principal, "changing the node directory")
    node = get_node(session, node_id=node_id)
    if endpoint is not None and endpoint != node.endpoint:
        taken = session.scalar(select(RegistryNode.node_id).where(RegistryNode.endpoint == endpoint))
        if taken is not None:
            raise Conflict(f"endpoint {endpoint} is node {taken}'s",
                           details=[FieldError("$.endpoint", "registry.endpointTaken", f"held by {taken}")])
        node.endpoint = endpoint
    if body.status is not None:
        node.status, node.status_by = body.status.value, "commission"
    if "keys" in body.model_fields_set:
        node.keys = _keys_text(body.keys)
    node.updated_at = timestamp()
    _flush(session, f"node {node_id}")
    _log_node(session, node, principal=principal, action="nodeChanged", request_id=request_id)
    return node_json(node)


# ------------------------------------------------------------------------------------------- export
EXPORT_COLUMNS = ("registrationId", "revision", "status", "uniqueProductIdentifier", "dppId", "granularity",
                  "economicOperatorId", "facilityId", "commodityCode", "backupProvider", "endpoint", "dppVersion",
                  "versionHash", "successorRegistrationId", "aliases", "registeredAt", "updatedAt")


def export_page(session: Session, *, operator_id: str | None, after: str | None, limit: int
                ) -> list[dict[str, Any]]:
    """Up to ``limit`` registrations after ``after`` (by registrationId), as export records."""
    stmt = select(Registration)
    if operator_id is not None:
        stmt = stmt.where(Registration.operator_id == operator_id)
    if after is not None:
        stmt = stmt.where(Registration.registration_id > after)
    rows = list(session.scalars(stmt.order_by(Registration.registration_id).limit(limit)))
    aliases = _aliases_of(session, [r.registration_id for r in rows])
    out = []
    for r in rows:
        full = registration_json(r, aliases.get(r.registration_id, []))
        record = {k: full[k] for k in EXPORT_COLUMNS if k != "aliases"}
        record["aliases"] = [a["identifier"] for a in full["aliases"]]
        out.append(record)
    return out


def export_filter(principal: Principal, session: Session, operator_id: str | None) -> None:
    authorise_operator_read(session, principal, operator_id, "exporting registrations")


def published_keys(session: Session, *, secret_key: str) -> dict[str, bytes]:
    """kid → public key of every key this node made (what ``/.well-known/jwks.json`` publishes)."""
    return {row.kid: bytes(row.public_key) for row in signing.public_keys(session, secret_key=secret_key)}


def verify(session: Session, *, token: str, secret_key: str) -> dict[str, Any]:
    """The verdict on a proof: signature by one of this node's keys, and whether the registration it names is
    here and at that revision."""
    try:
        payload = proofs.verify_proof(token, published_keys(session, secret_key=secret_key))
    except VerificationError as exc:  # the verdict, not an error of the request
        return {"valid": False, "reason": exc.message, "kid": proofs.kid_of(token)}
    reg = session.get(Registration, payload["registrationId"])
    return {"valid": True, "kid": proofs.kid_of(token), "payload": payload, "summary": proofs.summary(payload),
            "registration": None if reg is None else {"status": reg.status, "revision": reg.revision,
                                                       "current": reg.revision == payload["revision"]}}

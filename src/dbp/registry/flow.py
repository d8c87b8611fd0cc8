"""A registration write end to end: authorise, read the passport at its endpoint (no transaction is open while the
registry waits on the network), confirm predecessors and successors, then one transaction through ``service``.

A custody move by anyone but the Commission (``reroute``) first reads the passport at the CURRENTLY registered
endpoint, which must already name the new operator (``service.check_custody_evidence``); only then is a new
endpoint read (and must agree). The revision read before the network reads is passed on: a registration that
changed meanwhile is a 409, never a silently merged update.

Used by the HTTP routes (``run_write`` = the request's one transaction) and by the embedded repository client
(``dbp.registry.client.EmbeddedRegistry``: the same process, no HTTP in between).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from dbp.access.principal import Principal, Role
from dbp.errors import BadRequest, FieldError, Unauthorized, ValidationFailed
from dbp.registry import service
from dbp.registry.fetch import FetchFailed, PassportFetcher, check_endpoint
from dbp.registry.models import Registration
from dbp.registry.schemas import RegisterRequest, RoutingRequest

T = TypeVar("T")
Run = Callable[[Callable[[Session], T]], Awaitable[T]]


@dataclass(frozen=True)
class Node:
    """What a flow needs to know of this registry node."""

    base_url: str  # the registry's own base URL: named in proofs; endpoints equal to it are read in-process
    http_hosts: tuple[str, ...]  # DBP_REGISTRY_ENDPOINT_HTTP_HOSTS


async def read(fetcher: PassportFetcher, endpoint: str, dpp_id: str) -> service.PassportFacts:
    """The passport at ``endpoint`` checked as the registry needs it; ``ValidationFailed`` (422) otherwise."""
    try:
        fetched = await fetcher.fetch(endpoint, dpp_id)
    except FetchFailed as exc:
        raise ValidationFailed(f"the passport at {exc.url} could not be read: {exc.reason}",
                               details=[FieldError("$.endpoint", "registry.reachable", exc.reason)]) from None
    return service.read_facts(fetched)


async def _confirmed(run_read: Run[Any], fetcher: PassportFetcher, wanted: list[str],
                     names: Callable[[dict[str, Any]], bool]) -> frozenset[str]:
    """Of the registered, active passports ``wanted``, those whose own passport, read at their registered
    endpoint, ``names`` the passport being registered back (a passport cannot take over another's registration,
    or claim another as its predecessor, just by naming it)."""
    if not wanted:
        return frozenset()

    def lookup(session: Session) -> list[tuple[str, str]]:
        return [(r.dpp_id, r.endpoint) for r in session.scalars(select(Registration).where(
            Registration.dpp_id.in_(wanted), Registration.status == "active"))]

    out = set()
    for other_id, endpoint in await run_read(lookup):
        try:
            other = await read(fetcher, endpoint, other_id)
        except ValidationFailed:
            continue
        if names(other.doc):
            out.add(other_id)
    return frozenset(out)


async def _confirmed_predecessors(run_read: Run[Any], fetcher: PassportFetcher, facts: service.PassportFacts,
                                  dpp_id: str) -> frozenset[str]:
    """The predecessors whose passport names ``dpp_id`` as successor: only those are superseded."""
    return await _confirmed(run_read, fetcher, service.predecessors_of(facts),
                            lambda doc: service.names_successor(doc, dpp_id))


async def _confirmed_successors(run_read: Run[Any], fetcher: PassportFetcher, facts: service.PassportFacts,
                                dpp_id: str) -> frozenset[str]:
    """The successors whose passport names ``dpp_id`` among its predecessors: a predecessor registered late is
    superseded only by those."""
    return await _confirmed(run_read, fetcher, service.successors_of(facts),
                            lambda doc: service.names_predecessor(doc, dpp_id))


async def register(*, run_read: Run[Any], run_write: Run[Any], fetcher: PassportFetcher, node: Node,
                   principal: Principal, req: RegisterRequest, request_id: str) -> service.Issued:
    if principal.is_anonymous:
        raise Unauthorized("registering a passport needs credentials (POST /api/v1/auth/token)")
    endpoint = check_endpoint(req.endpoint, http_hosts=node.http_hosts, own=node.base_url)
    main_key = service.key_of(req.uniqueProductIdentifier, "$.uniqueProductIdentifier")
    for i, alias in enumerate(req.aliases or []):
        if service.key_of(alias, f"$.aliases[{i}]") == main_key:
            raise BadRequest(f"alias {alias} is the product identifier itself",
                             details=[FieldError(f"$.aliases[{i}]", "registry.alias", "expected another identifier")])
    await run_read(lambda s: service.authorise_write(s, principal, req.economicOperatorId))
    facts = await read(fetcher, endpoint, req.dppId)
    service.check_agreement(facts.url, service.disagreements(
        product_id=req.uniqueProductIdentifier, dpp_id=req.dppId, operator_id=req.economicOperatorId,
        facility_id=req.facilityId, granularity=req.granularity.value, doc=facts.doc))
    if req.aliases:
        unlisted = service.unlisted_aliases(req.aliases, facts.doc)
        if unlisted:
            raise ValidationFailed(f"aliases not listed by the passport at {facts.url}", details=unlisted)
    confirmed = await _confirmed_predecessors(run_read, fetcher, facts, req.dppId)
    successors = await _confirmed_successors(run_read, fetcher, facts, req.dppId)
    issued: service.Issued = await run_write(lambda s: service.register(
        s, principal=principal, req=req, endpoint=endpoint, facts=facts, confirmed_predecessors=confirmed,
        confirmed_successors=successors, registry=node.base_url, request_id=request_id))
    return issued


async def reroute(*, run_read: Run[Any], run_write: Run[Any], fetcher: PassportFetcher, node: Node,
                  principal: Principal, registration_id: str, change: RoutingRequest,
                  request_id: str) -> service.Issued:
    if principal.is_anonymous:
        raise Unauthorized("changing a registration needs credentials (POST /api/v1/auth/token)")
    endpoint = None if change.endpoint is None else check_endpoint(change.endpoint, http_hosts=node.http_hosts,
                                                                   own=node.base_url)

    def current(session: Session) -> tuple[str, str, str, int]:
        reg = service.get(session, registration_id=registration_id)
        service.authorise_routing(session, principal, current_operator=reg.operator_id,
                                  new_operator=change.economicOperatorId)
        return reg.endpoint, reg.dpp_id, reg.operator_id, reg.revision

    old_endpoint, dpp_id, operator, revision = await run_read(current)
    new_operator = change.economicOperatorId
    custody = service.is_custody(operator, new_operator)
    evidence = None
    if custody and principal.role is not Role.commission:
        # S1: the repository holding custody must have recorded the responsibility transfer; only then is the new
        # endpoint (possibly the requester's own) read at all
        assert new_operator is not None
        try:
            evidence = await read(fetcher, old_endpoint, dpp_id)
        except ValidationFailed:
            evidence = None
        service.check_custody_evidence(evidence, endpoint=old_endpoint, dpp_id=dpp_id, new_operator=new_operator)
    facts = None
    moved = endpoint is not None and endpoint != old_endpoint
    if moved:
        assert endpoint is not None
        facts = await read(fetcher, endpoint, dpp_id)  # must agree (checked in service.reroute)
    elif custody:
        facts = evidence if evidence is not None else await read(fetcher, old_endpoint, dpp_id)
    issued: service.Issued = await run_write(lambda s: service.reroute(
        s, principal=principal, registration_id=registration_id, change=change, endpoint=endpoint, facts=facts,
        evidence=evidence, expected_revision=revision, registry=node.base_url, request_id=request_id))
    return issued

"""A registration write end to end: authorise, read the passport at its endpoint (no transaction is open while the
registry waits on the network), confirm predecessors, then one transaction through ``service``.

Used by the HTTP routes (``run_write`` = the request's one transaction) and by the embedded repository client
(``dbp.registry.client.EmbeddedRegistry``: the same process, no HTTP in between).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from dbp.access.principal import Principal
from dbp.errors import FieldError, Unauthorized, ValidationFailed
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


async def _confirmed(run_read: Run[Any], fetcher: PassportFetcher, facts: service.PassportFacts,
                     dpp_id: str) -> frozenset[str]:
    """The predecessors (registered, active) whose own passport, read at their registered endpoint, names
    ``dpp_id`` as successor: only those are superseded (a passport cannot take over another's registration by
    naming it)."""
    wanted = service.predecessors_of(facts)
    if not wanted:
        return frozenset()

    def lookup(session: Session) -> list[tuple[str, str]]:
        return [(r.dpp_id, r.endpoint) for r in session.scalars(select(Registration).where(
            Registration.dpp_id.in_(wanted), Registration.status == "active"))]

    out = set()
    for pred_id, endpoint in await run_read(lookup):
        try:
            pred = await read(fetcher, endpoint, pred_id)
        except ValidationFailed:
            continue
        if service.names_successor(pred.doc, dpp_id):
            out.add(pred_id)
    return frozenset(out)


async def register(*, run_read: Run[Any], run_write: Run[Any], fetcher: PassportFetcher, node: Node,
                   principal: Principal, req: RegisterRequest, request_id: str) -> service.Issued:
    if principal.is_anonymous:
        raise Unauthorized("registering a passport needs credentials (POST /api/v1/auth/token)")
    endpoint = check_endpoint(req.endpoint, http_hosts=node.http_hosts, own=node.base_url)
    service.key_of(req.uniqueProductIdentifier, "$.uniqueProductIdentifier")
    for i, alias in enumerate(req.aliases or []):
        service.key_of(alias, f"$.aliases[{i}]")
    await run_read(lambda s: service.authorise_write(s, principal, req.economicOperatorId))
    facts = await read(fetcher, endpoint, req.dppId)
    service.check_agreement(facts.url, service.disagreements(
        product_id=req.uniqueProductIdentifier, dpp_id=req.dppId, operator_id=req.economicOperatorId,
        facility_id=req.facilityId, granularity=req.granularity.value, doc=facts.doc))
    confirmed = await _confirmed(run_read, fetcher, facts, req.dppId)
    issued: service.Issued = await run_write(lambda s: service.register(
        s, principal=principal, req=req, endpoint=endpoint, facts=facts, confirmed_predecessors=confirmed,
        registry=node.base_url, request_id=request_id))
    return issued


async def reroute(*, run_read: Run[Any], run_write: Run[Any], fetcher: PassportFetcher, node: Node,
                  principal: Principal, registration_id: str, change: RoutingRequest,
                  request_id: str) -> service.Issued:
    if principal.is_anonymous:
        raise Unauthorized("changing a registration needs credentials (POST /api/v1/auth/token)")
    endpoint = None if change.endpoint is None else check_endpoint(change.endpoint, http_hosts=node.http_hosts,
                                                                   own=node.base_url)

    def current(session: Session) -> tuple[str, str, str]:
        reg = service.get(session, registration_id=registration_id)
        service.authorise_routing(session, principal, current_operator=reg.operator_id,
                                  new_operator=change.economicOperatorId)
        return reg.endpoint, reg.dpp_id, reg.operator_id

    old_endpoint, dpp_id, operator = await run_read(current)
    facts = None
    moved = endpoint is not None and endpoint != old_endpoint
    if moved or (change.economicOperatorId is not None and change.economicOperatorId != operator):
        facts = await read(fetcher, endpoint or old_endpoint, dpp_id)
    issued: service.Issued = await run_write(lambda s: service.reroute(
        s, principal=principal, registration_id=registration_id, change=change, endpoint=endpoint, facts=facts,
        registry=node.base_url, request_id=request_id))
    return issued

"""Art. 77/78 enforcement on the passport routes: which view a caller reads, whether it may write,
and the access-log record of each (reads: durable batch before answering; writes: same transaction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session
from starlette.requests import Request

from dbp.access import service as access
from dbp.access.policy import ReadDecision, decide_read
from dbp.access.principal import Principal, Role
from dbp.audit import service as audit
from dbp.errors import Forbidden, Unauthorized
from dbp.http import correlation_id
from dbp.passports.attributes import AccessGroup, Kind, collect_attributes
from dbp.passports.schemas import BatteryPassport
from dbp.passports.service import StoredVersion
from dbp.sentinel import CURRENT_PROBLEM, READ_MARK

if TYPE_CHECKING:
    from dbp.passports.reads import CurrentVersionReader

# What roles other than the responsible operator may change (Art. 78(f), HARD-9).
REPAIR_ATTRIBUTES = frozenset({"generalProductInformation.repairHistory", "generalProductInformation.batteryStatus"})
SECOND_LIFE_ROLES = frozenset({Role.economic_operator, Role.service_provider, Role.remanufacturer,
                               Role.second_life_operator})
WASTE_ROLES = frozenset({Role.recycler, Role.waste_operator})


def _dynamic_attributes() -> frozenset[str]:
    return frozenset(a.path for a in collect_attributes(BatteryPassport) if a.meta.kind is Kind.dynamic)


_DYNAMIC = _dynamic_attributes()


async def decide(request: Request, principal: Principal, operator_id: str | None, dpp_id: str) -> ReadDecision:
    return await decide_on(request.app.state, principal, operator_id, dpp_id)


async def decide_on(state: Any, principal: Principal, operator_id: str | None, dpp_id: str) -> ReadDecision:
    """The read decision, from the app state (policy + hot-path reader); usable outside a route."""
    policy = state.policy
    # The anonymous public and the responsible operator itself need nothing from the database.
    if principal.is_anonymous or (principal.operator_id == operator_id and principal.role is not Role.device
                                  and not principal.is_authority):
        return decide_read(principal=principal, passport_operator_id=operator_id, authorised_for=frozenset(),
                           grant_groups=frozenset(), policy=policy)
    authorised, grants = await state.read_contexts.of(state.reader, principal, dpp_id)
    return decide_read(principal=principal, passport_operator_id=operator_id, authorised_for=authorised,
                       grant_groups=frozenset(AccessGroup(g) for g in grants), policy=policy)


class ReadContexts:
    """What a read decision needs from the database: the operators that authorised the caller's
    organisation and the groups of its live grants on the passport.

    On SQLite the organisation's part — its authorisations, and whether it holds any live grant at all —
    is kept until the database changes (``CurrentVersionReader.data_version``: any commit by another
    connection, so a revocation counts at once; the reader's own connection is ``query_only`` and never
    changes anything itself), and the per-passport grant query runs only for an
    organisation that holds grants; a reader without grants costs one pragma instead of a query.
    Elsewhere every decision makes one round trip.
    """

    MAX_ORGS = 10_000

    def __init__(self) -> None:
        self._by_org: dict[str, tuple[int, frozenset[str], bool]] = {}

    async def of(self, reader: CurrentVersionReader, principal: Principal,
                 dpp_id: str) -> tuple[frozenset[str], frozenset[str]]:
        version = reader.data_version()
        if version is None:
            rows = await reader.rows(access.READ_CONTEXT_SQL,
                                     access.read_context_params(principal=principal, dpp_id=dpp_id))
            return access.read_context_from_rows(rows)
        org = principal.org_id or ""
        entry = self._by_org.get(org)
        if entry is None or entry[0] != version:
            rows = await reader.rows(access.ORG_CONTEXT_SQL, access.org_context_params(principal=principal))
            authorised, has_grants = access.org_context_from_rows(rows)
            if len(self._by_org) >= self.MAX_ORGS:
                self._by_org.clear()
            entry = self._by_org[org] = (version, authorised, has_grants)
        if not entry[2]:
            return entry[1], frozenset()
        rows = await reader.rows(access.GRANTS_SQL, access.grants_params(principal=principal, dpp_id=dpp_id))
        return entry[1], access.read_context_from_rows(rows)[1]


def watch(request: Request, v: StoredVersion) -> None:
    """Tamper evidence (``dbp.sentinel``): the response of this request names ``v``'s passport for the integrity
    flag, and a full version about to be served must hash to its ``sha256`` column (~10 µs for 10 KB; not on the
    hot path, which only looks the flag up)."""
    _mark(request, v.dpp_id)
    sentinel = getattr(request.app.state, "sentinel", None)
    if sentinel is None:
        return
    if v.signature is not None:  # the full signed bytes, not a view
        sentinel.check_served(v.dpp_id, v.body, v.sha256)
    CURRENT_PROBLEM.set(sentinel.problem(v.dpp_id))


def _mark(request: Request, dpp_id: str | None) -> None:
    if dpp_id is not None:
        request.scope.setdefault("state", {}).setdefault(READ_MARK, set()).add(dpp_id)


async def log_read(request: Request, principal: Principal, *, action: audit.Action, dpp_id: str | None,
                   operator_id: str | None, detail: list[str], outcome: str = "granted",
                   reason: str | None = None) -> None:
    """Commit the access record durably; raises ServiceUnavailable (the read is then not answered)."""
    _mark(request, dpp_id)
    await request.app.state.read_log.append(audit.AccessRecord.of(
        principal, action=action, dpp_id=dpp_id, passport_operator_id=operator_id, detail=detail,
        outcome=outcome, reason=reason, request_id=correlation_id(request)))


async def view_for(request: Request, principal: Principal, v: StoredVersion) -> tuple[StoredVersion, ReadDecision]:
    """The view of ``v`` the caller may read (not logged: for callers that log themselves)."""
    watch(request, v)
    return await view_on(request.app.state, principal, v)


async def view_on(state: Any, principal: Principal, v: StoredVersion, *, views: Any = None
                  ) -> tuple[StoredVersion, ReadDecision]:
    """The view of ``v`` the caller may read; ``views`` is the view cache (default the repository's: a cache is
    keyed by passport and version, so copies held for other repositories use one of their own)."""
    decision = await decide_on(state, principal, v.operator_id, v.dpp_id)
    if not decision.everything:
        body, sha = (views or state.views).get(v.dpp_id, v.version, decision.groups, v.body, v.view_index)
        # a view is not the signed bytes: no index, no signature (built directly: dataclasses.replace costs ~4 µs)
        v = StoredVersion(v.dpp_id, v.version, v.created_at, sha, body, v.operator_id, None, None, v.public_sha256)
    return v, decision


async def viewed(request: Request, principal: Principal, v: StoredVersion, *,
                 action: audit.Action) -> tuple[StoredVersion, ReadDecision]:
    """The view of ``v`` the caller may read, logged before it is returned."""
    v, decision = await view_for(request, principal, v)
    await log_read(request, principal, action=action, dpp_id=v.dpp_id, operator_id=v.operator_id,
                   detail=sorted(g.value for g in decision.groups), reason=decision.reason)
    return v, decision


async def denied(request: Request, principal: Principal, *, action: audit.Action, dpp_id: str | None,
                 operator_id: str | None, reason: str, detail: list[str] | None = None) -> Forbidden:
    """Log a denial durably and return the error to raise (its text says why)."""
    await log_read(request, principal, action=action, dpp_id=dpp_id, operator_id=operator_id,
                   detail=detail or [], outcome="denied", reason=reason)
    return Forbidden(reason)


def speaks_for(session: Session, principal: Principal, operator_id: str) -> bool:
    """Is ``principal`` the responsible operator or an organisation it authorised in writing? (Never a
    device key or an authority, whatever organisation they belong to.)"""
    if principal.role is Role.device or principal.is_authority:
        return False
    if principal.operator_id == operator_id:
        return True
    return principal.org_id is not None and operator_id in access.authorised_operator_ids(
        session, agent_org_id=principal.org_id)


def write_refusal(session: Session, principal: Principal, *, action: str, operator_id: str,
                  changed: list[str] | None = None, new_doc: dict[str, Any] | None = None,
                  dpp_id: str | None = None) -> str | None:
    """Why ``principal`` may not perform this write, or None when it may (Art. 78(b)(f))."""
    if principal.is_anonymous:
        raise Unauthorized("writing passport data needs credentials")
    if principal.is_authority:
        return "authorities may read passports but not alter their content"
    changed_set = set(changed or [])
    if principal.role is Role.device:  # before ownership: a device key of the operator is not the operator
        mine = principal.dpp_ids is None and principal.operator_id == operator_id
        if dpp_id is not None and principal.dpp_ids is not None:
            mine = dpp_id in principal.dpp_ids
        if not mine:
            return "this device key does not feed this battery"
        if action in ("update", "updateElement") and changed_set <= _DYNAMIC:
            return None
        return f"a device key may only write dynamic data; not {action} {sorted(changed_set - _DYNAMIC)}"
    owner = speaks_for(session, principal, operator_id)
    if owner:
        if action in ("update", "updateElement") and "economicOperatorId" in changed_set:
            return "the responsible operator changes only through POST /api/v1/dpps/{dppId}/responsibility"
        return None
    if principal.role is Role.repairer and action in ("update", "updateElement"):
        status = ((new_doc or {}).get("generalProductInformation") or {}).get("batteryStatus")
        if changed_set <= REPAIR_ATTRIBUTES and status in ("re-used", "original", None):
            return None
        return "a repairer may record repairs (repairHistory) and set status re-used, nothing else"
    if principal.role in WASTE_ROLES and action in ("waste", "recycle"):
        return None
    return f"{principal.role.value if principal.role else 'this caller'} may not {action} passports of {operator_id}"


def creation_refusal(session: Session, principal: Principal, *, operator_id: str, successor: bool) -> str | None:
    if principal.is_anonymous:
        raise Unauthorized("creating passports needs credentials")
    roles = SECOND_LIFE_ROLES if successor else frozenset({Role.economic_operator, Role.service_provider})
    if principal.role not in roles:
        return f"{principal.role.value if principal.role else 'this caller'} may not create passports"
    if not speaks_for(session, principal, operator_id):
        return f"a passport names its responsible operator; you cannot create one for {operator_id}"
    return None

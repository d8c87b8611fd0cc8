"""Identity use cases: organisations, users, API clients, device keys, written authorisations and
grants. Keyword-only functions over a Session; they flush, the caller commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dbp.access.models import ApiClient, ApiKey, Authorisation, Grant, Organisation, User
from dbp.access.principal import Principal, PrincipalKind, Role
from dbp.access.secrets import hash_password, matches_sha256, random_token, sha256_hex, verify_password
from dbp.clock import timestamp
from dbp.errors import BadRequest, Conflict, FieldError, NotFound, Unauthorized
from dbp.passports.attributes import AccessGroup


def now_ts(now: datetime | None = None) -> str:
    return timestamp(now)


def _flush(session: Session, what: str) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"{what} already exists") from exc


# ------------------------------------------------------------------------------ organisations
def create_org(session: Session, *, name: str, operator_id: str, role: Role) -> Organisation:
    org = Organisation(id=uuid.uuid4().hex, name=name, operator_id=operator_id, role=role.value,
                       created_at=now_ts())
    session.add(org)
    _flush(session, f"an organisation with operator identifier {operator_id}")
    return org


def org_by_ref(session: Session, *, ref: str) -> Organisation:
    """An organisation by its id or its operator identifier."""
    org = session.get(Organisation, ref) or session.scalar(select(Organisation).where(Organisation.operator_id == ref))
    if org is None:
        raise NotFound(f"no organisation {ref}")
    return org


def list_orgs(session: Session) -> list[Organisation]:
    return list(session.scalars(select(Organisation).order_by(Organisation.name)))


# ------------------------------------------------------------------------------ users and clients
def create_user(session: Session, *, org_id: str, username: str, password: str) -> User:
    if len(password) < 12:
        raise BadRequest("passwords need at least 12 characters")
    user = User(id=uuid.uuid4().hex, org_id=org_id, username=username, password_hash=hash_password(password),
                disabled=False, created_at=now_ts())
    session.add(user)
    _flush(session, f"user {username}")
    return user


@dataclass(frozen=True)
class IssuedClient:
    client_id: str
    client_secret: str  # shown once, never stored
    org_id: str
    role: Role


def create_client(session: Session, *, org_id: str, role: Role) -> IssuedClient:
    client_id = f"dbpc_{uuid.uuid4().hex[:20]}"
    secret = random_token()
    session.add(ApiClient(client_id=client_id, org_id=org_id, role=role.value, secret_sha256=sha256_hex(secret),
                          created_at=now_ts()))
    _flush(session, f"client {client_id}")
    return IssuedClient(client_id, secret, org_id, role)


@dataclass(frozen=True)
class IssuedKey:
    api_key: str  # dbpk_<key_id>_<secret>, shown once
    key_id: str


def create_api_key(session: Session, *, org_id: str, dpp_ids: list[str] | None = None) -> IssuedKey:
    key_id = uuid.uuid4().hex[:16]
    secret = random_token()
    session.add(ApiKey(key_id=key_id, org_id=org_id, secret_sha256=sha256_hex(secret),
                       dpp_ids=orjson.dumps(dpp_ids).decode() if dpp_ids else None, created_at=now_ts()))
    _flush(session, f"key {key_id}")
    return IssuedKey(f"dbpk_{key_id}_{secret}", key_id)


def _principal(org: Organisation, *, kind: PrincipalKind, subject: str, role: Role,
               dpp_ids: frozenset[str] | None = None) -> Principal:
    return Principal(kind=kind, subject=subject, org_id=org.id, operator_id=org.operator_id, role=role,
                     dpp_ids=dpp_ids)


def authenticate_client(session: Session, *, client_id: str, client_secret: str) -> Principal:
    client = session.get(ApiClient, client_id) if len(client_id) <= 64 else None
    # Compare against a dummy hash when the client is unknown: the same work either way.
    ok = matches_sha256(client_secret, client.secret_sha256 if client else "0" * 64)
    if client is None or not ok or client.revoked_at is not None:
        raise Unauthorized("unknown client or wrong secret")
    org = session.get(Organisation, client.org_id)
    assert org is not None
    return _principal(org, kind=PrincipalKind.client, subject=client.client_id, role=Role(client.role))


def authenticate_password(session: Session, *, username: str, password: str) -> Principal:
    user = session.scalar(select(User).where(User.username == username)) if len(username) <= 256 else None
    ok = verify_password(password, user.password_hash if user else _DUMMY_HASH)
    if user is None or not ok or user.disabled:
        raise Unauthorized("unknown user or wrong password")
    org = session.get(Organisation, user.org_id)
    assert org is not None
    return _principal(org, kind=PrincipalKind.user, subject=user.username, role=Role(org.role))


_DUMMY_HASH = hash_password("dbp-dummy-password-for-timing")


def authenticate_api_key(session: Session, *, api_key: str) -> Principal:
    parts = api_key.split("_", 2)
    if len(parts) != 3 or parts[0] != "dbpk" or len(parts[1]) != 16:
        raise Unauthorized("malformed API key")
    key = session.get(ApiKey, parts[1])
    ok = matches_sha256(parts[2], key.secret_sha256 if key else "0" * 64)
    if key is None or not ok or key.revoked_at is not None:
        raise Unauthorized("unknown or revoked API key")
    org = session.get(Organisation, key.org_id)
    assert org is not None
    dpp_ids = frozenset(orjson.loads(key.dpp_ids)) if key.dpp_ids else None
    return _principal(org, kind=PrincipalKind.api_key, subject=key.key_id, role=Role.device, dpp_ids=dpp_ids)


# ------------------------------------------------------------------------------ authorisations
def authorise(session: Session, *, operator_org_id: str, agent_org_id: str, reference: str) -> Authorisation:
    """Record an economic operator's written authorisation of an agent (Art. 77(4), Art. 78(c))."""
    auth = Authorisation(operator_org_id=operator_org_id, agent_org_id=agent_org_id, reference=reference,
                         created_at=now_ts())
    session.add(auth)
    _flush(session, "this authorisation")
    return auth


def authorised_operator_ids(session: Session, *, agent_org_id: str) -> frozenset[str]:
    """Operator identifiers of the economic operators that authorised this organisation in writing."""
    rows = session.execute(
        select(Organisation.operator_id).join(Authorisation, Authorisation.operator_org_id == Organisation.id)
        .where(Authorisation.agent_org_id == agent_org_id, Authorisation.revoked_at.is_(None))).all()
    return frozenset(r[0] for r in rows)


# ------------------------------------------------------------------------------ grants
GRANTABLE = frozenset({AccessGroup.legitimate_interest, AccessGroup.legitimate_interest_and_authorities})


def create_grant(session: Session, *, dpp_id: str, grantee_org_id: str, purpose: str,
                 access_groups: list[AccessGroup], expires_at: str, granted_by: str) -> Grant:
    if not access_groups or set(access_groups) - GRANTABLE:
        raise BadRequest("a grant gives legitimateInterest and/or legitimateInterestAndAuthorities", details=[
            FieldError("$.accessGroups", "grant.accessGroups", "test reports (point 3) are for authorities only")])
    if expires_at <= now_ts():
        raise BadRequest("a grant must expire in the future",
                         details=[FieldError("$.expiresAt", "grant.expiry", "an ISO 8601 instant in the future")])
    grant = Grant(id=uuid.uuid4().hex, dpp_id=dpp_id, grantee_org_id=grantee_org_id, purpose=purpose,
                  access_groups=",".join(sorted(g.value for g in access_groups)), granted_by=granted_by,
                  created_at=now_ts(), expires_at=expires_at)
    session.add(grant)
    _flush(session, "this grant")
    return grant


def revoke_grant(session: Session, *, grant_id: str, dpp_id: str) -> Grant:
    grant = session.get(Grant, grant_id)
    if grant is None or grant.dpp_id != dpp_id:
        raise NotFound(f"no grant {grant_id} on passport {dpp_id}")
    if grant.revoked_at is None:
        grant.revoked_at = now_ts()
    return grant


def active_grants(session: Session, *, dpp_id: str, grantee_org_id: str, at: str | None = None) -> list[Grant]:
    moment = at or now_ts()
    return list(session.scalars(select(Grant).where(
        Grant.dpp_id == dpp_id, Grant.grantee_org_id == grantee_org_id, Grant.revoked_at.is_(None),
        Grant.expires_at > moment)))


def grants_of(session: Session, *, dpp_id: str) -> list[Grant]:
    return list(session.scalars(select(Grant).where(Grant.dpp_id == dpp_id).order_by(Grant.created_at)))


# One round trip for a read decision: the operators that authorised the caller's organisation
# ('a') and the groups of its live grants on the passport for the stated purpose ('g').
READ_CONTEXT_SQL = (
    "SELECT 'a', o.operator_id FROM authorisations a JOIN organisations o ON o.id = a.operator_org_id "
    "WHERE a.agent_org_id = ? AND a.revoked_at IS NULL "
    "UNION ALL SELECT 'g', g.access_groups FROM grants g WHERE g.dpp_id = ? AND g.grantee_org_id = ? "
    "AND g.purpose = ? AND g.revoked_at IS NULL AND g.expires_at > ?"
)


def read_context_params(*, principal: Principal, dpp_id: str) -> tuple[str, ...]:
    org = principal.org_id or ""
    return (org, dpp_id, org, principal.purpose or "", now_ts())


def read_context_from_rows(rows: list[tuple[Any, ...]]) -> tuple[frozenset[str], frozenset[str]]:
    authorised = frozenset(str(v) for kind, v in rows if kind == "a")
    groups: set[str] = set()
    for kind, v in rows:
        if kind == "g":
            groups.update(str(v).split(","))
    return authorised, frozenset(groups)


# The same in two parts, for a caller that keeps the organisation's part while the database is
# unchanged: the operators that authorised the organisation ('a') and whether it holds any live grant
# at all ('g', a count); then, only when it does, the groups of its live grants on the passport.
ORG_CONTEXT_SQL = (
    "SELECT 'a', o.operator_id FROM authorisations a JOIN organisations o ON o.id = a.operator_org_id "
    "WHERE a.agent_org_id = ? AND a.revoked_at IS NULL "
    "UNION ALL SELECT 'g', count(*) FROM grants g WHERE g.grantee_org_id = ? AND g.revoked_at IS NULL "
    "AND g.expires_at > ?"
)
GRANTS_SQL = ("SELECT 'g', g.access_groups FROM grants g WHERE g.dpp_id = ? AND g.grantee_org_id = ? "
              "AND g.purpose = ? AND g.revoked_at IS NULL AND g.expires_at > ?")


def org_context_params(*, principal: Principal) -> tuple[str, ...]:
    org = principal.org_id or ""
    return (org, org, now_ts())


def org_context_from_rows(rows: list[tuple[Any, ...]]) -> tuple[frozenset[str], bool]:
    """The operators that authorised the organisation, and whether it holds any live grant."""
    authorised = frozenset(str(v) for kind, v in rows if kind == "a")
    return authorised, any(kind == "g" and int(v) > 0 for kind, v in rows)


def grants_params(*, principal: Principal, dpp_id: str) -> tuple[str, ...]:
    return (dpp_id, principal.org_id or "", principal.purpose or "", now_ts())


def grant_json(g: Grant) -> dict[str, Any]:
    return {"id": g.id, "dppId": g.dpp_id, "granteeOrgId": g.grantee_org_id, "purpose": g.purpose,
            "accessGroups": g.access_groups.split(","), "grantedBy": g.granted_by, "createdAt": g.created_at,
            "expiresAt": g.expires_at, "revokedAt": g.revoked_at}

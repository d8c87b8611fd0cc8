"""Who reads in the authenticated read benchmarks, and what their reads leave in the access log.

* ``recycler``: an organisation with role ``recycler`` that is no passport's operator, reading with
  ``X-Purpose: dismantling`` — the common authenticated case: the bundled policy gives it Annex XIII
  point 2 (``legitimateInterestAndAuthorities``) on every passport, so dbp serves a redacted view.
* ``owner``: an ``economicOperator`` organisation whose operator identifier is the
  ``economicOperatorId`` of the most frequent operator in the dataset, reading its own passports —
  it sees everything, so dbp serves the stored full version.

Both get an OAuth2 client (``dbp.access.service.create_client``), written straight into the
benchmark database before the servers start; tokens come from the running dbp server's
``POST /api/v1/auth/token`` (client credentials), as a real client would get them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text

from dbp.access.principal import Role
from dbp.access.service import create_client, create_org
from dbp.db import make_engine, make_sessionmaker, transaction

RECYCLER_OPERATOR_ID = "bench-recycler-0001"
RECYCLER_PURPOSE = "dismantling"


class CallerSetupFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Client:
    name: str
    role: Role
    operator_id: str
    client_id: str
    client_secret: str  # never written to the results


@dataclass(frozen=True)
class Callers:
    recycler: Client
    owner: Client
    owner_dpp_ids: list[str]  # the owner's passports (sorted)


def create_callers(url: str) -> Callers:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            top = conn.execute(text("SELECT operator_id, count(*) FROM passports GROUP BY operator_id "
                                    "ORDER BY count(*) DESC, operator_id LIMIT 1")).fetchone()
            if top is None or top[0] is None:
                raise CallerSetupFailed("no passport names an operator")
            owner_op = str(top[0])
            owned = sorted(r[0] for r in conn.execute(text("SELECT dpp_id FROM passports WHERE operator_id = :o"),
                                                      {"o": owner_op}))
            conn.rollback()
        with transaction(make_sessionmaker(engine)) as session:
            rec_org = create_org(session, name="bench recycler", operator_id=RECYCLER_OPERATOR_ID, role=Role.recycler)
            rec = create_client(session, org_id=rec_org.id, role=Role.recycler)
            own_org = create_org(session, name="bench owner", operator_id=owner_op, role=Role.economic_operator)
            own = create_client(session, org_id=own_org.id, role=Role.economic_operator)
    finally:
        engine.dispose()
    return Callers(
        Client("recycler", Role.recycler, RECYCLER_OPERATOR_ID, rec.client_id, rec.client_secret),
        Client("owner", Role.economic_operator, owner_op, own.client_id, own.client_secret),
        owned)


def fetch_token(base: str, client: Client) -> str:
    """An access token for ``client`` from dbp's token endpoint (client credentials)."""
    r = httpx.post(base + "/api/v1/auth/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": client.client_id, "client_secret": client.client_secret})
    if r.status_code != 200:
        raise CallerSetupFailed(f"POST /api/v1/auth/token for the {client.name} answered {r.status_code}: "
                                f"{r.text[:300]}")
    token = r.json().get("access_token")
    if not isinstance(token, str) or not token:
        raise CallerSetupFailed(f"the token endpoint returned no access_token for the {client.name}")
    return token


# ------------------------------------------------------------------------------ access-log counts
def last_log_id(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            value = conn.execute(text("SELECT max(id) FROM access_log")).scalar()
            conn.rollback()
    finally:
        engine.dispose()
    return int(value or 0)


def log_rows_since(url: str, after_id: int) -> list[dict[str, Any]]:
    """Access-log rows with ``id > after_id``, counted per kind of record."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT principal_kind, role, purpose, action, outcome, detail, count(*) FROM access_log "
                "WHERE id > :after GROUP BY principal_kind, role, purpose, action, outcome, detail "
                "ORDER BY count(*) DESC"), {"after": after_id}).fetchall()
            conn.rollback()
    finally:
        engine.dispose()
    keys = ("principal_kind", "role", "purpose", "action", "outcome", "detail", "rows")
    return [dict(zip(keys, r, strict=True)) for r in rows]

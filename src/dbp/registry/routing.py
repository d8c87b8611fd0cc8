"""Routing: which passport, at which endpoint, a product identifier resolves to (the resolver's lookup).

``route(query, key=…)`` takes ``dbp.identifiers.product_key`` of the scanned identifier and returns a
:class:`Route`, or None when no registration (and no alias) holds the key. What it guarantees:

* **Newest passport.** The registration found (by ``registrations.product_key``, else through
  ``registration_aliases.key``) is followed along ``successor_registration_id`` to the newest registration of
  the chain — a repurposed or remanufactured battery's old identifier resolves to its current passport. The
  walk is bounded (:data:`MAX_HOPS`) and cycle-safe: a registration met twice ends it at the last new one.
* **Predecessors.** Every earlier registration of the chain, and the passports the newest one names as its
  predecessors (``predecessor_dpp_ids``, as registered from the passport), transitively up to
  :data:`MAX_PREDECESSORS`, with their product identifiers and endpoints when the registry holds them.
* **Endpoint.** The registration's ``endpoint`` (the repository API base URL) unless the node directory holds a
  ``repository`` node with that endpoint whose status is not ``active`` (``exited``, ``unreachable``): then the
  endpoint of the registration's backup node (``backup_node_id``) when that node is ``active``; otherwise
  ``endpoint`` is None and ``unavailable`` says why — the resolver answers 503, never a redirect to a repository
  known to be gone. An endpoint the directory does not list is taken as reachable (the registry cannot know
  better). A predecessor's endpoint follows the same rule; unavailable, it is None.

The SQL is plain (``?`` placeholders; the caller converts them for its driver) and the rows are turned into a
Route by pure functions (:func:`route_from_rows`), so the same code runs on the resolver's raw SQLite connection
on the event loop and on PostgreSQL through a DB-API or SQLAlchemy connection (:func:`session_query`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from dbp.rawreads import Query  # query(sql, params) -> rows; SQL written with ? placeholders

log = logging.getLogger("dbp.registry")


MAX_HOPS = 16  # successor links followed at most (a battery is not repurposed sixteen times)
MAX_PREDECESSORS = 64  # predecessor passports listed at most
_PREDECESSOR_ROUNDS = 4  # predecessors of predecessors, levels looked up at most

ACTIVE = "active"
SUPERSEDED = "superseded"
RETIRED = "retired"
REPOSITORY = "repository"

_COLUMNS = ("r.registration_id, r.product_id, r.product_key, r.dpp_id, r.operator_id, r.endpoint, r.status, "
            "r.successor_registration_id, r.predecessor_dpp_ids, n.status, r.backup_node_id, b.endpoint, b.status")
_NODES = ("LEFT JOIN registry_nodes n ON n.endpoint = r.endpoint AND n.kind = 'repository' "
          "LEFT JOIN registry_nodes b ON b.node_id = r.backup_node_id")

#: The chain from the registration holding the key (depth 0) along its successors; params ``(key, key, key)``.
ROUTE_SQL = (
    "WITH RECURSIVE chain(depth, registration_id) AS ("
    "SELECT 0, registration_id FROM registrations WHERE product_key = ? "
    "UNION ALL SELECT 0, a.registration_id FROM registration_aliases a WHERE a.key = ? "
    "AND NOT EXISTS (SELECT 1 FROM registrations x WHERE x.product_key = ?) "
    "UNION ALL SELECT c.depth + 1, r.successor_registration_id FROM chain c "
    "JOIN registrations r ON r.registration_id = c.registration_id "
    f"WHERE r.successor_registration_id IS NOT NULL AND c.depth < {MAX_HOPS}) "
    f"SELECT c.depth, {_COLUMNS} FROM chain c JOIN registrations r ON r.registration_id = c.registration_id "
    f"{_NODES} ORDER BY c.depth"
)


def predecessors_sql(count: int) -> str:
    """Registrations of ``count`` passport ids (params: the ids), with their nodes, as :data:`ROUTE_SQL`'s
    columns after ``depth``."""
    marks = ", ".join(["?"] * count)
    return f"SELECT {_COLUMNS} FROM registrations r {_NODES} WHERE r.dpp_id IN ({marks}) ORDER BY r.registration_id"


@dataclass(frozen=True)
class Predecessor:
    """An earlier passport of the battery. ``product_id`` and ``endpoint`` are None when the registry holds no
    registration of it (or its repository and backup are both gone)."""

    dpp_id: str
    product_id: str | None
    endpoint: str | None


@dataclass(frozen=True)
class Route:
    """Where a product identifier resolves: the newest registration of its chain and the endpoint to use."""

    registration_id: str
    product_id: str  # of the newest registration (the battery's current identifier)
    product_key: str
    dpp_id: str  # the current passport
    operator_id: str
    status: str  # active | superseded | retired, of the newest registration
    registered_endpoint: str
    endpoint: str | None  # what to redirect to: the registered endpoint, the backup's, or None (unavailable)
    via_backup: bool
    unavailable: str | None  # why endpoint is None
    hops: int  # successor links followed from the registration that holds the key
    predecessors: tuple[Predecessor, ...] = ()


@dataclass(frozen=True)
class _Row:
    registration_id: str
    product_id: str
    product_key: str
    dpp_id: str
    operator_id: str
    endpoint: str
    status: str
    successor: str | None
    predecessor_ids: tuple[str, ...]
    node_status: str | None
    backup_node_id: str | None
    backup_endpoint: str | None
    backup_status: str | None

    @classmethod
    def of(cls, row: Sequence[Any]) -> _Row:
        return cls(str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), str(row[5]), str(row[6]),
                   row[7], _id_list(row[8]), row[9], row[10], row[11], row[12])

    def routed(self) -> tuple[str | None, bool, str | None]:
        """(endpoint, via backup, why unavailable) by the rule in the module docstring."""
        if self.node_status is None or self.node_status == ACTIVE:
            return self.endpoint, False, None
        if self.backup_node_id is None:
            return None, False, f"its repository is {self.node_status} and it names no backup node"
        if self.backup_endpoint is None:
            return None, False, (f"its repository is {self.node_status} and its backup node "
                                 f"{self.backup_node_id} is not in the node directory")
        if self.backup_status != ACTIVE:
            return None, False, (f"its repository is {self.node_status} and its backup node {self.backup_node_id} "
                                 f"is {self.backup_status}")
        return self.backup_endpoint, True, None


def _id_list(raw: Any) -> tuple[str, ...]:
    """``predecessor_dpp_ids`` (a JSON list of strings); anything else is no list (logged, never fatal)."""
    if not raw:
        return ()
    try:
        value = json.loads(raw)
    except ValueError:
        log.warning("registrations.predecessor_dpp_ids is not JSON: %.80r", raw)
        return ()
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str) and v)


def chain_from_rows(rows: Sequence[Sequence[Any]]) -> list[_Row]:
    """The registrations of :data:`ROUTE_SQL`'s rows in chain order, cut at the first repeated one (a cycle)."""
    chain: list[_Row] = []
    seen: set[str] = set()
    for row in sorted(rows, key=lambda r: int(r[0])):
        reg = _Row.of(row[1:])
        if reg.registration_id in seen:
            log.warning("registration %s: successor cycle; resolving to %s", chain[0].registration_id,
                        chain[-1].registration_id)
            break
        seen.add(reg.registration_id)
        chain.append(reg)
    return chain


def wanted_predecessors(chain: Sequence[_Row], known: Sequence[_Row] = ()) -> list[str]:
    """Passport ids named as predecessors by the chain or by ``known`` rows, not yet among either."""
    have = {r.dpp_id for r in (*chain, *known)}
    out: list[str] = []
    for reg in (*chain, *known):
        for dpp_id in reg.predecessor_ids:
            if dpp_id not in have and dpp_id not in out:
                out.append(dpp_id)
    return out


def route_from_rows(rows: Sequence[Sequence[Any]], predecessor_rows: Sequence[Sequence[Any]] = ()) -> Route | None:
    """The Route of :data:`ROUTE_SQL`'s rows (None for none) and :func:`predecessors_sql`'s rows (any order)."""
    chain = chain_from_rows(rows)
    if not chain:
        return None
    current = chain[-1]
    endpoint, via_backup, unavailable = current.routed()
    found = [_Row.of(r) for r in predecessor_rows]
    by_dpp = {r.dpp_id: r for r in found}
    predecessors: list[Predecessor] = []
    listed: set[str] = {current.dpp_id}

    def add(dpp_id: str, reg: _Row | None) -> None:
        if dpp_id in listed or len(predecessors) >= MAX_PREDECESSORS:
            return
        listed.add(dpp_id)
        predecessors.append(Predecessor(dpp_id, reg.product_id if reg else None, reg.routed()[0] if reg else None))

    for hop in reversed(chain[:-1]):  # the nearest first
        add(hop.dpp_id, hop)
    pending = [*current.predecessor_ids, *(i for reg in reversed(chain[:-1]) for i in reg.predecessor_ids)]
    while pending:
        dpp_id = pending.pop(0)
        named = by_dpp.get(dpp_id)
        if dpp_id not in listed and named is not None:
            pending.extend(named.predecessor_ids)
        add(dpp_id, named)
    return Route(registration_id=current.registration_id, product_id=current.product_id,
                 product_key=current.product_key, dpp_id=current.dpp_id, operator_id=current.operator_id,
                 status=current.status, registered_endpoint=current.endpoint, endpoint=endpoint,
                 via_backup=via_backup, unavailable=unavailable, hops=len(chain) - 1,
                 predecessors=tuple(predecessors))


def route(query: Query, *, key: str) -> Route | None:
    """The Route of the product key ``key`` (see the module docstring): one query for the chain, and one per
    level of predecessors the registry holds registrations of (at most a few, and only when named)."""
    rows = query(ROUTE_SQL, (key, key, key))
    chain = chain_from_rows(rows)
    if not chain:
        return None
    found: list[Sequence[Any]] = []
    known: list[_Row] = []
    for _ in range(_PREDECESSOR_ROUNDS):
        wanted = wanted_predecessors(chain, known)[:MAX_PREDECESSORS]
        if not wanted:
            break
        more = query(predecessors_sql(len(wanted)), wanted)
        if not more:
            break
        found.extend(more)
        known.extend(_Row.of(r) for r in more)
    return route_from_rows(rows, found)


def session_query(session: Session) -> Query:
    """A :data:`Query` over a SQLAlchemy session (``?`` placeholders become bound parameters)."""
    def run(sql: str, params: Sequence[Any]) -> list[Any]:
        named = sql
        for i in range(len(params)):
            named = named.replace("?", f":p{i}", 1)
        return [tuple(r) for r in session.execute(text(named), {f"p{i}": v for i, v in enumerate(params)})]
    return run

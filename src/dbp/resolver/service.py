"""What the resolver answers for a route, and the operator-configured links (``resolver_links``).

**Links of a passport** (:func:`resolution`). Every registered passport has built-in links on the repository its
route points to (``dbp.registry.routing``): ``gs1:dpp`` → ``{endpoint}/api/v1/dpps/{dppId}`` (JSON; the same URL
serves the passport's HTML page to a browser — the repository negotiates on ``Accept`` — so it is also the
built-in ``gs1:pip``, text/html, unless the operator configures a ``gs1:pip``), and ``gs1:defaultLink`` = the
passport. Its operator's configured links are added by scope: for that battery (``product_key``), for its GTIN,
for all its batteries. An operator's link marked default (the most specific scope first, then the oldest)
replaces the built-in default. Predecessor passports are listed under ``predecessor-version``.

**Choosing a link for ``linkType``**: the candidates of that type in order — for ``gs1:dpp`` the registered
passport first, then the operator's; for other types the operator's (battery, GTIN, operator scope), then the
built-in one — and among several the first whose ``hreflang`` matches the request's ``Accept-Language``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dbp.clock import timestamp
from dbp.errors import BadRequest, Conflict, FieldError, Forbidden, NotFound
from dbp.identifiers import IdentifierError, product_key
from dbp.identifiers.gs1 import parse_element_string, validate_value
from dbp.registry.routing import Route
from dbp.resolver import linkset
from dbp.resolver.linkset import PREDECESSOR, Target, relation
from dbp.resolver.models import ResolverLink

MAX_LINKS_PER_OPERATOR = 1000

#: The operator's configured links (params: operator id), in :data:`LINK_COLUMNS` order.
LINK_COLUMNS = ("id", "gtin", "product_key", "link_type", "href", "title", "media_type", "hreflang", "is_default")
LINKS_SQL = f"SELECT {', '.join(LINK_COLUMNS)} FROM resolver_links WHERE operator_id = ? ORDER BY id"

BUILT_IN_TITLES = {"dpp": "Digital battery passport", "pip": "Battery passport (web page)",
                   "defaultLink": "Current battery passport"}


@dataclass(frozen=True)
class Resolution:
    """Everything the resolver needs to answer for one product identifier, computed once per route."""

    anchor: str
    default: Target
    by_term: dict[str, tuple[Target, ...]]
    link_header: bytes
    linkset: bytes
    route: Route
    extra: dict[str, Any] = field(default_factory=dict)


def _gtin_serial(key: str) -> tuple[str, str]:
    """GTIN and serial of a GS1 product key (``gs1:(01)…(21)…``); empty strings for other schemes."""
    if not key.startswith("gs1:("):
        return "", ""
    try:
        gid = parse_element_string(key[4:])
    except IdentifierError:
        return "", ""
    return gid.gtin or "", gid.serial or ""


def _configured(row: Sequence[Any], values: dict[str, str]) -> Target:
    _, _, _, link_type, href, title, media_type, hreflang, _ = row
    return Target(relation(str(link_type)[4:]), linkset.expand(str(href), values), str(title), media_type or None,
                  tuple(t for t in (hreflang or "").split(",") if t))


def resolution(route: Route, link_rows: Sequence[Sequence[Any]], *, anchor: str, root: str) -> Resolution:
    """The links of ``route`` (module docstring) with ``anchor`` as the linkset's subject; ``root`` is the
    resolver root (GTIN-wide links are listed under the GTIN's own URI when ``anchor`` is more specific)."""
    assert route.endpoint is not None, "an unavailable route has no links"
    gtin, serial = _gtin_serial(route.product_key)
    values = {"dppId": route.dpp_id, "gtin": gtin, "serial": serial, "productId": route.product_id,
              "endpoint": route.endpoint}
    passport = linkset.passport_url(route.endpoint, route.dpp_id)
    scoped: dict[str, list[tuple[Sequence[Any], Target]]] = {"product": [], "gtin": [], "operator": []}
    for row in link_rows:
        row_gtin, row_key = row[1], row[2]
        if row_key is not None and row_key != route.product_key:
            continue
        if row_gtin is not None and row_gtin != gtin:
            continue
        scope = "product" if row_key is not None else "gtin" if row_gtin is not None else "operator"
        scoped[scope].append((row, _configured(row, values)))
    ordered = [*scoped["product"], *scoped["gtin"], *scoped["operator"]]
    by_term: dict[str, list[Target]] = {}
    for row, target in ordered:
        by_term.setdefault(str(row[3])[4:], []).append(target)
    dpp = Target(relation("dpp"), passport, BUILT_IN_TITLES["dpp"], "application/json")
    by_term["dpp"] = [dpp, *by_term.get("dpp", [])]
    if "pip" not in by_term:
        by_term["pip"] = [Target(relation("pip"), passport, BUILT_IN_TITLES["pip"], "text/html")]
    chosen = next((t for row, t in ordered if row[8]), None)
    default = (Target(relation("defaultLink"), chosen.href, chosen.title, chosen.type, chosen.hreflang)
               if chosen else Target(relation("defaultLink"), passport, BUILT_IN_TITLES["defaultLink"]))
    by_term["defaultLink"] = [default]
    predecessors = [Target(PREDECESSOR, linkset.passport_url(p.endpoint, p.dpp_id),
                           f"Predecessor passport {p.dpp_id}" + (f" (product {p.product_id})" if p.product_id else ""),
                           "application/json")
                    for p in route.predecessors if p.endpoint is not None]
    if predecessors:
        by_term[PREDECESSOR] = predecessors
    # the linkset: the item's own links (built-in, battery and operator scope), its GTIN's, the default, predecessors
    configured_terms = {str(row[3])[4:] for row, _ in ordered}
    builtin_pip = [] if "pip" in configured_terms else by_term["pip"][:1]
    gtin_anchor = f"{root}/01/{gtin}" if gtin else anchor
    gtin_wide = [t for _, t in scoped["gtin"]]
    own = [dpp, *builtin_pip, *(t for _, t in scoped["product"]), *(t for _, t in scoped["operator"])]
    if gtin_anchor == anchor:
        own.extend(gtin_wide)
    own.extend([default, *predecessors])
    contexts: list[tuple[str, Sequence[Target]]] = [(anchor, own)]
    if gtin_anchor != anchor and gtin_wide:
        contexts.append((gtin_anchor, gtin_wide))
    every = [t for _, targets in contexts for t in targets]
    header = linkset.link_header(every, f"{anchor}?linkType=linkset")
    return Resolution(anchor=anchor, default=default, by_term={k: tuple(v) for k, v in by_term.items()},
                      link_header=header, linkset=linkset.linkset_json(contexts), route=route)


_LANG_ITEM = re.compile(r"\s*([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*")


def choose(candidates: Sequence[Target], accept_language: str | None) -> Target:
    """The first candidate whose hreflang matches the most preferred language of ``Accept-Language`` (primary
    subtags compared), else the first candidate."""
    if len(candidates) == 1 or not accept_language:
        return candidates[0]
    wanted: list[tuple[float, int, str]] = []
    for i, item in enumerate(accept_language.split(",")[:16]):
        m = _LANG_ITEM.fullmatch(item)
        if m:
            try:
                q = float(m.group(2)) if m.group(2) else 1.0
            except ValueError:
                continue
            if q > 0:
                wanted.append((-q, i, m.group(1).lower()))
    for _, _, lang in sorted(wanted):
        for target in candidates:
            if any(t.split("-")[0].lower() == lang for t in target.hreflang):
                return target
    return candidates[0]


# --------------------------------------------------------------------------------------------- links CRUD
def link_json(link: ResolverLink) -> dict[str, Any]:
    out: dict[str, Any] = {"id": link.id, "operatorId": link.operator_id, "linkType": link.link_type,
                           "href": link.href, "title": link.title, "default": link.is_default,
                           "createdAt": link.created_at}
    if link.gtin:
        out["gtin"] = link.gtin
    if link.product_key:
        out["productKey"] = link.product_key
    if link.media_type:
        out["type"] = link.media_type
    if link.hreflang:
        out["hreflang"] = link.hreflang.split(",")
    return out


def add_link(session: Session, *, operator_id: str, link_type: str, href: str, title: str,
             gtin: str | None = None, product_id: str | None = None, media_type: str | None = None,
             hreflang: str | Sequence[str] | None = None, default: bool = False, created_by: str) -> ResolverLink:
    """Validate and stage a link (flushed, not committed). BadRequest names the broken rule; Conflict when the
    operator already has :data:`MAX_LINKS_PER_OPERATOR`."""
    if not isinstance(operator_id, str) or not 0 < len(operator_id) <= 512 or not operator_id.isprintable():
        raise BadRequest("operatorId is required", details=[FieldError("operatorId", "resolver.operator",
                                                                       "the operator identifier of the scope")])
    kind = linkset.configured_type(link_type)
    if gtin is not None and product_id is not None:
        raise BadRequest("narrow a link to a GTIN or to one product, not both",
                         details=[FieldError("gtin", "resolver.scope", "gtin and productId are exclusive")])
    gtin14 = None
    if gtin is not None:
        try:
            gtin14 = validate_value("01", str(gtin))
        except IdentifierError as exc:
            raise BadRequest(exc.message, details=[FieldError("gtin", exc.rule, exc.message)]) from None
    key = None
    if product_id is not None:
        try:
            key = product_key(str(product_id))
        except IdentifierError as exc:
            raise BadRequest(exc.message, details=[FieldError("productId", exc.rule, exc.message)]) from None
    count = session.scalar(select(func.count()).select_from(ResolverLink)
                           .where(ResolverLink.operator_id == operator_id))
    if (count or 0) >= MAX_LINKS_PER_OPERATOR:
        raise Conflict(f"operator {operator_id} already has {MAX_LINKS_PER_OPERATOR} resolver links; remove some")
    langs = linkset.validate_hreflang(hreflang)
    link = ResolverLink(operator_id=operator_id, gtin=gtin14, product_key=key, link_type=kind,
                        href=linkset.validate_template(href), title=linkset.validate_title(title),
                        media_type=linkset.validate_media_type(media_type), hreflang=",".join(langs) or None,
                        is_default=bool(default) or kind == "gs1:defaultLink", created_at=timestamp(),
                        created_by=created_by[:256])
    session.add(link)
    session.flush()
    return link


def list_links(session: Session, *, operator_id: str | None = None) -> list[ResolverLink]:
    """The links of one operator (all operators' with None), oldest first."""
    q = select(ResolverLink).order_by(ResolverLink.id)
    if operator_id is not None:
        q = q.where(ResolverLink.operator_id == operator_id)
    return list(session.scalars(q))


def remove_link(session: Session, *, link_id: int, operator_id: str | None = None) -> ResolverLink:
    """Delete a link (flushed). ``operator_id``: the caller's; another operator's link is Forbidden. None: any
    (the admin CLI)."""
    link = session.get(ResolverLink, link_id)
    if link is None:
        raise NotFound(f"no resolver link {link_id}")
    if operator_id is not None and link.operator_id != operator_id:
        raise Forbidden(f"resolver link {link_id} belongs to another operator")
    session.delete(link)
    session.flush()
    return link


def anchor_of(root: str, canonical_path: str) -> str:
    """The linkset's subject: the identifier's canonical (uncompressed) GS1 Digital Link URI on this resolver."""
    return root + canonical_path


def query_without_link_type(query: bytes) -> tuple[bytes, str | None]:
    """The request's query string without ``linkType`` (passed on to the target as is) and linkType's value
    (its last occurrence, percent-decoded)."""
    if b"linktype" not in query.lower():
        return query, None
    kept, value = [], None
    for part in query.split(b"&"):
        name, _, raw = part.partition(b"=")
        if name == b"linkType":
            value = unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", "replace")
        elif part:
            kept.append(part)
    return b"&".join(kept), value


def passthrough(query: bytes) -> str:
    """The query string as it may go into a Location header: ASCII, printable, no spaces."""
    text = query.decode("latin-1")
    if text.isascii() and text.isprintable() and " " not in text:
        return text
    return quote(query, safe="&=;%+/?:@,!$'()*~-._")

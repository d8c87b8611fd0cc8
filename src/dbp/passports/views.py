"""A readable HTML page of a passport (content negotiation on the EN 18222 read paths).

The page is built from the stored canonical bytes and labelled from the attribute catalogue, so it
shows exactly what the JSON read returns. Jinja2 autoescaping keeps passport text inert.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from dbp.passports.attributes import collect_attributes
from dbp.passports.schemas import CLUSTERS, BatteryPassport
from dbp.passports.service import StoredVersion

CLUSTER_TITLES = {
    "generalProductInformation": "General battery and manufacturer information",
    "labels": "Symbols, labels and conformity",
    "carbonFootprint": "Carbon footprint",
    "supplyChainDueDiligence": "Supply-chain due diligence",
    "materialComposition": "Materials and composition",
    "circularity": "Circularity and resource efficiency",
    "performanceAndDurability": "Performance and durability",
}
ACCESS_LABELS = {
    "public": "public",
    "legitimateInterest": "legitimate interest",
    "legitimateInterestAndAuthorities": "legitimate interest and authorities",
    "authorities": "authorities only",
}


@cache
def _env() -> Environment:
    return Environment(loader=PackageLoader("dbp.passports", "templates"), autoescape=select_autoescape(["html"]))


@cache
def _catalogue() -> dict[str, Any]:
    return {a.path: a for a in collect_attributes(BatteryPassport)}


def _flatten(value: Any) -> list[tuple[str, str]]:
    """Nested values as (label, text) rows, e.g. ('postalAddress.city', 'Lyon')."""
    if isinstance(value, dict):
        rows: list[tuple[str, str]] = []
        for k, v in value.items():
            rows.extend((f"{k}.{sub}" if sub else k, text) for sub, text in _flatten(v))
        return rows
    if isinstance(value, list):
        rows = []
        for i, v in enumerate(value, start=1):
            rows.extend((f"#{i} {sub}".strip(), text) for sub, text in _flatten(v))
        return rows
    if isinstance(value, bool):
        return [("", "yes" if value else "no")]
    return [("", str(value))]


def _rows(doc: dict[str, Any], cluster: str) -> list[dict[str, Any]]:
    out = []
    for name, value in (doc.get(cluster) or {}).items():
        attr = _catalogue().get(f"{cluster}.{name}")
        meta = attr.meta if attr else None
        out.append({
            "name": attr.description if attr else name, "key": name, "parts": _flatten(value),
            "unit": (meta.unit if meta else None) or "", "access": ACCESS_LABELS[meta.access] if meta else "",
            "clause": meta.clause if meta else "",
            "is_link": isinstance(value, str) and value.startswith(("https://", "http://")),
        })
    return out


def passport_page(request: Request, v: StoredVersion) -> HTMLResponse:
    doc = orjson.loads(v.body)
    gp = doc.get("generalProductInformation") or {}
    title = " ".join(str(x) for x in ((gp.get("manufacturerInformation") or {}).get("name"),
                                      gp.get("batteryModelIdentifier")) if x) or "Battery passport"
    sections = [{"id": c, "title": CLUSTER_TITLES[c], "rows": _rows(doc, c)} for c in CLUSTERS if doc.get(c)]
    header = {k: doc.get(k) for k in ("dppId", "uniqueProductIdentifier", "dppStatus", "economicOperatorId",
                                      "facilityId", "granularity", "dppSchemaVersion", "lastUpdate")}
    html = _env().get_template("passport.html").render(
        title=title, header=header, sections=sections, version=v, links={
            "predecessors": doc.get("predecessorDppIds") or [], "successors": doc.get("successorDppIds") or []},
        end_of_life=doc.get("endOfLife"))
    return HTMLResponse(html, headers={"ETag": v.etag, "Vary": "Accept"})

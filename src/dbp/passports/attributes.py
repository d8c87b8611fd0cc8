"""Per-attribute metadata of the passport model, and its machine-readable catalogue.

Each passport attribute is declared with ``attr(...)``, which puts its metadata into the field's
JSON Schema (``x-dbp``) so that one declaration feeds the Pydantic model, the exported JSON Schema
and the attribute catalogue (``GET /api/v1/schema/attributes``). Access control, conformance and
completeness rules read this catalogue; a test proves every leaf of the model is covered by
exactly one attribute and that the 93 Battery Pass v1.2 longlist rows are all present.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class AccessGroup(StrEnum):
    """Who may read an attribute (Art. 77(2), Annex XIII headings; Battery Pass access groups)."""

    public = "public"  # Annex XIII point 1
    legitimate_interest = "legitimateInterest"  # point 4 (individual battery)
    legitimate_interest_and_authorities = "legitimateInterestAndAuthorities"  # point 2 (+ NB/MSA/COM)
    authorities = "authorities"  # point 3: notified bodies, market surveillance, Commission


class Level(StrEnum):
    model = "model"
    individual = "individual"


class Kind(StrEnum):
    static = "static"
    dynamic = "dynamic"


class Requirement(StrEnum):
    mandatory = "mandatory"
    voluntary = "voluntary"
    not_applicable = "notApplicable"


class Category(StrEnum):
    """Battery categories that owe a passport (Art. 77(1)); stationary BESS is an industrial subcategory."""

    ev = "ev"
    lmt = "lmt"
    industrial = "industrial"
    stationary = "stationary"


CATEGORY_ORDER = (Category.ev, Category.lmt, Category.industrial, Category.stationary)
_REQ = {"x": Requirement.mandatory, "o": Requirement.voluntary, "-": Requirement.not_applicable}


@dataclass(frozen=True)
class AttributeMeta:
    """What the regulation says about one attribute."""

    clause: str  # the clause it implements, e.g. "Annex XIII 1(g); Annex IV Part A(1)"
    access: AccessGroup
    level: Level
    kind: Kind
    applicability: dict[str, Requirement]  # per Category value
    unit: str | None = None
    bms_only: bool = False  # applies only to batteries with a battery management system (Art. 14)
    longlist: int | None = None  # Battery Pass longlist v1.2 row (LL#)
    din_clause: str | None = None  # DIN DKE SPEC 99100 clause
    annex_xiii: str | None = None  # Annex XIII point, e.g. "1(g)"

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["access"] = self.access.value
        out["level"] = self.level.value
        out["kind"] = self.kind.value
        out["applicability"] = {k: v.value for k, v in self.applicability.items()}
        return {k: v for k, v in out.items() if v is not None}


def attr(
    *,
    clause: str,
    access: AccessGroup = AccessGroup.public,
    level: Level = Level.model,
    kind: Kind = Kind.static,
    appl: str = "xxxx",
    unit: str | None = None,
    bms_only: bool = False,
    ll: int | None = None,
    din: str | None = None,
    annex: str | None = None,
    description: str,
    **field_kwargs: Any,
) -> Any:
    """A model field that is a passport attribute. ``appl`` is EV/LMT/industrial/stationary as x/o/-."""
    if len(appl) != 4 or set(appl) - set(_REQ):
        raise ValueError(f"applicability must be 4 of x/o/-, got {appl!r}")
    meta = AttributeMeta(
        clause=clause, access=access, level=level, kind=kind,
        applicability={c.value: _REQ[ch] for c, ch in zip(CATEGORY_ORDER, appl, strict=True)},
        unit=unit, bms_only=bms_only, longlist=ll, din_clause=din, annex_xiii=annex,
    )
    field_kwargs.setdefault("default", None)
    return Field(description=description, json_schema_extra={"x-dbp": meta.as_json()}, **field_kwargs)


@dataclass(frozen=True)
class Attribute:
    path: str  # dotted path from the document root, e.g. "performanceAndDurability.ratedCapacity"
    name: str
    description: str
    meta: AttributeMeta

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "description": self.description, **self.meta.as_json()}


def _meta_of(field: Any) -> AttributeMeta | None:
    extra = field.json_schema_extra
    if not isinstance(extra, dict) or "x-dbp" not in extra:
        return None
    raw = dict(extra["x-dbp"])
    raw["access"] = AccessGroup(raw["access"])
    raw["level"] = Level(raw["level"])
    raw["kind"] = Kind(raw["kind"])
    raw["applicability"] = {k: Requirement(v) for k, v in raw["applicability"].items()}
    return AttributeMeta(**raw)


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    """The BaseModel classes reachable in an annotation (through Optional, list, Annotated)."""
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_model_types(arg))
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and isinstance(origin, type) and issubclass(origin, BaseModel):
        found.append(origin)
    return found


def collect_attributes(model: type[BaseModel], prefix: str = "") -> list[Attribute]:
    """Every attribute declared in ``model`` and the clusters below it, depth first."""
    out: list[Attribute] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        meta = _meta_of(field)
        if meta is not None:
            out.append(Attribute(path=path, name=name, description=field.description or "", meta=meta))
            continue
        for sub in _model_types(field.annotation):
            out.extend(collect_attributes(sub, prefix=f"{path}."))
    return out


def uncovered_leaves(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Leaf fields that no attribute covers (must be empty: access control is fail-closed on it)."""
    out: list[str] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        if _meta_of(field) is not None:
            continue
        subs = _model_types(field.annotation)
        if not subs:
            out.append(path)
        for sub in subs:
            out.extend(uncovered_leaves(sub, prefix=f"{path}."))
    return out

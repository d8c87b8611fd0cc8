"""Validation in layers: schema (Pydantic, strict) then the semantics a schema cannot express.

``parse_document`` turns raw JSON bytes into a ``BatteryPassport`` or raises ``ValidationFailed``
whose details name, for every problem, the JSON path (``$.a.b[0].c``) and the rule broken.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from dbp.errors import FieldError, ValidationFailed
from dbp.identifiers import (
    IdentifierError,
    PartyIdentifier,
    product_key,
)
from dbp.identifiers import recognise_facility_identifier as _recognise_facility
from dbp.identifiers import recognise_operator_identifier as _recognise_operator
from dbp.passports.attributes import Attribute, Kind, Requirement, collect_attributes
from dbp.passports.clusters import BatteryStatus
from dbp.passports.schemas import BatteryPassport, DppStatus

# The first /01/ (or /gtin/) path segment of a GS1 Digital Link URI and the value after it.
_GS1_GTIN = re.compile(r"^https?://[^/?#]+(?:/[^/?#]+)*?/(?:01|gtin)/([^/?#]*)")
_GTIN_DIGITS = re.compile(r"[0-9]{8}|[0-9]{12,14}")
FUTURE_TOLERANCE = timedelta(days=1)


def json_path(loc: tuple[Any, ...]) -> str:
    out = "$"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _schema_errors(exc: ValidationError) -> list[FieldError]:
    out = []
    for err in exc.errors(include_url=False):
        rule = err["type"] if "." in err["type"] else f"schema.{err['type']}"
        out.append(FieldError(path=json_path(tuple(err["loc"])), rule=rule, message=err["msg"]))
    return out


def parse_document(raw: bytes | str) -> BatteryPassport:
    """Schema layer only: strict JSON parsing into the model, refusing unknown keys."""
    try:
        return BatteryPassport.model_validate_json(raw)
    except ValidationError as exc:
        errors = _schema_errors(exc)
        if any(e.rule == "schema.json_invalid" for e in errors):
            raise ValidationFailed("request body is not valid JSON", details=errors) from None
        raise ValidationFailed("passport does not match the schema", details=errors) from None


def validate_dict(doc: dict[str, Any]) -> BatteryPassport:
    return parse_document(orjson.dumps(doc))


def gtin_check_digit_ok(gtin: str) -> bool:
    """GS1 mod-10: weights 3,1,3,… from the right, excluding the check digit."""
    body, check = gtin[:-1], int(gtin[-1])
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


@cache
def _attributes() -> tuple[tuple[Attribute, tuple[str, ...]], ...]:
    return tuple((a, tuple(a.path.split("."))) for a in collect_attributes(BatteryPassport))


def _lookup(model: BaseModel, parts: tuple[str, ...]) -> Any:
    node: Any = model
    for part in parts:
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def _sum_rule(items: list[Any] | None, field: str, path: str, what: str) -> Iterator[FieldError]:
    if not items:
        return
    total = sum(getattr(i, field) or 0.0 for i in items)
    if total > 100.0 + 1e-9:
        yield FieldError(path, "shares.sumAtMost100", f"{what} add up to {total:g} %, more than 100 %")


# A fleet names a handful of operators and plants thousands of times: their recognition (5-8 µs each, several per
# passport) is kept; refusals raise every time (exceptions are not cached).
recognise_operator_identifier = lru_cache(maxsize=4096)(_recognise_operator)
recognise_facility_identifier = lru_cache(maxsize=4096)(_recognise_facility)

def _cross_field(p: BatteryPassport) -> Iterator[FieldError]:
    pd = p.performanceAndDurability
    if pd is not None:
        lo, nom, hi = pd.minimumVoltage, pd.nominalVoltage, pd.maximumVoltage
        pairs = [(lo, nom, "minimumVoltage", "nominalVoltage"), (nom, hi, "nominalVoltage", "maximumVoltage"),
                 (lo, hi, "minimumVoltage", "maximumVoltage")]
        for a, b, na, nb in pairs:
            if a is not None and b is not None and a > b:
                yield FieldError(f"$.performanceAndDurability.{na}", "voltage.order",
                                 f"{na} {a:g} V exceeds {nb} {b:g} V (need min <= nominal <= max)")
        t_lo, t_hi = pd.idleTemperatureLowerBoundary, pd.idleTemperatureUpperBoundary
        if t_lo is not None and t_hi is not None and t_lo > t_hi:
            yield FieldError("$.performanceAndDurability.idleTemperatureLowerBoundary", "temperature.range",
                             f"lower boundary {t_lo:g} °C is above upper boundary {t_hi:g} °C")
    mc = p.materialComposition
    if mc is not None:
        yield from _sum_rule(mc.hazardousSubstances, "concentration", "$.materialComposition.hazardousSubstances",
                             "hazardous substance concentrations")
        yield from _sum_rule(mc.criticalRawMaterials, "weightShare", "$.materialComposition.criticalRawMaterials",
                             "critical raw material shares")
        em = mc.electrodeAndElectrolyteMaterials
        if em is not None:
            for part in ("cathode", "anode", "electrolyte", "separator"):
                yield from _sum_rule(getattr(em, part), "weightShare",
                                     f"$.materialComposition.electrodeAndElectrolyteMaterials.{part}",
                                     f"{part} material shares")
    ci = p.circularity
    if ci is not None:
        for metal in ("Nickel", "Cobalt", "Lithium", "Lead"):
            pre = getattr(ci, f"preConsumerRecycled{metal}Share")
            post = getattr(ci, f"postConsumerRecycled{metal}Share")
            if pre is not None and post is not None and pre + post > 100.0 + 1e-9:
                yield FieldError(f"$.circularity.postConsumerRecycled{metal}Share", "shares.sumAtMost100",
                                 f"pre- and post-consumer recycled {metal.lower()} add up to {pre + post:g} %")
    cf = p.carbonFootprint
    if cf is not None and cf.carbonFootprintPerFunctionalUnit is not None:
        stages = [cf.rawMaterialAcquisition, cf.mainProduction, cf.distribution, cf.endOfLifeAndRecycling]
        total = sum(s for s in stages if s is not None)
        if total > cf.carbonFootprintPerFunctionalUnit * 1.01 + 1e-9:
            yield FieldError("$.carbonFootprint", "carbonFootprint.stagesWithinTotal",
                             f"life-cycle stages add up to {total:g}, more than the total "
                             f"{cf.carbonFootprintPerFunctionalUnit:g} kgCO2e/kWh")
    m = _GS1_GTIN.match(p.uniqueProductIdentifier)
    if m and not _GTIN_DIGITS.fullmatch(m.group(1)):
        yield FieldError("$.uniqueProductIdentifier", "gtin.format",
                         f"the GS1 Digital Link GTIN {m.group(1)!r} must be 8, 12, 13 or 14 digits")
    elif m and not gtin_check_digit_ok(m.group(1)):
        yield FieldError("$.uniqueProductIdentifier", "gtin.checkDigit",
                         f"GTIN {m.group(1)} in the GS1 Digital Link fails the GS1 check digit")
    else:
        try:  # the scheme's own rules (GS1 AI characters and lengths, qualifier order, IEC 61406 https, ...)
            product_key(p.uniqueProductIdentifier)
        except IdentifierError as exc:
            yield FieldError("$.uniqueProductIdentifier", exc.rule, exc.details[0].message)
    yield from _aliases(p)
    # Operator and facility identifiers (ESPR Art. 12): a text that claims GLN, LEI, EORI or ISO/IEC 15459
    # must obey that scheme; an opaque one (urn:, did:web:, free text) passes (dbp.identifiers.parties).
    gpi = p.generalProductInformation
    plant = gpi.manufacturingPlace if gpi else None
    for path, text, recognise in (
        ("$.economicOperatorId", p.economicOperatorId, recognise_operator_identifier),
        ("$.facilityId", p.facilityId, recognise_facility_identifier),
        ("$.generalProductInformation.operatorInformation.identifier",
         gpi.operatorInformation.identifier if gpi and gpi.operatorInformation else None,
         recognise_operator_identifier),
        ("$.generalProductInformation.manufacturerInformation.identifier",
         gpi.manufacturerInformation.identifier if gpi and gpi.manufacturerInformation else None,
         recognise_operator_identifier),
        ("$.generalProductInformation.manufacturingPlace.facilityId", plant.facilityId if plant else None,
         recognise_facility_identifier),
    ):
        if text is not None:
            try:
                recognise(text)
            except IdentifierError as exc:
                yield FieldError(path, exc.rule, exc.details[0].message)
    gp = p.generalProductInformation
    if gp is not None:
        if gp.operatorInformation and gp.operatorInformation.identifier is not None and not _same_party(
                gp.operatorInformation.identifier, p.economicOperatorId, recognise_operator_identifier):
            yield FieldError("$.generalProductInformation.operatorInformation.identifier", "operator.consistent",
                             "operator identifier differs from the header's economicOperatorId")
        made, served = gp.manufacturingDate, gp.puttingIntoServiceDate
        if made and served and served[: len(made)] < made[: len(served)]:
            yield FieldError("$.generalProductInformation.puttingIntoServiceDate", "date.order",
                             "battery put into service before it was manufactured")
        place = gp.manufacturingPlace
        if place and place.facilityId and p.facilityId and not _same_party(
                place.facilityId, p.facilityId, recognise_facility_identifier):
            yield FieldError("$.facilityId", "facility.consistent",
                             "facilityId differs from generalProductInformation.manufacturingPlace.facilityId")


def _aliases(p: BatteryPassport) -> Iterator[FieldError]:
    """Each alias parses, names this battery once and is not its product identifier again."""
    if not p.productIdentifierAliases:
        return
    try:
        own: str | None = product_key(p.uniqueProductIdentifier)
    except IdentifierError:
        own = None
    seen: set[str] = set()
    for i, alias in enumerate(p.productIdentifierAliases or ()):
        path = f"$.productIdentifierAliases[{i}]"
        try:
            key = product_key(alias)
        except IdentifierError as exc:
            yield FieldError(path, exc.rule, exc.details[0].message)
            continue
        if key == own:
            yield FieldError(path, "alias.self", "this is the uniqueProductIdentifier itself, written another way")
        elif key in seen:
            yield FieldError(path, "alias.duplicate", "the same identifier is listed twice")
        seen.add(key)


def _same_party(a: str, b: str, recognise: Callable[[str], PartyIdentifier | None]) -> bool:
    """Equal texts, or two written forms of one GLN, LEI, EORI or 15459 identifier (``(417)…`` and the bare
    13 digits); a form that does not parse is compared as text (its own rule reports it)."""
    if a == b:
        return True
    try:
        left, right = recognise(a), recognise(b)
    except IdentifierError:
        return False
    return left is not None and right is not None and left.key() == right.key()


def _applicability(p: BatteryPassport, *, require_complete: bool) -> Iterator[FieldError]:
    gp = p.generalProductInformation
    category = gp.batteryCategory if gp else None
    bms = bool(gp and gp.bmsPresent)
    if category is None:
        if require_complete:
            yield FieldError("$.generalProductInformation.batteryCategory", "required.forActivation",
                             "battery category is required: applicability of every attribute depends on it")
        return
    for a, parts in _attributes():
        value = _lookup(p, parts)
        need = a.meta.applicability[category.value]
        declared = value is not None  # an empty list declares "none" (e.g. no Cd/Pb symbol is due)
        present = declared and not (type(value) is list and not value)
        if present and need is Requirement.not_applicable:
            yield FieldError(f"$.{a.path}", "category.notApplicable",
                             f"{a.name} does not apply to {category.value} batteries ({a.meta.clause})")
        elif present and a.meta.bms_only and not bms:
            yield FieldError(f"$.{a.path}", "bms.notApplicable",
                             f"{a.name} is battery-management-system data; bmsPresent is not true")
        elif (require_complete and not declared and need is Requirement.mandatory
              and a.meta.kind is Kind.static and not a.meta.bms_only and a.path not in _SERVER_SET):
            yield FieldError(f"$.{a.path}", "required.forActivation",
                             f"{a.name} is mandatory for {category.value} batteries ({a.meta.clause})")


_SERVER_SET = frozenset({"dppId", "dppSchemaVersion", "dppStatus", "lastUpdate"})


def _is_after(ts: str, limit: datetime, limit_text: str) -> bool:
    if ts.endswith("Z"):  # fixed layout: compare as text, no parsing
        return ts[:19] > limit_text
    return datetime.fromisoformat(ts) > limit


def _not_in_future(p: BatteryPassport, now: datetime) -> Iterator[FieldError]:
    limit = now + FUTURE_TOLERANCE
    limit_text = limit.strftime("%Y-%m-%dT%H:%M:%S")
    gp = p.generalProductInformation
    if gp and gp.manufacturingDate and gp.manufacturingDate[:7] > limit_text[:7]:
        yield FieldError("$.generalProductInformation.manufacturingDate", "date.notInFuture",
                         "manufacturing date lies in the future")
    pd = p.performanceAndDurability
    if pd is None:
        return
    for name in _dynamic_fields():
        value = getattr(pd, name)
        for item in value if isinstance(value, list) else (value,):
            ts = getattr(item, "timestamp", None)
            if isinstance(ts, str) and _is_after(ts, limit, limit_text):
                yield FieldError(f"$.performanceAndDurability.{name}.timestamp", "timestamp.notInFuture",
                                 "measurement time lies in the future")
                break


@cache
def _dynamic_fields() -> tuple[str, ...]:
    """Dynamic attributes of the performance cluster (the ones that carry measurement times)."""
    prefix = "performanceAndDurability."
    return tuple(a.path[len(prefix):] for a, _ in _attributes()
                 if a.path.startswith(prefix) and a.meta.kind is Kind.dynamic)


def semantic_errors(p: BatteryPassport, *, now: datetime | None = None) -> list[FieldError]:
    """Rules beyond the schema. Activation (dppStatus active) also demands the mandatory attributes."""
    now = now or datetime.now(UTC)
    require = p.dppStatus is DppStatus.active
    errors = list(_cross_field(p))
    errors.extend(_applicability(p, require_complete=require))
    if require and not _facility_of(p):
        errors.append(FieldError("$.facilityId", "required.forActivation",
                                 "an active passport records the identifier of the facility that made the battery "
                                 "(facilityId or generalProductInformation.manufacturingPlace.facilityId; "
                                 "ESPR Art. 12, EN 18223 Table 1)"))
    errors.extend(_not_in_future(p, now))
    return errors


def _facility_of(p: BatteryPassport) -> str | None:
    gp = p.generalProductInformation
    return p.facilityId or (gp.manufacturingPlace.facilityId if gp and gp.manufacturingPlace else None)


def check_semantics(p: BatteryPassport, *, now: datetime | None = None) -> None:
    errors = semantic_errors(p, now=now)
    if errors:
        raise ValidationFailed("passport breaks semantic rules", details=errors)


__all__ = ["BatteryStatus", "check_semantics", "gtin_check_digit_ok", "json_path", "parse_document",
           "semantic_errors", "validate_dict"]

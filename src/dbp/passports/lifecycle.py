"""Battery lifecycle operations of Art. 77(7)-(8) (HARD-1).

* second life (preparation for re-use or repurposing, repurposing, remanufacturing): a NEW passport
  with a new identifier, linked to 1..n predecessor passports, which become inactive and stay
  readable — one transaction, so responsibility transfer and new passport are one event;
* waste: responsibility moves to another operator on the SAME passport;
* recycling: the passport ends — archived, read-only, every version kept.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy.orm import Session

from dbp.errors import BadRequest, Conflict, FieldError, ValidationFailed
from dbp.passports import service
from dbp.passports.clusters import BatteryStatus
from dbp.passports.models import PassportLink
from dbp.passports.schemas import DppStatus
from dbp.passports.validation import parse_document, validate_dict


class SecondLifeOperation(StrEnum):
    preparation_for_reuse = "preparationForReuse"
    preparation_for_repurposing = "preparationForRepurposing"
    repurposing = "repurposing"
    remanufacturing = "remanufacturing"


RESULTING_STATUS = {
    SecondLifeOperation.preparation_for_reuse: BatteryStatus.re_used,
    SecondLifeOperation.preparation_for_repurposing: BatteryStatus.repurposed,
    SecondLifeOperation.repurposing: BatteryStatus.repurposed,
    SecondLifeOperation.remanufacturing: BatteryStatus.remanufactured,
}
MAX_PREDECESSORS = 1000


def _request(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def create_successor(session: Session, *, body: bytes, now: datetime | None = None) -> service.StoredVersion:
    """Body: ``{"operation", "predecessorDppIds": [...], "passport": {...}}``.

    Preparation for repurposing acts on waste batteries (Art. 3(30)); repurposing on batteries that
    are not waste (Art. 3(31)). Predecessors must be active and not yet succeeded (a draft was never in
    service; an inactive or archived one has ended its life), so one battery has one live passport.
    """
    data = _request(body)
    unknown = set(data) - {"operation", "predecessorDppIds", "passport"}
    if unknown:
        raise ValidationFailed("unknown fields", details=[
            FieldError(f"$.{k}", "schema.extra_forbidden", "not allowed") for k in sorted(unknown)])
    try:
        op = SecondLifeOperation(str(data.get("operation")))
    except ValueError:
        raise ValidationFailed("unknown operation", details=[FieldError(
            "$.operation", "lifecycle.operation", f"one of {', '.join(o.value for o in SecondLifeOperation)}")]
        ) from None
    preds = data.get("predecessorDppIds")
    if (not isinstance(preds, list) or not preds or len(preds) > MAX_PREDECESSORS
            or not all(isinstance(p, str) and 0 < len(p) <= 256 for p in preds) or len(set(preds)) != len(preds)):
        raise ValidationFailed("predecessorDppIds must list 1..1000 distinct passport ids", details=[
            FieldError("$.predecessorDppIds", "lifecycle.predecessors", "1..1000 distinct passport ids")])
    if not isinstance(data.get("passport"), dict):
        raise ValidationFailed("passport must be the new passport document", details=[
            FieldError("$.passport", "lifecycle.passport", "expected an object")])

    passport = dict(data["passport"])
    gp = dict(passport.get("generalProductInformation") or {})
    gp["batteryStatus"] = RESULTING_STATUS[op].value
    passport["generalProductInformation"] = gp
    new_doc = parse_document(orjson.dumps(passport))
    at = service.timestamp(now)
    new_doc.generalProductInformation.batteryStatus = None  # type: ignore[union-attr]
    new_doc, new_id = service.prepare_new(new_doc, at=at)
    new_doc.generalProductInformation.batteryStatus = RESULTING_STATUS[op]  # type: ignore[union-attr]
    new_doc.predecessorDppIds = list(preds)

    rows = [service._row(session, p, for_update=True) for p in sorted(preds)]
    for row in rows:
        if row.dpp_status == DppStatus.archived.value:
            raise Conflict(f"predecessor {row.dpp_id} is archived (recycled); it cannot have a successor")
        succeeded = orjson.loads(service.read_current(session, dpp_id=row.dpp_id).body).get("successorDppIds")
        if succeeded:
            raise Conflict(f"predecessor {row.dpp_id} already has a successor passport ({', '.join(succeeded)}); "
                           "a battery lives one second life at a time: use the successor as predecessor")
        if row.dpp_status != DppStatus.active.value:
            raise Conflict(f"predecessor {row.dpp_id} is {row.dpp_status}; only an active passport can have a "
                           "successor (activate it first)")
        waste = row.battery_status == BatteryStatus.waste.value
        if op is SecondLifeOperation.preparation_for_repurposing and not waste:
            raise Conflict(f"preparation for repurposing applies to waste batteries; {row.dpp_id} is not waste")
        if op is SecondLifeOperation.repurposing and waste:
            raise Conflict(f"{row.dpp_id} is waste: use preparationForRepurposing")
    stored = service.insert_new(session, doc=new_doc, dpp_id=new_id, at=at, change=f"create:{op.value}")
    for row in rows:
        current = orjson.loads(service.read_current(session, dpp_id=row.dpp_id).body)
        current["successorDppIds"] = [*current.get("successorDppIds", []), new_id]
        current["dppStatus"] = DppStatus.inactive.value
        session.add(PassportLink(successor_id=new_id, predecessor_id=row.dpp_id, operation=op.value, created_at=at))
        service.append_version(session, row=row, doc=validate_dict(current), change=f"succeededBy:{op.value}",
                               now=now)
    return stored


def mark_waste(session: Session, *, dpp_id: str, body: bytes, if_match: str | None = None,
               now: datetime | None = None) -> service.StoredVersion:
    """Body: ``{"responsibleOperatorId": "...", "operatorInformation": {...}?}`` (Art. 77(7) 2nd subpara)."""
    data = _request(body)
    unknown = set(data) - {"responsibleOperatorId", "operatorInformation"}
    op_id = data.get("responsibleOperatorId")
    if unknown or not isinstance(op_id, str) or not op_id:
        raise ValidationFailed("expected responsibleOperatorId (and optionally operatorInformation)", details=[
            FieldError("$.responsibleOperatorId", "lifecycle.waste", "the producer, PRO or waste operator id")])

    def to_waste(old: dict[str, Any]) -> dict[str, Any]:
        gp = dict(old.get("generalProductInformation") or {})
        if gp.get("batteryStatus") == BatteryStatus.waste.value:
            raise Conflict("the battery is already waste")
        if old.get("dppStatus") != DppStatus.active.value:
            raise Conflict("only an active passport can record the waste transition")
        gp["batteryStatus"] = BatteryStatus.waste.value
        info = data.get("operatorInformation")
        if info is not None:
            gp["operatorInformation"] = {**info, "identifier": op_id} if isinstance(info, dict) else info
        elif "operatorInformation" in gp:
            gp.pop("operatorInformation")
        return {**old, "economicOperatorId": op_id, "generalProductInformation": gp}

    row = service._row(session, dpp_id, for_update=True)
    service._writable(row)
    current = service.read_current(session, dpp_id=dpp_id)
    service._check_if_match(current, if_match)
    doc = validate_dict(to_waste(orjson.loads(current.body)))
    return service.append_version(session, row=row, doc=doc, change="waste", now=now)


def mark_recycled(session: Session, *, dpp_id: str, body: bytes, if_match: str | None = None,
                  now: datetime | None = None) -> service.StoredVersion:
    """Art. 77(8): the passport ceases — archived and read-only, never deleted. Battery must be waste."""
    data = _request(body) if body.strip() else {}
    recycler = data.get("recyclerId")
    if set(data) - {"recyclerId"} or (recycler is not None and not isinstance(recycler, str)):
        raise ValidationFailed("expected only recyclerId", details=[
            FieldError("$", "lifecycle.recycle", "body may hold recyclerId")])
    row = service._row(session, dpp_id)
    if row.battery_status != BatteryStatus.waste.value:
        raise Conflict("only a waste battery can be recycled; record the waste transition first")
    return service.archive_passport(session, dpp_id=dpp_id, if_match=if_match, reason="recycled",
                                    recycler_id=recycler, now=now)

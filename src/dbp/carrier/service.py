"""What a passport's data carrier encodes, read from the database (keyword-only; never imports FastAPI)."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dbp.access import service as access
from dbp.access.principal import Principal, Role
from dbp.carrier import qr, sheets
from dbp.errors import BadRequest, FieldError, Forbidden, NotFound
from dbp.passports.models import Passport


@dataclass(frozen=True)
class Carried:
    """The product identifier a passport's QR code carries, and the passport's responsible operator."""

    dpp_id: str
    product_id: str
    operator_id: str


def carried(session: Session, *, dpp_id: str) -> Carried:
    """The current ``uniqueProductIdentifier`` of passport ``dpp_id`` (the ``passports.product_id`` column, which
    every write sets from the stored document). Raises NotFound for an unknown passport."""
    row = session.execute(select(Passport.product_id, Passport.operator_id)
                          .where(Passport.dpp_id == dpp_id)).one_or_none()
    if row is None:
        raise NotFound(f"no passport {dpp_id}")
    return Carried(dpp_id=dpp_id, product_id=row.product_id, operator_id=row.operator_id)


def qr_code(session: Session, *, dpp_id: str, opts: qr.QrOptions) -> tuple[Carried, qr.QrImage]:
    """The QR code of passport ``dpp_id`` drawn with ``opts``; NotFound or BadRequest (capacity) otherwise."""
    c = carried(session, dpp_id=dpp_id)
    return c, qr.encode(c.product_id, opts)


# ------------------------------------------------------------------------------ label sheets of a batch

MAX_DPP_IDS = sheets.MAX_LABELS
_TEXT_LIMITS = {"batch": 256, "model": 256, "operator": 512, "dppId": 256}  # the passports columns' widths
_CONTROL = re.compile("[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class LabelRow:
    """What a label of passport ``dpp_id`` prints: its product identifier (the code) and caption fields."""

    dpp_id: str
    product_id: str
    model: str | None
    batch: str | None
    operator_id: str


def label_of(row: LabelRow) -> sheets.Label:
    """The label of ``row``: the code carries the product identifier; the caption is the identifier, then the
    model and the batch when the passport states them."""
    caption = [row.product_id]
    if row.model:
        caption.append(f"Model {row.model}")
    if row.batch:
        caption.append(f"Batch {row.batch}")
    return sheets.Label(link=row.product_id, caption=tuple(caption), dpp_id=row.dpp_id)


def _text(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    limit = _TEXT_LIMITS[name]
    if not value or len(value) > limit or _CONTROL.search(value):
        shown = repr(value[:40]) + ("…" if len(value) > 40 else "")
        raise BadRequest(f"{name}: expected 1..{limit} characters without control characters, got {shown} "
                         f"({len(value)} characters)",
                         details=[FieldError(name, "labels.selection", f"1..{limit} printable characters")])
    return value


def spoken_for(session: Session, principal: Principal) -> frozenset[str]:
    """The operators ``principal`` acts for (``dbp.passports.guard.speaks_for``): its own and those that
    authorised its organisation in writing; none for a device key, an authority or the anonymous public."""
    if principal.is_anonymous or principal.role is Role.device or principal.is_authority:
        return frozenset()
    own = frozenset({principal.operator_id} if principal.operator_id else ())
    if principal.org_id is None:
        return own
    return own | access.authorised_operator_ids(session, agent_org_id=principal.org_id)


def label_rows(session: Session, *, batch: str | None = None, model: str | None = None,
               operator_id: str | None = None, dpp_ids: Sequence[str] | None = None,
               operators: Collection[str] | None = None, limit: int = sheets.MAX_LABELS) -> list[LabelRow]:
    """The passports to print labels for, ordered by product identifier (then passport id).

    The selection is ``batch`` and/or ``model`` and/or ``operator_id`` (all given must match), or an explicit
    list ``dpp_ids`` (alone, duplicates ignored). ``operators`` (None: no restriction, e.g. the command line
    with database access) restricts it to passports of those responsible operators: filters then select among
    them only, while a listed passport of another operator is Forbidden, as is an ``operator_id`` outside them.

    Raises BadRequest for an empty or malformed selection or one of more than ``limit`` passports, NotFound
    when nothing matches (naming what was asked; for a list, which ids are unknown)."""
    batch, model, operator_id = _text("batch", batch), _text("model", model), _text("operator", operator_id)
    if dpp_ids is not None and not dpp_ids:
        dpp_ids = None
    if dpp_ids is not None and (batch or model or operator_id):
        raise BadRequest("selection: give dppId alone, or batch / model / operator, not both",
                         details=[FieldError("dppId", "labels.selection", "a list of dppId stands alone")])
    if dpp_ids is None and not (batch or model or operator_id):
        raise BadRequest("selection: expected batch, model, operator or dppId",
                         details=[FieldError("batch", "labels.selection", "name what to print")])
    if operators is not None and not operators:
        raise Forbidden("labels are printed by a responsible operator or an organisation it authorised in writing; "
                        "you act for no operator (device keys and authorities never do)")
    if operators is not None and operator_id is not None and operator_id not in operators:
        raise Forbidden(f"you do not act for operator {operator_id}: labels are printed by the responsible "
                        "operator or an organisation it authorised")
    columns = (Passport.dpp_id, Passport.product_id, Passport.model, Passport.batch, Passport.operator_id)
    if dpp_ids is not None:
        wanted = list(dict.fromkeys(_text("dppId", d) or "" for d in dpp_ids))
        if len(wanted) > limit:
            raise BadRequest(f"dppId: expected at most {limit} passports, got {len(wanted)}",
                             details=[FieldError("dppId", "labels.max", f"at most {limit}")])
        rows: list[Any] = []
        for start in range(0, len(wanted), 500):  # bound the IN list (SQLite's variable limit, plan size)
            rows.extend(session.execute(select(*columns).where(Passport.dpp_id.in_(wanted[start:start + 500])))
                        .all())
        missing = sorted(set(wanted) - {r.dpp_id for r in rows})
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise NotFound(f"no passport {', '.join(missing[:3])}{more}")
        if operators is not None:
            foreign = sorted({r.dpp_id for r in rows if r.operator_id not in operators})
            if foreign:
                more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
                raise Forbidden(f"passport {', '.join(foreign[:3])}{more} is not of an operator you act for: "
                                "labels are printed by the responsible operator or an organisation it authorised")
        rows.sort(key=lambda r: (r.product_id, r.dpp_id))
    else:
        query = select(*columns)
        if batch is not None:
            query = query.where(Passport.batch == batch)
        if model is not None:
            query = query.where(Passport.model == model)
        if operator_id is not None:
            query = query.where(Passport.operator_id == operator_id)
        if operators is not None:
            query = query.where(Passport.operator_id.in_(sorted(operators)))
        rows = list(session.execute(query.order_by(Passport.product_id, Passport.dpp_id).limit(limit + 1)).all())
        if not rows:
            asked = ", ".join(f"{k} {v!r}" for k, v in (("batch", batch), ("model", model),
                                                        ("operator", operator_id)) if v is not None)
            scope = "" if operators is None else " among the passports of the operators you act for"
            raise NotFound(f"no passports with {asked}{scope}")
        if len(rows) > limit:
            raise BadRequest(f"selection: more than {limit} passports match; narrow it (batch and model together, "
                             "or lists of dppId)",
                             details=[FieldError("selection", "labels.max", f"at most {limit}")])
    return [LabelRow(r.dpp_id, r.product_id, r.model, r.batch, r.operator_id) for r in rows]

"""What a passport's data carrier encodes, read from the database (keyword-only; never imports FastAPI)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dbp.carrier import qr
from dbp.errors import NotFound
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

"""Supplier attestations: verifiable credentials (``application/vc+jwt``) by other organisations — a cell
supplier's signed material-origin claim, a test lab's result — attached to a passport by its responsible economic
operator (or an organisation it authorised in writing) and verified on upload (``dbp.integrity.credentials``).

Storage: ``attestations``, one row per (passport, token): the token exactly as uploaded, what verification found
(issuer, key, types, validity), the access group that may read it, who attached it and when. Rows are inserted,
never updated or deleted (a withdrawn claim expires through its own ``validUntil``). Keyword-only functions over a
``Session``; they flush, the caller commits.

**Subject rule.** Every ``credentialSubject.id`` must name this passport: its passport identifier (dppId), its
product identifier (``uniqueProductIdentifier``), or its URL ``<base>/api/v1/dpps/<dppId>``. A claim about a
product type or a batch names no single passport and is refused: attach it to each passport it covers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from dbp.clock import timestamp
from dbp.db import Base
from dbp.errors import FieldError, ValidationFailed
from dbp.integrity.canonical import sha256_hex
from dbp.integrity.credentials import Verified, parse_datetime, subject_ids

TS = String(27)
#: Largest attestation token accepted (a claim, not a document).
MAX_ATTESTATION_BYTES = 256 * 1024


class Attestation(Base):
    """A verified credential attached to a passport. Never updated."""

    __tablename__ = "attestations"

    dpp_id: Mapped[str] = mapped_column(String(256), ForeignKey("passports.dpp_id"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)  # of the token as uploaded
    issuer: Mapped[str] = mapped_column(String(512))
    kid: Mapped[str] = mapped_column(String(1024))
    credential_id: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    types: Mapped[str] = mapped_column(Text)  # JSON list
    valid_from: Mapped[str | None] = mapped_column(String(64), nullable=True)
    valid_until: Mapped[str | None] = mapped_column(String(64), nullable=True)
    access_group: Mapped[str] = mapped_column(String(40))
    token: Mapped[str] = mapped_column(Text)
    attached_at: Mapped[str] = mapped_column(TS)
    attached_by: Mapped[str] = mapped_column(String(256))
    attached_by_org: Mapped[str | None] = mapped_column(String(64), nullable=True)


def passport_names(*, dpp_id: str, product_id: str | None, base_url: str) -> set[str]:
    """The identifiers a credential subject may use for this passport."""
    names = {dpp_id, f"{base_url.rstrip('/')}/api/v1/dpps/{quote(dpp_id, safe=':')}"}
    if product_id:
        names.add(product_id)
    return names


def check_subject(verified: Verified, names: set[str]) -> None:
    """``ValidationFailed`` unless every credential subject's id is one of ``names``."""
    ids = subject_ids(verified.credential)
    wrong = [i for i in ids if not isinstance(i, str) or i not in names]
    if wrong:
        raise ValidationFailed("the attestation is not about this passport", details=[FieldError(
            "$.credentialSubject.id", "attestation.subject",
            f"expected the passport id, its product id or its URL ({', '.join(sorted(names))}), got "
            f"{', '.join(repr(w) for w in wrong)[:300]}")])


def attach(session: Session, *, dpp_id: str, token: str, verified: Verified, access_group: str, principal_subject: str,
           principal_org: str | None) -> tuple[dict[str, Any], bool]:
    """Store the attestation; returns its JSON and whether it is new (the same token again: the stored one)."""
    digest = sha256_hex(token.encode("ascii"))
    existing = session.get(Attestation, (dpp_id, digest))
    if existing is not None:
        return as_json(existing), False
    credential = verified.credential
    cid = credential.get("id")
    row = Attestation(dpp_id=dpp_id, sha256=digest, issuer=verified.issuer, kid=verified.kid,
                      credential_id=cid if isinstance(cid, str) and len(cid) <= 2048 else None,
                      types=orjson.dumps(credential.get("type", [])).decode(),
                      valid_from=credential.get("validFrom"), valid_until=credential.get("validUntil"),
                      access_group=access_group, token=token, attached_at=timestamp(),
                      attached_by=principal_subject[:256], attached_by_org=principal_org)
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:  # attached concurrently by another request: the same row
        stored = session.get(Attestation, (dpp_id, digest))
        if stored is None:
            raise
        return as_json(stored), False
    return as_json(row), True


def list_for(session: Session, *, dpp_id: str, groups: frozenset[str],
             now: datetime | None = None) -> list[dict[str, Any]]:
    """The attestations of a passport that readers of ``groups`` may see, oldest first; ``expired`` says whether
    its ``validUntil`` has passed since it was attached (the token is there to check it again)."""
    at = now or datetime.now(UTC)
    rows = session.scalars(select(Attestation).where(Attestation.dpp_id == dpp_id)
                           .order_by(Attestation.attached_at, Attestation.sha256))
    return [{**as_json(r), "expired": r.valid_until is not None and parse_datetime(r.valid_until, "validUntil") <= at}
            for r in rows if r.access_group in groups]


def as_json(row: Attestation) -> dict[str, Any]:
    return {"id": row.sha256, "dppId": row.dpp_id, "issuer": row.issuer, "kid": row.kid,
            "credentialId": row.credential_id, "type": orjson.loads(row.types), "validFrom": row.valid_from,
            "validUntil": row.valid_until, "accessGroup": row.access_group, "attachedAt": row.attached_at,
            "attachedBy": row.attached_by, "credential": row.token}

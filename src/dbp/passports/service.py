"""Passport use cases: create, read, update (merge patch, element), archive, versions, search.

Keyword-only functions over a SQLAlchemy ``Session``; they flush, the caller commits (one
transaction per request). Every write stores a complete new version (canonical bytes + SHA-256)
and never changes an old one.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dbp import clock, cursors
from dbp.clock import timestamp
from dbp.errors import (
    BadRequest,
    Conflict,
    FieldError,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from dbp.identifiers import IdentifierError, product_key
from dbp.integrity import log as integrity_log
from dbp.integrity.canonical import canonical_bytes, sha256_hex
from dbp.integrity.signing import kid_of, sign_version
from dbp.passports import aliases, paths
from dbp.passports.attributes import AccessGroup
from dbp.passports.clusters import BatteryStatus
from dbp.passports.models import Passport, PassportVersion, ProductAlias
from dbp.passports.redaction import index_of, redact
from dbp.passports.schemas import (
    CONTENT_SPECIFICATION,
    SCHEMA_VERSION,
    SERVER_MANAGED,
    BatteryPassport,
    DppStatus,
)
from dbp.passports.validation import check_semantics, parse_document, validate_dict

PUBLIC_ONLY = frozenset({AccessGroup.public})


def new_dpp_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


@dataclass(frozen=True)
class StoredVersion:
    """What a read returns: the canonical bytes exactly as stored (the full version or one access
    view of it), how to cite them, and the passport's responsible operator."""

    dpp_id: str
    version: int
    created_at: str
    sha256: str
    body: bytes
    operator_id: str | None = None
    view_index: str | None = None  # where each attribute lies in body (redaction.index_of); None: unknown
    # detached JWS of body (dbp.integrity.signing) — only when body is the full version, never for a view
    signature: str | None = None
    public_sha256: str | None = None  # of the version's public view (set on writes: the log leaf commits to it)

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'

    def leaf(self) -> integrity_log.Leaf:
        """What this version's transparency-log leaf commits to."""
        kid = None if self.signature is None else kid_of(self.signature)
        return integrity_log.Leaf(self.dpp_id, self.version, self.sha256, self.created_at, kid=kid,
                                  public_sha256=self.public_sha256)

    def headers(self) -> dict[str, str]:
        """Response headers of a read of this version (the same on every read path)."""
        headers = {"ETag": self.etag, "X-DPP-Version": str(self.version), "Last-Modified-At": self.created_at,
                   "Cache-Control": "no-cache"}
        if self.signature is not None:
            headers["X-DPP-Signature"] = self.signature
        return headers

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """``headers()`` as ASGI wants them (lower-case names, bytes), for the hot read path."""
        raw = [(b"etag", b'"%s"' % self.sha256.encode()), (b"x-dpp-version", b"%d" % self.version),
               (b"last-modified-at", self.created_at.encode()), (b"cache-control", b"no-cache")]
        if self.signature is not None:
            raw.append((b"x-dpp-signature", self.signature.encode("ascii")))
        return raw


@dataclass(frozen=True)
class Rendered:
    """A version's canonical bytes and its public view, each with its SHA-256."""

    body: bytes
    sha256: str
    public_body: bytes
    public_sha256: str
    view_index: str | None = None

    def row(self) -> dict[str, str | None]:
        return {"sha256": self.sha256, "canonical": self.body.decode(), "public_sha256": self.public_sha256,
                "public_canonical": self.public_body.decode(), "view_index": self.view_index}



# ------------------------------------------------------------------------------------ writing
def key_of_product(product_id: str) -> str:
    """``identifiers.product_key`` of a passport's product identifier; a refusal is a 400 naming the rule."""
    try:
        return product_key(product_id)
    except IdentifierError as exc:
        raise ValidationFailed("the unique product identifier is malformed", details=[FieldError(
            "$.uniqueProductIdentifier", exc.rule, exc.details[0].message)]) from exc


def _columns(doc: BatteryPassport, *, key: bool = True) -> dict[str, Any]:
    """The passport row's columns from ``doc``; ``key``: with ``product_key`` (not for updates: the identifier is
    immutable, and a row keyed before the parsers existed keeps its ``unparsed:`` key)."""
    gp = doc.generalProductInformation
    mc = doc.materialComposition
    made = gp.manufacturingDate if gp else None
    return {
        "product_id": doc.uniqueProductIdentifier,
        **({"product_key": key_of_product(doc.uniqueProductIdentifier)} if key else {}),
        "dpp_status": (doc.dppStatus or DppStatus.draft).value,
        "battery_status": gp.batteryStatus.value if gp and gp.batteryStatus else None,
        "category": gp.batteryCategory.value if gp and gp.batteryCategory else None,
        "chemistry": mc.batteryChemistry.shortName if mc and mc.batteryChemistry else None,
        "manufacturer": gp.manufacturerInformation.name if gp and gp.manufacturerInformation else None,
        "model": gp.batteryModelIdentifier if gp else None,
        "batch": gp.batchNumber if gp else None,
        "facility": doc.facilityId or (gp.manufacturingPlace.facilityId if gp and gp.manufacturingPlace else None),
        "operator_id": doc.economicOperatorId,
        "manufactured": made if made is None or len(made) == 10 else f"{made}-01",
    }


def _finalise(doc: BatteryPassport, *, dpp_id: str, at: str) -> Rendered:
    """Stamp server-managed header fields; render the canonical bytes and the public view."""
    doc.dppId = dpp_id
    doc.lastUpdate = at
    doc.dppSchemaVersion = SCHEMA_VERSION
    if doc.dppStatus is None:
        doc.dppStatus = DppStatus.draft
    if not doc.contentSpecificationIds:
        doc.contentSpecificationIds = [CONTENT_SPECIFICATION]
    data = doc.model_dump(mode="json", exclude_none=True)
    body = canonical_bytes(data)
    public = canonical_bytes(redact(data, PUBLIC_ONLY))
    return Rendered(body, sha256_hex(body), public, sha256_hex(public), index_of(data, body))


def prepare_new(doc: BatteryPassport, *, at: str) -> tuple[BatteryPassport, str]:
    """Checks for a document about to become a new passport; returns it with its dppId."""
    given = doc.model_fields_set & set(SERVER_MANAGED) - {"dppSchemaVersion", "lastUpdate"}
    if given:
        raise ValidationFailed(
            "server-managed fields cannot be set by clients",
            details=[FieldError(f"$.{f}", "serverManaged", f"{f} is set by the repository") for f in sorted(given)],
        )
    if doc.dppSchemaVersion not in (None, SCHEMA_VERSION):
        raise ValidationFailed("unsupported schema version", details=[FieldError(
            "$.dppSchemaVersion", "schemaVersion.supported", f"this repository stores {SCHEMA_VERSION}")])
    if doc.dppStatus in (DppStatus.archived, DppStatus.inactive):
        raise ValidationFailed("a new passport starts as draft or active", details=[FieldError(
            "$.dppStatus", "status.initial", "use draft or active")])
    if doc.generalProductInformation and doc.generalProductInformation.batteryStatus not in (
            None, BatteryStatus.original):
        raise ValidationFailed("a new passport is for an original battery", details=[FieldError(
            "$.generalProductInformation.batteryStatus", "batteryStatus.initial",
            "second-life passports are created with POST /api/v1/lifecycle/successors")])
    return doc, doc.dppId or new_dpp_id()


def insert_new(
    session: Session, *, doc: BatteryPassport, dpp_id: str, at: str, change: str = "create"
) -> StoredVersion:
    check_semantics(doc)
    rendered = _finalise(doc, dpp_id=dpp_id, at=at)
    if session.get(Passport, dpp_id) is not None:
        raise Conflict(f"passport {dpp_id} already exists")
    key = key_of_product(doc.uniqueProductIdentifier)
    taken = session.execute(select(Passport.dpp_id, Passport.product_id).where(Passport.product_key == key)).first()
    if taken is not None:
        same = "" if taken.product_id == doc.uniqueProductIdentifier else f" (written {taken.product_id})"
        raise Conflict(f"product {doc.uniqueProductIdentifier} already has a passport in this repository: "
                       f"{taken.dpp_id}{same}")
    session.add(Passport(dpp_id=dpp_id, current_version=1, created_at=at, updated_at=at, **_columns(doc)))
    aliases.bind(session, dpp_id=dpp_id, product_id=doc.uniqueProductIdentifier, key=key,
                 aliases=doc.productIdentifierAliases or ())
    signature = sign_version(session, rendered.body)
    session.add(PassportVersion(dpp_id=dpp_id, version=1, created_at=at, change=change, signature=signature,
                                **rendered.row()))
    _flush(session)
    stored = StoredVersion(dpp_id, 1, at, rendered.sha256, rendered.body, doc.economicOperatorId, rendered.view_index,
                           signature, rendered.public_sha256)
    integrity_log.append(session, leaves=[stored.leaf()])
    return stored


def create_passport(session: Session, *, body: bytes, now: datetime | None = None) -> StoredVersion:
    """CreateDPP: validate, assign the id, store version 1. Conflict if the product has a passport."""
    doc = parse_document(body)
    at = timestamp(now)
    doc, dpp_id = prepare_new(doc, at=at)
    return insert_new(session, doc=doc, dpp_id=dpp_id, at=at)


def _flush(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict("the passport was changed or created concurrently; retry the request") from exc


def append_version(session: Session, *, row: Passport, doc: BatteryPassport, change: str,
                   now: datetime | None = None, log: bool = True) -> StoredVersion:
    """Store ``doc`` as the next version of ``row``; optimistic on ``current_version``. Appends its leaf to the
    transparency log unless ``log`` is false (the caller then appends it, with others, as its last write)."""
    check_semantics(doc)
    at = timestamp(now)
    rendered = _finalise(doc, dpp_id=row.dpp_id, at=at)
    version = row.current_version + 1
    signature = sign_version(session, rendered.body)
    session.add(PassportVersion(dpp_id=row.dpp_id, version=version, created_at=at, change=change,
                                signature=signature, **rendered.row()))
    result = session.execute(
        update(Passport)
        .where(and_(Passport.dpp_id == row.dpp_id, Passport.current_version == row.current_version))
        .values(current_version=version, updated_at=at, **_columns(doc, key=False))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("the passport was changed concurrently; retry with a fresh ETag")
    aliases.bind(session, dpp_id=row.dpp_id, product_id=doc.uniqueProductIdentifier,
                 key=row.product_key or key_of_product(doc.uniqueProductIdentifier),
                 aliases=doc.productIdentifierAliases or ())
    _flush(session)
    row.current_version = version
    stored = StoredVersion(row.dpp_id, version, at, rendered.sha256, rendered.body, doc.economicOperatorId,
                           rendered.view_index, signature, rendered.public_sha256)
    if log:
        integrity_log.append(session, leaves=[stored.leaf()])
    return stored


# ------------------------------------------------------------------------------------ reading
def _row(session: Session, dpp_id: str, *, for_update: bool = False) -> Passport:
    if "\x00" in dpp_id:  # ids from request bodies (predecessors); PostgreSQL refuses NUL even in a comparison
        raise NotFound(f"no passport {dpp_id!r}")
    stmt = select(Passport).where(Passport.dpp_id == dpp_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None:
        raise NotFound(f"no passport {dpp_id}")
    return row


def _stored(v: PassportVersion, operator_id: str) -> StoredVersion:
    """A stored version; ``operator_id`` is the passport's responsible operator now (it decides access
    to every version, including those from before a transfer)."""
    return StoredVersion(v.dpp_id, v.version, v.created_at, v.sha256, v.canonical.encode(), operator_id, v.view_index,
                         v.signature, v.public_sha256)


def read_current(session: Session, *, dpp_id: str) -> StoredVersion:
    row = session.execute(
        select(PassportVersion, Passport.operator_id).join(Passport, and_(
            Passport.dpp_id == PassportVersion.dpp_id, Passport.current_version == PassportVersion.version))
        .where(Passport.dpp_id == dpp_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no passport {dpp_id}")
    return _stored(row[0], row[1])


def current_versions(session: Session, *, dpp_ids: list[str]) -> list[tuple[StoredVersion, StoredVersion | None]]:
    """The current version of each named passport with its stored public view (None for a version stored
    before public views were), in dppId order, in one query. Names that are no passport are left out."""
    if not dpp_ids:
        return []
    v = PassportVersion
    rows = session.execute(
        select(v.dpp_id, v.version, v.created_at, v.sha256, v.canonical, v.view_index, v.public_sha256,
               v.public_canonical, Passport.operator_id, v.signature)
        .join(Passport, and_(Passport.dpp_id == v.dpp_id, Passport.current_version == v.version))
        .where(Passport.dpp_id.in_(dpp_ids)).order_by(Passport.dpp_id)
    ).all()
    return [(StoredVersion(d, n, at, sha, body.encode(), op, index, sig),
             None if psha is None or pbody is None else StoredVersion(d, n, at, psha, pbody.encode(), op))
            for d, n, at, sha, body, index, psha, pbody, op, sig in rows]


def lookup_keys(product_id: str) -> tuple[str, ...]:
    """The keys a product identifier may be stored under: its ``product_key``; for text the parsers refuse, the
    ``unparsed:`` key migration 0010 gave identifiers stored before them (IdentifierError, a 400, if none)."""
    try:
        return (product_key(product_id),)
    except IdentifierError:
        return ("unparsed:" + product_id,)


def dpp_id_of_product(session: Session, *, product_id: str) -> str:
    """The passport of the product written ``product_id`` in any form of its scheme, or of the battery it is an
    alias of (``productIdentifierAliases``); a malformed identifier that no legacy row holds is a 400."""
    key = lookup_keys(product_id)[0]
    dpp_id = session.scalar(select(Passport.dpp_id).where(Passport.product_key == key)) or \
        aliases.dpp_id_of_alias(session, key=key)
    if dpp_id is None and key.startswith("unparsed:"):
        product_key(product_id)  # raises: the identifier's own refusal
    if dpp_id is None:
        raise NotFound(f"no passport for product {product_id}")
    return dpp_id



def parse_instant(value: str) -> str:
    """The ``date`` of a point-in-time read (a bare date: the end of that UTC day) in the stored form."""
    return clock.parse_instant(value, name="date", end_of_day=True)


def read_at(session: Session, *, dpp_id: str, at: str) -> StoredVersion:
    """ReadDPPVersionByIdAndDate: the version that was current at instant ``at``."""
    row = _row(session, dpp_id)
    v = session.scalars(
        select(PassportVersion).where(PassportVersion.dpp_id == dpp_id, PassportVersion.created_at <= at)
        .order_by(PassportVersion.version.desc()).limit(1)
    ).first()
    if v is None:
        raise NotFound(f"passport {dpp_id} did not exist at {at}")
    return _stored(v, row.operator_id)


def read_version(session: Session, *, dpp_id: str, version: int) -> StoredVersion:
    v = session.get(PassportVersion, (dpp_id, version))
    if v is None:
        raise NotFound(f"passport {dpp_id} has no version {version}")
    return _stored(v, _row(session, dpp_id).operator_id)


def list_versions(session: Session, *, dpp_id: str) -> list[dict[str, Any]]:
    _row(session, dpp_id)
    rows = session.execute(
        select(PassportVersion.version, PassportVersion.created_at, PassportVersion.change, PassportVersion.sha256)
        .where(PassportVersion.dpp_id == dpp_id).order_by(PassportVersion.version)
    ).all()
    return [{"version": v, "createdAt": c, "change": ch, "sha256": s} for v, c, ch, s in rows]


# ------------------------------------------------------------------------------------ updating
def _check_if_match(current: StoredVersion, if_match: str | None) -> None:
    if if_match is None:
        return
    tags = [t.strip() for t in if_match.split(",")]
    if "*" in tags or current.etag in tags:
        return
    raise PreconditionFailed(f"If-Match {if_match} is not the current version (current ETag {current.etag})")


def _writable(row: Passport) -> None:
    if row.dpp_status == DppStatus.archived.value:
        raise Conflict(f"passport {row.dpp_id} is archived and read-only")


_DPP_TRANSITIONS = {
    DppStatus.draft: {DppStatus.draft, DppStatus.active},
    DppStatus.active: {DppStatus.active, DppStatus.inactive},
    DppStatus.inactive: {DppStatus.inactive, DppStatus.active},
}
# Battery status changes an update may make: re-use/repair of an original battery (Art. 77(7), REG-ART77-17);
# a stored document without a status is an original battery. Anything else — removing the status included —
# is a lifecycle operation: waste needs a responsibility transfer; repurposing/remanufacturing a new passport.
_PATCH_BATTERY_STATUS = {(BatteryStatus.original, BatteryStatus.original),
                         (BatteryStatus.original, BatteryStatus.re_used)}


def _check_update(old: dict[str, Any], new: BatteryPassport) -> None:
    errors: list[FieldError] = []
    if new.dppId != old.get("dppId"):
        errors.append(FieldError("$.dppId", "immutable", "the passport identifier never changes"))
    if new.uniqueProductIdentifier != old.get("uniqueProductIdentifier"):
        errors.append(FieldError("$.uniqueProductIdentifier", "immutable",
                                 "the product identifier never changes; a second-life battery gets a successor "
                                 "passport (POST /api/v1/lifecycle/successors)"))
    dumped = new.model_dump(mode="json", exclude_none=True, include=set(SERVER_MANAGED))
    for f in SERVER_MANAGED:
        if f != "lastUpdate" and dumped.get(f) != old.get(f):
            errors.append(FieldError(f"$.{f}", "serverManaged", f"{f} is set by the repository"))
    old_status = DppStatus(old.get("dppStatus", "draft"))
    new_status = new.dppStatus or old_status
    if old.get("successorDppIds") and new_status is DppStatus.active and old_status is not DppStatus.active:
        errors.append(FieldError("$.dppStatus", "status.superseded",
                                 "this passport was succeeded by a second-life passport and stays inactive"))
    elif new_status not in _DPP_TRANSITIONS.get(old_status, set()):
        hint = " (archive with DELETE or the recycle operation)" if new_status is DppStatus.archived else ""
        errors.append(FieldError("$.dppStatus", "status.transition",
                                 f"cannot go from {old_status.value} to {new_status.value}{hint}"))
    old_raw = (old.get("generalProductInformation") or {}).get("batteryStatus")
    old_bs = BatteryStatus(old_raw or BatteryStatus.original)
    new_bs = new.generalProductInformation.batteryStatus if new.generalProductInformation else None
    if (new_bs.value if new_bs else None) != old_raw and (old_bs, new_bs) not in _PATCH_BATTERY_STATUS:
        if old_bs is BatteryStatus.waste:
            hint = "a waste battery leaves waste status only through a successor passport"
        elif new_bs in (BatteryStatus.waste, BatteryStatus.repurposed, BatteryStatus.remanufactured):
            hint = (f"{new_bs.value} is set by a lifecycle operation (waste: POST .../waste; "
                    "repurposed/remanufactured: POST /api/v1/lifecycle/successors)")
        else:
            hint = (f"cannot go from {old_bs.value} to {new_bs.value if new_bs else 'no status'}: an update may only "
                    "mark an original battery re-used; a second life gets a successor passport "
                    "(POST /api/v1/lifecycle/successors)")
        errors.append(FieldError("$.generalProductInformation.batteryStatus", "batteryStatus.transition", hint))
    if errors:
        raise ValidationFailed("update breaks lifecycle rules", details=errors)


def _apply(session: Session, *, dpp_id: str, if_match: str | None, change: str,
           transform: Any, now: datetime | None) -> StoredVersion:
    row = _row(session, dpp_id, for_update=True)
    _writable(row)
    current = read_current(session, dpp_id=dpp_id)
    _check_if_match(current, if_match)
    old = orjson.loads(current.body)
    new_doc = transform(old)
    if not isinstance(new_doc, dict):
        raise BadRequest("the result of the update is not a JSON object")
    new_doc.pop("lastUpdate", None)
    model = validate_dict(new_doc)
    # a merge patch that removes dppStatus leaves it as it was (_finalise would otherwise stamp draft)
    model.dppStatus = model.dppStatus or DppStatus(old.get("dppStatus", "draft"))
    _check_update(old, model)
    return append_version(session, row=row, doc=model, change=change, now=now)


def _json_body(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}",
                         details=[FieldError("$", "json.syntax", str(exc))]) from None


def patch_passport(session: Session, *, dpp_id: str, body: bytes, if_match: str | None = None,
                   now: datetime | None = None) -> StoredVersion:
    """UpdateDPPById with an RFC 7396 merge patch: atomic, a new version, lifecycle rules enforced."""
    patch = _json_body(body)
    if not isinstance(patch, dict):
        raise BadRequest("a merge patch for a passport must be a JSON object",
                         details=[FieldError("$", "mergePatch.object", "expected an object")])
    return _apply(session, dpp_id=dpp_id, if_match=if_match, change="update",
                  transform=lambda old: paths.merge_patch(old, patch), now=now)


def patch_element(session: Session, *, dpp_id: str, element_path: str, body: bytes,
                  if_match: str | None = None, now: datetime | None = None) -> StoredVersion:
    """UpdateDataElement: replace one element (``null`` removes it) as a new version."""
    path = paths.parse_element_path(element_path)
    if path and path[0] in SERVER_MANAGED:  # _apply would drop lastUpdate silently and store a new version
        raise ValidationFailed("server-managed elements cannot be updated", details=[
            FieldError(paths.display(path), "serverManaged", f"{path[0]} is set by the repository")])
    value = _json_body(body)
    return _apply(session, dpp_id=dpp_id, if_match=if_match, change="updateElement",
                  transform=lambda old: paths.set_element(old, path, value), now=now)


def archive_passport(session: Session, *, dpp_id: str, if_match: str | None = None,
                     reason: str = "archived", recycler_id: str | None = None,
                     now: datetime | None = None) -> StoredVersion:
    """DeleteDPPById: never deletes; the passport becomes archived and read-only, all versions kept."""
    row = _row(session, dpp_id, for_update=True)
    _writable(row)
    current = read_current(session, dpp_id=dpp_id)
    _check_if_match(current, if_match)
    doc = validate_dict(orjson.loads(current.body))
    doc.dppStatus = DppStatus.archived
    eol: dict[str, Any] = {"reason": reason, "at": timestamp(now).replace(".000000Z", "Z")}
    if recycler_id:
        eol["recyclerId"] = recycler_id
    doc = validate_dict({**doc.model_dump(mode="json", exclude_none=True), "endOfLife": eol})
    return append_version(session, row=row, doc=doc, change=reason, now=now)


# ------------------------------------------------------------------------------------ search
def encode_cursor(last_id: str) -> str:
    return cursors.encode(last_id)


_CURSOR_ID = re.compile(r"urn:[!-~]{1,252}")


def decode_cursor(cursor: str | None) -> str | None:
    """The dppId a cursor stands for (``dbp.cursors``: only the exact form ``encode_cursor`` writes)."""
    return cursors.decode(cursor, key=_CURSOR_ID, issuer="this repository")


SEARCH_FILTERS = {
    "category": Passport.category, "chemistry": Passport.chemistry, "manufacturer": Passport.manufacturer,
    "model": Passport.model, "status": Passport.dpp_status, "batteryStatus": Passport.battery_status,
    "batch": Passport.batch, "facility": Passport.facility, "operator": Passport.operator_id,
}


def _summary(p: Passport) -> dict[str, Any]:
    out = {"dppId": p.dpp_id, "uniqueProductIdentifier": p.product_id, "dppStatus": p.dpp_status,
           "category": p.category, "chemistry": p.chemistry, "manufacturer": p.manufacturer, "model": p.model,
           "batch": p.batch, "facility": p.facility, "manufacturingDate": p.manufactured,
           "economicOperatorId": p.operator_id, "version": p.current_version, "lastUpdate": p.updated_at}
    return {k: v for k, v in out.items() if v is not None}


def _keyset_page(session: Session, stmt: Any, *, cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    """One page of ``stmt``, ordered by dppId; its first column is a Passport or a dpp_id."""
    after = decode_cursor(cursor)
    if after is not None:
        stmt = stmt.where(Passport.dpp_id > after)
    rows = list(session.execute(stmt.order_by(Passport.dpp_id).limit(limit + 1)).all())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1][0]
    return rows[:limit], encode_cursor(last.dpp_id if isinstance(last, Passport) else last)


def search(session: Session, *, filters: dict[str, str | None], manufactured_from: str | None,
           manufactured_to: str | None, cursor: str | None, limit: int) -> dict[str, Any]:
    """Keyset-paginated search over the extracted columns, ordered by dppId."""
    stmt = select(Passport)
    for key, value in filters.items():
        if value is not None:
            stmt = stmt.where(SEARCH_FILTERS[key] == value)
    if manufactured_from:
        stmt = stmt.where(Passport.manufactured >= manufactured_from)
    if manufactured_to:
        stmt = stmt.where(Passport.manufactured <= manufactured_to)
    rows, next_cursor = _keyset_page(session, stmt, cursor=cursor, limit=limit)
    return {"items": [_summary(r[0]) for r in rows], "nextCursor": next_cursor}


def ids_by_product_ids(session: Session, *, product_ids: list[str], cursor: str | None,
                       limit: int) -> dict[str, Any]:
    """ReadDPPIdsByProductIds: the passports of the given products, paginated by dppId."""
    keys = {lookup_keys(written)[0] for written in product_ids}  # a malformed one names no passport
    stmt = select(Passport.dpp_id, Passport.product_id, Passport.dpp_status).where(or_(
        Passport.product_key.in_(keys),
        Passport.dpp_id.in_(select(ProductAlias.dpp_id).where(ProductAlias.key.in_(keys)))))
    rows, next_cursor = _keyset_page(session, stmt, cursor=cursor, limit=limit)
    return {"items": [{"productId": p, "dppId": d, "dppStatus": st} for d, p, st in rows], "nextCursor": next_cursor}


def operator_of(session: Session, *, dpp_id: str) -> str:
    """The passport's responsible economic operator now (NotFound if there is no such passport)."""
    return _row(session, dpp_id).operator_id

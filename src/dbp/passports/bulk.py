"""Bulk import and export of passports (JSON, NDJSON, CSV) with per-record outcomes.

Import is an upsert keyed on ``uniqueProductIdentifier``: a new product gets a new passport, a
known product whose content changed gets a new version, identical content is skipped — so a
re-run is safe. A bad record is reported (source, line, path, rule) and never stops or undoes the
good ones: records are validated first, then written in batches, each batch one transaction.

A record for a new product is checked as CreateDPP checks a passport (draft or active, original
battery, no server-managed links) unless it carries a ``dppId``: then it is a passport exported from
a repository and keeps its status, links and end of life, provided the passports it links to exist
(stored, or in the same import). CSV cells are read as the schema's type at their column's path.
"""

from __future__ import annotations

import csv
import enum
import hashlib
import io
import math
import multiprocessing
import os
import re
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import orjson
from pydantic import BaseModel
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from dbp.errors import Conflict, DbpError, FieldError, ValidationFailed
from dbp.integrity import log as integrity_log
from dbp.integrity import signing
from dbp.passports import aliases, service
from dbp.passports.models import Passport, PassportVersion
from dbp.passports.paths import Segment, display, parse_element_path, set_element
from dbp.passports.schemas import BatteryPassport, DppStatus, EndOfLife
from dbp.passports.validation import check_semantics, parse_document

SUFFIXES = {".json", ".ndjson", ".jsonl", ".csv"}


@dataclass
class RecordSource:
    source: str  # file name
    line: int  # 1-based line (NDJSON/CSV) or item index + 1 (JSON array)
    raw: bytes | None = None
    error: FieldError | None = None


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    max_errors: int = 1000

    def fail(self, rec: RecordSource, details: list[FieldError], message: str) -> None:
        self.failed += 1
        if len(self.errors) < self.max_errors:
            self.errors.append({"source": rec.source, "line": rec.line, "message": message,
                                "details": [d.as_dict() for d in details]})

    def as_json(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged,
                "failed": self.failed, "errors": self.errors}


# ------------------------------------------------------------------------------------ reading files
def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
        else:
            yield p


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` → ``X`` (a real union stays as it is)."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


@lru_cache(maxsize=4096)
def _cell_kind(path: tuple[Segment, ...]) -> str | None:
    """What the schema holds at ``path``: "str", "int", "float", "bool", "json" (object or list), None: unknown."""
    node: Any = BatteryPassport
    for seg in path:
        node = _unwrap(node)
        if isinstance(seg, int):
            if get_origin(node) is not list:
                return None
            node = get_args(node)[0]
        elif isinstance(node, type) and issubclass(node, BaseModel) and seg in node.model_fields:
            node = node.model_fields[seg].annotation
        else:
            return None
    node = _unwrap(node)
    if get_origin(node) is list or (isinstance(node, type) and issubclass(node, BaseModel)):
        return "json"
    if node in (bool, int, float):
        return str(node.__name__)
    if isinstance(node, type) and issubclass(node, (str, enum.Enum)):
        return "str"
    return None


_CSV_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_CSV_INTEGER = re.compile(r"-?[0-9]+")


def _csv_value(path: list[Segment], cell: str) -> Any:
    """A cell as the schema's type at ``path``: text fields stay text (a GLN "4068194000202" too); numbers
    parse strictly (no "NaN", "Infinity", "1_000"); anything that does not parse is passed on as text
    for the schema layer to refuse with its path and rule."""
    kind = _cell_kind(tuple(path))
    if kind in ("int", "float") and _CSV_NUMBER.fullmatch(cell):
        number = int(cell) if _CSV_INTEGER.fullmatch(cell) else float(cell)
        if not math.isfinite(number):
            raise ValidationFailed("CSV cell is not a finite number", details=[
                FieldError(display(path), "csv.number", f"{cell!r} is not a finite number")])
        return number
    if kind == "bool" and cell in ("true", "false"):
        return cell == "true"
    if kind in ("json", None) and cell[:1] in "[{":
        try:
            return orjson.loads(cell)
        except orjson.JSONDecodeError as exc:
            raise ValidationFailed("CSV cell is not valid JSON", details=[
                FieldError(display(path), "csv.json", str(exc))]) from None
    return cell


def _csv_record(row: dict[str, str]) -> bytes:
    """A CSV row → passport JSON. Columns are element paths; each cell is read as the type the schema
    has at that path (a list or object cell is JSON, starting with [ or {)."""
    doc: dict[str, Any] = {}
    for column, cell in row.items():
        if column is None or cell is None or cell == "":
            continue
        path = parse_element_path(column)
        doc = set_element(doc, path, _csv_value(path, cell))
    return orjson.dumps(doc)


def read_records(path: Path) -> Iterator[RecordSource]:
    """Yield every record of one file, or a record carrying the reason it cannot be read."""
    name = str(path)
    suffix = path.suffix.lower()
    try:
        data = path.read_bytes()
    except OSError as exc:
        yield RecordSource(name, 0, error=FieldError("$", "file.unreadable", str(exc)))
        return
    if suffix in (".ndjson", ".jsonl"):
        for i, line in enumerate(data.splitlines(), start=1):
            if line.strip():
                yield RecordSource(name, i, raw=line)
    elif suffix == ".csv":
        try:
            reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
            for i, row in enumerate(reader, start=2):
                try:
                    yield RecordSource(name, i, raw=_csv_record(row))
                except DbpError as exc:
                    yield RecordSource(name, i, error=exc.details[0] if exc.details else FieldError(
                        "$", "csv.cell", exc.message))
                except ValueError as exc:
                    yield RecordSource(name, i, error=FieldError("$", "csv.cell", str(exc)))
        except (UnicodeDecodeError, csv.Error) as exc:
            yield RecordSource(name, 0, error=FieldError("$", "csv.syntax", str(exc)))
    else:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            yield RecordSource(name, 0, error=FieldError("$", "json.syntax", str(exc)))
            return
        items = parsed if isinstance(parsed, list) else [parsed]
        for i, item in enumerate(items, start=1):
            yield RecordSource(name, i, raw=orjson.dumps(item))


# ------------------------------------------------------------------------------------ writing
def _strip_server_fields(doc: BatteryPassport) -> BatteryPassport:
    """Exports carry per-version stamps; the receiving repository sets them anew. Lifecycle links
    and the end-of-life marker are kept, so an exported repository imports whole."""
    doc.lastUpdate = None
    doc.dppSchemaVersion = None
    return doc


@dataclass(frozen=True)
class Rejected:
    message: str
    details: list[FieldError]


Link = tuple[str, str]  # (field, dppId): a predecessor or successor passport a record names


@dataclass(frozen=True)
class Prepared:
    """A record made ready for storage: everything but the database work, done in a worker."""

    product_id: str  # its key (dbp.identifiers.product_key): two spellings of one battery are one product
    dpp_id: str
    rendered: service.Rendered
    columns: dict[str, Any]
    at: str = ""  # when it was stamped (its lastUpdate)
    digest: bytes = b""  # SHA-256 of the record as read: a repeated product's identical copy or a variant?
    links: tuple[Link, ...] = ()
    refusal: Rejected | None = None  # why it cannot create a passport (updates are checked when stored)
    aliases: tuple[str, ...] = ()  # its productIdentifierAliases


def _new_passport_refusal(doc: BatteryPassport, at: str) -> Rejected | None:
    """Rules for a record that creates a passport. Without a dppId it is a new battery, checked as
    CreateDPP checks it: draft or active, original, no lifecycle links or end of life. With a dppId it is
    a passport exported from a repository (``dbp export``) and keeps its status, battery status, links
    and end of life — the links must name passports that exist (checked when stored, ``_linked``)."""
    if doc.dppId is None:
        try:
            service.prepare_new(doc, at=at)
        except DbpError as exc:
            return Rejected(exc.message, exc.details)
    elif doc.endOfLife is not None and doc.dppStatus is not DppStatus.archived:
        return Rejected("a passport that ended is archived", [FieldError(
            "$.endOfLife", "import.endOfLife", "endOfLife is set only on an archived passport")])
    return None


def prepare(raw: bytes | None, at: str) -> Prepared | Rejected:
    """Parse, validate (schema + semantics), stamp and canonicalise one record. Pure: no I/O."""
    if raw is None:
        return Rejected("unreadable record", [])
    try:
        doc = _strip_server_fields(parse_document(raw))
        check_semantics(doc)
        refusal = _new_passport_refusal(doc, at)
        links = tuple([("predecessorDppIds", i) for i in doc.predecessorDppIds or ()]
                      + [("successorDppIds", i) for i in doc.successorDppIds or ()])
        dpp_id = doc.dppId or service.new_dpp_id()
        rendered = service._finalise(doc, dpp_id=dpp_id, at=at)
    except DbpError as exc:
        return Rejected(exc.message, exc.details)
    columns = service._columns(doc)
    return Prepared(columns["product_key"], dpp_id, rendered, columns, at, hashlib.sha256(raw).digest(), links,
                    refusal, tuple(doc.productIdentifierAliases or ()))


def prepare_batch(raws: list[bytes | None], at: str) -> list[Prepared | Rejected]:
    return [prepare(raw, at) for raw in raws]


Item = tuple[RecordSource, Prepared]


@dataclass
class _Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failures: list[tuple[RecordSource, list[FieldError], str]] = field(default_factory=list)
    deferred: list[Item] = field(default_factory=list)  # new records whose links may be stored later


def _existing_ids(session: Session, ids: Iterable[str]) -> set[str]:
    wanted = sorted(set(ids))
    found: set[str] = set()
    for i in range(0, len(wanted), 1000):
        found.update(session.scalars(select(Passport.dpp_id).where(Passport.dpp_id.in_(wanted[i:i + 1000]))))
    return found


def _resolve(items: list[Item], known: set[str]) -> tuple[list[Item], list[Item]]:
    """Split ``items`` into those whose links all name ``known`` passports or each other, and the rest."""
    kept = items
    while True:
        ids = known | {p.dpp_id for _, p in kept}
        still = [item for item in kept if all(link in ids for _, link in item[1].links)]
        if len(still) == len(kept):
            break
        kept = still
    keep = {id(p) for _, p in kept}
    return kept, [item for item in items if id(item[1]) not in keep]


def _unknown_link(item: Item, known: set[str]) -> tuple[RecordSource, list[FieldError], str]:
    details = [FieldError(f"$.{name}", "import.linkUnknown",
                          f"{link} is neither stored in this repository nor imported with this record")
               for name, link in item[1].links if link not in known]
    return item[0], details, "the record names passports that do not exist"


def _linked(session: Session, items: list[Item], tally: _Tally, *, promised: frozenset[str], final: bool
            ) -> list[Item]:
    """The new records whose predecessor/successor links name passports that are stored, in this batch
    or ``promised``; the others are deferred (an export is in dppId order: the passports they name may
    come later in the input) or, when ``final``, fail."""
    if not any(p.links for _, p in items):
        return items
    known = set(promised) | _existing_ids(session, (link for _, p in items for _, link in p.links))
    kept, dropped = _resolve(items, known)
    if final:
        known |= {p.dpp_id for _, p in kept}
        tally.failures.extend(_unknown_link(item, known) for item in dropped)
    else:
        tally.deferred.extend(dropped)
    return kept


def _store(session: Session, items: list[Item], *, promised: frozenset[str] = frozenset(),
           final: bool = False) -> _Tally:
    """Insert new products in bulk; known products become a new version or are skipped."""
    tally = _Tally()
    logged: list[integrity_log.Leaf] = []  # appended to the transparency log last, in one call
    existing = dict(session.execute(select(Passport.product_key, Passport.dpp_id).where(
        Passport.product_key.in_([p.product_id for _, p in items]))).all())
    new: list[Item] = []
    seen: set[str] = set()
    for rec, p in items:
        if p.product_id in seen:
            tally.failures.append((rec, [FieldError("$.uniqueProductIdentifier", "import.duplicateInBatch",
                                                    "the same product appears twice in this import")],
                                   "duplicate product"))
            continue
        seen.add(p.product_id)
        if p.product_id in existing:
            assert rec.raw is not None
            stored = _update_existing(session, existing[p.product_id], rec.raw)
            if stored is not None:
                logged.append(stored.leaf())
                tally.updated += 1
            else:
                tally.unchanged += 1
        elif p.refusal is not None:
            tally.failures.append((rec, p.refusal.details, p.refusal.message))
        else:
            new.append((rec, p))
    as_alias = aliases.held_as_alias(session, keys=[p.product_id for _, p in new])
    if as_alias:  # one identifier never names two batteries: another passport lists this one as its alias
        for rec, p in [item for item in new if item[1].product_id in as_alias]:
            tally.failures.append((rec, [FieldError("$.uniqueProductIdentifier", "import.aliasOfAnother",
                                                    f"an alias of passport {as_alias[p.product_id]}")],
                                   "product is another passport's alias"))
        new = [item for item in new if item[1].product_id not in as_alias]
    taken = _existing_ids(session, (p.dpp_id for _, p in new))
    fresh: list[Item] = []
    for rec, p in new:
        if p.dpp_id in taken:  # another product's passport, stored or earlier in this batch
            tally.failures.append((rec, [FieldError("$.dppId", "import.dppIdExists",
                                                    f"dppId {p.dpp_id} already exists for another product")],
                                   "dppId already exists"))
        else:
            taken.add(p.dpp_id)
            fresh.append((rec, p))
    fresh = _linked(session, fresh, tally, promised=promised, final=final)
    if fresh:
        key = signing.signer_of(session).key(session)  # one key lookup per batch, ~50 µs a signature
        try:
            session.execute(insert(Passport), [
                {"dpp_id": p.dpp_id, "current_version": 1, "created_at": p.at, "updated_at": p.at, **p.columns}
                for _, p in fresh])
            session.execute(insert(PassportVersion), [
                {"dpp_id": p.dpp_id, "version": 1, "created_at": p.at, "change": "import",
                 "signature": key.sign(p.rendered.body), **p.rendered.row()} for _, p in fresh])
        except IntegrityError as exc:  # stored by another writer since the checks above
            raise Conflict("a dppId or product of this batch was stored concurrently", details=[FieldError(
                "$.dppId", "import.storedConcurrently", "dppId or product already exists")]) from exc
        for _, p in fresh:  # rare: per record, after the rows they point at
            if p.aliases:
                aliases.bind(session, dpp_id=p.dpp_id, product_id=p.columns["product_id"], key=p.product_id,
                             aliases=p.aliases)
        service._flush(session)
        logged.extend(integrity_log.Leaf(p.dpp_id, 1, p.rendered.sha256, p.at, kid=key.kid,
                                         public_sha256=p.rendered.public_sha256) for _, p in fresh)
    integrity_log.append(session, leaves=logged)
    tally.created = len(fresh)
    return tally


def _update_existing(session: Session, dpp_id: str, raw: bytes) -> service.StoredVersion | None:
    """A known product: a new version if its content differs from the current one (returned, not yet logged)."""
    doc = _strip_server_fields(parse_document(raw))
    row = session.get(Passport, dpp_id)
    assert row is not None
    current = service.read_current(session, dpp_id=dpp_id)
    old = orjson.loads(current.body)
    doc.dppId = dpp_id
    doc.dppStatus = doc.dppStatus or DppStatus(old["dppStatus"])
    doc.predecessorDppIds = doc.predecessorDppIds or old.get("predecessorDppIds")
    doc.successorDppIds = doc.successorDppIds or old.get("successorDppIds")
    if doc.endOfLife is None and old.get("endOfLife"):
        doc.endOfLife = EndOfLife.model_validate(old["endOfLife"])
    # Render the incoming document exactly as it would be stored at the current version's time.
    if service._finalise(doc, dpp_id=dpp_id, at=old["lastUpdate"]).body == current.body:
        return None
    service._writable(row)
    service._check_update(old, doc)
    return service.append_version(session, row=row, doc=doc, change="import", log=False)


def _batches(records: Iterable[RecordSource], size: int) -> Iterator[list[RecordSource]]:
    batch: list[RecordSource] = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def default_workers() -> int:
    """Validation runs in this many worker processes beside the writer (0: in the writer itself)."""
    return os.cpu_count() or 1


def import_records(
    factory: sessionmaker[Session], records: Iterable[RecordSource], *, batch_size: int = 500,
    workers: int | None = None, progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Validate and store ``records``; returns counts and per-record errors. Never raises for data.

    Preparation (parsing, validation, canonical bytes, hashes) is CPU work and runs in ``workers``
    processes, a few batches ahead of the single writer, which only does the database work; the
    order of records and their outcomes is the order of the input. One input holds one document per
    product: a later, different document of a product already read fails (``import.duplicateInInput``) —
    an export made with ``--all-versions`` is an archive of every version, not something to import.
    New records whose links name passports not stored yet wait for the end of the run.
    """
    report = ImportReport()
    n_workers = default_workers() if workers is None else workers
    first_seen: dict[str, bytes] = {}  # product → digest of its first record in this run
    deferred: list[Item] = []

    def count(tallies: list[_Tally]) -> None:
        for tally in tallies:
            report.created += tally.created
            report.updated += tally.updated
            report.unchanged += tally.unchanged
            for rec, details, message in tally.failures:
                report.fail(rec, details, message)
            deferred.extend(tally.deferred)

    def write(batch: list[RecordSource], results: list[Prepared | Rejected]) -> None:
        ready: list[Item] = []
        for rec, res in zip(batch, results, strict=True):
            if isinstance(res, Rejected):
                report.fail(rec, res.details or ([rec.error] if rec.error else []), res.message)
            elif first_seen.setdefault(res.product_id, res.digest) != res.digest:
                report.fail(rec, [FieldError(
                    "$.uniqueProductIdentifier", "import.duplicateInInput",
                    "this product appears earlier in the input with other content; an import holds one document "
                    "per product (an --all-versions export is an archive, not an import source)")],
                    "duplicate product")
            else:
                ready.append((rec, res))
        count(_commit(factory, ready))
        if progress:
            progress(len(batch))

    if n_workers == 0:
        for batch in _batches(records, batch_size):
            write(batch, prepare_batch([r.raw for r in batch], service.timestamp()))
    else:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["dbp.passports.bulk"])
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=context) as pool:
            pending: deque[tuple[list[RecordSource], Future[list[Prepared | Rejected]]]] = deque()
            for batch in _batches(records, batch_size):
                pending.append((batch, pool.submit(prepare_batch, [r.raw for r in batch], service.timestamp())))
                if len(pending) > 2 * n_workers:  # bounded read-ahead: memory stays flat for any input size
                    done, future = pending.popleft()
                    write(done, future.result())
            while pending:
                done, future = pending.popleft()
                write(done, future.result())
    if deferred:
        count(_settle(factory, deferred, batch_size))
    return report


def _settle(factory: sessionmaker[Session], deferred: list[Item], batch_size: int) -> list[_Tally]:
    """At the end of a run: deferred records whose links name stored passports or each other are stored;
    the others fail (``import.linkUnknown``)."""
    with factory() as session:
        known = _existing_ids(session, (link for _, p in deferred for _, link in p.links))
    kept, dropped = _resolve(deferred, known)
    known |= {p.dpp_id for _, p in kept}
    tallies = [_Tally(failures=[_unknown_link(item, known) for item in dropped])]
    promised = frozenset(p.dpp_id for _, p in kept)
    for i in range(0, len(kept), batch_size):
        tallies.extend(_commit(factory, kept[i:i + batch_size], promised=promised, final=True))
    return tallies


def _commit(factory: sessionmaker[Session], ready: list[Item], *, promised: frozenset[str] = frozenset(),
            final: bool = False) -> list[_Tally]:
    """Store a batch in one transaction; if it conflicts, retry record by record so only the
    offending records fail. Counts are taken only from committed transactions."""
    if not ready:
        return []
    try:
        with factory.begin() as session:
            return [_store(session, ready, promised=promised, final=final)]
    except DbpError:
        pass
    tallies = []
    for item in ready:
        try:
            with factory.begin() as session:
                tallies.append(_store(session, [item], promised=promised, final=final))
        except DbpError as exc:
            tallies.append(_Tally(failures=[(item[0], exc.details, exc.message)]))
    return tallies


def export_current(factory: sessionmaker[Session], *, all_versions: bool = False,
                   batch_size: int = 1000) -> Iterator[bytes]:
    """NDJSON lines of every passport's current version (or every version), in dppId order.

    The current versions import into another repository whole (``import_records``). Every version
    (``all_versions``) is an archive: an import refuses a product's second document
    (``import.duplicateInInput``) rather than replay history."""
    last = ""
    while True:
        with factory() as session:
            if all_versions:
                ids = list(session.scalars(select(PassportVersion.dpp_id).where(PassportVersion.dpp_id > last)
                                           .order_by(PassportVersion.dpp_id).limit(batch_size)))
                if not ids:
                    return
                upto = ids[-1] if len(ids) == batch_size else None
                q = select(PassportVersion.dpp_id, PassportVersion.canonical).where(PassportVersion.dpp_id > last)
                if upto is not None:
                    q = q.where(PassportVersion.dpp_id <= upto)
                rows = session.execute(q.order_by(PassportVersion.dpp_id, PassportVersion.version)).all()
            else:
                rows = session.execute(
                    select(PassportVersion.dpp_id, PassportVersion.canonical)
                    .join(Passport, (Passport.dpp_id == PassportVersion.dpp_id)
                          & (Passport.current_version == PassportVersion.version))
                    .where(Passport.dpp_id > last).order_by(Passport.dpp_id).limit(batch_size)).all()
        if not rows:
            return
        for _, canonical in rows:
            yield canonical.encode() + b"\n"
        last = rows[-1][0]
        if not all_versions and len(rows) < batch_size:
            return
        if all_versions and upto is None:
            return

"""Bulk import and export of passports (JSON, NDJSON, CSV) with per-record outcomes.

Import is an upsert keyed on ``uniqueProductIdentifier``: a new product gets a new passport, a
known product whose content changed gets a new version, identical content is skipped — so a
re-run is safe. A bad record is reported (source, line, path, rule) and never stops or undoes the
good ones: records are validated first, then written in batches, each batch one transaction.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from dbp.errors import DbpError, FieldError
from dbp.passports import service
from dbp.passports.models import Passport, PassportVersion
from dbp.passports.paths import parse_element_path, set_element
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


def _csv_record(row: dict[str, str]) -> bytes:
    """A CSV row → passport JSON. Columns are element paths; a cell starting with [ or { is JSON."""
    doc: dict[str, Any] = {}
    for column, cell in row.items():
        if column is None or cell is None or cell == "":
            continue
        value: Any = cell
        if cell[:1] in "[{" or cell in ("true", "false"):
            value = orjson.loads(cell)
        else:
            try:
                value = int(cell) if cell.lstrip("-").isdigit() else float(cell)
            except ValueError:
                value = cell
        doc = set_element(doc, parse_element_path(column), value)
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
                except (DbpError, orjson.JSONDecodeError, ValueError) as exc:
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
class Prepared:
    """A record made ready for storage: everything but the database work, done in a worker."""

    product_id: str
    dpp_id: str
    rendered: service.Rendered
    columns: dict[str, Any]


@dataclass(frozen=True)
class Rejected:
    message: str
    details: list[FieldError]


def prepare(raw: bytes | None, at: str) -> Prepared | Rejected:
    """Parse, validate (schema + semantics), stamp and canonicalise one record. Pure: no I/O."""
    if raw is None:
        return Rejected("unreadable record", [])
    try:
        doc = _strip_server_fields(parse_document(raw))
        check_semantics(doc)
        dpp_id = doc.dppId or service.new_dpp_id()
        rendered = service._finalise(doc, dpp_id=dpp_id, at=at)
    except DbpError as exc:
        return Rejected(exc.message, exc.details)
    return Prepared(doc.uniqueProductIdentifier, dpp_id, rendered, service._columns(doc))


def prepare_batch(raws: list[bytes | None], at: str) -> list[Prepared | Rejected]:
    return [prepare(raw, at) for raw in raws]


@dataclass
class _Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failures: list[tuple[RecordSource, list[FieldError], str]] = field(default_factory=list)


def _store(session: Session, items: list[tuple[RecordSource, Prepared]], at: str) -> _Tally:
    """Insert new products in bulk; known products become a new version or are skipped."""
    tally = _Tally()
    existing = dict(session.execute(select(Passport.product_id, Passport.dpp_id).where(
        Passport.product_id.in_([p.product_id for _, p in items]))).all())
    passports: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
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
            if _update_existing(session, existing[p.product_id], rec.raw):
                tally.updated += 1
            else:
                tally.unchanged += 1
            continue
        passports.append({"dpp_id": p.dpp_id, "current_version": 1, "created_at": at, "updated_at": at,
                          **p.columns})
        versions.append({"dpp_id": p.dpp_id, "version": 1, "created_at": at, "change": "import",
                         **p.rendered.row()})
    if passports:
        session.execute(insert(Passport), passports)
        session.execute(insert(PassportVersion), versions)
        service._flush(session)
    tally.created = len(passports)
    return tally


def _update_existing(session: Session, dpp_id: str, raw: bytes) -> bool:
    """A known product: a new version if its content differs from the current one. True if stored."""
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
        return False
    service._writable(row)
    service._check_update(old, doc)
    service.append_version(session, row=row, doc=doc, change="import")
    return True


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
    order of records and their outcomes is the order of the input.
    """
    report = ImportReport()
    n_workers = default_workers() if workers is None else workers

    def write(batch: list[RecordSource], results: list[Prepared | Rejected], at: str) -> None:
        ready: list[tuple[RecordSource, Prepared]] = []
        for rec, res in zip(batch, results, strict=True):
            if isinstance(res, Rejected):
                report.fail(rec, res.details or ([rec.error] if rec.error else []), res.message)
            else:
                ready.append((rec, res))
        for tally in _commit(factory, ready, at):
            report.created += tally.created
            report.updated += tally.updated
            report.unchanged += tally.unchanged
            for rec, details, message in tally.failures:
                report.fail(rec, details, message)
        if progress:
            progress(len(batch))

    if n_workers == 0:
        for batch in _batches(records, batch_size):
            at = service.timestamp()
            write(batch, prepare_batch([r.raw for r in batch], at), at)
        return report
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["dbp.passports.bulk"])
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=context) as pool:
        pending: deque[tuple[list[RecordSource], Future[list[Prepared | Rejected]], str]] = deque()
        for batch in _batches(records, batch_size):
            at = service.timestamp()
            pending.append((batch, pool.submit(prepare_batch, [r.raw for r in batch], at), at))
            if len(pending) > 2 * n_workers:  # bounded read-ahead: memory stays flat for any input size
                done, future, when = pending.popleft()
                write(done, future.result(), when)
        while pending:
            done, future, when = pending.popleft()
            write(done, future.result(), when)
    return report


def _commit(factory: sessionmaker[Session], ready: list[tuple[RecordSource, Prepared]], at: str) -> list[_Tally]:
    """Store a batch in one transaction; if it conflicts, retry record by record so only the
    offending records fail. Counts are taken only from committed transactions."""
    if not ready:
        return []
    try:
        with factory.begin() as session:
            return [_store(session, ready, at)]
    except DbpError:
        pass
    tallies = []
    for item in ready:
        try:
            with factory.begin() as session:
                tallies.append(_store(session, [item], at))
        except DbpError as exc:
            tallies.append(_Tally(failures=[(item[0], exc.details, exc.message)]))
    return tallies


def export_current(factory: sessionmaker[Session], *, all_versions: bool = False,
                   batch_size: int = 1000) -> Iterator[bytes]:
    """NDJSON lines of every passport's current version (or every version), in dppId order."""
    last = ""
    while True:
        with factory() as session:
            if all_versions:
                stmt = (select(PassportVersion.dpp_id, PassportVersion.canonical)
                        .where(PassportVersion.dpp_id > last).order_by(PassportVersion.dpp_id)
                        .limit(batch_size))
                ids = [r[0] for r in session.execute(stmt).all()]
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

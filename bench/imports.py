"""Bulk import: dbp's real path vs a raw batched insert of the very rows dbp wrote.

* dbp: ``bulk.import_records`` (with dbp's default worker processes for validation, or
  ``--import-workers``) — parse + strict validation + semantic checks + canonicalisation +
  SHA-256 + insert of a ``passports`` and a ``passport_versions`` row per record, one transaction
  per batch — into an empty database (which then serves the read benchmark).
* baseline: the same ``passports`` and ``passport_versions`` rows (read back from dbp's database
  beforehand, not timed: same canonical text, same hashes, same search columns) inserted with the
  DB-API's ``executemany``, same batch size, one transaction per batch, into another empty
  database of the same kind whose connections get the same settings (dbp's ``make_engine``: WAL,
  synchronous=NORMAL and foreign keys on SQLite). So the ratio prices everything dbp does on top of
  storing the bytes.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from bench.dataset import Dataset
from bench.progress import Progress
from dbp.db import make_engine, make_sessionmaker
from dbp.passports import bulk
from dbp.passports.bulk import RecordSource, import_records


class ImportFailed(RuntimeError):
    pass


def dbp_import(url: str, dataset: Dataset, *, batch_size: int, workers: int | None = None,
               label: str = "dbp import") -> dict[str, Any]:
    """``workers`` None: dbp's own default (validation in worker processes where dbp does that)."""
    kwargs: dict[str, Any] = {}
    if workers is not None:
        if "workers" not in inspect.signature(import_records).parameters:
            raise ImportFailed("this dbp's import_records has no workers parameter; drop --import-workers")
        kwargs["workers"] = workers
    default = getattr(bulk, "default_workers", None)
    used = workers if workers is not None else (default() if default else 0)
    engine = make_engine(url)
    try:
        progress = Progress(label, dataset.count)
        records = (RecordSource("bench", i, raw=raw) for i, raw in enumerate(dataset.raws, start=1))
        start = time.perf_counter()
        report = import_records(make_sessionmaker(engine), records, batch_size=batch_size, progress=progress.add,
                                **kwargs)
        seconds = time.perf_counter() - start
        progress.finish()
    finally:
        engine.dispose()
    if report.created != dataset.count or report.failed:
        raise ImportFailed(f"dbp import created {report.created} of {dataset.count} passports, {report.failed} "
                           f"failed; first errors: {report.errors[:3]}")
    return {"records": dataset.count, "seconds": seconds, "records_per_s": dataset.count / seconds,
            "workers": used}


Rows = tuple[list[str], list[tuple[Any, ...]]]


def _fetch(cur: Any, sql: str) -> Rows:
    cur.execute(sql)
    rows = cur.fetchall()
    return [d[0] for d in cur.description], [tuple(r) for r in rows]


def stored_rows(url: str) -> tuple[Rows, Rows]:
    """Every ``passports`` and ``passport_versions`` row of dbp's database, passports in insert order."""
    engine = make_engine(url)
    try:
        conn = engine.raw_connection()
        try:
            cur = conn.cursor()
            order = " ORDER BY rowid" if engine.dialect.name == "sqlite" else ""
            passports = _fetch(cur, f"SELECT * FROM passports{order}")
            versions = _fetch(cur, "SELECT * FROM passport_versions")
            conn.rollback()
        finally:
            conn.close()
    finally:
        engine.dispose()
    return passports, versions


def baseline_insert(url: str, passports: Rows, versions: Rows, *, batch_size: int) -> dict[str, Any]:
    (p_cols, p_rows), (v_cols, v_rows) = passports, versions
    by_id: dict[str, list[tuple[Any, ...]]] = {}
    id_at = v_cols.index("dpp_id")
    for row in v_rows:
        by_id.setdefault(row[id_at], []).append(row)
    pid_at = p_cols.index("dpp_id")
    batches = []
    for i in range(0, len(p_rows), batch_size):
        chunk = p_rows[i:i + batch_size]
        batches.append((chunk, [v for p in chunk for v in by_id[p[pid_at]]]))

    engine = make_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    ins_p = f"INSERT INTO passports ({', '.join(p_cols)}) VALUES ({', '.join([mark] * len(p_cols))})"
    ins_v = f"INSERT INTO passport_versions ({', '.join(v_cols)}) VALUES ({', '.join([mark] * len(v_cols))})"
    try:
        proxy = engine.raw_connection()  # dbp's connect-time settings, then plain DB-API
        conn = proxy.driver_connection
        assert conn is not None
        try:
            cur = conn.cursor()
            progress = Progress("baseline insert", len(p_rows))
            start = time.perf_counter()
            for p_batch, v_batch in batches:
                if sqlite:
                    cur.execute("BEGIN")  # dbp's engine runs pysqlite with isolation_level=None
                cur.executemany(ins_p, p_batch)
                cur.executemany(ins_v, v_batch)
                if sqlite:
                    cur.execute("COMMIT")
                else:
                    conn.commit()
                progress.add(len(p_batch))
            seconds = time.perf_counter() - start
            progress.finish()
            cur.execute("SELECT count(*) FROM passports")
            n_p = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM passport_versions")
            n_v = cur.fetchone()[0]
            conn.rollback()
        finally:
            proxy.close()
    finally:
        engine.dispose()
    if n_p != len(p_rows) or n_v != len(v_rows):
        raise ImportFailed(f"baseline stored {n_p}/{len(p_rows)} passports and {n_v}/{len(v_rows)} versions")
    return {"records": len(p_rows), "seconds": seconds, "records_per_s": len(p_rows) / seconds}

"""SQLite: read records are committed to a small staging file beside the database, then moved in bulk.

Why (measured with py-spy and wrk, 32 connections, one core): committing read records into the
passport database itself costs public reads about a third of their throughput, for two reasons.

* Every commit to a SQLite file makes every other connection drop its page cache at its next read
  (WAL: the reader sees a changed WAL index). With a commit every millisecond the hot read connection
  re-reads each passport's pages from the operating system instead of its cache.
* ``access_log`` has four secondary indexes; a batch of a few dozen rows with random passport ids
  touches one index page per row, and each touched page is a 4 KB WAL frame at commit
  (~23 µs per row against ~3 µs without the indexes).

So on SQLite a read record is committed to ``<database>.read-log`` (same columns, no secondary index):
durable before the read is answered, as before, but neither invalidating the readers' cache nor paying
for the indexes per batch. :func:`move` then copies the staged rows into ``access_log`` in large
batches (every 10 s from a mover thread, on start-up, and before every access-log query, so queries
see every committed record) and deletes them from the staging file.

Exactly once: ``access_log_intake`` in the main database holds, per staging file (named by a random
id stored in the file when it is created), the highest staged id already moved; it is updated in the
same transaction as the insert into ``access_log``. A crash between that commit and the delete from
the staging file leaves rows that the next move skips. Staged ids never repeat (AUTOINCREMENT), and a
new staging file (say after it was deleted) has a new id, so its rows are not mistaken for moved ones.
Several processes may share one staging file: SQLite serialises their appends, and concurrent moves
serialise on the main database's write lock and re-read the high-water mark under it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid
from pathlib import Path

from dbp.audit.service import COLUMNS

log = logging.getLogger("dbp.audit")

SUFFIX = ".read-log"
MOVE_CHUNK = 20_000  # staged rows per transaction on the main database
DELETE_CHUNK = 1000  # moved rows deleted from the staging file per transaction

Row = tuple[str | None, ...]

_COLUMN_LIST = ", ".join(COLUMNS)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS staging_meta (id INTEGER PRIMARY KEY CHECK (id = 1), source TEXT NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS read_log (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    f"{', '.join(f'{c} TEXT' for c in COLUMNS)})",
)
_STAGE = f"INSERT INTO read_log ({_COLUMN_LIST}) VALUES ({', '.join('?' * len(COLUMNS))})"
_MOVE = (f"INSERT INTO main.access_log ({_COLUMN_LIST}) "
         f"SELECT {_COLUMN_LIST} FROM staged.read_log WHERE id > ? AND id <= ? ORDER BY id")
_CLAIM = "INSERT INTO main.access_log_intake (source, moved_upto) VALUES (?, 0) ON CONFLICT (source) DO NOTHING"
_MARK = "SELECT moved_upto FROM main.access_log_intake WHERE source = ?"
_SET_MARK = "UPDATE main.access_log_intake SET moved_upto = ? WHERE source = ?"


def staging_path(database: str) -> str:
    """The staging file of the SQLite database file ``database``."""
    return database + SUFFIX


def connect(path: str, *, busy_ms: int, checkpoints: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves) with WAL and NORMAL sync: a commit is a
    write() to the WAL, not an fsync, and survives the process being killed."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # per connection
        if not checkpoints:
            conn.execute("PRAGMA wal_autocheckpoint=0")
    except BaseException:
        conn.close()
        raise
    return conn


def open_staging(database: str, *, busy_ms: int, checkpoints: bool = True) -> sqlite3.Connection:
    """A connection to ``database``'s staging file, its tables created when missing. A new ``read_log``
    table (new file, or the table was dropped) gets a new random source id: its ids start again."""
    conn = connect(staging_path(database), busy_ms=busy_ms, checkpoints=checkpoints)
    try:
        if not _has_tables(conn):
            conn.execute("BEGIN IMMEDIATE")
            try:
                # again under the lock: another opener may have just created them (and staged rows
                # under its source id, which must then stay)
                if "read_log" not in _tables(conn):
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    conn.execute("INSERT INTO staging_meta (id, source) VALUES (1, ?) "
                                 "ON CONFLICT (id) DO UPDATE SET source = excluded.source", (uuid.uuid4().hex,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    except BaseException:
        conn.close()
        raise
    return conn


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _has_tables(conn: sqlite3.Connection) -> bool:
    return {"staging_meta", "read_log"} <= _tables(conn)


def identity(database: str) -> tuple[int, int] | None:
    """Which file the staging path names now (device, inode), None when there is none: a connection
    opened on a file that was since deleted or replaced keeps writing to the old one."""
    try:
        st = os.stat(staging_path(database))
    except OSError:
        return None
    return st.st_dev, st.st_ino


def stage(conn: sqlite3.Connection, rows: list[Row]) -> None:
    """Commit ``rows`` (``AccessRecord.values()``) to the staging file, in order."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_STAGE, rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def attach(main: sqlite3.Connection, database: str) -> None:
    """Attach ``database``'s staging file to ``main`` (a connection to ``database``) as ``staged``."""
    main.execute("ATTACH DATABASE ? AS staged", (staging_path(database),))


def move(main: sqlite3.Connection, *, chunk: int = MOVE_CHUNK) -> int:
    """Move every staged row into ``access_log``; the number moved by this call. ``main`` is a connection
    to the database with its staging file attached (:func:`attach`).

    Each chunk is one ``INSERT … SELECT`` inside SQLite: no row passes through Python, and the GIL is
    released for the whole chunk rather than once per row (per-row hand-offs between this thread and the
    event loop cost more than the insert itself). The transaction is deferred and begins with a write to
    ``main``: it takes the main database's write lock (waiting for it) but only a read snapshot of the
    staging file, so appends to the staging file continue meanwhile.
    """
    moved = 0
    while True:
        main.execute("BEGIN")
        try:
            # the source id as of this transaction's snapshot of the staging file
            source = main.execute("SELECT source FROM staged.staging_meta WHERE id = 1").fetchone()[0]
            main.execute(_CLAIM, (source,))  # the write lock first: no stale snapshot to upgrade later
            upto = main.execute(_MARK, (source,)).fetchone()[0]  # another process may have moved some
            last = main.execute("SELECT max(id) FROM staged.read_log").fetchone()[0] or 0
            last = min(last, upto + chunk)
            if last > upto:
                moved += main.execute(_MOVE, (upto, last)).rowcount
                main.execute(_SET_MARK, (last, source))
            main.execute("COMMIT")
        except BaseException:
            if main.in_transaction:
                main.execute("ROLLBACK")
            raise
        if last <= upto:
            break
        # Small deletes: each holds the staging file's write lock for a moment only, so appends of the
        # event loop (which never wait for it) rarely find it taken.
        for stop in range(upto + DELETE_CHUNK, last + DELETE_CHUNK, DELETE_CHUNK):
            main.execute("DELETE FROM staged.read_log WHERE id <= ?", (min(stop, last),))
    main.execute("PRAGMA staged.wal_checkpoint(PASSIVE)").fetchall()
    return moved


def move_all(database: str) -> int:
    """Move whatever the staging file of ``database`` holds (none: 0). For tools and tests that read
    ``access_log`` directly, e.g. after a process was killed."""
    if not Path(staging_path(database)).exists():
        return 0
    open_staging(database, busy_ms=10_000).close()  # its tables, should the file be empty
    main = connect(database, busy_ms=10_000)
    try:
        attach(main, database)
        return move(main)
    finally:
        main.close()

"""Durable, batched appends of read records: a read is answered only after its record is committed.

One commit per read halves SQLite read throughput; ``ReadLogWriter`` groups the records of concurrent
reads and commits them together (group commit). ``append`` returns only once the record's batch is
committed, and raises ``ServiceUnavailable`` when it could not be, so the caller never answers a read
whose record was not stored.

Where a batch goes. PostgreSQL (and any non-file database): straight into ``access_log``, through a
SQLAlchemy session on the writer's own thread. A SQLite file: into the read-log staging file
(``dbp.audit.staging`` says why), committed on the event loop itself through a connection that never
waits for a lock: a plain ``executemany`` and a WAL commit without fsync cost less than handing the
batch to a thread, where the two threads then fight over the GIL on the one core (py-spy under load:
the hand-off thread took a quarter of the samples and the loop stalled waiting for the GIL). When the
staging file is locked (another process writing, a move deleting rows) the batch goes to the writer
thread, which waits up to 10 s. A mover thread moves staged records into ``access_log`` every 10 s, on
start-up (records a killed process left behind), on ``flush`` and on ``close``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.orm import Session, sessionmaker

from dbp.audit import staging
from dbp.audit.service import AccessRecord, record_many
from dbp.audit.staging import Row
from dbp.db import sqlite_file, transaction
from dbp.errors import ServiceUnavailable

log = logging.getLogger("dbp.audit")

UNAVAILABLE = "access log unavailable; the read was not answered"
# Moves of staged records into access_log (SQLite): every MOVE_INTERVAL seconds, or sooner once this
# process staged MOVE_BACKLOG records. Few large moves are far cheaper per record than many small ones:
# a move dirties about one index page per record of the passport-id index until the batch outgrows the
# index, and each dirty page is a 4 KB WAL frame (measured: 1 s moves cost a public read ~30 µs, 10 s
# moves under 10 µs, at 640,000 log rows). Queries never wait for it: they flush first.
MOVE_INTERVAL = 10.0
MOVE_BACKLOG = 100_000
MOVE_CACHE_KIB = 32 * 1024  # page cache of the connection that moves them


class StagedLog:
    """This process's connections for SQLite's read-log staging (``dbp.audit.staging``): one used on the
    event loop that never waits for a lock, one on the writer thread that does, and one to the main
    database (with the staging file attached) on the mover thread, which moves staged records into
    ``access_log``. A connection that failed is reopened, and so is one whose staging file was deleted
    or replaced since it was opened (it would go on writing to the old file): before any record is
    staged, the staging path's identity (device, inode) is compared with the connection's."""

    def __init__(self, database: str) -> None:
        self.database = database
        self._loop: sqlite3.Connection | None = None
        self._thread: sqlite3.Connection | None = None
        self._main: sqlite3.Connection | None = None
        self._loop_file: tuple[int, int] | None = None
        self._thread_file: tuple[int, int] | None = None
        self._main_file: tuple[int, int] | None = None

    def try_stage(self, rows: list[Row]) -> bool:
        """Commit ``rows`` unless that means waiting for the lock (False) or anything fails (False; the
        writer thread then retries and reports the error). Event loop only."""
        try:
            if self._loop is not None and staging.identity(self.database) != self._loop_file:
                _close(self._loop)
                self._loop = None
            if self._loop is None:
                self._loop = staging.open_staging(self.database, busy_ms=0, checkpoints=False)
                self._loop_file = staging.identity(self.database)
            staging.stage(self._loop, rows)
            return True
        except sqlite3.Error:
            _close(self._loop)
            self._loop = None
            return False

    def stage(self, rows: list[Row]) -> None:
        """Commit ``rows``, waiting up to 10 s for the lock. Writer thread only."""
        try:
            if self._thread is not None and staging.identity(self.database) != self._thread_file:
                _close(self._thread)
                self._thread = None
            if self._thread is None:
                self._thread = staging.open_staging(self.database, busy_ms=10_000)
                self._thread_file = staging.identity(self.database)
            staging.stage(self._thread, rows)
        except sqlite3.Error:
            _close(self._thread)
            self._thread = None
            raise

    def move(self) -> int:
        """Move the staged records into ``access_log``. Mover thread only. Raises sqlite3.Error."""
        try:
            moved = 0
            if self._main is not None and staging.identity(self.database) != self._main_file:
                # the staging file was replaced: what the old one holds is still readable through the
                # attached handle, and is moved before the new file is attached
                moved += staging.move(self._main)
                _close(self._main)
                self._main = None
            if self._main is None:
                staging.open_staging(self.database, busy_ms=10_000).close()  # its tables, should they be missing
                self._main = staging.connect(self.database, busy_ms=10_000)
                # The records are deleted from the staging file once moved: the move must be on disk
                # first, even across a power cut (NORMAL would leave it in the unsynced WAL).
                self._main.execute("PRAGMA main.synchronous=FULL")
                # a move touches index pages all over access_log: keep them cached between moves
                self._main.execute(f"PRAGMA cache_size=-{MOVE_CACHE_KIB}")
                staging.attach(self._main, self.database)
                self._main_file = staging.identity(self.database)
            return moved + staging.move(self._main)
        except sqlite3.Error:
            _close(self._main)
            self._main = None
            raise

    def close(self) -> None:
        _close(self._loop, self._thread, self._main)
        self._loop = self._thread = self._main = None


def _close(*conns: sqlite3.Connection | None) -> None:
    for conn in conns:
        if conn is not None:
            conn.close()


class ReadLogWriter:
    """Group commit of access records, one batch at a time.

    A batch is written when ``batch_size`` records wait, or ``max_delay`` seconds after its first record
    arrived, whichever comes first (``max_delay=0``, the default: once the requests already runnable
    have appended theirs); records that arrive while a batch is being written form the next one. Each
    batch is one transaction (see the module docstring for where), and the event loop never waits for a
    database lock; log writes never queue behind request handlers in the shared thread pool. Records
    keep their arrival order (ids ascend in it).

    ``append`` must be called from the event loop the writer first ran on (it starts lazily there).
    Guarantees: a record is either committed before its ``append`` returns, or its ``append`` raises
    ``ServiceUnavailable``; every record accepted before ``close`` is written (or failed) before
    ``close`` returns. A caller cancelled while waiting does not withdraw its record.
    """

    def __init__(self, sessionmaker: sessionmaker[Session], *, batch_size: int = 256,
                 max_delay: float = 0.0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_delay < 0:
            raise ValueError(f"max_delay must not be negative, got {max_delay}")
        self._sessionmaker = sessionmaker
        engine = sessionmaker.kw.get("bind")
        path = None if engine is None else sqlite_file(engine)
        self._staged = StagedLog(path) if path else None
        self._moved_at = 0.0
        self._moved_records = 0  # records_written when the last move was started
        self.batches_on_loop = 0  # for tests and metrics: batches committed without the writer thread
        self.batch_size = batch_size
        self.max_delay = max_delay
        self._pending: list[tuple[AccessRecord, asyncio.Future[None]]] = []
        self._first_at = 0.0  # loop time the oldest waiting record arrived
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None  # batches the event loop could not commit itself
        self._mover: ThreadPoolExecutor | None = None  # moves of staged records: never delay a batch
        self._closing = False
        self.batches_written = 0  # for tests and metrics
        self.records_written = 0

    async def append(self, rec: AccessRecord) -> None:
        """Return once ``rec`` is committed. Raises ServiceUnavailable if it could not be, or after ``close``."""
        if self._closing:
            raise ServiceUnavailable(UNAVAILABLE)
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._start(loop)
        assert self._wakeup is not None
        future: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            self._first_at = loop.time()
            self._wakeup.set()
        self._pending.append((rec, future))
        if len(self._pending) == self.batch_size:
            self._wakeup.set()
        await future

    async def append_many(self, recs: list[AccessRecord]) -> None:
        """Return once every record of ``recs`` is committed (in their order); raises ServiceUnavailable
        if any could not be. For reads that return many passports at once (exports, search pages)."""
        if recs:
            await asyncio.gather(*(self.append(r) for r in recs))

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wakeup = asyncio.Event()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbp-access-log")
        if self._staged is not None:
            self._movers().submit(self._move_quietly)  # records a killed process left staged
            self._moved_at = loop.time()  # that move counts: the first batch need not start another
        self._task = loop.create_task(self._run(), name="dbp-access-log-writer")
        self._task.add_done_callback(self._stopped)

    async def _run(self) -> None:
        assert self._wakeup is not None and self._executor is not None
        loop = asyncio.get_running_loop()
        wakeup = self._wakeup
        while True:
            if not self._pending:
                if self._closing:
                    return
                wakeup.clear()
                await wakeup.wait()
                continue
            # group commit: wait for a full batch, but never longer than max_delay after the oldest record
            delay = self._first_at + self.max_delay - loop.time()
            if self.max_delay == 0 and len(self._pending) < self.batch_size and not self._closing:
                # Self-clocking group commit: let the requests that are already runnable append their
                # records, then write. Under load the records that arrived during the previous write form
                # the next batch, so batches grow with load and an idle server adds no fixed delay.
                await asyncio.sleep(0)
                await asyncio.sleep(0)
            elif len(self._pending) < self.batch_size and delay > 0 and not self._closing:
                wakeup.clear()  # set again by the append that fills the batch, or by close
                try:
                    async with asyncio.timeout(delay):
                        await wakeup.wait()
                except TimeoutError:
                    pass
            batch = self._pending[: self.batch_size]
            del self._pending[: self.batch_size]
            # records left over from a full batch have waited through its write: the next batch goes at once
            self._first_at = loop.time() - self.max_delay
            try:
                records = [r for r, _ in batch]
                if self._staged is not None and self._staged.try_stage([r.values() for r in records]):
                    self.batches_on_loop += 1
                else:
                    await loop.run_in_executor(self._executor, self._write, records)
                if self._staged is not None:
                    self._schedule_move(loop)
            except asyncio.CancelledError:
                self._fail(batch, None)
                raise
            except Exception as exc:
                log.error("access log batch of %d records not stored: %r", len(batch), exc)
                self._fail(batch, exc)
            else:
                self.batches_written += 1
                self.records_written += len(batch)
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    def _write(self, records: list[AccessRecord]) -> None:
        if self._staged is not None:
            self._staged.stage([r.values() for r in records])
            return
        with transaction(self._sessionmaker) as session:
            record_many(session, records)

    def _schedule_move(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start a move of the staged records on the mover thread every MOVE_INTERVAL seconds, or once
        MOVE_BACKLOG records were staged since the last one."""
        now = loop.time()
        if now - self._moved_at >= MOVE_INTERVAL or self.records_written - self._moved_records >= MOVE_BACKLOG:
            self._moved_at, self._moved_records = now, self.records_written
            self._movers().submit(self._move_quietly)

    def _movers(self) -> ThreadPoolExecutor:
        if self._mover is None:
            self._mover = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbp-access-log-mover")
        return self._mover

    def _move_quietly(self) -> None:
        try:
            assert self._staged is not None
            self._staged.move()
        except Exception as exc:  # the records stay staged; the next move tries again
            log.warning("moving staged access-log records failed (they stay staged): %r", exc)

    async def flush(self) -> None:
        """Return once every record whose read was answered before this call is in ``access_log``
        (queries call this first): records still waiting for a batch are awaited, staged ones moved.
        Raises ServiceUnavailable when staged records could not be moved."""
        waiting = [future for _, future in self._pending]
        if waiting:
            await asyncio.wait(waiting)
        if self._staged is None or self._closing:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._movers(), self._staged.move)
        except sqlite3.Error as exc:
            log.error("staged access-log records could not be moved: %r", exc)
            raise ServiceUnavailable("the access log is being written; try again shortly") from exc

    @staticmethod
    def _fail(batch: list[tuple[AccessRecord, asyncio.Future[None]]], cause: BaseException | None) -> None:
        for _, future in batch:
            if not future.done():
                error = ServiceUnavailable(UNAVAILABLE)
                error.__cause__ = cause
                future.set_exception(error)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        """The writer task ended (close, cancellation or a bug): no waiting caller may hang."""
        if task is not self._task:
            return  # a successor task already took over the waiting records
        if not task.cancelled() and task.exception() is not None:
            log.error("access log writer stopped: %r", task.exception())
        pending, self._pending = self._pending, []
        self._fail(pending, None if task.cancelled() else task.exception())

    async def close(self) -> None:
        """Write every accepted record, then stop; later appends raise ServiceUnavailable. Idempotent."""
        self._closing = True
        task = self._task
        if task is not None and not task.done():
            assert self._wakeup is not None
            self._wakeup.set()
            await asyncio.shield(task)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._staged is not None:
            self._movers().submit(self._move_quietly)  # leave nothing staged on a clean shutdown
        if self._mover is not None:
            mover, self._mover = self._mover, None
            await asyncio.get_running_loop().run_in_executor(None, mover.shutdown)  # the loop keeps serving
        if self._staged is not None:
            self._staged.close()

"""Durable, batched appends of read records: a read is answered only after its record is committed.

One commit per read halves SQLite read throughput; ``ReadLogWriter`` groups the records of concurrent
reads and commits them together (group commit). ``append`` returns only once the record's batch is
committed, and raises ``ServiceUnavailable`` when it could not be, so the caller never answers a read
whose record was not stored.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.orm import Session, sessionmaker

from dbp.audit.service import AccessRecord, record_many
from dbp.db import transaction
from dbp.errors import ServiceUnavailable

log = logging.getLogger("dbp.audit")

UNAVAILABLE = "access log unavailable; the read was not answered"


class ReadLogWriter:
    """Group commit of access records, one batch at a time.

    A batch is written when ``batch_size`` records wait, or ``max_delay`` seconds after its first record
    arrived, whichever comes first; records that arrive while a batch is being written form the next
    one. Each batch is one ``record_many`` in one transaction, run on the writer's own thread, so the
    event loop never waits on the database and log writes never queue behind request handlers in the
    shared thread pool. Records keep their arrival order (ids ascend in it).

    ``append`` must be called from the event loop the writer first ran on (it starts lazily there).
    Guarantees: a record is either committed before its ``append`` returns, or its ``append`` raises
    ``ServiceUnavailable``; every record accepted before ``close`` is written (or failed) before
    ``close`` returns. A caller cancelled while waiting does not withdraw its record.
    """

    def __init__(self, sessionmaker: sessionmaker[Session], *, batch_size: int = 256,
                 max_delay: float = 0.002) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_delay < 0:
            raise ValueError(f"max_delay must not be negative, got {max_delay}")
        self._sessionmaker = sessionmaker
        self.batch_size = batch_size
        self.max_delay = max_delay
        self._pending: list[tuple[AccessRecord, asyncio.Future[None]]] = []
        self._first_at = 0.0  # loop time the oldest waiting record arrived
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
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

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wakeup = asyncio.Event()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbp-access-log")
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
                await loop.run_in_executor(self._executor, self._write, [r for r, _ in batch])
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

    def _write(self, recs: list[AccessRecord]) -> None:
        with transaction(self._sessionmaker) as session:
            record_many(session, recs)

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

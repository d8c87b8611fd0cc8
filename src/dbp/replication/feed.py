"""Waiting for the change feed to grow, for long-poll and server-sent-event followers, without holding a database
transaction or blocking the event loop.

``LogWatcher`` keeps one poller task per process while anyone waits (none otherwise): it reads the log's
committed size (``SELECT size FROM log_state``) every ``interval`` seconds — on SQLite on the hot-path reader's
own ``query_only`` connection, microseconds on the event loop; elsewhere one pooled query in a worker thread —
and wakes every waiter when it grows. Writes of this process wake it at once: ``install`` hooks the write
sessionmaker's ``after_commit``; writes of other processes (more API workers, ``dbp import``) are seen within
``interval``. So N followers cost one query per interval, not N. ``close`` wakes every waiter for good (they
answer at once); waiting after ``close`` returns immediately.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("dbp.replication")

SIZE_SQL = "SELECT size FROM log_state WHERE id = 1"
#: Seconds between two looks at the log's size while someone waits (SQLite: a pragma-cheap query on the loop).
SQLITE_INTERVAL = 0.1
OTHER_INTERVAL = 0.25


class SizeSource:
    """The log's committed size: the real one reads through ``CurrentVersionReader.rows``."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader

    async def size(self) -> int:
        rows = await self.reader.rows(SIZE_SQL, ())
        return int(rows[0][0]) if rows else 0


class LogWatcher:
    def __init__(self, source: SizeSource, *, interval: float) -> None:
        self.source = source
        self.interval = interval
        self._size: int | None = None
        self._grown = asyncio.Event()  # replaced after every wake-up; waiters hold the one they wait on
        self._poke = asyncio.Event()
        self._waiters = 0
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def poke(self) -> None:
        """Look at the log now (thread-safe; called after every commit of this process's writes)."""
        loop = self._loop
        if loop is None or self._waiters == 0 or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(self._poke.set)

    async def wait_past(self, position: int, timeout: float) -> bool:
        """True once the committed log holds a leaf at ``position`` or beyond (size > position), within
        ``timeout`` seconds; False on timeout or when closed."""
        if self._closed:
            return False
        if timeout <= 0:
            return False
        self._loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        self._waiters += 1
        try:
            if self._task is None or self._task.done():
                self._size = None  # not known until the new poller looks (a size seen long ago proves nothing)
                self._task = asyncio.create_task(self._run(), name="dbp-feed-watcher")
            while not self._closed:
                if self._size is not None and self._size > position:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                grown = self._grown
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(grown.wait(), remaining)
            return False
        finally:
            self._waiters -= 1

    async def _run(self) -> None:
        while self._waiters > 0 and not self._closed:
            size: int | None
            try:
                size = await self.source.size()
            except Exception:  # a busy or unreachable database: waiters time out, the next look may succeed
                log.warning("change feed: cannot read the log size; trying again", exc_info=True)
                size = self._size
            if size is not None and size != self._size:
                self._size = size
                self._wake()
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.interval)
        self._task = None

    def _wake(self) -> None:
        grown, self._grown = self._grown, asyncio.Event()
        grown.set()

    def close(self) -> None:
        """Wake every waiter for good (shutdown)."""
        self._closed = True
        self._wake()


def install(state: Any) -> LogWatcher:
    """The watcher of an app's state (``create_app``): polls through its hot-path reader, woken by its commits."""
    sqlite = state.reader.data_version() is not None
    watcher = LogWatcher(SizeSource(state.reader), interval=SQLITE_INTERVAL if sqlite else OTHER_INTERVAL)
    factory: sessionmaker[Session] = state.sessionmaker

    def committed(_session: Session) -> None:
        watcher.poke()

    event.listen(factory, "after_commit", committed)
    state.feed_watcher = watcher
    return watcher

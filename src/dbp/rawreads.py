"""Raw read-only queries for the ASGI fast paths (transparency-log proofs, the resolver), outside SQLAlchemy's pool.

SQLite: on the calling thread (the event loop: a primary-key lookup costs microseconds), on one read-only
autocommit connection of our own, whose ``PRAGMA data_version`` tells when another connection committed (so a
cache built from the database is valid while it is unchanged). PostgreSQL: in one of ``threads`` threads of our
own, each with its own autocommit connection made by the engine's dialect outside the engine's pool (the pool's
pre-ping and the rollback after use would double the round trips; holding pooled connections would starve the
routes); a connection that failed is dropped and made again at the next call. Statements use ``?`` placeholders
on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from dbp.db import sqlite_file

T = TypeVar("T")
Query = Callable[[str, Sequence[Any]], list[Any]]


class RawReads:
    """Runs a function of a :data:`Query` against the database (see the module docstring).

    ``unsupported(dialect)`` and ``closed()`` build the exceptions raised for a database that is neither SQLite
    nor PostgreSQL and for a call after ``close``; exceptions of the ``keep`` types raised by the function are
    the caller's own refusals and do not cost the PostgreSQL connection."""

    def __init__(self, engine: Engine, *, name: str, unsupported: Callable[[str], Exception],
                 closed: Callable[[], Exception], keep: tuple[type[BaseException], ...] = (), threads: int = 4,
                 sqlite_pragmas: Sequence[str] = ()) -> None:
        self.engine = engine
        self._closed, self._keep = closed, keep
        self._sqlite: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()
        path = sqlite_file(engine)
        if path is not None:
            self._sqlite = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            for pragma in ("busy_timeout=10000", "query_only=ON", *sqlite_pragmas):
                self._sqlite.execute(f"PRAGMA {pragma}")
        elif engine.dialect.name == "postgresql" and engine.dialect.paramstyle in ("format", "pyformat"):
            self._executor = ThreadPoolExecutor(threads, thread_name_prefix=f"dbp-{name}")
        else:
            raise unsupported(engine.dialect.name)

    def data_version(self) -> int | None:
        """SQLite's ``PRAGMA data_version`` of our connection; None elsewhere (nothing to compare with)."""
        if self._sqlite is None:
            return None
        return int(self._sqlite.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            with contextlib.suppress(Exception):
                connection.close()

    async def run(self, fn: Callable[[Query], T]) -> T:
        connection = self._sqlite
        if connection is not None:
            return fn(lambda sql, params: connection.execute(sql, tuple(params)).fetchall())
        if self._executor is None:
            raise self._closed()
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._on_postgres, fn)

    def _on_postgres(self, fn: Callable[[Query], T]) -> T:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
            connection = self.engine.dialect.connect(*cargs, **cparams)
            connection.autocommit = True  # each statement its own snapshot, as on SQLite; nothing to roll back
            self._local.connection = connection
            with self._lock:
                self._opened.append(connection)
        cursor = connection.cursor()

        def query(sql: str, params: Sequence[Any]) -> list[Any]:
            cursor.execute(sql.replace("?", "%s"), tuple(params))
            return list(cursor.fetchall())

        try:
            return fn(query)
        except self._keep:
            raise
        except Exception:
            self._local.connection = None  # perhaps broken: the next call makes a new one
            with self._lock, contextlib.suppress(ValueError):
                self._opened.remove(connection)
            with contextlib.suppress(Exception):
                connection.close()
            raise
        finally:
            with contextlib.suppress(Exception):
                cursor.close()

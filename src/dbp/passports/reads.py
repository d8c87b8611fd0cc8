"""The hot read path: current version bytes by passport id or product id.

ARCHITECTURE.md §6: serve stored bytes, no per-request object building, no threadpool hop for a
microsecond SQLite lookup. For SQLite the event loop thread keeps one raw DB-API connection in
autocommit mode (WAL: it always sees the last committed version); other databases go through the
pool in a worker thread so the loop never blocks on the network.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from dbp.passports.service import StoredVersion

_BY_ID = (
    "SELECT v.version, v.created_at, v.sha256, v.canonical FROM passports p "
    "JOIN passport_versions v ON v.dpp_id = p.dpp_id AND v.version = p.current_version WHERE p.dpp_id = {p}"
)
_BY_PRODUCT = (
    "SELECT p.dpp_id, v.version, v.created_at, v.sha256, v.canonical FROM passports p "
    "JOIN passport_versions v ON v.dpp_id = p.dpp_id AND v.version = p.current_version WHERE p.product_id = {p}"
)


class CurrentVersionReader:
    """Reads the current version of a passport; ``None`` when there is none."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sqlite: sqlite3.Connection | None = None
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            self._sqlite = sqlite3.connect(engine.url.database, check_same_thread=False, isolation_level=None)
            self._sqlite.execute("PRAGMA busy_timeout=10000")
            self._sqlite.execute("PRAGMA query_only=ON")

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    async def by_id(self, dpp_id: str) -> StoredVersion | None:
        if self._sqlite is not None:
            row = self._sqlite.execute(_BY_ID.format(p="?"), (dpp_id,)).fetchone()
        else:
            row = await run_in_threadpool(self._pooled, _BY_ID.format(p=":p"), dpp_id)
        return None if row is None else StoredVersion(dpp_id, row[0], row[1], row[2], row[3].encode())

    async def by_product_id(self, product_id: str) -> StoredVersion | None:
        if self._sqlite is not None:
            row = self._sqlite.execute(_BY_PRODUCT.format(p="?"), (product_id,)).fetchone()
        else:
            row = await run_in_threadpool(self._pooled, _BY_PRODUCT.format(p=":p"), product_id)
        return None if row is None else StoredVersion(row[0], row[1], row[2], row[3], row[4].encode())

    def _pooled(self, sql: str, value: str) -> Any:
        with self.engine.connect() as conn:
            row = conn.execute(text(sql), {"p": value}).fetchone()
            conn.rollback()
            return row

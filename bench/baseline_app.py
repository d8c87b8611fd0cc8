"""The read baseline: a bare ASGI callable (no framework) serving stored bytes by primary key.

Same database, same row, same lookup as dbp's read path (the current version, found through
``passports.current_version`` by primary key), same bytes out — just without FastAPI/Starlette,
middleware, routing, response objects, authentication, access decisions or an access log. SQLite:
one ``sqlite3`` connection used on the event loop thread, exactly like dbp's
``CurrentVersionReader``. PostgreSQL: a few psycopg async connections.

Which stored bytes: ``BENCH_BASELINE_COLUMN`` — ``public_canonical`` (the stored public view, what
dbp sends an anonymous caller) for the public-read comparison, ``canonical`` (the full version, the
default) for the authenticated ones. Request headers (``Authorization``, ``X-Purpose``) are ignored.

Run by ``bench.servers`` as ``uvicorn --factory bench.baseline_app:create`` with the database URL in
``BENCH_DATABASE_URL``.

``BENCH_BASELINE_KIND=resolver``: the resolver baseline (``bench.resolver``) — the same app, and for a GS1
item path ``/01/{gtin}/21/{serial}`` the bare minimum of a resolver: the product key read off the path, one
primary-key lookup of the registration, ``307`` to ``{endpoint}/api/v1/dpps/{dppId}`` (the Location dbp sends),
no validation, links, linksets, routing rules or CORS.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from typing import Any
from urllib.parse import quote, unquote

from sqlalchemy.engine import make_url

PREFIX = "/api/v1/dpps/"
COLUMNS = ("canonical", "public_canonical")
SQL = ("SELECT v.{column} FROM passports p JOIN passport_versions v "
       "ON v.dpp_id = p.dpp_id AND v.version = p.current_version WHERE p.dpp_id = {p}")
JSON = [(b"content-type", b"application/json")]
NOT_FOUND = b'{"statusCode":"ClientErrorResourceNotFound"}'


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*JSON, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any, startup: Any = None, shutdown: Any = None) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if startup is not None:
                await startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if shutdown is not None:
                await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


class SqliteApp:
    def __init__(self, path: str, column: str = "canonical") -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA query_only=ON")
        self.sql = SQL.format(column=column, p="?")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path: str = scope["path"]
        row = self.db.execute(self.sql, (path[len(PREFIX):],)).fetchone() if path.startswith(PREFIX) else None
        if row is None:
            await _respond(send, 404, NOT_FOUND)
        else:
            await _respond(send, 200, row[0].encode())


class PostgresApp:
    def __init__(self, url: str, column: str = "canonical", connections: int = 8) -> None:
        self.conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.size = connections
        self.pool: asyncio.Queue[Any] = asyncio.Queue()
        self.sql = SQL.format(column=column, p="%s")

    async def _open(self) -> None:
        import psycopg

        for _ in range(self.size):
            self.pool.put_nowait(await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True))

    async def _close(self) -> None:
        while not self.pool.empty():
            await self.pool.get_nowait().close()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self._open, self._close)
            return
        path: str = scope["path"]
        row = None
        if path.startswith(PREFIX):
            conn = await self.pool.get()
            try:
                cur = await conn.execute(self.sql, (path[len(PREFIX):],))
                row = await cur.fetchone()
            finally:
                self.pool.put_nowait(conn)
        if row is None:
            await _respond(send, 404, NOT_FOUND)
        else:
            await _respond(send, 200, row[0].encode())


RESOLVE_SQL = "SELECT endpoint, dpp_id FROM registrations WHERE product_key = ?"
EMPTY = [(b"content-length", b"0")]


def _product_key(path: str) -> str | None:
    parts = path.split("/")
    if len(parts) != 5 or parts[1] != "01" or parts[3] != "21":
        return None
    return f"gs1:(01){parts[2]}(21){unquote(parts[4])}"


class SqliteResolverApp(SqliteApp):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        key = _product_key(scope["path"]) if scope["type"] == "http" else None
        if key is None:
            await super().__call__(scope, receive, send)
            return
        row = self.db.execute(RESOLVE_SQL, (key,)).fetchone()
        if row is None:
            await _respond(send, 404, NOT_FOUND)
            return
        location = f"{row[0]}/api/v1/dpps/{quote(row[1], safe=':')}"
        await send({"type": "http.response.start", "status": 307,
                    "headers": [(b"location", location.encode()), *EMPTY]})
        await send({"type": "http.response.body", "body": b""})


def create() -> Any:
    url = os.environ["BENCH_DATABASE_URL"]
    column = os.environ.get("BENCH_BASELINE_COLUMN", "canonical")
    if column not in COLUMNS:
        raise ValueError(f"BENCH_BASELINE_COLUMN must be one of {', '.join(COLUMNS)}, not {column!r}")
    if url.startswith("sqlite"):
        database = make_url(url).database
        assert database, "the baseline needs a SQLite file"
        if os.environ.get("BENCH_BASELINE_KIND") == "resolver":
            return SqliteResolverApp(database, column)
        return SqliteApp(database, column)
    return PostgresApp(url, column)


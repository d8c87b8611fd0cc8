"""Fresh, empty databases for one run: one that dbp fills (then serves), one for the insert baseline.

* SQLite (default): two files in a new folder under ``./var/bench`` (removed afterwards unless
  ``--keep``); a ``sqlite:///path`` URL names the dbp file, the baseline goes beside it.
* PostgreSQL: the URL only says which server (and which database to connect to for admin work);
  the benchmark creates its own databases ``dbp_bench`` and ``dbp_bench_baseline`` and drops them
  afterwards. Nothing in the URL's own database (e.g. the test suite's ``test``) is touched.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from dbp.config import Settings
from dbp.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
PG_NAMES = ("dbp_bench", "dbp_bench_baseline")


class SetupError(RuntimeError):
    pass


@dataclass
class Databases:
    kind: str  # "sqlite" | "postgresql"
    dbp_url: str  # dbp imports into this one; the read benchmark serves it
    baseline_url: str  # the raw-insert baseline writes here
    server_version: str
    location: str
    files: list[Path] = field(default_factory=list)

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "server_version": self.server_version, "location": self.location,
                "dbp_url": hide_password(self.dbp_url), "baseline_url": hide_password(self.baseline_url)}


def hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


def migrate(url: str) -> None:
    """The project's own schema (Alembic head) in an empty database."""
    upgrade(Settings(database_url=url))


@contextmanager
def fresh_databases(url: str | None, *, keep: bool = False) -> Iterator[Databases]:
    if url is None or url.startswith("sqlite"):
        with _sqlite(url, keep=keep) as dbs:
            yield dbs
    elif url.startswith(("postgresql", "postgres")):
        with _postgres(url, keep=keep) as dbs:
            yield dbs
    else:
        raise SetupError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://…")


@contextmanager
def _sqlite(url: str | None, *, keep: bool) -> Iterator[Databases]:
    folder: Path | None = None
    if url is None:
        (ROOT / "var" / "bench").mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="run-", dir=ROOT / "var" / "bench"))
        main = folder / "dbp.sqlite3"
    else:
        path = make_url(url).database
        if not path or path == ":memory:":
            raise SetupError("the benchmark needs a SQLite file (the servers open it from another process)")
        main = Path(path).resolve()
    baseline = main.with_name(main.stem + "-baseline" + main.suffix)
    for p in (main, baseline):
        if p.exists():
            raise SetupError(f"{p} already exists; the benchmark needs empty databases (remove it or pick another)")
    main.parent.mkdir(parents=True, exist_ok=True)
    dbs = Databases("sqlite", f"sqlite:///{main}", f"sqlite:///{baseline}", sqlite3.sqlite_version,
                    str(main.parent), files=[main, baseline])
    try:
        migrate(dbs.dbp_url)
        migrate(dbs.baseline_url)
        yield dbs
    finally:
        if not keep:
            for p in dbs.files:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    p.with_name(p.name + suffix).unlink(missing_ok=True)
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


def _pg_admin(url: str):  # type: ignore[no-untyped-def]
    import psycopg

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as exc:
        raise SetupError(f"cannot connect to PostgreSQL at {hide_password(url)}: {exc}") from exc


def _pg_drop(conn, name: str) -> None:  # type: ignore[no-untyped-def]
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                 "pg_backend_pid()", (name,))
    conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@contextmanager
def _postgres(url: str, *, keep: bool) -> Iterator[Databases]:
    base = make_url(url)
    if base.database in PG_NAMES:
        raise SetupError(f"connect through another database than {base.database!r} (e.g. postgres); "
                         f"the benchmark creates and drops {', '.join(PG_NAMES)} itself")
    with _pg_admin(url) as admin:
        version = str(admin.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        for name in PG_NAMES:
            _pg_drop(admin, name)
            admin.execute(f'CREATE DATABASE "{name}"')
    urls = [base.set(database=name).render_as_string(hide_password=False) for name in PG_NAMES]
    dbs = Databases("postgresql", urls[0], urls[1], version,
                    f"{base.host or 'localhost'}:{base.port or 5432}/{{{','.join(PG_NAMES)}}}")
    try:
        migrate(dbs.dbp_url)
        migrate(dbs.baseline_url)
        yield dbs
    finally:
        if not keep:
            with _pg_admin(url) as admin:
                for name in PG_NAMES:
                    _pg_drop(admin, name)

"""Test fixtures: a real database (SQLite always; PostgreSQL when DBP_TEST_DATABASE_URL is set) and
a real HTTP server on loopback.

Functional tests talk HTTP to uvicorn in a background thread, so they cannot share the test's
transaction (ARCHITECTURE.md §5.8); instead every test starts from emptied tables. When
DBP_TEST_DATABASE_URL is set and the database is unreachable the run FAILS — CI must not turn a
missing PostgreSQL into a green SQLite-only run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import MetaData, text

from dbp.app import create_app
from dbp.audit.staging import move_all
from dbp.config import Settings
from dbp.db import make_engine, make_sessionmaker, sqlite_file
from dbp.migrate import upgrade

# log_state first: deleting it waits for an appender or checkpointer holding it, so what they commit is emptied too
TABLES = ("log_state", "log_checkpoints", "log_leaves", "log_nodes", "backup_alerts", "backup_rejections",
          "backup_versions", "backup_checkpoints", "backup_nodes", "backup_sources", "resolver_links",
          "registry_receipts",
          "registration_events", "registration_aliases", "registrations", "registry_nodes", "access_log",
          "passport_links", "grants", "backup_appointments", "attestations", "product_aliases", "passport_versions",
          "passports", "api_keys", "api_clients", "users", "authorisations", "organisations")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("DBP_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            # start from nothing: a previous run may have left tables at another revision, including
            # tables that TABLES does not empty (signing keys) — drop every table there is
            existing = MetaData()
            existing.reflect(conn)
            existing.drop_all(conn)
            conn.commit()
    except Exception as exc:
        pytest.fail(f"DBP_TEST_DATABASE_URL={url} is set but unreachable: {exc}", pytrace=False)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    s = Settings(database_url=database_url, environment="test", port=_free_port(),  # suites burst: no 429 here
                 rate_limit_per_address=1e6, rate_limit_per_address_burst=10**6,
                 rate_limit_per_principal=1e6, rate_limit_per_principal_burst=10**6,
                 integrity_sweep_budget=0,  # tests sweep when they mean to (tables are emptied under a sweep)
                 auto_register=False,  # registry tests start their own registering servers (tests/registry)
                 registry_probe_interval=0,  # node probes run where a test starts them (tests/registry)
                 backup_follow=False)  # so do backup followers (a demo test adds a source to this database)
    upgrade(s)
    return s


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Any]:
    e = make_engine(settings.database_url)
    yield e
    e.dispose()


@pytest.fixture()
def session_factory(engine: Any) -> Any:
    return make_sessionmaker(engine)


def has_path(doc: Any, path: str) -> bool:
    """Does ``doc`` hold a value at the dotted ``path`` (e.g. "generalProductInformation.batteryStatus")?"""
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return False
        doc = doc[part]
    return True


def settle_access_log(engine: Any) -> None:
    """Move the read records a SQLite server staged (``dbp.audit.staging``) into ``access_log``, so a test
    that reads the table directly sees every committed record (the HTTP access-log query does this itself)."""
    path = sqlite_file(engine)
    if path is not None:
        move_all(path)


@pytest.fixture(autouse=True)
def _empty_tables(request: pytest.FixtureRequest) -> None:
    if "settings" not in request.fixturenames:
        return
    engine = request.getfixturevalue("engine")
    settle_access_log(engine)  # nothing staged by an earlier test may surface in this one
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))


class ServerThread:
    """uvicorn serving an app on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: Any, port: int) -> None:
        self.config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.base_url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def run_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, count: int) -> tuple[str, int, str]:
    """``dbp demo --count N --no-serve`` on a fresh SQLite file in ``tmp_path`` (also the working directory) and a
    free port: (database URL, port, its output); the command must succeed."""
    from typer.testing import CliRunner

    from dbp.cli import app as cli

    port = _free_port()
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DBP_DATABASE_URL", url)
    monkeypatch.setenv("DBP_PORT", str(port))
    result = CliRunner().invoke(cli, ["demo", "--count", str(count), "--no-serve"])
    assert result.exit_code == 0, result.output
    return url, port, result.output


class ServerProcess:
    """``python -m dbp serve`` in a process of its own on 127.0.0.1 — another node of a federation, with its own
    database — configured only by ``DBP_*`` environment variables built from ``settings`` (names as in
    ``Settings``; lists comma-joined). The caller's ``DBP_*`` variables are not inherited. Killed on exit; if it
    dies or does not answer ``/health`` within 30 s, the failure shows its log."""

    def __init__(self, log: Path, **settings: Any) -> None:
        port = int(settings["port"])
        self.port, self.log, self.base_url = port, log, f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBP_")}
        for name, value in {"host": "127.0.0.1", **settings}.items():
            if isinstance(value, list | tuple):
                value = ",".join(str(v) for v in value)
            env[f"DBP_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        self.env = env
        self.roles = list(settings["roles"]) if "roles" in settings else None
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "dbp", "serve"], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    health = httpx.get(f"{self.base_url}/health", timeout=1)
                    # ours, not another test server that took the port between _free_port and the bind
                    if health.status_code == 200 and self.proc.poll() is None and (
                            self.roles is None or health.json().get("roles") == self.roles):
                        return self
                except httpx.TransportError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dbp serve on port {self.port} did not come up:\n"
                                       + self.log.read_text(errors="replace")[-3000:])
                time.sleep(0.1)
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def server(settings: Settings) -> Iterator[ServerThread]:
    with ServerThread(create_app(settings), settings.port) as srv:
        yield srv


# Operator identifiers the tests write passports for (besides the fleet's own).
TEST_OPERATORS = ("urn:dbp:op:pro-recycling-eu", "urn:dbp:op:w", "x", "urn:x:op", "urn:x:other", "o", "op")


@pytest.fixture()
def service_provider(server: ServerThread, session_factory: Any, fleet: list[dict[str, Any]]) -> dict[str, Any]:
    """A DPP service provider authorised in writing by every operator the tests use (Art. 77(4)), so
    it may write their passports and reads everything of them; with its API client and a token."""
    from dbp.access import service as access
    from dbp.access.principal import Role
    from dbp.passports.demo import successor_document

    operator_ids = {d["economicOperatorId"] for d in fleet} | set(TEST_OPERATORS)
    operator_ids.add(successor_document(fleet[:1], "repurposing", index=0)["economicOperatorId"])
    with session_factory.begin() as s:
        sp = access.create_org(s, name="Test repository service", operator_id="urn:dbp:test:service-provider",
                               role=Role.service_provider)
        for op in sorted(operator_ids):
            org = access.create_org(s, name=f"Operator {op}", operator_id=op, role=Role.economic_operator)
            access.authorise(s, operator_org_id=org.id, agent_org_id=sp.id, reference="test agreement")
        issued = access.create_client(s, org_id=sp.id, role=Role.service_provider)
    r = httpx.post(f"{server.base_url}/api/v1/auth/token", data={
        "grant_type": "client_credentials", "client_id": issued.client_id, "client_secret": issued.client_secret})
    assert r.status_code == 200, r.text
    return {"org_id": sp.id, "client_id": issued.client_id, "client_secret": issued.client_secret,
            "headers": {"Authorization": f"Bearer {r.json()['access_token']}"}}


@pytest.fixture()
def auth_headers(service_provider: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = service_provider["headers"]
    return headers


@pytest.fixture()
def client(server: ServerThread, auth_headers: dict[str, str]) -> Iterator[httpx.Client]:
    """Speaks for every operator the tests use (see ``service_provider``)."""
    with httpx.Client(base_url=server.base_url, timeout=30, headers=auth_headers) as c:
        yield c


@pytest.fixture()
def public(server: ServerThread) -> Iterator[httpx.Client]:
    """An anonymous caller: the public."""
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def fleet() -> list[dict[str, Any]]:
    """Forty valid, complete, active passports of every category (the demo generator)."""
    from dbp.passports.demo import generate_fleet

    return list(generate_fleet(40, seed=7))


@pytest.fixture()
def passport(fleet: list[dict[str, Any]]) -> dict[str, Any]:
    """A fresh copy of one complete EV passport."""
    import copy

    return copy.deepcopy(next(d for d in fleet if d["generalProductInformation"]["batteryCategory"] == "ev"))


def pytest_report_header(config: pytest.Config) -> str:
    url = os.environ.get("DBP_TEST_DATABASE_URL")
    return f"dbp test database: {url or 'SQLite (temporary file)'}"


ROOT = Path(__file__).resolve().parent.parent


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """``r`` is the EN 18222 error object with ``status`` and ``statusCode`` ``code``, and leaks no traceback."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert body["statusCode"] == code
    msg = body["message"][0]
    assert msg["messageType"] == "Error" and msg["text"] and msg["correlationId"] and msg["timestamp"]
    assert "Traceback" not in r.text
    return body

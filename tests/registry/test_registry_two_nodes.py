"""Registration round trip between two nodes on loopback with separate databases — as two ``dbp serve`` processes, and
as two servers of this process: a repository (repository role only) auto-registers what it publishes with a registry
(registry role only) over real HTTP; the receipt holds a proof that verifies against the registry's published keys
(in code and with ``dbp registry verify-proof``); a changed passport is registered again as a new revision. On
SQLite (a second file) and on PostgreSQL (a second database derived from DBP_TEST_DATABASE_URL, ``{db}_registry2``,
created here)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from registry_helpers import create_passport, fresh, org_headers, token
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from conftest import ServerProcess, ServerThread
from dbp.access import service as access
from dbp.access.principal import Role
from dbp.app import create_app
from dbp.cli import app as cli
from dbp.config import Settings
from dbp.db import make_engine, make_sessionmaker, normalise_url
from dbp.migrate import upgrade
from dbp.registry import proofs

TEST_LIMITS: dict[str, Any] = {
    "environment": "test", "rate_limit_per_address": 1e6, "rate_limit_per_address_burst": 10**6,
    "rate_limit_per_principal": 1e6, "rate_limit_per_principal_burst": 10**6, "integrity_sweep_budget": 0}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def registry_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The registry's own database: a SQLite file, or ``{db}_registry2`` next to DBP_TEST_DATABASE_URL's."""
    url = os.environ.get("DBP_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_path_factory.mktemp('registry') / 'registry.sqlite3'}"
    main = make_url(normalise_url(url))
    second = main.set(database=f"{main.database}_registry2")
    admin = create_engine(main, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"),
                                {"d": second.database}).scalar():
                conn.execute(text(f'CREATE DATABASE "{second.database}"'))
    finally:
        admin.dispose()
    engine = create_engine(second)
    try:
        with engine.begin() as conn:  # start from nothing, as conftest does for the main database
            existing = MetaData()
            existing.reflect(conn)
            existing.drop_all(conn)
    finally:
        engine.dispose()
    return second.render_as_string(hide_password=False)


def _test_settings(**kw: Any) -> Settings:
    return Settings(**TEST_LIMITS, **kw)


def _wait(what: str, probe: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(params=["threads", "processes"])
def nodes(request: pytest.FixtureRequest, settings: Settings, registry_database: str, passport: dict[str, Any],
          tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The two nodes as uvicorn threads of this process, and as two ``dbp serve`` processes (what a deployment
    runs: nothing shared but HTTP and the settings)."""
    registry_port, repo_port = _port(), _port()
    while repo_port == registry_port:  # two closed probes may get the same port: the second node would not bind
        repo_port = _port()
    reg_kw: dict[str, Any] = {"database_url": registry_database, "port": registry_port, "roles": ["registry"],
                              "registry_endpoint_http_hosts": [f"127.0.0.1:{repo_port}"]}
    reg_settings = _test_settings(**reg_kw)
    upgrade(reg_settings)
    reg_engine = make_engine(registry_database)
    reg_factory = make_sessionmaker(reg_engine)
    with reg_engine.begin() as conn:  # each test starts from an empty registry
        for table in ("registration_events", "registration_aliases", "registrations", "registry_nodes",
                      "access_log", "api_clients", "authorisations", "organisations"):
            conn.execute(text(f"DELETE FROM {table}"))
    operator = passport["economicOperatorId"]
    with reg_factory.begin() as s:  # the repository's service account at the registry, authorised by the operator
        sp = access.create_org(s, name="Repository A", operator_id="urn:x:repository-a", role=Role.service_provider)
        op = access.create_org(s, name="Operator", operator_id=operator, role=Role.economic_operator)
        access.authorise(s, operator_org_id=op.id, agent_org_id=sp.id, reference="hosting contract")
        issued = access.create_client(s, org_id=sp.id, role=Role.service_provider)
    repo_kw: dict[str, Any] = {
        "database_url": settings.database_url, "port": repo_port, "roles": ["repository"], "auto_register": True,
        "registry_url": f"http://127.0.0.1:{registry_port}", "registry_client_id": issued.client_id,
        "registry_client_secret": issued.client_secret, "registry_sync_interval": 0.1,
        "registry_commodity_code": "850760"}
    repo_settings = _test_settings(**repo_kw)
    if request.param == "threads":
        pair: tuple[Any, Any] = (ServerThread(create_app(reg_settings), registry_port),
                                 ServerThread(create_app(repo_settings), repo_port))
    else:
        pair = (ServerProcess(tmp_path / "registry.log", **TEST_LIMITS, **reg_kw),
                ServerProcess(tmp_path / "repository.log", **TEST_LIMITS, **repo_kw))
    with pair[0] as registry, pair[1] as repository:
        yield {"registry": registry, "repository": repository, "registry_factory": reg_factory,
               "repo_settings": repo_settings, "operator": operator}
    reg_engine.dispose()


def _receipt(session_factory: Any, dpp_id: str) -> Any:
    with session_factory() as s:
        return s.execute(text("SELECT registration_id, registered_version, version_hash, proof, last_error "
                              "FROM registry_receipts WHERE dpp_id = :d"), {"d": dpp_id}).first()


def test_a_published_passport_is_registered_by_the_other_node(nodes: dict[str, Any], session_factory: Any,
                                                              passport: dict[str, Any], tmp_path: Path) -> None:
    registry, repository = nodes["registry"], nodes["repository"]
    assert httpx.get(f"{repository.base_url}/api/v1/registry/nodes").status_code == 404  # no registry role there
    assert httpx.get(f"{registry.base_url}/api/v1/dpps/x").status_code in (401, 404)
    headers = org_headers(session_factory, repository.base_url, role=Role.economic_operator,
                          operator_id=nodes["operator"])
    with httpx.Client(base_url=repository.base_url, headers=headers, timeout=30) as repo:
        p = create_passport(repo, fresh(passport, "TWO0001"))
        row = _wait("the receipt", lambda: (r := _receipt(session_factory, p["dppId"])) and r[1] == 1 and r)
        registration_id, version, version_hash, proof, last_error = row
        assert last_error is None and version == 1
        served = httpx.get(f"{repository.base_url}/api/v1/dpps/{p['dppId']}")
        assert version_hash == served.headers["etag"].strip('"')
        # the proof verifies against the registry's published keys, in code ...
        keys = proofs.keys_from_jwks(httpx.get(f"{registry.base_url}/.well-known/jwks.json").json())
        payload = proofs.verify_proof(proof, keys)
        assert (payload["registrationId"], payload["dppId"], payload["registry"]) == (
            registration_id, p["dppId"], registry.base_url)
        assert payload["commodityCode"] == "850760" and payload["etagVerified"] is True
        # ... with the command line, and at the registry
        file = tmp_path / "proof.jws"
        file.write_text(proof)
        ok = CliRunner().invoke(cli, ["registry", "verify-proof", str(file), "--registry", registry.base_url])
        assert ok.exit_code == 0 and "VALID" in ok.output, ok.output
        head, body, sig = proof.split(".")
        # a changed signature byte (not the last characters: an Ed25519 S < 2^253 leaves their bits at zero)
        file.write_text(f"{head}.{body}.{sig[:10]}{'B' if sig[10] == 'A' else 'A'}{sig[11:]}")
        bad = CliRunner().invoke(cli, ["registry", "verify-proof", str(file), "--registry", registry.base_url])
        assert bad.exit_code == 3 and "INVALID" in bad.output, bad.output
        unreachable = CliRunner().invoke(cli, ["registry", "verify-proof", str(file), "--registry",
                                               f"http://127.0.0.1:{_port()}"])
        assert unreachable.exit_code == 1
        found = httpx.get(f"{registry.base_url}/api/v1/registry/registrations",
                          params={"productId": p["uniqueProductIdentifier"]}).json()["items"]
        assert [(i["registrationId"], i["endpoint"]) for i in found] == [(registration_id, repository.base_url)]
        # a change is registered again: a new revision of the same registration
        patched = repo.patch(f"/api/v1/dpps/{p['dppId']}", content=b'{"contentSpecificationIds": ["urn:x:v2"]}',
                             headers={"Content-Type": "application/merge-patch+json"})
        assert patched.status_code == 200, patched.text
        row2 = _wait("the second receipt", lambda: (r := _receipt(session_factory, p["dppId"])) and r[1] == 2 and r)
        assert row2[0] == registration_id and row2[2] != version_hash
        now = httpx.get(f"{registry.base_url}/api/v1/registry/registrations/{registration_id}").json()
        assert now["revision"] == 2 and now["dppVersion"] == 2 and now["versionHash"] == row2[2]
        assert proofs.verify_proof(row2[3], keys)["revision"] == 2
        # the registry's history says who registered: the repository's service account
        commission = org_headers(nodes["registry_factory"], registry.base_url, role=Role.commission,
                                 operator_id="urn:x:ec")
        events = httpx.get(f"{registry.base_url}/api/v1/registry/registrations/{registration_id}/events",
                           headers=commission).json()["events"]
        assert [e["kind"] for e in events] == ["registered", "updated"]
    status = CliRunner().invoke(cli, ["registry", "status", "--database-url", settings_url(nodes)])
    assert status.exit_code == 0 and "registered: 1" in status.output, status.output


def settings_url(nodes: dict[str, Any]) -> str:
    return str(nodes["repo_settings"].database_url)


def test_a_refused_registration_is_kept_with_its_error_and_retried_later(
        nodes: dict[str, Any], session_factory: Any, passport: dict[str, Any]) -> None:
    repository = nodes["repository"]
    stranger = "urn:x:operator-the-registry-does-not-know"
    with session_factory.begin() as s:
        org = access.create_org(s, name="Other", operator_id=stranger, role=Role.economic_operator)
        issued = access.create_client(s, org_id=org.id, role=Role.economic_operator)
    headers = token(repository.base_url, issued.client_id, issued.client_secret)
    doc = fresh(passport, "TWO0002")
    doc["economicOperatorId"] = stranger
    doc["generalProductInformation"].pop("operatorInformation", None)
    with httpx.Client(base_url=repository.base_url, headers=headers, timeout=30) as repo:
        p = create_passport(repo, doc)
    row = _wait("the failure", lambda: (r := _receipt(session_factory, p["dppId"])) and r[4] and r)
    assert row[0] is None and "403" in row[4] and "does not speak for" in row[4]
    with session_factory() as s:
        attempts, next_at = s.execute(text("SELECT attempts, next_attempt_at FROM registry_receipts WHERE dpp_id = :d"),
                                      {"d": p["dppId"]}).first()
    assert attempts == 1 and next_at is not None
    # the passport itself was published regardless
    assert httpx.get(f"{repository.base_url}/api/v1/dpps/{p['dppId']}").status_code == 200

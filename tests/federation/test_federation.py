"""Multi-node federation (issue 6): four ``dbp serve`` processes on loopback, each with a database of its own and
nothing shared but HTTP —

* the registry node (role ``registry``, SQLite): node directory, registrations, resolver;
* repository A (role ``repository``; PostgreSQL ``{db}_fed_a`` next to DBP_TEST_DATABASE_URL's database when that
  is set, else SQLite) and repository B (role ``repository``, SQLite): their operators publish passports, which
  they auto-register with the registry naming the backup node as ``backupProvider``, and appoint an independent
  backup provider;
* the backup node (role ``backup``, SQLite) whose follower thread follows A directly and B through a
  man-in-the-middle proxy of this test (real sockets), after ``dbp backup add`` for each.

The scenario, in file order (one federation for the module): everything registered, routed and backed up; A killed
(SIGKILL) and marked exited — each of its identifiers resolves to the backup, which serves the same passport and
evidence that verifies against A's keys fetched before it died, while B's still resolve to B; a connection to B cut
mid-answer while B publishes — every version held exactly once in the end; a feed entry forged in flight —
rejected with its step, the rest replicated, healed once the path is honest; B rewrites its log — the backup halts
B with a ``history-rewritten`` alert and keeps serving A's copies."""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import orjson
import pytest
from federation_helpers import FORGED, ORIGINAL, MitmProxy, wait_for
from sqlalchemy import create_engine, delete, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from conftest import ServerProcess, _free_port
from dbp.access import service as access
from dbp.access.principal import Role
from dbp.clock import timestamp
from dbp.config import Settings
from dbp.db import make_engine, make_sessionmaker, normalise_url
from dbp.integrity import log
from dbp.integrity.evidence import KeyPeriod, jwk_key
from dbp.integrity.models import LogCheckpoint, LogLeaf, LogNode, LogState
from dbp.integrity.verify import Trusted, verify_bundle
from dbp.migrate import upgrade
from dbp.passports.demo import generate_fleet
from dbp.replication.models import BackupVersion

T = TypeVar("T")

COUNT_A, COUNT_B = 5, 5  # passports each repository publishes before the backup starts following
MORE_B = 3  # published on B during the connection cut, and again during the tampering
BACKUP_NODE = "backup-1"
LIMITS: dict[str, Any] = {  # a test bursts: no 429; sweeps off (nothing here tampers with a repository's tables)
    "environment": "test", "rate_limit_per_address": 1e6, "rate_limit_per_address_burst": 10**6,
    "rate_limit_per_principal": 1e6, "rate_limit_per_principal_burst": 10**6, "integrity_sweep_budget": 0}
LOG_TABLES = (LogState, LogCheckpoint, LogLeaf, LogNode)  # log_state first: appenders and the checkpointer lock it
WAIT = 45.0  # seconds any one condition may take at most (generous: a loaded CI machine, PostgreSQL)


def _ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:  # two closed probes may return the same port: each node needs its own
        port = _free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _repository_a_database(tmp: Path) -> str:
    """Repository A's database: ``{db}_fed_a`` on DBP_TEST_DATABASE_URL's server (dropped first if it exists),
    else a SQLite file."""
    url = os.environ.get("DBP_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp / 'repo-a.sqlite3'}"
    main = make_url(normalise_url(url))
    own = main.set(database=f"{main.database}_fed_a")
    admin = create_engine(main, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{own.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{own.database}"'))
    except Exception as exc:
        pytest.fail(f"DBP_TEST_DATABASE_URL={url} is set but {own.database} cannot be made there: {exc}",
                    pytrace=False)
    finally:
        admin.dispose()
    return own.render_as_string(hide_password=False)


def _token(base_url: str, client_id: str, client_secret: str) -> dict[str, str]:
    r = httpx.post(f"{base_url}/api/v1/auth/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _path_of(product_id: str) -> str:
    """The GS1 Digital Link path of a product identifier (what a scan asks the resolver)."""
    return urlsplit(product_id).path


def _dpp_url(endpoint: str, dpp_id: str) -> str:
    return f"{endpoint}/api/v1/dpps/{quote(dpp_id, safe=':')}"


@dataclass
class Database:
    url: str
    engine: Engine
    factory: sessionmaker[Session]

    @classmethod
    def migrated(cls, url: str) -> Database:
        upgrade(Settings(database_url=url, environment="test"))
        engine = make_engine(url)
        return cls(url, engine, make_sessionmaker(engine))


@dataclass
class Repo:
    """A repository node with its operators (economic operators writing their own passports) and the backup
    provider they appointed there."""

    name: str  # its node id at the registry and its source id at the backup
    node: ServerProcess
    db: Database
    docs: list[dict[str, Any]]  # what its operators publish, in order (the first ones at the start)
    operators: dict[str, tuple[str, str]] = field(default_factory=dict)  # operator id -> (client id, secret)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # operator id -> token headers
    provider: tuple[str, str, str] = ("", "", "")  # backup provider (org id, client id, secret) at this repository
    passports: list[dict[str, Any]] = field(default_factory=list)  # published (as answered: with dppId)
    keys: list[KeyPeriod] = field(default_factory=list)  # its log keys, fetched while it was up
    public: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # dppId -> (public view, ETag) while up

    @property
    def base_url(self) -> str:
        return self.node.base_url

    def trusted(self) -> Trusted:
        """The operator's keys as a verifier pinned them (fetched from the repository while it was up)."""
        return Trusted(keys={k.kid: k.public_key for k in self.keys},
                       periods={k.kid: (k.created_at, k.retired_at) for k in self.keys})

    def version_leaves(self) -> set[tuple[str, int, int, str]]:
        """(dppId, version, position, sha256) of every passport version in the repository's log."""
        with self.db.factory() as s:
            return {(r.dpp_id, r.version, r.leaf_index, r.sha256)
                    for r in s.scalars(select(LogLeaf).where(LogLeaf.kind == log.KIND_VERSION))}


class Federation:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.nodes: list[ServerProcess] = []
        self.dbs: list[Database] = []
        self.proxy: MitmProxy | None = None
        fleet = list(generate_fleet(COUNT_A + COUNT_B + 2 * MORE_B, seed=61))
        registry_port, a_port, b_port, backup_port = _ports(4)
        self.backup_url = f"http://127.0.0.1:{backup_port}"
        self.backup_endpoint = f"{self.backup_url}/backup"  # the backup's endpoint in the node directory
        http_hosts = [f"127.0.0.1:{p}" for p in (a_port, b_port, backup_port)]

        self.registry_db = self._db(f"sqlite:///{tmp / 'registry.sqlite3'}")
        self.registry = ServerProcess(tmp / "registry.log", **LIMITS, database_url=self.registry_db.url,
                                      port=registry_port, roles=["registry"], secret_key="registry-" + "r" * 40,
                                      registry_endpoint_http_hosts=http_hosts)
        self.backup_db = self._db(f"sqlite:///{tmp / 'backup.sqlite3'}")
        self.backup = ServerProcess(tmp / "backup.log", **LIMITS, database_url=self.backup_db.url,
                                    port=backup_port, roles=["backup"], secret_key="backup-node-" + "k" * 40,
                                    backup_follow=True, backup_interval=0.3)
        self.repos: dict[str, Repo] = {}
        with self.registry_db.factory.begin() as s:  # the Commission, and every operator once
            commission = access.create_org(s, name="European Commission", operator_id="urn:x:ec",
                                           role=Role.commission)
            issued = access.create_client(s, org_id=commission.id, role=Role.commission)
            self.commission_client = (issued.client_id, issued.client_secret)
            operator_orgs = {op: access.create_org(s, name=f"Operator {op}", operator_id=op,
                                                   role=Role.economic_operator).id
                             for op in sorted({d["economicOperatorId"] for d in fleet})}
        for name, port, database, docs in (
                ("repo-a", a_port, self._db(_repository_a_database(tmp)), fleet[:COUNT_A]),
                ("repo-b", b_port, self._db(f"sqlite:///{tmp / 'repo-b.sqlite3'}"), fleet[COUNT_A:])):
            ops = sorted({d["economicOperatorId"] for d in docs})
            with self.registry_db.factory.begin() as s:  # the repository's service account at the registry
                sp = access.create_org(s, name=f"Repository {name}", operator_id=f"urn:dbp:test:{name}",
                                       role=Role.service_provider)
                for op in ops:
                    access.authorise(s, operator_org_id=operator_orgs[op], agent_org_id=sp.id,
                                     reference=f"hosting contract {name}")
                at_registry = access.create_client(s, org_id=sp.id, role=Role.service_provider)
            node = ServerProcess(tmp / f"{name}.log", **LIMITS, database_url=database.url, port=port,
                                 roles=["repository"], secret_key=f"{name}-secret-" + name[-1] * 40,
                                 auto_register=True, registry_url=self.registry.base_url,
                                 registry_client_id=at_registry.client_id,
                                 registry_client_secret=at_registry.client_secret, registry_backup_node=BACKUP_NODE,
                                 registry_sync_interval=0.2, registry_commodity_code="850760")
            repo = Repo(name, node, database, [copy.deepcopy(d) for d in docs])
            with database.factory.begin() as s:  # its operators, and the independent backup provider
                for op in ops:
                    org = access.create_org(s, name=f"Operator {op}", operator_id=op, role=Role.economic_operator)
                    issued = access.create_client(s, org_id=org.id, role=Role.economic_operator)
                    repo.operators[op] = (issued.client_id, issued.client_secret)
                provider = access.create_org(s, name="Independent Backup Services", operator_id="urn:x:backup-co",
                                             role=Role.backup_provider)
                issued = access.create_client(s, org_id=provider.id, role=Role.backup_provider)
                repo.provider = (provider.id, issued.client_id, issued.client_secret)
            self.repos[name] = repo
        with self.backup_db.factory.begin() as s:  # who reads the backup node's status: its own staff
            staff = access.create_org(s, name="Backup operations", operator_id="urn:x:backup-co:ops",
                                      role=Role.backup_provider)
            issued = access.create_client(s, org_id=staff.id, role=Role.backup_provider)
            self.staff_client = (issued.client_id, issued.client_secret)

    def _db(self, url: str) -> Database:
        db = Database.migrated(url)
        self.dbs.append(db)
        return db

    @property
    def a(self) -> Repo:
        return self.repos["repo-a"]

    @property
    def b(self) -> Repo:
        return self.repos["repo-b"]

    # ------------------------------------------------------------------------------------------ life cycle
    def start(self) -> None:
        self._start_nodes([self.registry, self.backup, *(r.node for r in self.repos.values())])
        self.commission = _token(self.registry.base_url, *self.commission_client)
        self.staff = _token(self.backup_url, *self.staff_client)
        for node_id, kind, endpoint in (("repo-a", "repository", self.a.base_url),
                                        ("repo-b", "repository", self.b.base_url),
                                        (BACKUP_NODE, "backup", self.backup_endpoint)):
            r = httpx.post(f"{self.registry.base_url}/api/v1/registry/nodes", headers=self.commission, timeout=10,
                           json={"nodeId": node_id, "kind": kind, "endpoint": endpoint})
            assert r.status_code == 201, self.why(r.text)
        for repo, count in ((self.a, COUNT_A), (self.b, COUNT_B)):
            for op, (client_id, secret) in repo.operators.items():
                repo.headers[op] = _token(repo.base_url, client_id, secret)
                r = httpx.post(f"{repo.base_url}/api/v1/backup-providers", headers=repo.headers[op], timeout=10,
                               json={"providerOrgId": repo.provider[0], "reference": "backup agreement 2027/4"})
                assert r.status_code == 201, self.why(r.text)
            self.publish(repo, count)
        for repo in self.repos.values():
            self.wait_checkpoint(repo, len(repo.passports))
        keys = httpx.get(f"{self.a.base_url}/api/v1/log/keys", timeout=10).json()["keys"]
        self.a.keys = [KeyPeriod(*jwk_key(k["jwk"], "key"), k["createdAt"], k["retiredAt"]) for k in keys]
        for p in self.a.passports:
            r = httpx.get(_dpp_url(self.a.base_url, p["dppId"]), timeout=10)
            assert r.status_code == 200, self.why(r.text)
            self.a.public[p["dppId"]] = (r.content, r.headers["ETag"])
        self.proxy = MitmProxy(f"127.0.0.1:{self.b.node.port}").start()
        self.backup_add(self.a, self.a.base_url)
        self.backup_add(self.b, self.proxy.base_url)  # B's feed reaches the backup through the proxy
        for repo in self.repos.values():
            for p in repo.passports:
                self.wait_routed(p, repo.base_url)
        self.wait_caught_up("repo-a", COUNT_A)
        self.wait_caught_up("repo-b", COUNT_B)

    def _start_nodes(self, nodes: list[ServerProcess]) -> None:
        """Start the processes side by side (each waits for its /health); any failure stops them all."""
        errors: list[BaseException] = []

        def run(node: ServerProcess) -> None:
            try:
                node.__enter__()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.nodes.extend(nodes)
        if errors:
            raise errors[0]

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        for node in self.nodes:
            node.__exit__()
        for db in self.dbs:
            db.engine.dispose()

    def why(self, message: str) -> str:
        """``message`` and the tail of every node's log (an assertion's explanation)."""
        parts = [message]
        if self.proxy is not None:
            p = self.proxy
            parts.append(f"----- proxy to repo-b: {p.cuts} cut, {p.tampered} altered, errors {p.errors}, requests "
                         f"{dict(p.requests)}")
        for node in self.nodes:
            tail = node.log.read_text(errors="replace")[-4000:] if node.log.exists() else "(no log)"
            parts.append(f"----- {node.log.name} (port {node.port}) -----\n{tail}")
        return "\n".join(parts)

    def wait(self, what: str, fetch: Callable[[], T], until: Callable[[T], bool], timeout: float = WAIT) -> T:
        return wait_for(what, fetch, until, timeout=timeout, logs=lambda: self.why(""))

    # ------------------------------------------------------------------------------------------ actions
    def publish(self, repo: Repo, count: int) -> list[dict[str, Any]]:
        """The next ``count`` documents of ``repo``, each POSTed by its own economic operator."""
        created = []
        for doc in repo.docs[len(repo.passports):len(repo.passports) + count]:
            r = httpx.post(f"{repo.base_url}/api/v1/dpps", json=doc, timeout=30,
                           headers=repo.headers[doc["economicOperatorId"]])
            assert r.status_code == 201, self.why(r.text)
            created.append(r.json())
        assert len(created) == count
        repo.passports.extend(created)
        return created

    def backup_add(self, repo: Repo, url: str) -> None:
        """``dbp backup add`` on the backup node's configuration, with the log key the operator handed over (read
        from its repository directly, not through ``url``)."""
        key = httpx.get(f"{repo.base_url}/api/v1/log/checkpoint", headers={"Accept": "text/plain"},
                        timeout=10).headers["X-Log-Verifier-Key"]
        _, client_id, secret = repo.provider
        done = subprocess.run([sys.executable, "-m", "dbp", "backup", "add", repo.name, url, "--client-id", client_id,
                               "--client-secret", secret, "--key", key, "--database-url", self.backup_db.url],
                              env=self.backup.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, self.why(f"dbp backup add {repo.name}: {done.stdout}\n{done.stderr}")
        assert f"following {repo.name}: {url}" in done.stdout and "(given)" in done.stdout, done.stdout

    def resolve(self, passport: dict[str, Any]) -> httpx.Response:
        """What a scan of the passport's product identifier gets from the resolver (the redirect, not followed)."""
        return httpx.get(self.registry.base_url + _path_of(passport["uniqueProductIdentifier"]),
                         follow_redirects=False, timeout=10)

    def status(self) -> dict[str, dict[str, Any]]:
        r = httpx.get(f"{self.backup_url}/api/v1/backup/status", headers=self.staff, timeout=10)
        assert r.status_code == 200, self.why(r.text)
        return {row["sourceId"]: row for row in r.json()["sources"]}

    def rejections(self, source_id: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.backup_url}/api/v1/backup/rejections", params={"sourceId": source_id},
                      headers=self.staff, timeout=10)
        assert r.status_code == 200, self.why(r.text)
        rows: list[dict[str, Any]] = r.json()["rejections"]
        return rows

    def alerts(self, source_id: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.backup_url}/api/v1/backup/alerts", params={"sourceId": source_id},
                      headers=self.staff, timeout=10)
        assert r.status_code == 200, self.why(r.text)
        rows: list[dict[str, Any]] = r.json()["alerts"]
        return rows

    def held(self, source_id: str) -> list[tuple[str, int, int, str]]:
        """(dppId, version, position, sha256) of every copy the backup holds of ``source_id`` (its database)."""
        with self.backup_db.factory() as s:
            return [(r.dpp_id, r.version, r.position, r.sha256) for r in s.scalars(
                select(BackupVersion).where(BackupVersion.source_id == source_id))]

    # ------------------------------------------------------------------------------------------ waits
    def wait_checkpoint(self, repo: Repo, size: int) -> int:
        def served() -> int:
            r = httpx.get(f"{repo.base_url}/api/v1/log/checkpoint", headers={"Accept": "application/json"},
                          timeout=10)
            return int(r.json()["size"]) if r.status_code == 200 else -1
        return self.wait(f"{repo.name} to sign a checkpoint of {size} leaves", served, lambda n: n >= size)

    def wait_routed(self, passport: dict[str, Any], endpoint: str) -> httpx.Response:
        """The resolver redirects the passport's identifier to ``endpoint`` (its registration, or the backup)."""
        want = _dpp_url(endpoint, passport["dppId"])
        return self.wait(f"{passport['uniqueProductIdentifier']} to resolve to {want}",
                         lambda: self.resolve(passport),
                         lambda r: r.status_code == 307 and r.headers.get("location") == want)

    def wait_caught_up(self, source_id: str, versions: int) -> dict[str, Any]:
        """The backup follows ``source_id``, has read all of its log and holds ``versions`` verified versions."""
        return self.wait(f"the backup to hold {versions} versions of {source_id}", self.status, lambda st: (
            source_id in st and st[source_id]["status"] == "following" and st[source_id]["lagLeaves"] == 0
            and st[source_id]["versions"] == versions and st[source_id]["openRejections"] == 0))[source_id]


def with_logs(test: Callable[[Federation], None]) -> Callable[[Federation], None]:
    """The test, with the tail of every node's log added to a failed assertion that does not show them yet."""
    @functools.wraps(test)
    def run(fed: Federation) -> None:
        try:
            test(fed)
        except AssertionError as exc:
            if "----- registry.log" in str(exc):
                raise
            raise AssertionError(fed.why(str(exc))) from exc
    return run


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = Federation(tmp_path_factory.mktemp("federation"))
    try:
        federation.start()
        yield federation
    finally:
        federation.close()


def _copies_match_the_log(fed: Federation, repo: Repo) -> None:
    """The backup holds every passport version of ``repo``'s log exactly once, at its position, with its hash."""
    held = fed.held(repo.name)
    positions = [h[2] for h in held]
    assert len(positions) == len(set(positions)), fed.why(f"positions held twice: {sorted(positions)}")
    assert len({(h[0], h[1]) for h in held}) == len(held), fed.why(f"versions held twice: {held}")
    assert set(held) == repo.version_leaves(), fed.why(f"held {sorted(held)} vs log {sorted(repo.version_leaves())}")


# ------------------------------------------------------------------------------------------------ the federation
@with_logs
def test_passports_are_registered_routed_and_backed_up(fed: Federation) -> None:
    nodes = httpx.get(f"{fed.registry.base_url}/api/v1/registry/nodes", timeout=10).json()["items"]
    assert {(n["nodeId"], n["kind"], n["endpoint"], n["status"]) for n in nodes} == {
        ("repo-a", "repository", fed.a.base_url, "active"), ("repo-b", "repository", fed.b.base_url, "active"),
        (BACKUP_NODE, "backup", fed.backup_endpoint, "active")}
    for repo in fed.repos.values():
        assert len(repo.passports) == (COUNT_A if repo is fed.a else COUNT_B)
        for p in repo.passports:
            found = httpx.get(f"{fed.registry.base_url}/api/v1/registry/registrations", timeout=10,
                              params={"productId": p["uniqueProductIdentifier"]}).json()["items"]
            assert [(r["dppId"], r["endpoint"], r["backupProvider"]) for r in found] == [
                (p["dppId"], repo.base_url, BACKUP_NODE)], found
            scanned = fed.resolve(p)
            assert scanned.status_code == 307 and scanned.headers["location"] == _dpp_url(repo.base_url, p["dppId"])
            served = httpx.get(scanned.headers["location"], timeout=10)
            assert served.status_code == 200 and served.json()["dppId"] == p["dppId"]
            # the backup's copy is the repository's public view, byte for byte
            held = httpx.get(_dpp_url(fed.backup_endpoint, p["dppId"]), timeout=10)
            assert held.status_code == 200, fed.why(held.text)
            assert held.content == served.content and held.headers["ETag"] == served.headers["ETag"]
            assert held.headers["X-DPP-Served-By"] == "backup" and held.headers["X-DPP-Backup-Source"] == repo.name
        _copies_match_the_log(fed, repo)
    status = fed.status()
    for name, count in (("repo-a", COUNT_A), ("repo-b", COUNT_B)):
        row = status[name]
        assert (row["status"], row["versions"], row["passports"], row["openRejections"], row["alerts"]) == (
            "following", count, count, 0, 0), row
        assert row["treeSize"] >= count and row["lastError"] is None and row["lastSuccessAt"], row
    assert fed.proxy is not None and status["repo-b"]["url"] == fed.proxy.base_url
    # the backup's status is for its own staff, not for anyone
    assert httpx.get(f"{fed.backup_url}/api/v1/backup/status", timeout=10).status_code == 401


@with_logs
def test_a_killed_repository_is_served_by_the_backup(fed: Federation) -> None:
    a = fed.a
    assert a.node.proc is not None
    a.node.proc.kill()  # SIGKILL: no shutdown, nothing flushed, the operator is simply gone
    a.node.proc.wait(timeout=10)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{a.base_url}/health", timeout=2)
    exited = httpx.patch(f"{fed.registry.base_url}/api/v1/registry/nodes/repo-a", headers=fed.commission,
                         json={"status": "exited"}, timeout=10)
    assert exited.status_code == 200 and exited.json()["status"] == "exited", fed.why(exited.text)

    trusted = a.trusted()
    assert trusted.keys, "A's keys were fetched while it was up"
    for p in a.passports:
        scanned = fed.wait_routed(p, fed.backup_endpoint)
        location = scanned.headers["location"]
        assert location.startswith(f"{fed.backup_url}/backup/api/v1/dpps/")
        served = httpx.get(location, timeout=10)
        assert served.status_code == 200, fed.why(served.text)
        original, etag = a.public[p["dppId"]]
        assert served.content == original and served.headers["ETag"] == etag  # the passport A served, unchanged
        assert served.headers["X-DPP-Served-By"] == "backup" and served.headers["X-DPP-Backup-Source"] == "repo-a"
        evidence = httpx.get(f"{location}/evidence", timeout=10)
        assert evidence.status_code == 200, fed.why(evidence.text)
        report = verify_bundle(evidence.content, trusted=trusted)
        assert report.verdict == "valid", report.as_json()
        bundle = orjson.loads(evidence.content)
        assert bundle["document"] == original.decode()
    # the keys really are what the verdict rests on: a document changed in the bundle does not verify
    forged = orjson.loads(evidence.content)
    forged["document"] = forged["document"][:-1] + ',"forged":true}'
    assert verify_bundle(orjson.dumps(forged), trusted=trusted).verdict == "invalid"
    # B is untouched: its identifiers still resolve to B
    for p in fed.b.passports:
        scanned = fed.resolve(p)
        assert scanned.status_code == 307 and scanned.headers["location"] == _dpp_url(fed.b.base_url, p["dppId"])
        assert httpx.get(scanned.headers["location"], timeout=10).status_code == 200
    # and the backup noticed that A is gone (it keeps trying, backing off)
    row = fed.wait("the backup to report repo-a unreachable", fed.status,
                   lambda st: st["repo-a"]["status"] == "failing" and st["repo-a"]["failures"] >= 1)["repo-a"]
    assert "cannot reach" in row["lastError"] and row["versions"] == COUNT_A, row


@with_logs
def test_a_connection_cut_mid_answer_loses_nothing_and_stores_nothing_twice(fed: Federation) -> None:
    b, proxy = fed.b, fed.proxy
    assert proxy is not None
    before = proxy.requests["/api/v1/feed"]
    proxy.cut_next_feed()
    fresh = fed.publish(b, MORE_B)
    failed = fed.wait("the backup to report the cut connection to repo-b", fed.status,
                      lambda st: st["repo-b"]["status"] == "failing")["repo-b"]
    assert failed["failures"] >= 1 and "cannot reach" in failed["lastError"], failed
    assert proxy.cuts == 1 and proxy.requests["/api/v1/feed"] > before
    row = fed.wait_caught_up("repo-b", COUNT_B + MORE_B)
    assert row["lastError"] is None and row["failures"] == 0 and row["passports"] == COUNT_B + MORE_B, row
    _copies_match_the_log(fed, b)
    assert proxy.cuts == 1 and not proxy.errors, proxy.errors
    for p in fresh:  # registered meanwhile, and routed to B
        fed.wait_routed(p, b.base_url)


@with_logs
def test_a_forged_feed_entry_is_rejected_replication_goes_on_and_it_heals(fed: Federation) -> None:
    b, proxy = fed.b, fed.proxy
    assert proxy is not None
    total = len(b.passports) + MORE_B
    victim_doc = b.docs[len(b.passports) + 1]  # the second of the batch
    proxy.tamper(f'"uniqueProductIdentifier":"{victim_doc["uniqueProductIdentifier"]}"')
    fresh = fed.publish(b, MORE_B)
    victim = fresh[1]
    assert victim["uniqueProductIdentifier"] == victim_doc["uniqueProductIdentifier"]

    def refused(rows: list[dict[str, Any]]) -> bool:
        return any(r["dppId"] == victim["dppId"] and r["resolvedAt"] is None for r in rows)

    rows = fed.wait("the backup to reject the forged entry", lambda: fed.rejections("repo-b"), refused)
    [rejection] = [r for r in rows if r["dppId"] == victim["dppId"]]
    assert rejection["step"] == "content hash" and rejection["version"] == 1, rejection
    assert "expected SHA-256" in rejection["reason"], rejection
    # replication went on: everything else is held, nothing is behind
    row = fed.wait("the backup to hold every other version of repo-b", fed.status, lambda st: (
        st["repo-b"]["versions"] == total - 1 and st["repo-b"]["lagLeaves"] == 0))["repo-b"]
    assert row["status"] == "following" and row["openRejections"] == 1, row
    assert proxy.tampered >= 1 and not proxy.errors, proxy.errors
    assert httpx.get(_dpp_url(fed.backup_endpoint, victim["dppId"]), timeout=10).status_code == 404
    for p in (fresh[0], fresh[2]):
        assert httpx.get(_dpp_url(fed.backup_endpoint, p["dppId"]), timeout=10).status_code == 200

    proxy.tamper(None)  # the path is honest again: the rejected entry is fetched again and heals
    fed.wait_caught_up("repo-b", total)
    [healed] = [r for r in fed.rejections("repo-b") if r["dppId"] == victim["dppId"]]
    assert healed["resolvedAt"] is not None and healed["attempts"] >= 1, healed
    copy_ = httpx.get(_dpp_url(fed.backup_endpoint, victim["dppId"]), timeout=10)
    original = httpx.get(_dpp_url(b.base_url, victim["dppId"]), timeout=10)
    assert copy_.status_code == 200 and copy_.content == original.content, fed.why(copy_.text)
    with fed.backup_db.factory() as s:  # the full version held is the one B signed, not the one forged in flight
        held = bytes(s.scalars(select(BackupVersion.canonical).where(BackupVersion.dpp_id == victim["dppId"])).one())
    assert ORIGINAL.encode() in held and FORGED.encode() not in held
    _copies_match_the_log(fed, b)


@with_logs
def test_a_rewritten_log_halts_the_source_and_the_copies_stay_served(fed: Federation) -> None:
    b = fed.b
    held = fed.held("repo-b")
    assert len(held) == len(b.passports)
    size = fed.wait_checkpoint(b, max(h[2] for h in held) + 1)
    forged = size + 5  # a longer tree, so the backup asks for a consistency proof that cannot exist
    with b.db.factory.begin() as s:  # B deletes its log and logs another history; its checkpointer signs it
        for model in LOG_TABLES:
            s.execute(delete(model))
        at = timestamp()
        log.append(s, leaves=[log.Leaf(f"urn:forged:{i}", 1, hashlib.sha256(f"forged{i}".encode()).hexdigest(), at)
                              for i in range(forged)])
    fed.wait_checkpoint(b, forged)
    row = fed.wait("the backup to halt repo-b", fed.status, lambda st: st["repo-b"]["status"] == "halted")["repo-b"]
    assert "rewritten" in (row["haltedReason"] or ""), row
    alerts = fed.alerts("repo-b")
    assert [a["kind"] for a in alerts] == ["history-rewritten"], alerts
    assert set(alerts[0]["evidence"]["notes"]) == {"latest", "found"}
    assert row["versions"] == len(held) and row["alerts"] == 1, row
    assert sorted(fed.held("repo-b")) == sorted(held)  # nothing taken from the rewritten log
    # what it held of B stays served; A's copies too, through the resolver, A being gone
    assert httpx.get(_dpp_url(fed.backup_endpoint, held[0][0]), timeout=10).status_code == 200
    status = fed.status()
    assert status["repo-a"]["status"] != "halted" and fed.alerts("repo-a") == [], status["repo-a"]
    endpoint = fed.backup_endpoint if fed.a.node.proc is not None and fed.a.node.proc.poll() is not None \
        else fed.a.base_url
    for p in fed.a.passports:
        scanned = fed.wait_routed(p, endpoint)
        served = httpx.get(scanned.headers["location"], timeout=10)
        assert served.status_code == 200 and served.content == fed.a.public[p["dppId"]][0]

"""A small federation on one machine (``dbp federation``, ``make federation``): a registry (with its resolver), two
operator repositories and one independent backup node, each a ``dbp serve`` process of its own on loopback with
its own database, talking only HTTP — the deployment the architecture describes, shrunk to one host.

``Federation`` sets it up from nothing:

* ``prepare`` migrates every node's database and creates the identities where they live (what a node's own
  administrator bootstraps): at each repository the operators of its passports (API clients) and the backup
  provider's organisation with a client; at the registry the Commission (a client, to mark nodes) and each
  repository's service account, authorised by the operators it registers for; at the backup node an
  organisation whose client reads its status;
* ``start`` starts the nodes; the repositories register what they publish with the registry (auto-registration,
  naming ``backup-1`` as backup provider); the registry probes the repositories every ``probe_interval`` seconds;
* ``connect`` does over the nodes' APIs what the parties do once they run: the Commission enters the node
  directory (``repo-a``, ``repo-b``: kind repository; ``backup-1``: kind backup, endpoint ``{backup}/backup``) and
  every operator appoints the backup provider at its repository;
* ``publish`` writes demo passports on a repository over its API (as their operators): ``count`` each to begin
  with, and ``spare_count`` more, held back for repo-b (``spare``), for a caller that adds passports while it runs;
* ``follow`` runs ``dbp backup add`` on the backup node for a repository (pinning its log key as served: trust on
  first use, which is what a fresh local federation can do; ``url`` may name another way to it, e.g. a proxy) —
  the backup then catches up and verifies on its own;
* ``wait_registered`` / ``wait_backed_up`` wait, with a deadline, for what a person would check by hand;
* ``hand_over`` moves custody of a repository's passports to a fifth node, the successor (repository and backup
  roles, started only then): custody file from the backup, ``dbp restore`` there, and the Commission re-points
  the registrations to it.

Killing a repository (``kill``) shows the failover: after ``3 × probe_interval`` seconds the registry marks it
unreachable and the resolver sends its product identifiers to the backup. Database URLs may be given per node
(PostgreSQL for some); SQLite files in ``directory`` otherwise. More ``DBP_*`` settings go to every node
(``settings``) or to one (``node_settings``, over the federation's own). Used by ``dbp federation`` and by the
multi-node tests (tests/federation).
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from dbp.access import service as access
from dbp.access.principal import Role
from dbp.config import Settings
from dbp.db import make_engine, make_sessionmaker
from dbp.migrate import upgrade

REPOSITORIES = ("repo-a", "repo-b")
BACKUP_NODE = "backup-1"
PLAN = {"registry": ["registry"], "repo-a": ["repository"], "repo-b": ["repository"], "backup": ["backup"],
        "successor": ["repository", "backup"]}
#: Nodes ``start`` leaves out unless named: the successor joins when custody moves to it (``hand_over``).
STANDBY = frozenset({"successor"})


class FederationError(Exception):
    """A node did not come up, or a step was refused or did not finish in time; the message says which (and shows
    the logs where they help)."""


def _env_value(value: Any) -> str:
    """A setting as a ``DBP_*`` variable holds it (lists comma-joined, booleans lower case)."""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass
class Node:
    name: str
    roles: list[str]
    port: int
    database_url: str
    log: Path
    env: dict[str, Any] = field(default_factory=dict)  # its DBP_* settings (names as in Settings) besides these
    proc: subprocess.Popen[bytes] | None = None
    clients: dict[str, tuple[str, str]] = field(default_factory=dict)  # what -> (client id, secret)
    provider_org_id: str | None = None  # at a repository: the backup provider's organisation

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> Settings:
        return Settings(database_url=self.database_url, roles=self.roles, port=self.port)

    def environ(self) -> dict[str, str]:
        """The environment its processes run with: the caller's, without its ``DBP_*`` variables, and the node's."""
        values = {**self.env, "database_url": self.database_url, "roles": self.roles, "port": self.port}
        return {**{k: v for k, v in os.environ.items() if not k.startswith("DBP_")},
                **{f"DBP_{k.upper()}": _env_value(v) for k, v in values.items()}}

    @functools.cached_property
    def engine(self) -> Engine:
        return make_engine(self.database_url)

    @functools.cached_property
    def sessions(self) -> sessionmaker[Session]:
        """Sessions on the node's database (what its administrator reaches without the API)."""
        return make_sessionmaker(self.engine)

    def dispose(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()

    def token(self, what: str) -> dict[str, str]:
        client_id, secret = self.clients[what]
        r = httpx.post(f"{self.base_url}/api/v1/auth/token", data={
            "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}, timeout=10)
        _expect(r, 200, f"{self.name}: no token for {what}")
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"


def _expect(answer: httpx.Response, status: int, what: str) -> None:
    if answer.status_code != status:
        raise FederationError(f"{what}: {answer.status_code} {answer.text[:300]}")


@dataclass
class Federation:
    directory: Path
    base_port: int = 8100
    count: int = 10
    database_urls: dict[str, str] = field(default_factory=dict)
    probe_interval: float = 2.0
    settings: dict[str, Any] = field(default_factory=dict)  # more DBP_* settings for every node (tests: limits)
    node_settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # node name -> its own DBP_* settings
    spare_count: int | None = None  # passports held back for repo-b (default: count)
    nodes: dict[str, Node] = field(default_factory=dict)
    docs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    passports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # published (as answered: dppId)
    spare: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for i, (name, roles) in enumerate(PLAN.items()):
            url = self.database_urls.get(name) or f"sqlite:///{self.directory / f'{name}.sqlite3'}"
            self.nodes[name] = Node(name, roles, self.base_port + i, url, self.directory / f"{name}.log")

    def hosted(self, name: str) -> list[dict[str, Any]]:
        """Every passport repository ``name`` may publish: its demo passports (and, for repo-b, the spare)."""
        return self.docs[name] + (self.spare if name == "repo-b" else [])

    def operators(self, name: str) -> list[str]:
        return sorted({d["economicOperatorId"] for d in self.hosted(name)})

    # ------------------------------------------------------------------------------------------ set-up
    def prepare(self) -> None:
        """Migrate every database and create the identities (module doc); the nodes' settings."""
        from dbp.passports.demo import generate_fleet

        for node in self.nodes.values():
            upgrade(node.settings())
        spare = self.count if self.spare_count is None else self.spare_count
        fleet = list(generate_fleet(2 * self.count + spare, seed=23))
        # the spare is for later: publish("repo-b", federation.spare[...]) adds passports while it runs
        self.docs = {"repo-a": fleet[:self.count], "repo-b": fleet[self.count:2 * self.count]}
        self.spare = fleet[2 * self.count:]
        registry = self.nodes["registry"]
        with registry.sessions.begin() as s:
            commission = access.create_org(s, name="European Commission (federation demo)",
                                           operator_id="urn:dbp:federation:commission", role=Role.commission)
            issued = access.create_client(s, org_id=commission.id, role=Role.commission)
            registry.clients["commission"] = (issued.client_id, issued.client_secret)
            operators = {op: access.create_org(s, name=f"Operator {op}", operator_id=op, role=Role.economic_operator)
                         for op in sorted({d["economicOperatorId"] for d in fleet})}
            for name in REPOSITORIES:
                sp = access.create_org(s, name=f"Repository {name}", operator_id=f"urn:dbp:federation:{name}",
                                       role=Role.service_provider)
                issued = access.create_client(s, org_id=sp.id, role=Role.service_provider)
                registry.clients[name] = (issued.client_id, issued.client_secret)
                for op in self.operators(name):
                    access.authorise(s, operator_org_id=operators[op].id, agent_org_id=sp.id,
                                     reference="hosting contract")
        for name in REPOSITORIES:
            node = self.nodes[name]
            with node.sessions.begin() as s:
                provider = access.create_org(s, name="Independent Backup Ltd", operator_id="urn:dbp:federation:backup",
                                             role=Role.backup_provider)
                issued = access.create_client(s, org_id=provider.id, role=Role.backup_provider)
                node.clients["backup"] = (issued.client_id, issued.client_secret)
                node.provider_org_id = provider.id
                for op in self.operators(name):
                    org = access.create_org(s, name=f"Operator {op}", operator_id=op, role=Role.economic_operator)
                    issued = access.create_client(s, org_id=org.id, role=Role.economic_operator)
                    node.clients[op] = (issued.client_id, issued.client_secret)
        backup_node = self.nodes["backup"]
        with backup_node.sessions.begin() as s:
            org = access.create_org(s, name="Independent Backup Ltd", operator_id="urn:dbp:federation:backup",
                                    role=Role.backup_provider)
            issued = access.create_client(s, org_id=org.id, role=Role.backup_provider)
            backup_node.clients["status"] = (issued.client_id, issued.client_secret)
        ports = [f"127.0.0.1:{n.port}" for n in self.nodes.values()]
        common = {"host": "127.0.0.1", **self.settings}
        own: dict[str, dict[str, Any]] = {
            "registry": {"registry_endpoint_http_hosts": ports, "registry_probe_interval": self.probe_interval},
            "backup": {"backup_interval": 0.5}, "successor": {"auto_register": False}}
        for name in REPOSITORIES:
            client_id, secret = registry.clients[name]
            own[name] = {"auto_register": True, "registry_url": registry.base_url, "registry_client_id": client_id,
                         "registry_client_secret": secret, "registry_backup_node": BACKUP_NODE,
                         "registry_sync_interval": 0.5}
        for name, node in self.nodes.items():
            node.env = {**common, **own[name], **self.node_settings.get(name, {})}

    def connect(self, *, reference: str = "backup agreement (federation demo)") -> None:
        """Once the nodes run (module doc): the Commission enters the node directory at the registry, and every
        operator appoints the backup provider at its repository, both over the nodes' APIs."""
        registry = self.nodes["registry"]
        commission = registry.token("commission")
        entries = [(name, "repository", self.nodes[name].base_url) for name in REPOSITORIES]
        entries.append((BACKUP_NODE, "backup", f"{self.nodes['backup'].base_url}/backup"))
        for node_id, kind, endpoint in entries:
            _expect(httpx.post(f"{registry.base_url}/api/v1/registry/nodes", headers=commission, timeout=10,
                               json={"nodeId": node_id, "kind": kind, "endpoint": endpoint}),
                    201, f"registry: node {node_id} not entered")
        for name in REPOSITORIES:
            node = self.nodes[name]
            for op in self.operators(name):
                _expect(httpx.post(f"{node.base_url}/api/v1/backup-providers", headers=node.token(op), timeout=10,
                                   json={"providerOrgId": node.provider_org_id, "reference": reference}),
                        201, f"{name}: {op} could not appoint the backup provider")

    # ------------------------------------------------------------------------------------------ processes
    def start(self, names: Iterable[str] | None = None, *, timeout: float = 60) -> None:
        chosen = list(names) if names is not None else [n for n in self.nodes if n not in STANDBY]
        for name in chosen:
            node = self.nodes[name]
            with node.log.open("ab") as out:
                node.proc = subprocess.Popen([sys.executable, "-m", "dbp", "serve"], env=node.environ(), stdout=out,
                                             stderr=subprocess.STDOUT)
        for name in chosen:
            self._wait_up(self.nodes[name], timeout)

    def _wait_up(self, node: Node, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                health = httpx.get(f"{node.base_url}/health", timeout=1)
                if health.status_code == 200 and health.json().get("roles") == node.roles:
                    return
            except httpx.TransportError:
                pass
            if node.proc is None or node.proc.poll() is not None or time.monotonic() > deadline:
                raise FederationError(f"{node.name} on port {node.port} did not come up:\n{node.tail()}")
            time.sleep(0.1)

    def kill(self, name: str) -> None:
        """SIGKILL a node (a crash, an operator gone without a word)."""
        node = self.nodes[name]
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(timeout=10)

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes.values():
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait(timeout=10)
            node.dispose()

    def logs(self, chars: int = 1500) -> str:
        """The tail of every node's log, each under a line naming it."""
        return "\n".join(f"----- {n.log.name} ({n.name}, port {n.port}) -----\n{n.tail(chars)}"
                         for n in self.nodes.values())

    # ------------------------------------------------------------------------------------------ the scenario
    def publish(self, name: str, docs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Write ``docs`` (default: the node's demo passports) on repository ``name`` as their operators; the
        passports as the repository answered (with their ``dppId``), also added to ``passports[name]``."""
        node = self.nodes[name]
        created = []
        with httpx.Client(base_url=node.base_url, timeout=30) as http:
            tokens: dict[str, dict[str, str]] = {}
            for doc in docs if docs is not None else self.docs[name]:
                op = doc["economicOperatorId"]
                headers = tokens.setdefault(op, node.token(op))
                r = http.post("/api/v1/dpps", json=doc, headers=headers)
                _expect(r, 201, f"{name}: passport refused")
                created.append(r.json())
        self.passports.setdefault(name, []).extend(created)
        return created

    def dpp_ids(self, name: str) -> list[str]:
        return [p["dppId"] for p in self.passports.get(name, [])]

    def follow(self, name: str, *, url: str | None = None, source_id: str | None = None, timeout: float = 30) -> str:
        """``dbp backup add`` on the backup node: it follows repository ``name`` (as ``source_id``, default
        ``name``) at ``url`` (default: its base URL) with the backup provider's client there, and the log key
        the repository serves, read from it directly. What the command printed."""
        node = self.nodes[name]
        deadline = time.monotonic() + timeout
        while True:
            answer = httpx.get(f"{node.base_url}/api/v1/log/checkpoint", headers={"Accept": "text/plain"}, timeout=5)
            if answer.status_code == 200:
                break
            if time.monotonic() > deadline:
                raise FederationError(f"{name} signs no checkpoint: {answer.status_code}")
            time.sleep(0.2)
        client_id, secret = node.clients["backup"]
        backup_node = self.nodes["backup"]
        done = subprocess.run(
            [sys.executable, "-m", "dbp", "backup", "add", source_id or name, url or node.base_url,
             "--client-id", client_id, "--key", answer.headers["X-Log-Verifier-Key"],
             "--database-url", backup_node.database_url],
            env={**backup_node.environ(), "DBP_BACKUP_CLIENT_SECRET": secret}, capture_output=True, text=True,
            timeout=120)
        if done.returncode != 0:
            raise FederationError(f"dbp backup add {source_id or name}: exit {done.returncode}\n{done.stdout}\n"
                                  f"{done.stderr}")
        return done.stdout

    def hand_over(self, name: str, *, key: str, timeout: float = 60) -> list[str]:
        """Custody of repository ``name``'s passports moves to the successor node (its operator is gone): the
        backup writes the custody file (``dbp backup export``), the successor restores it (``dbp restore``,
        anchored on ``key``: ``name``'s log key, obtained while it was up) and starts, and the Commission enters it
        in the node directory and re-points every registration of ``name``'s passports to its ``/backup``
        endpoint. Returns the registration ids re-pointed."""
        backup_node, successor = self.nodes["backup"], self.nodes["successor"]
        custody = self.directory / f"{name}.custody.ndjson"
        for args, env in ((["backup", "export", name, "--out", str(custody), "--database-url",
                            backup_node.database_url], backup_node.environ()),
                          (["restore", str(custody), "--source-id", name, "--key", key, "--database-url",
                            successor.database_url], successor.environ())):
            done = subprocess.run([sys.executable, "-m", "dbp", *args], env=env, capture_output=True, text=True,
                                  timeout=300)
            if done.returncode != 0:
                raise FederationError(f"dbp {args[0]}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
        self.start(["successor"], timeout=timeout)
        registry = self.nodes["registry"]
        commission = registry.token("commission")
        endpoint = f"{successor.base_url}/backup"
        _expect(httpx.post(f"{registry.base_url}/api/v1/registry/nodes", headers=commission, timeout=10,
                           json={"nodeId": "successor", "kind": "repository", "endpoint": endpoint}),
                201, "registry: the successor not entered")
        moved = []
        for product in [p["uniqueProductIdentifier"] for p in self.passports.get(name, [])]:
            found = httpx.get(f"{registry.base_url}/api/v1/registry/registrations", params={"productId": product},
                              timeout=10)
            _expect(found, 200, f"registry: no registration of {product}")
            registration = found.json()["items"][0]["registrationId"]
            _expect(httpx.post(f"{registry.base_url}/api/v1/registry/registrations/{registration}/routing",
                               headers=commission, json={"endpoint": endpoint}, timeout=30),
                    200, f"registry: {registration} not re-pointed")
            moved.append(registration)
        return moved

    def backup_status(self) -> dict[str, dict[str, Any]]:
        backup_node = self.nodes["backup"]
        r = httpx.get(f"{backup_node.base_url}/api/v1/backup/status", headers=backup_node.token("status"),
                      timeout=10)
        r.raise_for_status()
        return {s["sourceId"]: s for s in r.json()["sources"]}

    def resolve(self, product_id: str) -> httpx.Response:
        """What a QR scan of ``product_id`` reaches first: the registry's resolver (no redirect followed)."""
        path = product_id.split("://", 1)[1].split("/", 1)[1]
        return httpx.get(f"{self.nodes['registry'].base_url}/{path}", follow_redirects=False, timeout=10)

    def wait(self, what: str, probe: Callable[[], Any], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = probe()
            except (httpx.HTTPError, FederationError) as exc:
                last = exc
            else:
                if last:
                    return last
            time.sleep(0.2)
        raise FederationError(f"timed out waiting for {what} (last: {last!r:.300})\n{self.logs()}")

    def product_ids(self, name: str) -> list[str]:
        return [d["uniqueProductIdentifier"] for d in self.docs[name]]

    def wait_registered(self, name: str, timeout: float = 60) -> None:
        base = self.nodes[name].base_url
        self.wait(f"every passport of {name} registered", lambda: all(
            self.resolve(p).headers.get("location", "").startswith(base) for p in self.product_ids(name)), timeout)

    def wait_backed_up(self, source: str, versions: int, timeout: float = 60) -> dict[str, Any]:
        return dict(self.wait(f"the backup holding {versions} versions of {source}", lambda: (
            (s := self.backup_status().get(source)) is not None and s["versions"] >= versions
            and s["lagLeaves"] == 0 and s) or None, timeout))

"""A small federation on one machine (``dbp federation``, ``make federation``): a registry (with its resolver), two
operator repositories and one independent backup node, each a ``dbp serve`` process of its own on loopback with
its own database, talking only HTTP — the deployment the architecture describes, shrunk to one host.

``Federation`` sets it up from nothing:

* every node's database is migrated; identities are created where they live: at each repository the operators of
  its passports (API clients), and the backup provider's organisation with a client, appointed by every operator;
  at the registry the Commission (a client, to mark nodes) and each repository's service account, authorised by
  the operators it registers for, plus the node directory (``repo-a``, ``repo-b``: kind repository; ``backup-1``:
  kind backup, endpoint ``{backup}/backup``); at the backup node an organisation whose client reads its status;
* the nodes are started (``start``); the repositories register what they publish with the registry
  (auto-registration, naming ``backup-1`` as backup provider); the registry probes the repositories every
  ``probe_interval`` seconds;
* ``publish`` writes ``count`` demo passports on each repository over its API (as their operators);
* ``follow`` adds both repositories as sources of the backup (pinning each log key as served: trust on first use,
  which is what a fresh local federation can do) — the backup then catches up and verifies on its own;
* ``wait_registered`` / ``wait_backed_up`` wait, with a deadline, for what a person would check by hand.

Killing a repository (``kill``) shows the failover: after ``3 × probe_interval`` seconds the registry marks it
unreachable and the resolver sends its product identifiers to the backup. Database URLs may be given per node
(PostgreSQL for some); SQLite files in ``directory`` otherwise. Used by ``dbp federation`` and by the multi-node
tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dbp.access import service as access
from dbp.access.principal import Role
from dbp.config import Settings
from dbp.db import make_engine, make_sessionmaker
from dbp.migrate import upgrade

REPOSITORIES = ("repo-a", "repo-b")
BACKUP_NODE = "backup-1"
PLAN = {"registry": ["registry"], "repo-a": ["repository"], "repo-b": ["repository"], "backup": ["backup"]}


class FederationError(Exception):
    """A node did not come up or a step did not finish in time; the message names the node and its log."""


@dataclass
class Node:
    name: str
    roles: list[str]
    port: int
    database_url: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    clients: dict[str, tuple[str, str]] = field(default_factory=dict)  # what -> (client id, secret)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> Settings:
        return Settings(database_url=self.database_url, roles=self.roles, port=self.port)

    def factory(self) -> Any:
        return make_sessionmaker(make_engine(self.database_url))

    def token(self, what: str) -> dict[str, str]:
        client_id, secret = self.clients[what]
        r = httpx.post(f"{self.base_url}/api/v1/auth/token", data={
            "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}, timeout=10)
        if r.status_code != 200:
            raise FederationError(f"{self.name}: no token for {what}: {r.status_code} {r.text[:200]}")
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"


@dataclass
class Federation:
    directory: Path
    base_port: int = 8100
    count: int = 10
    database_urls: dict[str, str] = field(default_factory=dict)
    probe_interval: float = 2.0
    settings: dict[str, Any] = field(default_factory=dict)  # more DBP_* settings for every node (tests: limits)
    nodes: dict[str, Node] = field(default_factory=dict)
    docs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dpp_ids: dict[str, list[str]] = field(default_factory=dict)
    spare: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for i, (name, roles) in enumerate(PLAN.items()):
            url = self.database_urls.get(name) or f"sqlite:///{self.directory / f'{name}.sqlite3'}"
            self.nodes[name] = Node(name, roles, self.base_port + i, url, self.directory / f"{name}.log")

    # ------------------------------------------------------------------------------------------ set-up
    def prepare(self) -> None:
        """Migrate every database and create the identities, appointments and node directory (module doc)."""
        from dbp.passports.demo import generate_fleet
        from dbp.registry.models import RegistryNode
        from dbp.replication import service as feed_service

        for node in self.nodes.values():
            upgrade(node.settings())
        fleet = list(generate_fleet(3 * self.count, seed=23))
        # the third share is for later: publish(name, federation.spare[...]) adds passports while it runs
        self.docs = {"repo-a": fleet[:self.count], "repo-b": fleet[self.count:2 * self.count]}
        self.spare = fleet[2 * self.count:]
        registry = self.nodes["registry"]
        with registry.factory().begin() as s:
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
                for op in sorted({d["economicOperatorId"] for d in self.docs[name]} | (
                        {d["economicOperatorId"] for d in self.spare} if name == "repo-b" else set())):
                    access.authorise(s, operator_org_id=operators[op].id, agent_org_id=sp.id,
                                     reference="hosting contract")
            now = "2027-02-18T00:00:00.000000Z"
            for name in REPOSITORIES:
                s.add(RegistryNode(node_id=name, kind="repository", operator_id=None,
                                   endpoint=self.nodes[name].base_url, status="active", updated_at=now))
            s.add(RegistryNode(node_id=BACKUP_NODE, kind="backup", operator_id=None,
                               endpoint=f"{self.nodes['backup'].base_url}/backup", status="active", updated_at=now))
        for name in REPOSITORIES:
            node = self.nodes[name]
            with node.factory().begin() as s:
                provider = access.create_org(s, name="Independent Backup Ltd", operator_id="urn:dbp:federation:backup",
                                             role=Role.backup_provider)
                issued = access.create_client(s, org_id=provider.id, role=Role.backup_provider)
                node.clients["backup"] = (issued.client_id, issued.client_secret)
                mine = self.docs[name] + (self.spare if name == "repo-b" else [])
                for op in sorted({d["economicOperatorId"] for d in mine}):
                    org = access.create_org(s, name=f"Operator {op}", operator_id=op, role=Role.economic_operator)
                    issued = access.create_client(s, org_id=org.id, role=Role.economic_operator)
                    node.clients[op] = (issued.client_id, issued.client_secret)
                    feed_service.appoint(s, operator_org_id=org.id, provider_org_id=provider.id,
                                         reference="backup agreement (federation demo)")
        backup_node = self.nodes["backup"]
        with backup_node.factory().begin() as s:
            org = access.create_org(s, name="Independent Backup Ltd", operator_id="urn:dbp:federation:backup",
                                    role=Role.backup_provider)
            issued = access.create_client(s, org_id=org.id, role=Role.backup_provider)
            backup_node.clients["status"] = (issued.client_id, issued.client_secret)
        ports = [f"127.0.0.1:{n.port}" for n in self.nodes.values()]
        common = {"host": "127.0.0.1", **self.settings}
        registry.env = {**common, "registry_endpoint_http_hosts": ",".join(ports),
                        "registry_probe_interval": str(self.probe_interval)}
        for name in REPOSITORIES:
            client_id, secret = registry.clients[name]
            self.nodes[name].env = {**common, "auto_register": "true", "registry_url": registry.base_url,
                                    "registry_client_id": client_id, "registry_client_secret": secret,
                                    "registry_backup_node": BACKUP_NODE, "registry_sync_interval": "0.5"}
        backup_node.env = {**common, "backup_interval": "0.5"}

    # ------------------------------------------------------------------------------------------ processes
    def start(self, names: Iterator[str] | list[str] | None = None, *, timeout: float = 60) -> None:
        for name in names or list(self.nodes):
            node = self.nodes[name]
            env = {k: v for k, v in os.environ.items() if not k.startswith("DBP_")}
            values = {**node.env, "database_url": node.database_url, "roles": ",".join(node.roles),
                      "port": str(node.port)}
            env.update({f"DBP_{k.upper()}": str(v) for k, v in values.items()})
            with node.log.open("ab") as out:
                node.proc = subprocess.Popen([sys.executable, "-m", "dbp", "serve"], env=env, stdout=out,
                                             stderr=subprocess.STDOUT)
        for name in names or list(self.nodes):
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

    # ------------------------------------------------------------------------------------------ the scenario
    def publish(self, name: str, docs: list[dict[str, Any]] | None = None) -> list[str]:
        """Write ``docs`` (default: the node's demo passports) on repository ``name`` as their operators."""
        node = self.nodes[name]
        ids = []
        with httpx.Client(base_url=node.base_url, timeout=30) as http:
            tokens: dict[str, dict[str, str]] = {}
            for doc in docs if docs is not None else self.docs[name]:
                op = doc["economicOperatorId"]
                headers = tokens.setdefault(op, node.token(op))
                r = http.post("/api/v1/dpps", json=doc, headers=headers)
                if r.status_code != 201:
                    raise FederationError(f"{name}: passport refused: {r.status_code} {r.text[:300]}")
                ids.append(r.json()["dppId"])
        self.dpp_ids.setdefault(name, []).extend(ids)
        return ids

    def follow(self, name: str, *, source_id: str | None = None, timeout: float = 30) -> str:
        """Add repository ``name`` as a source of the backup node (its log key pinned as served)."""
        from dbp.access.secrets import DEVELOPMENT_SECRET
        from dbp.integrity import witness
        from dbp.replication import backup

        node = self.nodes[name]
        deadline = time.monotonic() + timeout
        while True:
            answer = httpx.get(f"{node.base_url}/api/v1/log/checkpoint", headers={"Accept": "text/plain"}, timeout=5)
            if answer.status_code == 200:
                break
            if time.monotonic() > deadline:
                raise FederationError(f"{name} signs no checkpoint: {answer.status_code}")
            time.sleep(0.2)
        key = answer.headers["X-Log-Verifier-Key"]
        origin = witness.note_origin(answer.content)
        client_id, secret = node.clients["backup"]
        backup_node = self.nodes["backup"]
        source = source_id or name
        with backup_node.factory().begin() as s:
            backup.add_source(s, source_id=source, url=node.base_url, origin=origin, verifier_key=key,
                              client_id=client_id, client_secret=secret,
                              secret_key=backup_node.settings().secret_key or DEVELOPMENT_SECRET)
        return source

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
        logs = "\n".join(f"--- {n.name} ---\n{n.tail(1500)}" for n in self.nodes.values())
        raise FederationError(f"timed out waiting for {what} (last: {last!r:.300})\n{logs}")

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

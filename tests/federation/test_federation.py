"""Multi-node federation (issue 6): four ``dbp serve`` processes on loopback, each with a database of its own and
nothing shared but HTTP, set up by ``dbp.federation.Federation`` (what ``dbp federation`` starts) —

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

import functools
import hashlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson
import pytest
from federation_helpers import FORGED, LIMITS, ORIGINAL, MitmProxy, free_ports, postgres_database, wait_for
from sqlalchemy import delete, select

from dbp.clock import timestamp
from dbp.federation import BACKUP_NODE, REPOSITORIES, Federation, FederationError, Node
from dbp.integrity import log
from dbp.integrity.evidence import KeyPeriod, jwk_key
from dbp.integrity.models import LogCheckpoint, LogLeaf, LogNode, LogState
from dbp.integrity.verify import Trusted, verify_bundle
from dbp.replication.models import BackupVersion

T = TypeVar("T")

COUNT = 5  # passports each repository publishes before the backup starts following
MORE_B = 3  # published on B during the connection cut, and again during the tampering
SETTINGS: dict[str, Any] = {**LIMITS, "integrity_sweep_budget": 0}  # sweeps off (nothing here tampers with a
# repository's tables)
NODE_SETTINGS: dict[str, dict[str, Any]] = {  # a secret of its own for each node; quick rounds
    "registry": {"secret_key": "registry-" + "r" * 40},
    **{name: {"secret_key": f"{name}-secret-" + name[-1] * 40, "registry_sync_interval": 0.2,
              "registry_commodity_code": "850760"} for name in REPOSITORIES},
    "backup": {"secret_key": "backup-node-" + "k" * 40, "backup_follow": True, "backup_interval": 0.3}}
PROBE_INTERVAL = 30.0  # the registry's default: A is marked exited by the Commission here, not by the probes
LOG_TABLES = (LogState, LogCheckpoint, LogLeaf, LogNode)  # log_state first: appenders and the checkpointer lock it
WAIT = 45.0  # seconds any one condition may take at most (generous: a loaded CI machine, PostgreSQL)


def _dpp_url(endpoint: str, dpp_id: str) -> str:
    return f"{endpoint}/api/v1/dpps/{quote(dpp_id, safe=':')}"


@dataclass
class Repo:
    """A repository node of the federation, with the passports its operators publish there."""

    name: str  # its node id at the registry and its source id at the backup
    node: Node
    launcher: Federation
    docs: list[dict[str, Any]]  # what its operators publish, in order (the first ones at the start)
    keys: list[KeyPeriod] = field(default_factory=list)  # its log keys, fetched while it was up
    public: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # dppId -> (public view, ETag) while up

    @property
    def base_url(self) -> str:
        return self.node.base_url

    @property
    def passports(self) -> list[dict[str, Any]]:
        """Published (as answered: with dppId)."""
        return self.launcher.passports.setdefault(self.name, [])

    def trusted(self) -> Trusted:
        """The operator's keys as a verifier pinned them (fetched from the repository while it was up)."""
        return Trusted(keys={k.kid: k.public_key for k in self.keys},
                       periods={k.kid: (k.created_at, k.retired_at) for k in self.keys})

    def version_leaves(self) -> set[tuple[str, int, int, str]]:
        """(dppId, version, position, sha256) of every passport version in the repository's log."""
        with self.node.sessions() as s:
            return {(r.dpp_id, r.version, r.leaf_index, r.sha256)
                    for r in s.scalars(select(LogLeaf).where(LogLeaf.kind == log.KIND_VERSION))}


class MultiNode:
    """The federation of this module: ``dbp.federation.Federation`` (``launcher``), B's proxy and what the
    scenarios read of it."""

    def __init__(self, tmp: Path) -> None:
        pg = postgres_database("fed_a")
        self.launcher = Federation(tmp, base_port=free_ports(), count=COUNT, spare_count=2 * MORE_B,
                                   probe_interval=PROBE_INTERVAL, settings=SETTINGS, node_settings=NODE_SETTINGS,
                                   database_urls={"repo-a": pg} if pg else {})
        self.registry, self.backup = self.launcher.nodes["registry"], self.launcher.nodes["backup"]
        self.backup_url = self.backup.base_url
        self.backup_endpoint = f"{self.backup_url}/backup"  # the backup's endpoint in the node directory
        self.repos: dict[str, Repo] = {}
        self.proxy: MitmProxy | None = None

    @property
    def a(self) -> Repo:
        return self.repos["repo-a"]

    @property
    def b(self) -> Repo:
        return self.repos["repo-b"]

    # ------------------------------------------------------------------------------------------ life cycle
    def start(self) -> None:
        launcher = self.launcher
        launcher.prepare()
        self.repos = {name: Repo(name, launcher.nodes[name], launcher, launcher.hosted(name))
                      for name in REPOSITORIES}
        launcher.start()
        launcher.connect()  # the Commission's node directory, the operators' appointments: 201 each, else an error
        self.commission = self.registry.token("commission")
        self.staff = self.backup.token("status")  # who reads the backup node's status: its own staff
        for repo in self.repos.values():
            self.publish(repo, COUNT)
        for repo in self.repos.values():
            self.wait_checkpoint(repo, len(repo.passports))
        keys = httpx.get(f"{self.a.base_url}/api/v1/log/keys", timeout=10).json()["keys"]
        self.a.keys = [KeyPeriod(*jwk_key(k["jwk"], "key"), k["createdAt"], k["retiredAt"]) for k in keys]
        for p in self.a.passports:
            r = httpx.get(_dpp_url(self.a.base_url, p["dppId"]), timeout=10)
            assert r.status_code == 200, self.why(r.text)
            self.a.public[p["dppId"]] = (r.content, r.headers["ETag"])
        self.proxy = MitmProxy(f"127.0.0.1:{self.b.node.port}").start()
        # dbp backup add, with the log key the operator handed over (read from its repository directly); B's feed
        # reaches the backup through the proxy
        for repo, url in ((self.a, self.a.base_url), (self.b, self.proxy.base_url)):
            added = launcher.follow(repo.name, url=url)
            assert f"following {repo.name}: {url}" in added and "(given)" in added, added
        for repo in self.repos.values():
            for p in repo.passports:
                self.wait_routed(p, repo.base_url)
        self.wait_caught_up("repo-a", COUNT)
        self.wait_caught_up("repo-b", COUNT)

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        self.launcher.stop()

    def why(self, message: str) -> str:
        """``message`` and the tail of every node's log (an assertion's explanation)."""
        parts = [message]
        if self.proxy is not None:
            p = self.proxy
            parts.append(f"----- proxy to repo-b: {p.cuts} cut, {p.tampered} altered, errors {p.errors}, requests "
                         f"{dict(p.requests)}")
        parts.append(self.launcher.logs(4000))
        return "\n".join(parts)

    def wait(self, what: str, fetch: Callable[[], T], until: Callable[[T], bool], timeout: float = WAIT) -> T:
        return wait_for(what, fetch, until, timeout=timeout, logs=lambda: self.why(""))

    # ------------------------------------------------------------------------------------------ actions
    def publish(self, repo: Repo, count: int) -> list[dict[str, Any]]:
        """The next ``count`` documents of ``repo``, each POSTed by its own economic operator."""
        created = self.launcher.publish(repo.name, repo.docs[len(repo.passports):len(repo.passports) + count])
        assert len(created) == count
        return created

    def resolve(self, passport: dict[str, Any]) -> httpx.Response:
        """What a scan of the passport's product identifier gets from the resolver (the redirect, not followed)."""
        return self.launcher.resolve(passport["uniqueProductIdentifier"])

    def _staff_read(self, path: str, key: str, **params: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.backup_url}/api/v1/backup/{path}", params=params, headers=self.staff, timeout=10)
        assert r.status_code == 200, self.why(r.text)
        rows: list[dict[str, Any]] = r.json()[key]
        return rows

    def status(self) -> dict[str, dict[str, Any]]:
        return {row["sourceId"]: row for row in self._staff_read("status", "sources")}

    def rejections(self, source_id: str) -> list[dict[str, Any]]:
        return self._staff_read("rejections", "rejections", sourceId=source_id)

    def alerts(self, source_id: str) -> list[dict[str, Any]]:
        return self._staff_read("alerts", "alerts", sourceId=source_id)

    def held(self, source_id: str) -> list[tuple[str, int, int, str]]:
        """(dppId, version, position, sha256) of every copy the backup holds of ``source_id`` (its database)."""
        with self.backup.sessions() as s:
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


def with_logs(test: Callable[[MultiNode], None]) -> Callable[[MultiNode], None]:
    """The test, with the tail of every node's log added to a failed assertion that does not show them yet."""
    @functools.wraps(test)
    def run(fed: MultiNode) -> None:
        try:
            test(fed)
        except (AssertionError, FederationError) as exc:
            if "----- registry.log" in str(exc):
                raise
            raise AssertionError(fed.why(str(exc))) from exc
    return run


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNode]:
    federation = MultiNode(tmp_path_factory.mktemp("federation"))
    try:
        try:
            federation.start()
        except FederationError as exc:  # a node that did not come up, a step refused: with every node's log
            raise AssertionError(federation.why(str(exc))) from exc
        yield federation
    finally:
        federation.close()


def _copies_match_the_log(fed: MultiNode, repo: Repo) -> None:
    """The backup holds every passport version of ``repo``'s log exactly once, at its position, with its hash."""
    held = fed.held(repo.name)
    positions = [h[2] for h in held]
    assert len(positions) == len(set(positions)), fed.why(f"positions held twice: {sorted(positions)}")
    assert len({(h[0], h[1]) for h in held}) == len(held), fed.why(f"versions held twice: {held}")
    assert set(held) == repo.version_leaves(), fed.why(f"held {sorted(held)} vs log {sorted(repo.version_leaves())}")


# ------------------------------------------------------------------------------------------------ the federation
@with_logs
def test_passports_are_registered_routed_and_backed_up(fed: MultiNode) -> None:
    nodes = httpx.get(f"{fed.registry.base_url}/api/v1/registry/nodes", timeout=10).json()["items"]
    assert {(n["nodeId"], n["kind"], n["endpoint"], n["status"]) for n in nodes} == {
        ("repo-a", "repository", fed.a.base_url, "active"), ("repo-b", "repository", fed.b.base_url, "active"),
        (BACKUP_NODE, "backup", fed.backup_endpoint, "active")}
    for repo in fed.repos.values():
        assert len(repo.passports) == COUNT
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
    for name in REPOSITORIES:
        row = status[name]
        assert (row["status"], row["versions"], row["passports"], row["openRejections"], row["alerts"]) == (
            "following", COUNT, COUNT, 0, 0), row
        assert row["treeSize"] >= COUNT and row["lastError"] is None and row["lastSuccessAt"], row
    assert fed.proxy is not None and status["repo-b"]["url"] == fed.proxy.base_url
    # the backup's status is for its own staff, not for anyone
    assert httpx.get(f"{fed.backup_url}/api/v1/backup/status", timeout=10).status_code == 401


@with_logs
def test_a_killed_repository_is_served_by_the_backup(fed: MultiNode) -> None:
    a = fed.a
    assert a.node.proc is not None and a.node.proc.poll() is None
    fed.launcher.kill(a.name)  # SIGKILL: no shutdown, nothing flushed, the operator is simply gone
    assert a.node.proc.poll() is not None
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
    assert "cannot reach" in row["lastError"] and row["versions"] == COUNT, row


@with_logs
def test_custody_moves_to_a_successor_the_registry_re_points_and_reads_go_there(fed: MultiNode) -> None:
    """A is gone: its passports are restored into a successor's node from the backup's custody file (anchored on
    A's log key), the Commission re-points their registrations, and every scan now reaches the successor, whose
    copies — the whole history — still verify against A's keys."""
    a = fed.a
    assert a.node.proc is not None and a.node.proc.poll() is not None, "A was killed by the test before"
    key = fed.status()["repo-a"]["verifierKey"]  # A's log key, pinned when the backup started following it
    moved = fed.launcher.hand_over("repo-a", key=key)
    assert len(moved) == len(a.passports)
    successor = fed.launcher.nodes["successor"]
    endpoint = f"{successor.base_url}/backup"
    trusted = a.trusted()
    for p in a.passports:
        scanned = fed.wait_routed(p, endpoint)
        served = httpx.get(scanned.headers["location"], timeout=10)
        assert served.status_code == 200, fed.why(served.text)
        original, etag = a.public[p["dppId"]]
        assert served.content == original and served.headers["ETag"] == etag
        assert served.headers["X-DPP-Backup-Source"] == "repo-a"
        evidence = httpx.get(f"{scanned.headers['location']}/evidence", timeout=10)
        assert verify_bundle(evidence.content, trusted=trusted).verdict == "valid", evidence.text[:300]
    registration = httpx.get(f"{fed.registry.base_url}/api/v1/registry/registrations/{moved[0]}", timeout=10).json()
    assert registration["endpoint"] == endpoint, registration
    # the successor re-checks what it took over from its own database alone
    done = subprocess.run([sys.executable, "-m", "dbp", "backup", "verify", "--database-url",
                           successor.database_url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@with_logs
def test_a_connection_cut_mid_answer_loses_nothing_and_stores_nothing_twice(fed: MultiNode) -> None:
    b, proxy = fed.b, fed.proxy
    assert proxy is not None
    before = proxy.requests["/api/v1/feed"]
    proxy.cut_next_feed()
    fresh = fed.publish(b, MORE_B)
    failed = fed.wait("the backup to report the cut connection to repo-b", fed.status,
                      lambda st: st["repo-b"]["status"] == "failing")["repo-b"]
    assert failed["failures"] >= 1 and "cannot reach" in failed["lastError"], failed
    assert proxy.cuts == 1 and proxy.requests["/api/v1/feed"] > before
    row = fed.wait_caught_up("repo-b", COUNT + MORE_B)
    assert row["lastError"] is None and row["failures"] == 0 and row["passports"] == COUNT + MORE_B, row
    _copies_match_the_log(fed, b)
    assert proxy.cuts == 1 and not proxy.errors, proxy.errors
    for p in fresh:  # registered meanwhile, and routed to B
        fed.wait_routed(p, b.base_url)


@with_logs
def test_a_forged_feed_entry_is_rejected_replication_goes_on_and_it_heals(fed: MultiNode) -> None:
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
    with fed.backup.sessions() as s:  # the full version held is the one B signed, not the one forged in flight
        held = bytes(s.scalars(select(BackupVersion.canonical).where(BackupVersion.dpp_id == victim["dppId"])).one())
    assert ORIGINAL.encode() in held and FORGED.encode() not in held
    _copies_match_the_log(fed, b)


@with_logs
def test_a_rewritten_log_halts_the_source_and_the_copies_stay_served(fed: MultiNode) -> None:
    b = fed.b
    held = fed.held("repo-b")
    assert len(held) == len(b.passports)
    size = fed.wait_checkpoint(b, max(h[2] for h in held) + 1)
    forged = size + 5  # a longer tree, so the backup asks for a consistency proof that cannot exist
    with b.node.sessions.begin() as s:  # B deletes its log and logs another history; its checkpointer signs it
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
    successor = fed.launcher.nodes["successor"]
    endpoint = f"{successor.base_url}/backup" if successor.proc is not None else fed.backup_endpoint \
        if fed.a.node.proc is not None and fed.a.node.proc.poll() is not None else fed.a.base_url
    for p in fed.a.passports:
        scanned = fed.wait_routed(p, endpoint)
        served = httpx.get(scanned.headers["location"], timeout=10)
        assert served.status_code == 200 and served.content == fed.a.public[p["dppId"]][0]

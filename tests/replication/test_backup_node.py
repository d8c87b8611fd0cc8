"""The backup node (dbp.replication.follower / backup / recheck) against a real repository over loopback HTTP:
it catches up and verifies, serves its copies with the repository's access rules and access log, hands out
evidence that verifies against the original operator's keys, rejects a forged entry without losing its place,
resumes after a dropped connection with nothing lost or twice, and halts on a rewritten log."""

from __future__ import annotations

import base64
import copy
import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import delete, func, select, update
from typer.testing import CliRunner

from conftest import ServerThread, _free_port, assert_error, settle_access_log
from dbp.access import service as access
from dbp.access.models import Organisation
from dbp.access.principal import Role
from dbp.app import create_app
from dbp.cli import app as cli
from dbp.clock import timestamp
from dbp.config import Settings
from dbp.db import make_engine, make_sessionmaker
from dbp.integrity import log
from dbp.integrity.evidence import KeyPeriod, bundle_json, jwk_key
from dbp.integrity.models import LogCheckpoint, LogLeaf, LogNode, LogState
from dbp.integrity.verify import Trusted, verify_bundle
from dbp.migrate import upgrade
from dbp.replication import backup
from dbp.replication import service as feed_service
from dbp.replication.follower import FollowError, RepositoryClient, follow_once
from dbp.replication.models import BackupNode, BackupRejection, BackupSource, BackupVersion

COUNT = 12
LOG_TABLES = (LogState, LogCheckpoint, LogLeaf, LogNode)


class Repo:
    """The repository under test (the session ``server``) with passports, an appointed backup provider and its
    client credentials there."""

    def __init__(self, server: ServerThread, session_factory: Any, client: httpx.Client,
                 fleet: list[dict[str, Any]]) -> None:
        self.base_url = server.base_url
        self.client = client
        self.session_factory = session_factory
        self.docs = [copy.deepcopy(d) for d in fleet[:COUNT]]
        self.ids: list[str] = []
        for doc in self.docs:
            r = client.post("/api/v1/dpps", json=doc)
            assert r.status_code == 201, r.text
            self.ids.append(r.json()["dppId"])
        with session_factory.begin() as s:
            org = access.create_org(s, name="Independent backup", operator_id="urn:dbp:test:backup",
                                    role=Role.backup_provider)
            operators = {d["economicOperatorId"] for d in self.docs}
            for op_org in s.scalars(select(Organisation).where(Organisation.operator_id.in_(operators))):
                feed_service.appoint(s, operator_org_id=op_org.id, provider_org_id=org.id, reference="agreement 7")
            issued = access.create_client(s, org_id=org.id, role=Role.backup_provider)
        self.client_id, self.client_secret = issued.client_id, issued.client_secret
        self.keys = [KeyPeriod(*jwk_key(k["jwk"], "key"), k["createdAt"], k["retiredAt"])
                     for k in httpx.get(f"{self.base_url}/api/v1/log/keys").json()["keys"]]

    def new_version(self, dpp_id: str, capacity: float) -> None:
        """A second (third, …) version of ``dpp_id``: its rated capacity changed."""
        r = self.client.patch(f"/api/v1/dpps/{dpp_id}", content=orjson.dumps(
            {"performanceAndDurability": {"ratedCapacity": capacity}}),
            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text

    def trusted(self) -> Trusted:
        """The original operator's keys, fetched from its repository while it was up (pinned by the verifier)."""
        return Trusted(keys={k.kid: k.public_key for k in self.keys},
                       periods={k.kid: (k.created_at, k.retired_at) for k in self.keys})

    def wait_checkpoint_covers_log(self) -> int:
        deadline = time.monotonic() + 15
        while True:
            with self.session_factory() as s:
                size, latest = log.size(s), log.latest_checkpoint(s)
            if latest is not None and latest.size >= size:
                return size
            assert time.monotonic() < deadline, "the repository signed no checkpoint covering its log"
            time.sleep(0.1)


class Backup:
    """A backup node's database (SQLite file of its own) following ``repo``."""

    def __init__(self, tmp_path: Path, repo: Repo) -> None:
        self.url = f"sqlite:///{tmp_path / 'backup.sqlite3'}"
        self.settings = Settings(database_url=self.url, environment="test", roles=["backup"], backup_follow=False,
                                 port=_free_port(), auto_register=False, integrity_sweep_budget=0)
        upgrade(self.settings)
        self.engine = make_engine(self.url)
        self.factory = make_sessionmaker(self.engine)
        self.repo = repo
        repo.wait_checkpoint_covers_log()
        answer = httpx.get(f"{repo.base_url}/api/v1/log/checkpoint", headers={"Accept": "text/plain"})
        self.key = answer.headers["X-Log-Verifier-Key"]
        with self.factory.begin() as s:
            backup.add_source(s, source_id="repo-a", url=repo.base_url, origin=self.key.split("+")[0],
                              verifier_key=self.key, client_id=repo.client_id, client_secret=repo.client_secret,
                              secret_key="test-secret-key-for-the-backup-node-0001")

    def client(self, transport: httpx.BaseTransport | None = None) -> RepositoryClient:
        return RepositoryClient(self.repo.base_url, client_id=self.repo.client_id,
                                client_secret=self.repo.client_secret, transport=transport, timeout=5)

    def catch_up(self, transport: httpx.BaseTransport | None = None, *, want: int | None = None) -> list[Any]:
        """Rounds until the backup holds ``want`` versions (default: every version of the repository)."""
        self.repo.wait_checkpoint_covers_log()
        want = want if want is not None else self.repository_versions()
        reports = []
        deadline = time.monotonic() + 30
        client = self.client(transport)
        try:
            while self.held() < want:
                reports.append(follow_once(self.factory, client, source_id="repo-a"))
                assert reports[-1].outcome == "ok", reports[-1].message
                assert time.monotonic() < deadline, f"backup holds {self.held()} of {want}"
        finally:
            client.close()
        return reports

    def repository_versions(self) -> int:
        with self.repo.session_factory() as s:
            return int(s.scalar(select(func.count()).select_from(LogLeaf).where(LogLeaf.kind == log.KIND_VERSION)))

    def held(self) -> int:
        with self.factory() as s:
            return int(s.scalar(select(func.count()).select_from(BackupVersion)) or 0)

    def source(self) -> BackupSource:
        with self.factory() as s:
            row = backup.get_source(s, source_id="repo-a")
            s.expunge(row)
            return row

    def export(self, path: Path, *extra: str) -> None:
        """``dbp backup export repo-a --out path`` (+ ``extra`` options); it must succeed."""
        result = CliRunner().invoke(cli, ["backup", "export", "repo-a", "--out", str(path), *extra,
                                          "--database-url", self.url])
        assert result.exit_code == 0, result.output

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture()
def repo(server: ServerThread, session_factory: Any, client: httpx.Client, fleet: list[dict[str, Any]]) -> Repo:
    return Repo(server, session_factory, client, fleet)


@pytest.fixture()
def node(tmp_path: Path, repo: Repo) -> Iterator[Backup]:
    b = Backup(tmp_path, repo)
    yield b
    b.close()


class Tampering(httpx.BaseTransport):
    """Real HTTP to the repository, with ``change(path, body) -> body`` applied to answers on the way (a
    man in the middle, a broken proxy) and ``drop(path, n)`` cutting the connection of the n-th request."""

    def __init__(self, change: Callable[[str, bytes], bytes] | None = None,
                 drop: Callable[[str, int], bool] | None = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.change, self.drop, self.count = change, drop, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        if self.drop is not None and self.drop(request.url.path, self.count):
            raise httpx.ReadError("connection reset by peer (test)", request=request)
        response = self.inner.handle_request(request)
        body = response.read()
        if self.change is not None:
            body = self.change(request.url.path, body)
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        return httpx.Response(response.status_code, headers=headers, content=body, request=request)

    def close(self) -> None:
        self.inner.close()


# ------------------------------------------------------------------------------------------------ catch-up


def test_the_backup_catches_up_verifies_and_holds_every_version(node: Backup, repo: Repo) -> None:
    reports = node.catch_up()
    total = node.repository_versions()
    assert node.held() == total >= COUNT
    src = node.source()
    assert src.status == backup.FOLLOWING and src.tree_size >= total and src.next_position == src.tree_size
    with node.factory() as s:
        copies = {(r.dpp_id, r.version): r for r in s.scalars(select(BackupVersion))}
        assert s.scalar(select(func.count()).select_from(BackupNode).where(BackupNode.level == 0)) == src.tree_size
    with repo.session_factory() as s:
        for leaf in s.scalars(select(LogLeaf).where(LogLeaf.kind == log.KIND_VERSION)):
            held = copies[(leaf.dpp_id, leaf.version)]
            assert held.position == leaf.leaf_index and held.sha256 == leaf.sha256
            assert hashlib.sha256(bytes(held.canonical)).hexdigest() == leaf.sha256
    assert sum(r.stored for r in reports) == total and all(r.rejected == 0 for r in reports)
    # another round finds nothing new and stores nothing twice
    again = follow_once(node.factory, node.client(), source_id="repo-a")
    assert again.outcome == "ok" and again.stored == 0 and node.held() == total
    # the recheck from the backup's own database passes
    result = CliRunner().invoke(cli, ["backup", "verify", "--database-url", node.url])
    assert result.exit_code == 0, result.output
    assert f"{total} versions re-verified" in result.output


def test_new_versions_and_status_changes_follow(node: Backup, repo: Repo) -> None:
    node.catch_up()
    dpp = repo.ids[0]
    repo.new_version(dpp, 61.5)
    node.catch_up()
    with node.factory() as s:
        latest = backup.current_copy(s, dpp_id=dpp)
        assert latest.version == 2
        assert orjson.loads(latest.canonical)["performanceAndDurability"]["ratedCapacity"] == 61.5


# ------------------------------------------------------------------------------------------------ serving


def test_copies_are_served_with_the_repositorys_access_rules_and_logged(node: Backup, repo: Repo) -> None:
    node.catch_up()
    dpp = repo.ids[1]
    with ServerThread(create_app(node.settings), node.settings.port) as srv:
        anonymous = httpx.get(f"{srv.base_url}/backup/api/v1/dpps/{dpp}")
        assert anonymous.status_code == 200, anonymous.text
        assert anonymous.headers["X-DPP-Served-By"] == "backup" and "X-DPP-Signature" not in anonymous.headers
        original = httpx.get(f"{repo.base_url}/api/v1/dpps/{dpp}")
        assert anonymous.content == original.content  # the same public view, byte for byte
        assert anonymous.headers["ETag"] == original.headers["ETag"]
        assert anonymous.headers["X-DPP-Access"] == original.headers["X-DPP-Access"] == "public"
        again = httpx.get(f"{srv.base_url}/backup/api/v1/dpps/{dpp}",
                          headers={"If-None-Match": anonymous.headers["ETag"]})
        assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == original.headers["ETag"]
        assert_error(httpx.get(f"{srv.base_url}/backup/api/v1/dpps/urn:nobody:1"), 404, "ClientErrorResourceNotFound")
        assert_error(httpx.get(f"{srv.base_url}/backup/api/v1/dpps/{dpp}", params={"version": 0}), 400,
                     "ClientErrorBadRequest")
        assert_error(httpx.get(f"{srv.base_url}/backup/api/v1/dpps/{'x' * 300}"), 400, "ClientErrorBadRequest")
        assert_error(httpx.get(f"{srv.base_url}/api/v1/backup/status"), 401, "ClientNotAuthorized")
        tokens = {}
        for role in (Role.backup_provider, Role.market_surveillance, Role.recycler, Role.economic_operator):
            with node.factory.begin() as s:
                org = access.create_org(s, name=role.value, operator_id=f"urn:test:{role.value}", role=role)
                issued = access.create_client(s, org_id=org.id, role=role)
            tokens[role] = httpx.post(f"{srv.base_url}/api/v1/auth/token", data={
                "grant_type": "client_credentials", "client_id": issued.client_id,
                "client_secret": issued.client_secret}).json()["access_token"]
        for role, allowed in ((Role.backup_provider, True), (Role.market_surveillance, True),
                              (Role.recycler, False), (Role.economic_operator, False)):
            for path in ("status", "rejections", "alerts"):
                r = httpx.get(f"{srv.base_url}/api/v1/backup/{path}",
                              headers={"Authorization": f"Bearer {tokens[role]}"})
                if allowed:
                    assert r.status_code == 200, r.text
                else:
                    assert_error(r, 403, "ClientForbidden")
        status = httpx.get(f"{srv.base_url}/api/v1/backup/status",
                           headers={"Authorization": f"Bearer {tokens[Role.backup_provider]}"}).json()
        assert status["sources"][0]["lagLeaves"] == 0 and "clientSecret" not in str(status)
        # evidence from the backup verifies against the ORIGINAL operator's keys
        ev = httpx.get(f"{srv.base_url}/backup/api/v1/dpps/{dpp}/evidence")
        assert ev.status_code == 200, ev.text
        report = verify_bundle(ev.content, trusted=repo.trusted())
        assert report.verdict == "valid", report.as_json()
        forged = orjson.loads(ev.content)
        forged["document"] = forged["document"][:-1] + ',"forged":true}'
        assert verify_bundle(orjson.dumps(forged), trusted=repo.trusted()).verdict == "invalid"
    settle_access_log(node.engine)
    with node.factory() as s:
        from dbp.audit.models import AccessLog
        rows = list(s.scalars(select(AccessLog).where(AccessLog.dpp_id == dpp)))
    assert {r.action for r in rows} >= {"read", "readEvidence"}
    assert all("backup:repo-a" in r.detail for r in rows)


# ------------------------------------------------------------------------------------------------ faults


def test_a_forged_entry_is_rejected_reported_and_replication_goes_on(node: Backup, repo: Repo) -> None:
    victim = repo.ids[3]

    def forge(path: str, body: bytes) -> bytes:
        if path != "/api/v1/feed":
            return body
        page = orjson.loads(body)
        for entry in page["entries"]:
            if entry["dppId"] == victim and "body" in entry:
                entry["body"] = entry["body"][:-1] + ', "forged": true}'
                entry["sha256"] = hashlib.sha256(entry["body"].encode()).hexdigest()  # a consistent forgery
        return orjson.dumps(page)

    total = node.repository_versions()
    node.catch_up(Tampering(change=forge), want=total - 1)
    with node.factory() as s:
        rejected = list(s.scalars(select(BackupRejection)))
        assert [r.dpp_id for r in rejected] == [victim] and rejected[0].resolved_at is None
        assert rejected[0].step in ("signature", "leaf hash", "content hash"), rejected[0].reason
        assert s.scalar(select(func.count()).select_from(BackupVersion).where(BackupVersion.dpp_id == victim)) == 0
    src = node.source()
    assert src.next_position == src.tree_size  # its place is not lost: the cursor moved past the forgery
    # through an honest connection the rejected entry is fetched again and heals
    report = follow_once(node.factory, node.client(), source_id="repo-a")
    assert report.healed == 1 and node.held() == total
    with node.factory() as s:
        assert s.scalar(select(BackupRejection.resolved_at)) is not None


def test_a_dropped_connection_mid_feed_resumes_with_nothing_lost_or_twice(node: Backup, repo: Repo,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from dbp.replication import follower

    monkeypatch.setattr(follower, "FEED_PAGE", 3)  # several pages, so the drop falls between two of them
    total = node.repository_versions()
    feeds = {"n": 0}

    def drop(path: str, _: int) -> bool:
        if path == "/api/v1/feed":
            feeds["n"] += 1
            return feeds["n"] == 3
        return False

    repo.wait_checkpoint_covers_log()
    client = node.client(Tampering(drop=drop))
    with pytest.raises(FollowError, match="cannot reach"):
        follow_once(node.factory, client, source_id="repo-a")
    assert node.held() == 6  # the two pages before the drop were committed with their cursor
    assert node.source().next_position > 0
    node.catch_up(Tampering(drop=drop))
    with node.factory() as s:
        positions = list(s.scalars(select(BackupVersion.position)))
    assert len(positions) == len(set(positions)) == total


def test_a_rewritten_log_halts_the_source_with_evidence(node: Backup, repo: Repo) -> None:
    node.catch_up()
    held = node.held()
    with repo.session_factory.begin() as s:  # the repository replaces its whole log by another history
        for model in LOG_TABLES:
            s.execute(delete(model))
        at = timestamp()
        log.append(s, leaves=[log.Leaf(f"urn:forged:{i}", 1, hashlib.sha256(str(i).encode()).hexdigest(), at)
                              for i in range(held + 5)])
    repo.wait_checkpoint_covers_log()
    report = follow_once(node.factory, node.client(), source_id="repo-a")
    assert report.outcome == "halted" and "rewritten" in report.message, report.message
    src = node.source()
    assert src.status == backup.HALTED
    with node.factory() as s:
        alerts = backup.alerts_json(s)
    assert alerts[0]["kind"] == "history-rewritten" and set(alerts[0]["evidence"]["notes"]) == {"latest", "found"}
    assert node.held() == held  # what it holds stays, and stays served
    assert follow_once(node.factory, node.client(), source_id="repo-a").outcome == "skipped"
    result = CliRunner().invoke(cli, ["backup", "status", "--database-url", node.url])
    assert result.exit_code == 3 and "halted" in result.output


def test_tampering_with_the_backups_own_database_is_found_by_backup_verify(node: Backup) -> None:
    node.catch_up()
    with node.factory.begin() as s:
        row = s.scalars(select(BackupVersion).order_by(BackupVersion.position)).first()
        assert row is not None
        s.execute(update(BackupVersion).where(BackupVersion.position == row.position)
                  .values(canonical=bytes(row.canonical) + b" "))
        s.execute(update(BackupNode).where(BackupNode.level == 1, BackupNode.idx == 0).values(hash=b"\0" * 32))
    result = CliRunner().invoke(cli, ["backup", "verify", "--json", "--database-url", node.url])
    assert result.exit_code == 3, result.output
    report = orjson.loads(result.stdout)["sources"][0]
    assert report["problemCount"] == 2
    assert any("content hash" in p for p in report["problems"])
    assert any("node level 1 index 0" in p for p in report["problems"])


def test_wrong_credentials_and_unappointed_providers_back_off_with_the_reason(node: Backup, repo: Repo) -> None:
    repo.wait_checkpoint_covers_log()
    bad = RepositoryClient(repo.base_url, client_id=repo.client_id, client_secret="wrong", timeout=5)
    with pytest.raises(FollowError, match="refused the backup's client credentials"):
        follow_once(node.factory, bad, source_id="repo-a")
    with repo.session_factory.begin() as s:  # the operators revoke the appointment
        from dbp.replication.models import BackupAppointment
        s.execute(update(BackupAppointment).values(revoked_at=timestamp()))
    with pytest.raises(FollowError, match="403"):
        follow_once(node.factory, node.client(), source_id="repo-a")
    with node.factory.begin() as s:
        row = backup.schedule_failure(s, source_id="repo-a", error="403")
        assert row.status == backup.FAILING and row.failures == 1 and row.next_attempt_at is not None


def test_unreachable_repository_is_a_follow_error(node: Backup) -> None:
    dead = RepositoryClient(f"http://127.0.0.1:{_free_port()}", client_id=None, client_secret=None, timeout=2)
    with pytest.raises(FollowError, match="cannot reach"):
        follow_once(node.factory, dead, source_id="repo-a")


def test_backup_cli_help_and_unknown_source() -> None:
    result = CliRunner().invoke(cli, ["backup", "--help"])
    assert result.exit_code == 0 and "verify" in result.output and "status" in result.output


def test_leaf_hashes_are_audited_not_trusted(node: Backup, repo: Repo) -> None:
    """Leaves that do not hash to the signed root are refused: nothing of the round is kept, the round fails
    (a proxy or a cut answer is as likely as a lying repository; the witness halts only on signed data)."""
    def lie(path: str, body: bytes) -> bytes:
        if path != "/api/v1/log/leaves":
            return body
        page = orjson.loads(body)
        first = page["leaves"][0]
        data = bytearray(base64.b64decode(first["leafData"]))
        data[-1] ^= 1
        first["leafData"] = base64.b64encode(bytes(data)).decode()
        from dbp.integrity import merkle
        first["leafHash"] = base64.b64encode(merkle.hash_leaf(bytes(data))).decode()
        return orjson.dumps(page)

    repo.wait_checkpoint_covers_log()
    with pytest.raises(FollowError, match="not its signed tree"):  # unsigned data: retried, never a halt
        follow_once(node.factory, node.client(Tampering(change=lie)), source_id="repo-a")
    assert node.held() == 0 and node.source().tree_size == 0
    assert follow_once(node.factory, node.client(), source_id="repo-a").outcome == "ok"  # honest again
    assert node.source().tree_size > 0


# ------------------------------------------------------------------------------------------------ custody


def _successor(tmp_path: Path, name: str) -> tuple[str, Settings]:
    url = f"sqlite:///{tmp_path / f'{name}.sqlite3'}"
    settings = Settings(database_url=url, environment="test", roles=["repository", "backup"], backup_follow=False,
                        port=_free_port(), auto_register=False, integrity_sweep_budget=0)
    upgrade(settings)
    return url, settings


def _rewrite_trailer(lines: list[bytes]) -> list[bytes]:
    """A forger who knows the format: the trailer recomputed over the altered lines."""
    digest = hashlib.sha256(b"".join(lines[:-1])).hexdigest()
    end = orjson.loads(lines[-1])
    end["end"]["sha256"] = digest
    return [*lines[:-1], orjson.dumps(end) + b"\n"]


def test_restore_into_a_successor_keeps_the_history_verifiable_against_the_original_keys(
        node: Backup, repo: Repo, tmp_path: Path) -> None:
    dpp = repo.ids[2]
    repo.new_version(dpp, 60.5)
    node.catch_up()
    operator = repo.docs[2]["economicOperatorId"]
    custody_file = tmp_path / "custody.ndjson"
    runner = CliRunner()
    node.export(custody_file, "--operator", operator)
    mine = [d for d in repo.docs if d["economicOperatorId"] == operator]

    url, settings = _successor(tmp_path, "successor")
    assert runner.invoke(cli, ["restore", str(custody_file), "--source-id", "from-a", "--database-url", url]
                         ).exit_code == 2  # no anchor key: refused before reading
    result = runner.invoke(cli, ["restore", str(custody_file), "--source-id", "from-a", "--key", node.key,
                                 "--database-url", url])
    assert result.exit_code == 0, result.output
    assert f"restored {len(mine)} passports" in result.output
    with ServerThread(create_app(settings), settings.port) as srv:
        current = httpx.get(f"{srv.base_url}/backup/api/v1/dpps/{dpp}")
        assert current.status_code == 200 and current.headers["X-DPP-Version"] == "2"
        assert current.headers["X-DPP-Backup-Source"] == "from-a"
        for version in (1, 2):  # the whole history, each version with its original evidence
            ev = httpx.get(f"{srv.base_url}/backup/api/v1/dpps/{dpp}/evidence", params={"version": version})
            assert ev.status_code == 200, ev.text
            assert verify_bundle(ev.content, trusted=repo.trusted()).verdict == "valid"
        other = next(i for i, d in zip(repo.ids, repo.docs, strict=True) if d["economicOperatorId"] != operator)
        assert httpx.get(f"{srv.base_url}/backup/api/v1/dpps/{other}").status_code == 404  # only that operator's
    assert runner.invoke(cli, ["backup", "verify", "--database-url", url]).exit_code == 0
    # restoring the same log twice is refused
    again = runner.invoke(cli, ["restore", str(custody_file), "--source-id", "from-a-2", "--key", node.key,
                                "--database-url", url])
    assert again.exit_code == 1 and "holds the log" in again.output


def test_a_cut_altered_or_foreign_keyed_custody_file_restores_nothing(node: Backup, tmp_path: Path) -> None:
    node.catch_up()
    custody_file = tmp_path / "custody.ndjson"
    runner = CliRunner()
    node.export(custody_file)
    lines = custody_file.read_bytes().splitlines(keepends=True)
    url, _ = _successor(tmp_path, "successor")

    def attempt(content: list[bytes], key: str = node.key) -> Any:
        path = tmp_path / "attempt.ndjson"
        path.write_bytes(b"".join(content))
        return runner.invoke(cli, ["restore", str(path), "--source-id", "s", "--key", key, "--database-url", url])

    cut = attempt(lines[:-2] + lines[-1:])
    assert cut.exit_code == 3 and "cut or altered" in cut.output
    at = next(i for i, line in enumerate(lines) if line.startswith(b'{"version"'))
    altered = orjson.loads(lines[at])
    altered["version"]["body"] = altered["version"]["body"][:-1] + ',"forged":true}'
    forged = _rewrite_trailer([*lines[:at], orjson.dumps(altered) + b"\n", *lines[at + 1:]])
    result = attempt(forged)
    assert result.exit_code == 3 and "content hash" in result.output, result.output
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from dbp.integrity.checkpoint import VerifierKey
    stranger = VerifierKey(node.key.split("+")[0], Ed25519PrivateKey.generate().public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)).encode()
    result = attempt(lines, key=stranger)
    assert result.exit_code == 3 and "nothing restored" in result.output
    with make_sessionmaker(make_engine(url))() as s:
        assert s.scalar(select(func.count()).select_from(BackupVersion)) == 0
        assert s.scalar(select(func.count()).select_from(BackupSource)) == 0


def test_pages_too_large_are_asked_for_again_with_fewer_entries(node: Backup, repo: Repo,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from dbp.replication import follower

    monkeypatch.setattr(follower, "MAX_FEED_BYTES", 40_000)  # room for a few passports of ~10 KB, not 500
    node.catch_up()
    assert node.held() == node.repository_versions()
    monkeypatch.setattr(follower, "MAX_FEED_BYTES", 1_000)  # not even one entry fits: the round fails, reported
    dpp = repo.ids[0]
    repo.new_version(dpp, 59.5)
    repo.wait_checkpoint_covers_log()
    with pytest.raises(follower.TooLarge):
        follow_once(node.factory, node.client(), source_id="repo-a")


def test_a_key_rotation_is_followed_and_old_and_new_versions_keep_verifying(node: Backup, repo: Repo) -> None:
    """dbp keys rotate at the repository: the checkpoint is co-signed by the old and the new key, so the backup
    trusts the new one, moves its pin, records the old one's retirement, and both generations of versions keep
    valid evidence."""
    from dbp.access.secrets import DEVELOPMENT_SECRET

    node.catch_up()
    old = dict(backup.trusted_keys(node.source()))
    with repo.session_factory.begin() as s:
        new_kid = log.rotate_key(s, secret_key=DEVELOPMENT_SECRET)  # the test server's secret
    repo.new_version(repo.ids[5], 58.5)
    node.catch_up()
    trusted = backup.trusted_keys(node.source())
    assert new_kid in trusted and all(trusted[k]["retiredAt"] for k in old if old[k]["retiredAt"] is None)
    assert node.source().verifier_key != node.key  # the pin moved to the new key, seen co-signed
    repo.keys = [KeyPeriod(*jwk_key(k["jwk"], "key"), k["createdAt"], k["retiredAt"])
                 for k in httpx.get(f"{repo.base_url}/api/v1/log/keys").json()["keys"]]
    with node.factory() as s:
        for version in (1, 2):
            held = backup.current_copy(s, dpp_id=repo.ids[5], version=version)
            made = backup.bundle(s, copy=held, view="full", document=bytes(held.canonical),
                                 issued_at=held.verified_at)
            report = verify_bundle(bundle_json(made), trusted=repo.trusted())
            assert report.verdict == "valid", report.as_json()
    assert CliRunner().invoke(cli, ["backup", "verify", "--database-url", node.url]).exit_code == 0

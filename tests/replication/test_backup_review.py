"""Review of the backup node / custody / node probe: each test here states a guarantee of a module docstring (or
README "Federation") and FAILS while the reviewed code breaks it. Fixtures come from test_backup_node."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import test_backup_node
from sqlalchemy import select, update
from test_backup_node import Backup, Repo, Tampering, _rewrite_trailer, _successor
from typer.testing import CliRunner

from conftest import ServerThread, _free_port
from dbp.access.models import Organisation
from dbp.app import create_app
from dbp.cli import app as cli
from dbp.clock import timestamp
from dbp.integrity.checkpoint import VerifierKey, key_id
from dbp.integrity.log import Leaf
from dbp.registry.fetch import HttpFetcher
from dbp.registry.health import NodeProber
from dbp.registry.models import RegistryNode
from dbp.replication import backup
from dbp.replication.follower import Follower, FollowError, RepositoryClient, follow_once
from dbp.replication.models import BackupAppointment

repo = test_backup_node.repo  # the fixtures, under their names
node = test_backup_node.node

SECRET = "test-secret-key-for-the-backup-node-0001"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _colliding_keys(origin: str) -> tuple[bytes, bytes]:
    """Two 32-byte keys with the same 4-byte note key ID for ``origin`` (birthday: ~2**16 tries)."""
    seen: dict[bytes, bytes] = {}
    while True:
        raw = os.urandom(32)
        kid = key_id(origin, raw)
        if kid in seen and seen[kid] != raw:
            return seen[kid], raw
        seen[kid] = raw


def _hostile(kind: str, origin: str) -> Any:
    """A repository (or a proxy) answering one odd but well-formed JSON document."""
    if kind == "logSize":
        def change(path: str, body: bytes) -> bytes:
            return re.sub(rb'"logSize":\d+', b'"logSize":18446744073709551615', body) if path == "/api/v1/feed" \
                else body
    elif kind == "cursor":
        def change(path: str, body: bytes) -> bytes:
            return re.sub(rb'"nextCursor":"f1\.\d+"', '"nextCursor":"f1.²"'.encode(), body) \
                if path == "/api/v1/feed" else body
    elif kind == "keys":
        a, b = _colliding_keys(origin)

        def change(path: str, body: bytes) -> bytes:
            if path != "/api/v1/log/keys":
                return body
            doc = orjson.loads(body)
            doc["keys"] += [{"jwk": {"kty": "OKP", "crv": "Ed25519", "kid": f"c{i}", "x": _b64url(raw)},
                             "createdAt": "2027-01-01T00:00:00.000000Z", "retiredAt": None}
                            for i, raw in enumerate((a, b))]
            return orjson.dumps(doc)
    else:  # token: a number JSON (Python's json) reads as infinity
        def change(path: str, body: bytes) -> bytes:
            return b'{"access_token":"t","expires_in":1e400}' if path == "/api/v1/auth/token" else body
    return Tampering(change=change)


KINDS = ["logSize", "cursor", "keys", "token"]


@pytest.mark.parametrize("kind", KINDS)
def test_odd_answers_are_follow_errors_not_crashes(node: Backup, repo: Repo, kind: str) -> None:
    """Module docstring of follower: malformed answers are FollowError (the source backs off). Two listed keys
    with one note key ID are dropped instead (neither can be told apart): the round goes on, trusting neither."""
    repo.wait_checkpoint_covers_log()
    client = node.client(_hostile(kind, node.key.split("+")[0]))
    try:
        if kind == "keys":
            assert follow_once(node.factory, client, source_id="repo-a").outcome == "ok"
            assert not {"c0", "c1"} & set(backup.trusted_keys(node.source()))
        else:
            with pytest.raises(FollowError):
                follow_once(node.factory, client, source_id="repo-a")
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["logSize", "keys"])
def test_one_hostile_source_does_not_stop_the_others(node: Backup, repo: Repo, kind: str) -> None:
    """Follower.round catches only FollowError: anything else aborts round_all before the next source, marks
    nothing (no back-off), and the same source fails first again at the next pass — the sources after it are
    never followed."""
    repo.wait_checkpoint_covers_log()
    with node.factory.begin() as s:
        backup.add_source(s, source_id="repo-b", url=f"http://127.0.0.1:{_free_port()}", origin="other.example/log",
                          verifier_key=VerifierKey("other.example/log", os.urandom(32)).encode(), client_id=None,
                          client_secret=None, secret_key=SECRET)
    follower = Follower(node.factory, secret_key=SECRET, timeout=2,
                        transport=_hostile(kind, node.key.split("+")[0]))
    follower.round_all(force=True)  # must not raise
    with node.factory() as s:
        a, b = backup.get_source(s, source_id="repo-a"), backup.get_source(s, source_id="repo-b")
        if kind == "keys":  # colliding keys are dropped: the round succeeds
            assert a.failures == 0 and a.last_success_at is not None
        else:
            assert a.failures == 1 and a.next_attempt_at is not None, "the hostile source is not backed off"
        assert b.last_attempt_at is not None, "the source after the hostile one was never tried"


class _Trickle(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        for _ in range(20):  # one byte every 0.3 s: each read is within the client's 0.5 s timeout
            self.wfile.write(b" ")
            self.wfile.flush()
            time.sleep(0.3)
        self.wfile.write(b'{"access_token":"t","expires_in":60}')

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_token_request_is_bounded_in_time_like_every_other_request() -> None:
    """RepositoryClient: 'bounded answers, timeouts' — get() has a 3 x timeout deadline, the token POST has none
    (and no size bound before the whole body is read): a trickling repository holds the follower thread."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    client = RepositoryClient(f"http://127.0.0.1:{srv.server_address[1]}", client_id="c", client_secret="s",
                              timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(FollowError):
            client.feed(0, 1)
    finally:
        client.close()
        srv.shutdown()
    assert time.monotonic() - started < 3 * 0.5 + 1.0, f"took {time.monotonic() - started:.1f} s"


def test_the_unauthenticated_keys_list_does_not_rewrite_trusted_key_periods(node: Backup, repo: Repo) -> None:
    """follower docstring: 'the keys list alone, unauthenticated, is never enough' — yet a trusted key's
    createdAt/retiredAt are overwritten from it each round (meta['x'] in trusted_x / raw in signers), and the
    backup's full-view evidence bundles (key_periods) then carry those periods."""
    node.catch_up()
    before = backup.trusted_keys(node.source())

    def rewrite(path: str, body: bytes) -> bytes:
        if path != "/api/v1/log/keys":
            return body
        doc = orjson.loads(body)
        for k in doc["keys"]:
            k["createdAt"], k["retiredAt"] = "2000-01-01T00:00:00.000000Z", "2000-01-02T00:00:00.000000Z"
        return orjson.dumps(doc)

    report = follow_once(node.factory, node.client(Tampering(change=rewrite)), source_id="repo-a")
    assert report.outcome == "ok"
    after = backup.trusted_keys(node.source())
    assert after == before, f"trusted key periods rewritten by an unauthenticated answer: {after}"


def test_restore_refuses_a_checkpoint_larger_than_the_leaves_it_holds(node: Backup, repo: Repo,
                                                                       tmp_path: Path) -> None:
    """custody docstring: restore is fail-closed, every version checked for 'inclusion'. recheck compares a
    checkpoint's root only when the held tree reaches its size: a file whose leaves stop one short of its only
    checkpoint is never bound to a signed root — so its leaves can be made up, and a signed version can be
    renumbered (here: the original v1 served as v3, the newest, hiding v2)."""
    dpp = repo.ids[2]
    repo.new_version(dpp, 60.5)
    node.catch_up()
    custody_file = tmp_path / "custody.ndjson"
    runner = CliRunner()
    node.export(custody_file)
    lines = custody_file.read_bytes().splitlines(keepends=True)
    header = orjson.loads(lines[0])
    size = header["treeSize"]
    cut = size - 1
    header["treeSize"] = cut
    out = [orjson.dumps(header) + b"\n"]
    victim_v1 = None
    for line in lines[1:-1]:
        obj = orjson.loads(line)
        if "version" in obj and obj["version"]["dppId"] == dpp and obj["version"]["version"] == 1:
            victim_v1 = obj["version"]
    assert victim_v1 is not None and victim_v1["position"] < cut
    forged = Leaf(dpp, 3, victim_v1["sha256"], victim_v1["createdAt"], kid=victim_v1["kid"],
                  public_sha256=victim_v1["publicSha256"]).leaf_hash()
    for line in lines[1:-1]:
        obj = orjson.loads(line)
        if "checkpoint" in obj:
            if obj["checkpoint"]["treeSize"] > cut:  # keep only the checkpoint(s) the leaves never reach
                out.append(line)
        elif "leaves" in obj:
            hashes = obj["leaves"]["hashes"]
            start = obj["leaves"]["start"]
            hashes = [base64.b64encode(forged).decode() if start + i == victim_v1["position"] else h
                      for i, h in enumerate(hashes) if start + i < cut]
            obj["leaves"]["hashes"] = hashes
            out.append(orjson.dumps(obj) + b"\n")
        elif "version" in obj:
            if obj["version"]["position"] >= cut:
                continue
            if obj["version"] == victim_v1:
                obj["version"]["version"] = 3
                obj["version"]["leafHash"] = base64.b64encode(forged).decode()
            out.append(orjson.dumps(obj) + b"\n")
    end = orjson.loads(lines[-1])
    end["end"]["versions"] = sum(1 for line in out if line.startswith(b'{"version"'))
    out = _rewrite_trailer([*out, orjson.dumps(end) + b"\n"])
    path = tmp_path / "forged.ndjson"
    path.write_bytes(b"".join(out))
    url, settings = _successor(tmp_path, "successor")
    result = runner.invoke(cli, ["restore", str(path), "--source-id", "s", "--key", node.key, "--database-url", url])
    served = None
    if result.exit_code == 0:
        with ServerThread(create_app(settings), settings.port) as srv:
            served = httpx.get(f"{srv.base_url}/backup/api/v1/dpps/{dpp}").headers.get("X-DPP-Version")
    assert result.exit_code == 3, f"forged custody file restored (served version {served}): {result.output}"


def test_the_newest_copy_is_the_one_from_the_passports_own_repository(node: Backup, repo: Repo) -> None:
    """backup_routes / README: the resolver sends {backup}/backup/api/v1/dpps/{dppId} with no source. Nothing in
    the verification ties a dppId to a source (any followed repository may log a version for any dppId and sign
    it with its own key), and current_copy takes the highest version of any source: another followed
    repository takes over the passport. (Premise stored directly: what verify_entry_in_tree would accept from a
    second, hostile source.)"""
    node.catch_up()
    dpp = repo.ids[0]
    with node.factory.begin() as s:
        real = backup.current_copy(s, dpp_id=dpp)
        backup.add_source(s, source_id="evil", url="http://127.0.0.1:9", origin="evil.example/log",
                          verifier_key=VerifierKey("evil.example/log", os.urandom(32)).encode(), client_id=None,
                          client_secret=None, secret_key=SECRET)
        body = b'{"forged":true}'
        backup.store_copies(s, source_id="evil", copies=[({
            "dppId": dpp, "version": real.version + 1, "position": 0, "createdAt": real.created_at,
            "change": "update", "operatorId": real.operator_id, "dppStatus": real.dpp_status,
            "sha256": hashlib.sha256(body).hexdigest(), "publicSha256": hashlib.sha256(body).hexdigest(),
            "kid": "evil", "signature": "x..y"}, body)])
    with ServerThread(create_app(node.settings), node.settings.port) as srv:
        r = httpx.get(f"{srv.base_url}/backup/api/v1/dpps/{dpp}")
    assert r.headers["X-DPP-Backup-Source"] == "repo-a", (r.headers["X-DPP-Backup-Source"], r.content[:60])


def test_an_operator_appointing_the_backup_later_gets_its_history_backed_up(node: Backup, repo: Repo) -> None:
    """follower: the cursor is a log position; the feed's scope (appointing operators, current responsible
    operator) changes retroactively. An operator that appoints the provider after the cursor passed its versions
    (or a passport whose responsibility moves to an appointing operator) never has its earlier versions copied,
    and status says lag 0."""
    late = repo.docs[0]["economicOperatorId"]
    with repo.session_factory.begin() as s:
        org_id = s.scalar(select(Organisation.id).where(Organisation.operator_id == late))
        s.execute(update(BackupAppointment).where(BackupAppointment.operator_org_id == org_id)
                  .values(revoked_at=timestamp()))
    total = node.repository_versions()
    repo.wait_checkpoint_covers_log()
    client = node.client()
    for _ in range(10):
        report = follow_once(node.factory, client, source_id="repo-a")
        if report.cursor >= report.tree_size and report.stored == 0:
            break
    held_before = node.held()
    assert held_before < total
    with repo.session_factory.begin() as s:  # the operator appoints the backup provider (again)
        s.execute(update(BackupAppointment).where(BackupAppointment.operator_org_id == org_id)
                  .values(revoked_at=None))
    client.close()
    result = CliRunner().invoke(cli, ["backup", "sync", "repo-a", "--rescan", "--database-url", node.url],
                                env={"DBP_SECRET_KEY": SECRET})  # the key the client secret was sealed under
    assert result.exit_code == 0, result.output  # the Follower rescans every 10 min by itself
    assert f"rescan: {total - held_before} missing found" in result.output, result.output
    with node.factory() as s:
        lag = backup.status(s)[0].as_json()["lagLeaves"]
    assert node.held() == total, f"{total - node.held()} versions never copied; status lagLeaves={lag}"


def test_a_node_the_commission_marked_unreachable_is_not_reactivated_by_probes(
        server: ServerThread, session_factory: Any) -> None:
    """PATCH /api/v1/registry/nodes/{id} lets the Commission mark a node unreachable (a decision, like exited);
    the prober turns it active again after two answers."""
    with session_factory.begin() as s:
        s.add(RegistryNode(node_id="r", kind="repository", endpoint=server.base_url, status="unreachable",
                           updated_at="2027-02-18T10:00:00.000000Z"))
    prober = NodeProber(session_factory, HttpFetcher(http_hosts=[server.base_url.split("/")[2]], timeout=2),
                        interval=1)
    asyncio.run(prober.probe_once())
    asyncio.run(prober.probe_once())
    with session_factory() as s:
        assert s.get(RegistryNode, "r").status == "unreachable"  # type: ignore[union-attr]


def test_a_probe_of_the_old_endpoint_does_not_mark_a_moved_node(session_factory: Any) -> None:
    """health: the change is conditional on the status only; the Commission moving a node to a new endpoint
    while a round probes the old (dead) one still gets the node marked unreachable."""
    with session_factory.begin() as s:
        s.add(RegistryNode(node_id="r", kind="repository", endpoint=f"http://127.0.0.1:{_free_port()}",
                           status="active", updated_at="2027-02-18T10:00:00.000000Z"))
    prober = NodeProber(session_factory, HttpFetcher(http_hosts=["127.0.0.1"], timeout=1), interval=1, failures=1)
    real_probe = prober._probe

    async def probe_then_move(endpoint: str) -> str | None:
        answer = await real_probe(endpoint)
        with session_factory.begin() as s:  # the Commission PATCHes the endpoint meanwhile
            s.get(RegistryNode, "r").endpoint = "http://127.0.0.1:1/moved"  # type: ignore[union-attr]
        return answer

    prober._probe = probe_then_move  # type: ignore[method-assign]
    asyncio.run(prober.probe_once())
    with session_factory() as s:
        assert s.get(RegistryNode, "r").status == "active"  # type: ignore[union-attr]

"""Second review of the backup node / custody / node probe after the first review's fixes. Each test states a
guarantee (module docstrings, README "Federation") and FAILS while the code breaks it. Fixtures come from
test_backup_node (as in test_backup_review)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import test_backup_node
from sqlalchemy import select
from test_backup_node import Backup, Repo, Tampering, _rewrite_trailer, _successor
from typer.testing import CliRunner

from conftest import ServerThread, _free_port
from dbp.access.models import Organisation
from dbp.access.secrets import DEVELOPMENT_SECRET
from dbp.cli import app as cli
from dbp.config import Settings
from dbp.db import make_engine, make_sessionmaker
from dbp.integrity import log as integrity_log
from dbp.integrity.evidence import bundle_json
from dbp.integrity.log import Leaf
from dbp.integrity.signing import VersionSigner, kid_of
from dbp.integrity.verify import Trusted, verify_bundle
from dbp.passports.models import Passport, PassportVersion
from dbp.registry.fetch import HttpFetcher
from dbp.registry.health import PROBE, NodeProber
from dbp.registry.models import RegistryNode
from dbp.replication import backup
from dbp.replication import service as feed_service
from dbp.replication.follower import FollowError, follow_once
from dbp.replication.models import BackupVersion

repo = test_backup_node.repo  # the fixtures, under their names
node = test_backup_node.node

SECRET = "test-secret-key-for-the-backup-node-0001"


def _feed_rewrite(fix: Any) -> Any:
    """A Tampering ``change`` applying ``fix(entry) -> entry`` to every feed entry."""
    def change(path: str, body: bytes) -> bytes:
        if path != "/api/v1/feed":
            return body
        doc = orjson.loads(body)
        doc["entries"] = [fix(e) for e in doc["entries"]]
        return orjson.dumps(doc)
    return change


# ------------------------------------------------------------------------------------------------ follower
def test_a_log_more_than_max_round_leaves_ahead_is_eventually_followed(node: Backup, repo: Repo,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """README: 'At most 2,000,000 leaves are audited per round.' The code refuses the whole round instead, every
    round: a backup added to a repository with more leaves than MAX_ROUND_LEAVES (or one that falls that far
    behind) never audits a single leaf again."""
    from dbp.replication import follower

    monkeypatch.setattr(follower, "MAX_ROUND_LEAVES", 4)
    size = repo.wait_checkpoint_covers_log()
    assert size > 4
    client = node.client()
    errors = []
    try:
        for _ in range(12):
            try:
                follow_once(node.factory, client, source_id="repo-a")
            except FollowError as exc:
                errors.append(str(exc))
    finally:
        client.close()
    assert node.source().tree_size >= size, f"tree still {node.source().tree_size} of {size}: {errors[-1:]}"


def test_a_second_signed_body_for_a_held_version_is_not_dropped_silently(node: Backup, repo: Repo,
                                                                         settings: Settings) -> None:
    """The backup is the log's witness. A repository that logs and signs a second, different body as version 1
    of a passport it already logged (equivocation) passes every check; _keep hands it to store_copies, which
    skips it because (dppId, version) is held — no rejection, no alert, and any open rejection at that
    position is resolved. The position is then neither held nor rejected, so every rescan fetches it again."""
    node.catch_up()
    dpp = repo.ids[1]
    signer = VersionSigner(secret_key=settings.secret_key or DEVELOPMENT_SECRET)
    with repo.session_factory.begin() as s:
        v1 = s.scalar(select(PassportVersion).where(PassportVersion.dpp_id == dpp, PassportVersion.version == 1))
        original = orjson.loads(v1.canonical)
        original["equivocation"] = True
        body2 = orjson.dumps(original)
        sig2 = signer.sign(s, body2)
        kid = kid_of(sig2)
        leaf = Leaf(dpp, 1, hashlib.sha256(body2).hexdigest(), v1.created_at, kid=kid,
                    public_sha256=v1.public_sha256)
        (p2,) = integrity_log.append(s, leaves=[leaf])
    repo.wait_checkpoint_covers_log()

    def serve_second(entry: dict[str, Any]) -> dict[str, Any]:  # the repository serves what it signed and logged
        if entry.get("position") == p2:
            entry = {k: v for k, v in entry.items() if k != "stored"}
            entry.update(signature=sig2, body=body2.decode())
        return entry

    client = node.client(Tampering(change=_feed_rewrite(serve_second)))
    try:
        first = follow_once(node.factory, client, source_id="repo-a", rescan=True)
        again = follow_once(node.factory, client, source_id="repo-a", rescan=True)
    finally:
        client.close()
    with node.factory() as s:
        rejected = [r for r in backup.rejections_json(s, source_id="repo-a") if r["position"] == p2]
        alerts = backup.alerts_json(s, source_id="repo-a")
        held = s.scalar(select(BackupVersion.sha256).where(BackupVersion.dpp_id == dpp, BackupVersion.version == 1))
    assert held != hashlib.sha256(body2).hexdigest()
    assert alerts or any(r["resolvedAt"] is None for r in rejected), (
        f"two signed bodies for {dpp} v1 (positions of the log); report {first.as_json()}: no alert, no rejection")
    assert again.rescanned == 0, f"position {p2} fetched again by every rescan (rescanned={again.rescanned})"


def test_a_foreign_passport_is_alerted_even_after_an_earlier_rejection_at_its_position(node: Backup,
                                                                                       repo: Repo) -> None:
    """README: 'A version of the same id from another followed repository is rejected (step source) and raised
    as an alert (foreign-passport)'. _keep alerts only when backup.reject returns True (no row at that position
    yet): a repository that first serves the entry broken (a rejection at 'content hash'), then intact, gets
    the takeover attempt recorded as a rejection but never alerted."""
    dpp = repo.ids[0]
    with node.factory.begin() as s:  # another source holds the passport already (as test_backup_review does)
        backup.add_source(s, source_id="first", url="http://127.0.0.1:9", origin="first.example/log",
                          verifier_key="first.example/log+00000000+" + "A" * 43 + "=", client_id=None,
                          client_secret=None, secret_key=SECRET)
        body = b'{"held":"first"}'
        backup.store_copies(s, source_id="first", copies=[({
            "dppId": dpp, "version": 1, "position": 0, "createdAt": "2027-01-01T00:00:00.000000Z",
            "change": "create", "operatorId": "urn:x:op", "dppStatus": "active",
            "sha256": hashlib.sha256(body).hexdigest(), "publicSha256": hashlib.sha256(body).hexdigest(),
            "kid": "k", "signature": "x..y"}, body)])

    def break_it(entry: dict[str, Any]) -> dict[str, Any]:
        if entry.get("dppId") == dpp and "body" in entry:
            entry = {**entry, "body": entry["body"] + " "}
        return entry

    repo.wait_checkpoint_covers_log()
    client = node.client(Tampering(change=_feed_rewrite(break_it)))
    try:
        follow_once(node.factory, client, source_id="repo-a")
    finally:
        client.close()
    client = node.client()
    try:
        follow_once(node.factory, client, source_id="repo-a")
    finally:
        client.close()
    with node.factory() as s:
        steps = {r["step"] for r in backup.rejections_json(s, source_id="repo-a") if r["dppId"] == dpp}
        kinds = [a["kind"] for a in backup.alerts_json(s, source_id="repo-a")]
    assert steps == {"source"}
    assert "foreign-passport" in kinds, f"takeover of {dpp} rejected but never alerted (alerts: {kinds})"


def test_backup_copies_use_the_passports_responsible_operator_for_every_version(node: Backup, repo: Repo,
                                                                                client: httpx.Client) -> None:
    """README: copies are read 'with the same access rules as the repository'. The repository decides every
    version's view by the passport's responsible operator NOW (passports.service._stored). The fix takes each
    copy's operator from its own body: after a waste transfer, version 1 at the backup stays with the old
    operator (full view for it, public view for the new one) — the reverse of the repository."""
    dpp = repo.ids[3]
    new_op = "urn:dbp:op:w"
    with repo.session_factory.begin() as s:  # the new operator appointed the backup too
        provider = s.scalar(select(Organisation.id).where(Organisation.operator_id == "urn:dbp:test:backup"))
        w = s.scalar(select(Organisation.id).where(Organisation.operator_id == new_op))
        feed_service.appoint(s, operator_org_id=w, provider_org_id=provider, reference="agreement 8")
    assert client.post(f"/api/v1/dpps/{dpp}/waste", json={"responsibleOperatorId": new_op}).status_code == 200
    node.catch_up()
    with repo.session_factory() as s:
        responsible = s.scalar(select(Passport.operator_id).where(Passport.dpp_id == dpp))
    with node.factory() as s:
        held = {v: backup.current_copy(s, dpp_id=dpp, version=v).operator_id for v in (1, 2)}
    assert responsible == new_op
    assert held == {1: new_op, 2: new_op}, f"repository: {responsible} for every version; backup: {held}"


def test_a_key_retirement_from_the_unsigned_keys_list_cannot_invalidate_later_versions(node: Backup,
                                                                                       repo: Repo) -> None:
    """follower: 'its retirement is taken once, never before a version it signed that the backup holds'. The
    retiredAt comes from the unsigned keys list and is only compared with versions held NOW: one answer (a
    proxy, a cut-in) retires the active key at the newest held version, for good (append-only). Versions the
    key signs afterwards are stored, and their evidence bundles then claim they were signed after retirement."""
    node.catch_up()
    with node.factory() as s:
        newest = s.scalar(select(BackupVersion.created_at).order_by(BackupVersion.created_at.desc()).limit(1))

    def retire(path: str, body: bytes) -> bytes:
        if path != "/api/v1/log/keys":
            return body
        doc = orjson.loads(body)
        for k in doc["keys"]:
            if k["retiredAt"] is None:
                k["retiredAt"] = newest
        return orjson.dumps(doc)

    assert follow_once(node.factory, node.client(Tampering(change=retire)), source_id="repo-a").outcome == "ok"
    dpp = repo.ids[4]
    repo.new_version(dpp, 61.5)
    node.catch_up()
    with node.factory() as s:  # the full-view bundle, as GET .../evidence builds it for the operator
        held = backup.current_copy(s, dpp_id=dpp)
        made = backup.bundle(s, copy=held, view="full", document=bytes(held.canonical), issued_at=held.verified_at)
    report = verify_bundle(bundle_json(made), trusted=Trusted(keys={k.kid: k.public_key for k in repo.keys}))
    assert report.verdict == "valid", [(st.name, st.verdict, st.detail) for st in report.steps if st.verdict == "fail"]


# ------------------------------------------------------------------------------------------------ custody
def test_restore_takes_the_operator_from_the_signed_body_not_from_the_file(node: Backup, repo: Repo,
                                                                           tmp_path: Path) -> None:
    """custody: a crafted file must not get anything stored that the anchored key does not vouch for. The
    follower now takes the operator (who reads the full view) from the signed body; restore stores the file's
    unsigned operatorId as is, and recheck does not compare it: a file naming another operator gives that
    operator's clients every restricted attribute at the successor."""
    node.catch_up()
    custody_file = tmp_path / "custody.ndjson"
    node.export(custody_file)
    lines = custody_file.read_bytes().splitlines(keepends=True)
    out = []
    for line in lines[:-1]:
        obj = orjson.loads(line)
        if "version" in obj:
            obj["version"]["operatorId"] = "urn:dbp:op:thief"
            line = orjson.dumps(obj) + b"\n"
        out.append(line)
    end = orjson.loads(lines[-1])
    forged = _rewrite_trailer([*out, orjson.dumps(end) + b"\n"])
    path = tmp_path / "forged.ndjson"
    path.write_bytes(b"".join(forged))
    url, _ = _successor(tmp_path, "successor")
    result = CliRunner().invoke(cli, ["restore", str(path), "--source-id", "s", "--key", node.key,
                                      "--database-url", url])
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as s:
            operators = {(str(o), orjson.loads(bytes(c)).get("economicOperatorId"))
                         for o, c in s.execute(select(BackupVersion.operator_id, BackupVersion.canonical))}
    finally:
        engine.dispose()
    wrong = {pair for pair in operators if pair[0] != pair[1]}
    assert result.exit_code == 3 or not wrong, f"restored with operators the bodies do not name: {sorted(wrong)[:2]}"


# ------------------------------------------------------------------------------------------------ node probes
def test_the_last_live_repository_is_marked_when_the_others_are_already_down(session_factory: Any) -> None:
    """health: 'When every repository of a round of at least two fails at once, nothing is marked'. Nodes the
    probes already marked unreachable are still probed and count in 'every': with two repositories (the
    federation's) where one is down, the other going down is never marked — the resolver keeps redirecting
    its QR codes to a dead repository."""
    with session_factory.begin() as s:
        s.add(RegistryNode(node_id="gone", kind="repository", endpoint=f"http://127.0.0.1:{_free_port()}",
                           status="unreachable", status_by=PROBE, updated_at="2027-02-18T10:00:00.000000Z"))
        s.add(RegistryNode(node_id="dying", kind="repository", endpoint=f"http://127.0.0.1:{_free_port()}",
                           status="active", status_by="commission", updated_at="2027-02-18T10:00:00.000000Z"))
    prober = NodeProber(session_factory, HttpFetcher(http_hosts=["127.0.0.1"], timeout=1), interval=1)
    for _ in range(5):
        asyncio.run(prober.probe_once())
    with session_factory() as s:
        assert s.get(RegistryNode, "dying").status == "unreachable"  # type: ignore[union-attr]


def test_a_probe_does_not_revert_a_status_the_commission_set_during_the_round(server: ServerThread,
                                                                              session_factory: Any) -> None:
    """health: 'A status the Commission set ... is a decision the probes never change' and 'Each change is a
    conditional update (only from the status and endpoint the round saw)'. The update is not conditional on
    status_by: the Commission confirming 'unreachable' while a round runs is reverted to active."""
    with session_factory.begin() as s:
        s.add(RegistryNode(node_id="r", kind="repository", endpoint=server.base_url, status="unreachable",
                           status_by=PROBE, updated_at="2027-02-18T10:00:00.000000Z"))
    prober = NodeProber(session_factory, HttpFetcher(http_hosts=[server.base_url.split("/")[2]], timeout=2),
                        interval=1, recoveries=1)
    real_probe = prober._probe

    async def probe_then_decide(endpoint: str) -> str | None:
        answer = await real_probe(endpoint)
        with session_factory.begin() as s:  # PATCH {"status": "unreachable"} by the Commission meanwhile
            s.get(RegistryNode, "r").status_by = "commission"  # type: ignore[union-attr]
        return answer

    prober._probe = probe_then_decide  # type: ignore[method-assign]
    asyncio.run(prober.probe_once())
    with session_factory() as s:
        assert s.get(RegistryNode, "r").status == "unreachable"  # type: ignore[union-attr]


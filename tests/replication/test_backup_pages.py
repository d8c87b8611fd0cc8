"""The backup follower's page work (dbp.replication.follower / backup): fetching the next feed page while one is
checked and stored asks the repository for exactly the pages a round reads one after the other, and a page's
copies are stored in one go, idempotently. Fixtures come from test_backup_node."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import test_backup_node
from sqlalchemy import func, select
from test_backup_node import Backup, Repo, Tampering

from dbp.replication import backup, follower
from dbp.replication.follower import FollowError, follow_once
from dbp.replication.models import BackupVersion

repo = test_backup_node.repo  # the fixtures, under their names
node = test_backup_node.node


def _feed_requests(transport: Tampering, seen: list[str]) -> Tampering:
    inner = transport.handle_request

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/feed":
            seen.append(str(request.url.params["cursor"]))
        return inner(request)

    transport.handle_request = handle  # type: ignore[method-assign]
    return transport


def test_pages_fetched_ahead_are_the_pages_a_round_reads_in_turn(node: Backup, repo: Repo,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follower, "FEED_PAGE", 3)
    repo.wait_checkpoint_covers_log()
    total = node.repository_versions()
    cursors: list[str] = []
    client = node.client(_feed_requests(Tampering(), cursors))
    try:
        report = follow_once(node.factory, client, source_id="repo-a")
    finally:
        client.close()
    assert report.outcome == "ok" and report.stored == node.held() == total
    # one request per page the round stored, each from where the page before ended: nothing fetched in vain
    assert len(cursors) == len(report.pages) >= total // 3
    positions = [int(c[3:]) for c in cursors]
    assert positions[0] == 0 and positions == sorted(set(positions))


def test_a_round_that_fails_on_a_page_waits_for_the_page_in_flight(node: Backup, repo: Repo,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follower, "FEED_PAGE", 3)
    repo.wait_checkpoint_covers_log()
    calls = {"n": 0}
    real = backup.store_copies

    def failing(session: Any, **kwargs: Any) -> list[bool]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise FollowError("the store failed (test)")
        return real(session, **kwargs)

    monkeypatch.setattr(backup, "store_copies", failing)
    with pytest.raises(FollowError, match="store failed"):
        follow_once(node.factory, node.client(), source_id="repo-a")
    assert node.held() == 3 and node.source().next_position > 0  # the first page stayed, the second rolled back
    monkeypatch.setattr(backup, "store_copies", real)
    node.catch_up()
    with node.factory() as s:
        positions = list(s.scalars(select(BackupVersion.position)))
    assert len(positions) == len(set(positions)) == node.repository_versions()


def test_store_copies_is_idempotent_within_and_across_calls(node: Backup, repo: Repo) -> None:
    node.catch_up()
    with node.factory() as s:
        row = s.scalars(select(BackupVersion).order_by(BackupVersion.position)).first()
        assert row is not None
        entry = {"dppId": "urn:uuid:00000000-0000-4000-8000-00000000beef", "version": 1, "position": 10**9,
                 "createdAt": row.created_at, "change": row.change, "operatorId": row.operator_id,
                 "dppStatus": row.dpp_status, "sha256": row.sha256, "publicSha256": row.public_sha256,
                 "kid": row.kid, "signature": row.signature}
        held = {"dppId": row.dpp_id, "version": row.version, "position": row.position}
        body = bytes(row.canonical)
        assert backup.store_copies(s, source_id="repo-a", copies=[({**entry, **held}, body), (entry, body),
                                                                   ({**entry, "position": 10**9 + 1}, body)]) \
            == [False, True, False]
        assert backup.store_copy(s, source_id="repo-a", entry=entry, body=body) is False
        assert backup.store_copies(s, source_id="repo-a", copies=[]) == []
        assert s.scalar(select(func.count()).select_from(BackupVersion)
                        .where(BackupVersion.dpp_id == entry["dppId"])) == 1
        s.rollback()

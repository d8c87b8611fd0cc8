"""Access-log digests in the transparency log: the row encoding, contiguous ranges (no gap, no double coverage),
restart safety, concurrent digesters, and the digest at shutdown. SQLite always; PostgreSQL when
DBP_TEST_DATABASE_URL is set."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from conftest import ServerThread, settle_access_log
from dbp.access.principal import ANONYMOUS
from dbp.app import create_app
from dbp.audit import digest
from dbp.audit.models import AccessLog
from dbp.audit.service import AccessRecord, Action, record_many
from dbp.db import make_sessionmaker, transaction
from dbp.integrity import log
from dbp.integrity.canonical import canonical_bytes
from dbp.integrity.models import LogLeaf
from dbp.passports.tamper import AccessLogAudit, FullCheck, digest_access_log, last_digested_id
from dbp.sentinel import Sentinel


def _records(n: int, *, reason: str = "r") -> list[AccessRecord]:
    return [AccessRecord.of(ANONYMOUS, action=Action.read, dpp_id=f"urn:x:{i}", detail=["public"], outcome="granted",
                            reason=reason, request_id=f"req-{i}") for i in range(n)]


def _add(factory: Any, n: int) -> None:
    with transaction(factory) as s:
        record_many(s, _records(n))


def _digests(factory: Any) -> list[dict[str, int]]:
    with factory() as s:
        rows = s.execute(select(*log.LEAF_COLUMNS).where(LogLeaf.kind == log.KIND_ACCESS_DIGEST)
                         .order_by(LogLeaf.leaf_index)).all()
    return [log.stored_leaf(r).leaf.detail or {} for r in rows]


def _contiguous(ranges: list[dict[str, int]]) -> None:
    expected = 1
    for d in ranges:
        assert d["fromId"] == expected, ranges
        expected = d["toId"] + 1


def _scope(factory: Any) -> Any:
    @contextlib.contextmanager
    def scope() -> Iterator[Session]:
        with factory() as s:
            yield s
            s.rollback()
    return scope


def test_row_encoding_is_rfc8785() -> None:
    row = (17, "2027-02-18T10:00:00.000000Z", "req\n\"1\"", "ü/é\u2028", "anonymous", None, None, "\x01\x7f",
           "urn:uuid:1", None, "read", '["public"]', "granted", "tab\there 😀")
    assert digest.row_bytes(row) == canonical_bytes(dict(zip(digest.DIGEST_COLUMNS, row, strict=True))) + b"\n"
    assert digest.digest_rows([row]) == (__import__("hashlib").sha256(digest.row_bytes(row)).hexdigest(), 1)
    with pytest.raises(ValueError):
        digest.row_bytes(row[:-1])


def test_digests_cover_consecutive_ranges_once(settings: Any, session_factory: Any) -> None:
    _add(session_factory, 7)
    made = digest_access_log(session_factory)
    assert len(made) == 1 and made[0].leaf.detail == {"fromId": 1, "toId": made[0].leaf.detail["toId"], "count": 7}
    assert digest_access_log(session_factory) == []  # nothing new: no leaf
    _add(session_factory, 250)
    made = digest_access_log(session_factory, max_rows=100)  # a backlog larger than one leaf takes several
    assert [m.leaf.detail["count"] for m in made if m.leaf.detail] == [100, 100, 50]
    ranges = _digests(session_factory)
    _contiguous(ranges)
    with session_factory() as s:
        assert last_digested_id(s)[0] == ranges[-1]["toId"] == digest.max_id(s)
    findings = FullCheck().run(_scope(session_factory))
    assert findings.total == 0, [f.text() for f in findings.items]


def test_a_new_sentinel_resumes_where_the_log_says(settings: Any, session_factory: Any) -> None:
    _add(session_factory, 3)
    assert Sentinel(session_factory).digest() == 1
    _add(session_factory, 2)
    assert Sentinel(session_factory).digest() == 1  # a restarted process: no memory, the log is the mark
    ranges = _digests(session_factory)
    _contiguous(ranges)
    assert [r["count"] for r in ranges] == [3, 2]


def test_concurrent_digesters_never_cover_a_range_twice(settings: Any, session_factory: Any) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        for _ in range(60):
            if stop.is_set():
                return
            _add(session_factory, 5)

    def digester() -> None:
        try:
            for _ in range(15):
                digest_access_log(session_factory, max_rows=7)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    w = threading.Thread(target=writer)
    w.start()
    ds = [threading.Thread(target=digester) for _ in range(3)]
    for t in ds:
        t.start()
    for t in ds:
        t.join()
    stop.set()
    w.join()
    assert not errors
    digest_access_log(session_factory)
    ranges = _digests(session_factory)
    _contiguous(ranges)
    with session_factory() as s:
        assert ranges[-1]["toId"] == digest.max_id(s)
    audit = AccessLogAudit(findings=FullCheck().findings)
    for _ in audit.steps(_scope(session_factory)):
        pass
    assert audit.findings.total == 0, [f.text() for f in audit.findings.items]


def test_postgresql_digest_waits_for_uncommitted_rows(settings: Any, engine: Any, session_factory: Any) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite write transactions are serial: no row can commit below a digest's max id")
    _add(session_factory, 2)
    slow = engine.connect()
    slow.execute(insert(AccessLog), [r.row() for r in _records(1, reason="slow")])  # holds an id, uncommitted
    _add(session_factory, 2)  # a higher id, committed
    t = threading.Thread(target=digest_access_log, args=(session_factory,))
    t.start()
    # the digester must be blocked on the uncommitted row (LOCK TABLE access_log IN SHARE MODE) before it commits;
    # without the lock it would digest past the hole and finish at once
    deadline = time.monotonic() + 15
    with engine.connect() as watch:
        while not watch.execute(text(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'access_log' AND l.mode = 'ShareLock' AND NOT l.granted")).scalar():
            assert t.is_alive(), "the digest finished while a lower id was uncommitted: it did not wait"
            assert time.monotonic() < deadline, "the digest never waited for the uncommitted row"
            time.sleep(0.02)
    assert t.is_alive()
    slow.commit()
    slow.close()
    t.join()
    digest_access_log(session_factory)
    ranges = _digests(session_factory)
    _contiguous(ranges)
    findings = FullCheck().run(_scope(session_factory))
    assert findings.total == 0, [f.text() for f in findings.items]


def test_the_server_digests_at_shutdown(settings: Any, engine: Any, fleet: list[dict[str, Any]]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    _add(make_sessionmaker(engine), 3)
    app = create_app(settings.model_copy(update={"port": port}))
    with ServerThread(app, port) as srv:
        for _ in range(5):
            assert httpx.get(f"{srv.base_url}/api/v1/dpps/urn:uuid:none").status_code == 404
        assert app.state.sentinel.digest_interval == 60  # not reached during this test
    settle_access_log(engine)
    with engine.connect() as conn:
        top = conn.execute(text("SELECT max(id) FROM access_log")).scalar()
    ranges = _digests(app.state.sessionmaker)
    assert ranges and ranges[-1]["toId"] == top
    _contiguous(ranges)
    assert orjson.dumps(ranges)

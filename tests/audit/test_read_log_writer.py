"""ReadLogWriter: durable group commit of read records. Every append that returns is committed; every
append whose batch could not be stored raises ServiceUnavailable; close() writes what it accepted."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from conftest import settle_access_log
from dbp.access.principal import Principal, PrincipalKind, Role
from dbp.audit import staging
from dbp.audit.durable import ReadLogWriter
from dbp.audit.models import AccessLog, AccessLogIntake
from dbp.audit.service import AccessRecord
from dbp.db import make_engine, make_sessionmaker
from dbp.errors import ServiceUnavailable

READER = Principal(PrincipalKind.client, "reader", org_id="org-r", role=Role.recycler, purpose="dismantling")


def rec(n: int) -> AccessRecord:
    return AccessRecord.of(READER, action="read", dpp_id=f"urn:uuid:{n % 97}", passport_operator_id="EO-A",
                           detail=["point1", "point2"], outcome="granted", request_id=f"req-{n}")


def stored_request_ids(factory: Any) -> list[str]:
    settle_access_log(factory.kw["bind"])
    with factory() as s:
        return list(s.scalars(select(AccessLog.request_id).order_by(AccessLog.id)))


def test_two_thousand_concurrent_appends_are_each_stored_once_in_order(session_factory: Any) -> None:
    writer = ReadLogWriter(session_factory)
    returned: list[int] = []

    async def one(n: int) -> None:
        await writer.append(rec(n))
        returned.append(n)

    async def main() -> None:
        await asyncio.gather(*(one(n) for n in range(2000)))
        await writer.close()

    asyncio.run(main())
    assert sorted(returned) == list(range(2000))
    # arrival order (the order the tasks ran in) is id order, across and within batches
    assert stored_request_ids(session_factory) == [f"req-{n}" for n in range(2000)]
    assert writer.records_written == 2000
    assert 8 <= writer.batches_written < 100  # batched: at most 256 a batch, far fewer commits than reads


def test_an_append_returns_only_after_its_record_is_committed(session_factory: Any) -> None:
    writer = ReadLogWriter(session_factory)
    other = make_sessionmaker(session_factory.kw["bind"])  # a separate session sees committed rows only

    async def main() -> list[str]:
        seen = []
        for n in range(5):
            await writer.append(rec(n))
            seen.append(stored_request_ids(other)[-1])
        await writer.close()
        return seen

    assert asyncio.run(main()) == [f"req-{n}" for n in range(5)]


def test_a_full_batch_is_written_without_waiting_for_the_delay(session_factory: Any) -> None:
    writer = ReadLogWriter(session_factory, batch_size=10, max_delay=60)

    async def main() -> float:
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(writer.append(rec(n)) for n in range(30))), 20)
        elapsed = time.monotonic() - started
        await writer.close()
        return elapsed

    assert asyncio.run(main()) < 20
    assert writer.batches_written == 3
    assert len(stored_request_ids(session_factory)) == 30


def test_a_lone_record_waits_at_most_the_delay(session_factory: Any) -> None:
    writer = ReadLogWriter(session_factory, batch_size=256, max_delay=0.05)

    async def main() -> float:
        started = time.monotonic()
        await writer.append(rec(1))
        elapsed = time.monotonic() - started
        await writer.close()
        return elapsed

    elapsed = asyncio.run(main())
    assert 0.04 <= elapsed < 5
    assert stored_request_ids(session_factory) == ["req-1"]


def test_close_writes_every_accepted_record_then_refuses(session_factory: Any) -> None:
    writer = ReadLogWriter(session_factory, batch_size=1000, max_delay=3600)

    async def main() -> tuple[float, list[BaseException | None]]:
        tasks = [asyncio.create_task(writer.append(rec(n))) for n in range(50)]
        await asyncio.sleep(0.05)  # the appends are waiting for a batch that will not fill for an hour
        assert not any(t.done() for t in tasks)
        started = time.monotonic()
        await writer.close()
        elapsed = time.monotonic() - started
        await asyncio.gather(*tasks)
        with pytest.raises(ServiceUnavailable):
            await writer.append(rec(99))
        await writer.close()  # idempotent
        return elapsed, [t.exception() for t in tasks]

    elapsed, errors = asyncio.run(main())
    assert elapsed < 10 and errors == [None] * 50
    assert stored_request_ids(session_factory) == [f"req-{n}" for n in range(50)]


def test_close_of_an_unused_writer(session_factory: Any) -> None:
    writer = ReadLogWriter(session_factory)
    asyncio.run(writer.close())
    with pytest.raises(ServiceUnavailable):
        asyncio.run(writer.append(rec(1)))


def test_a_held_write_lock_never_stalls_the_event_loop(session_factory: Any) -> None:
    """While another transaction holds the write lock for 300 ms, the loop keeps running; the batch is
    committed (on the writer thread) once the lock is free, and the append returns only then."""
    engine = session_factory.kw["bind"]
    writer = ReadLogWriter(session_factory)
    holder: Any
    if engine.dialect.name == "sqlite":  # the write lock of the staging file the records go to
        holder = staging.open_staging(engine.url.database, busy_ms=0)
        holder.execute("BEGIN IMMEDIATE")
    else:
        holder = engine.connect()
        holder.begin()
        holder.exec_driver_sql("LOCK TABLE access_log IN EXCLUSIVE MODE")
    released: list[float] = []

    def release() -> None:
        time.sleep(0.3)
        released.append(time.monotonic())
        holder.rollback()

    async def main() -> tuple[int, float]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick = asyncio.create_task(ticker())
        threading.Thread(target=release).start()
        await writer.append(rec(1))
        returned = time.monotonic()
        tick.cancel()
        await writer.flush()  # no move of the staged records runs now
        await writer.append(rec(2))  # the lock is free again
        await writer.close()
        return ticks, returned

    try:
        ticks, returned = asyncio.run(main())
    finally:
        holder.close()
    assert ticks >= 10  # the loop kept running while the batch waited 300 ms for the lock
    assert released and returned >= released[0]  # answered only after its record could be committed
    assert stored_request_ids(session_factory) == ["req-1", "req-2"]
    if engine.dialect.name == "sqlite":
        assert writer.batches_on_loop == 1  # the second batch went straight in, on the loop


def test_sqlite_batches_are_staged_on_the_loop_and_moved_into_the_log(session_factory: Any) -> None:
    engine = session_factory.kw["bind"]
    if engine.dialect.name != "sqlite":
        pytest.skip("staging is SQLite's; other databases always write access_log on the writer thread")
    writer = ReadLogWriter(session_factory)
    path = engine.url.database

    async def main() -> int:
        await writer.append(rec(99))  # starts the writer and its start-up move
        # the start-up move holds the staging file while it runs (a batch meanwhile falls back to the
        # writer thread, which is right but not what this test is about): wait for it to finish
        await asyncio.get_running_loop().run_in_executor(writer._movers(), lambda: None)
        before = writer.batches_on_loop
        for n in range(3):
            await asyncio.gather(*(writer.append(rec(10 * n + k)) for k in range(10)))
        staged = _count(staging.staging_path(path), "read_log")
        assert writer.batches_on_loop - before == 3  # no further move started within MOVE_INTERVAL
        await writer.close()
        return staged

    # the three batches were committed to the staging file and not moved (the first record may have been
    # staged after the start-up move, or before it and moved)
    assert asyncio.run(main()) in (30, 31)
    assert writer.batches_written == 4
    # close moved everything: nothing left staged, every record in access_log (read without settling)
    assert _count(staging.staging_path(path), "read_log") == 0
    assert _count(path, "access_log") == 31


def _count(path: str, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture()
def throwaway(tmp_path: Path) -> Any:
    """A SQLite file with the access-log tables, and its sessionmaker."""
    engine = make_engine(f"sqlite:///{tmp_path / 'log.sqlite3'}")
    AccessLog.metadata.create_all(engine, tables=[AccessLog.__table__, AccessLogIntake.__table__])  # type: ignore[list-item]
    yield engine, make_sessionmaker(engine)
    engine.dispose()


REFUSE = "CREATE TRIGGER refuse BEFORE INSERT ON read_log BEGIN SELECT RAISE(ABORT, 'disk says no'); END"


def _on_staging(engine: Any, sql: str) -> None:
    conn = staging.open_staging(engine.url.database, busy_ms=5000)
    try:
        conn.execute(sql)
    finally:
        conn.close()


def test_a_failed_write_fails_every_waiting_append(throwaway: Any) -> None:
    engine, factory = throwaway
    _on_staging(engine, REFUSE)  # every insert where SQLite commits read records fails
    writer = ReadLogWriter(factory, batch_size=256, max_delay=0.01)

    async def main() -> list[BaseException | None]:
        results = await asyncio.gather(*(writer.append(rec(n)) for n in range(600)), return_exceptions=True)
        await writer.close()
        return results

    results = asyncio.run(main())
    assert len(results) == 600
    assert all(isinstance(r, ServiceUnavailable) for r in results)
    assert {str(r) for r in results} == {"access log unavailable; the read was not answered"}
    assert all(r.__cause__ is not None for r in results if r is not None)
    assert len({id(r) for r in results}) == 600  # one exception each: no shared traceback
    assert writer.records_written == 0
    assert stored_request_ids(factory) == []


def test_the_writer_recovers_when_the_database_does(throwaway: Any) -> None:
    engine, factory = throwaway
    writer = ReadLogWriter(factory, max_delay=0.001)

    async def main() -> None:
        await writer.append(rec(1))
        _on_staging(engine, REFUSE)
        with pytest.raises(ServiceUnavailable):
            await writer.append(rec(2))
        _on_staging(engine, "DROP TRIGGER refuse")
        await writer.append(rec(3))
        await writer.close()

    asyncio.run(main())
    assert stored_request_ids(factory) == ["req-1", "req-3"]


def test_staged_records_wait_for_access_log_and_are_moved_exactly_once(throwaway: Any) -> None:
    """When access_log cannot take them, read records stay staged (reads are still answered), a query's
    flush says so (503), and once the table is back every record arrives once, in order."""
    engine, factory = throwaway
    writer = ReadLogWriter(factory, max_delay=0.001)

    async def main() -> None:
        await writer.append(rec(1))
        await writer.flush()
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE access_log RENAME TO access_log_away"))
        for n in range(2, 6):
            await writer.append(rec(n))  # durable in the staging file
        with pytest.raises(ServiceUnavailable):
            await writer.flush()
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE access_log_away RENAME TO access_log"))
        await writer.flush()
        await writer.flush()  # nothing left: moves nothing twice
        await writer.close()

    asyncio.run(main())
    assert stored_request_ids(factory) == [f"req-{n}" for n in range(1, 6)]
    assert staging.move_all(engine.url.database) == 0


def test_a_lost_staging_table_starts_a_new_source(throwaway: Any) -> None:
    """Staged ids restart when the table is recreated; a new source id keeps them from being taken
    for records already moved."""
    engine, factory = throwaway
    writer = ReadLogWriter(factory, max_delay=0.001)

    async def main() -> None:
        for n in range(1, 4):
            await writer.append(rec(n))
        await writer.flush()
        _on_staging(engine, "DROP TABLE read_log")
        writer._staged.close()  # type: ignore[union-attr]  # as after a restart: connections reopen
        for n in range(4, 6):
            await writer.append(rec(n))
        await writer.close()

    asyncio.run(main())
    assert stored_request_ids(factory) == [f"req-{n}" for n in range(1, 6)]


def test_an_unreachable_database_fails_the_appends(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'nothing.sqlite3'}")
    writer = ReadLogWriter(make_sessionmaker(engine))

    async def main() -> list[BaseException | None]:
        results = await asyncio.gather(*(writer.append(rec(n)) for n in range(10)), return_exceptions=True)
        await writer.close()
        return results

    try:
        assert all(isinstance(r, ServiceUnavailable) for r in asyncio.run(main()))
    finally:
        engine.dispose()


def test_a_cancelled_caller_does_not_withdraw_its_record(session_factory: Any) -> None:
    writer = ReadLogWriter(session_factory, max_delay=0.05)

    async def main() -> None:
        task = asyncio.create_task(writer.append(rec(1)))
        await asyncio.sleep(0.005)
        task.cancel()
        await writer.append(rec(2))
        await writer.close()

    asyncio.run(main())
    assert stored_request_ids(session_factory) == ["req-1", "req-2"]


def test_a_stopped_loop_fails_waiting_appends_and_a_new_loop_restarts(session_factory: Any) -> None:
    writer = ReadLogWriter(session_factory, max_delay=3600, batch_size=1000)
    waiting: list[asyncio.Task[None]] = []

    async def abandon() -> None:
        waiting.append(asyncio.create_task(writer.append(rec(1))))
        await asyncio.sleep(0.01)
        # asyncio.run cancels the writer task on exit: the waiting append must not hang

    asyncio.run(abandon())
    assert waiting[0].done()

    async def again() -> None:
        writer.max_delay = 0.001
        await writer.append(rec(2))
        await writer.close()

    asyncio.run(again())
    assert "req-2" in stored_request_ids(session_factory)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"max_delay": -1}])
def test_bad_settings_are_refused(session_factory: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ReadLogWriter(session_factory, **kwargs)


def test_self_clocking_groups_concurrent_reads_without_a_fixed_delay(session_factory: Any) -> None:
    """max_delay=0: no timer; records appended while a batch is written form the next batch."""

    async def main() -> tuple[int, int]:
        writer = ReadLogWriter(session_factory, batch_size=256, max_delay=0)
        await asyncio.gather(*(writer.append(rec(n)) for n in range(600)))
        await writer.close()
        return writer.records_written, writer.batches_written

    written, batches = asyncio.run(main())
    assert written == 600 and len(stored_request_ids(session_factory)) == 600
    assert batches < 100  # grouped, not one commit per read


def _delete_staging_file(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


def test_a_staging_file_deleted_under_a_running_writer_loses_nothing(throwaway: Any) -> None:
    """The writer notices the path names another file and stages into the new one; the records already
    in the old one are moved through the handle the mover still has open on it."""
    engine, factory = throwaway
    writer = ReadLogWriter(factory, max_delay=0.001)

    async def main() -> None:
        await writer.flush()  # the mover has the staging file attached
        await writer.append(rec(1))
        await writer.append(rec(2))
        _delete_staging_file(staging.staging_path(engine.url.database))
        await writer.append(rec(3))
        await writer.flush()
        await writer.append(rec(4))
        await writer.close()

    asyncio.run(main())
    assert stored_request_ids(factory) == ["req-1", "req-2", "req-3", "req-4"]


def test_records_go_to_the_file_the_staging_path_names(throwaway: Any) -> None:
    """A connection opened on a since-deleted staging file would go on committing into it, where a mover
    that reconnected never looks: every batch checks which file the path names."""
    engine, factory = throwaway
    writer = ReadLogWriter(factory, max_delay=0.001)

    async def main() -> None:
        await writer.flush()  # no move running: the next batch is committed on the loop
        await writer.append(rec(1))
        assert writer.batches_on_loop == 1  # so the loop holds a connection to the staging file
        await writer.flush()
        _delete_staging_file(staging.staging_path(engine.url.database))
        staged: Any = writer._staged
        staged._main.close()  # the mover must reconnect (as after an error): to the new file
        staged._main = None
        await writer.append(rec(2))
        await writer.close()

    asyncio.run(main())
    assert stored_request_ids(factory) == ["req-1", "req-2"]

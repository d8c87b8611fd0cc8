"""dbp.integrity.log on a real database (SQLite; PostgreSQL with DBP_TEST_DATABASE_URL): every stored passport
version has exactly one leaf, in the version's own transaction; the stored subtrees are exactly those of
``merkle.MemoryTree`` over the same leaves; proofs fetched from storage verify against the signed checkpoint;
concurrent writers leave one consistent tree; bad arguments are refused."""

from __future__ import annotations

import asyncio
import base64
import copy
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from dbp.config import Settings
from dbp.db import make_engine, make_sessionmaker
from dbp.errors import BadRequest, Conflict, NotFound, ProofError, ServiceUnavailable, VerificationError
from dbp.integrity import log, merkle, signing
from dbp.integrity.checkpoint import Ed25519Signer, verify_checkpoint
from dbp.integrity.models import LogCheckpoint, LogKey, LogLeaf, LogNode
from dbp.migrate import upgrade
from dbp.passports import bulk, lifecycle, service
from dbp.passports.demo import successor_document
from dbp.passports.models import PassportVersion

ORIGIN = "dpp.example.test/log"
SHA = "ab" * 32
AT = "2027-02-18T10:00:00.000000Z"


@pytest.fixture(scope="module", autouse=True)
def _no_server_checkpoints(server: Any) -> Iterator[None]:
    """These tests make their own checkpoints: the test server's checkpointer (if the API tests started it) pauses
    meanwhile, so nothing else writes to the log."""
    checkpointer = server.config.app.state.checkpointer
    task = checkpointer._task
    if task is None:
        yield
        return
    loop = task.get_loop()
    asyncio.run_coroutine_threadsafe(checkpointer.stop(), loop).result(timeout=30)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(checkpointer.start)


@pytest.fixture(scope="module")
def signer() -> Ed25519Signer:
    return Ed25519Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


def _leaf(i: int) -> log.Leaf:
    return log.Leaf(f"urn:uuid:test-{i:06d}", 1 + i % 3, f"{i:064x}", AT)


def _sign(session_factory: Any, signer: Ed25519Signer) -> log.StoredCheckpoint | None:
    with session_factory.begin() as s:
        return log.checkpoint(s, signers=[signer], origin=ORIGIN)


def _all_leaves(s: Session) -> list[tuple[int, str, int, str, str, bytes]]:
    return [tuple(r) for r in s.execute(select(LogLeaf.leaf_index, LogLeaf.dpp_id, LogLeaf.version, LogLeaf.sha256,
                                               LogLeaf.at, LogLeaf.leaf_hash).order_by(LogLeaf.leaf_index))]


def _check_tree(s: Session) -> merkle.MemoryTree:
    """The stored log is exactly MemoryTree over its leaves: contiguous indexes, each leaf hash the hash of the
    leaf's bytes, every stored node one of the tree's and none missing, state root = tree root."""
    rows = _all_leaves(s)
    assert [r[0] for r in rows] == list(range(len(rows)))
    tree = merkle.MemoryTree()
    expected: dict[tuple[int, int], bytes] = {}
    for row in s.execute(select(*log.LEAF_COLUMNS).order_by(LogLeaf.leaf_index)):
        stored = log.stored_leaf(row)
        leaf = stored.leaf
        assert stored.leaf_hash == leaf.leaf_hash()
        for sub in tree.append(leaf.encode()):
            expected[(sub.level, sub.index)] = sub.digest
    stored = {(lv, ix): bytes(h) for lv, ix, h in s.execute(select(LogNode.level, LogNode.idx, LogNode.hash))}
    assert stored == expected
    assert log.size(s) == tree.size
    assert log._state(s, lock=False).root() == tree.root()
    return tree


def _versions(s: Session) -> set[tuple[str, int, str, str]]:
    return {tuple(r) for r in s.execute(select(PassportVersion.dpp_id, PassportVersion.version,
                                               PassportVersion.sha256, PassportVersion.created_at))}


def _every_version_logged_once(s: Session) -> None:
    versions = _versions(s)
    logged = [(d, v, sha, at) for _, d, v, sha, at, _ in _all_leaves(s)]
    assert len(logged) == len(set(logged)) == len(versions)
    assert set(logged) == versions
    # each leaf also commits to the key that signed its version and to the hash of its public view
    signed = {(d, v): (sig and signing.kid_of(sig), psha) for d, v, sig, psha in s.execute(
        select(PassportVersion.dpp_id, PassportVersion.version, PassportVersion.signature,
               PassportVersion.public_sha256))}
    committed = {(d, v): (kid, psha) for d, v, kid, psha in s.execute(
        select(LogLeaf.dpp_id, LogLeaf.version, LogLeaf.kid, LogLeaf.public_sha256))}
    assert committed == signed


# --- leaves ------------------------------------------------------------------------------------------------------


def test_leaf_bytes_are_the_documented_canonical_json() -> None:
    leaf = log.Leaf("urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e", 3, SHA, AT)
    assert leaf.encode() == (b'{"at":"2027-02-18T10:00:00.000000Z",'
                             b'"dppId":"urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",'
                             b'"kind":"passportVersion","sha256":"' + SHA.encode() + b'","version":3}')
    assert leaf.leaf_hash() == merkle.hash_leaf(leaf.encode())
    assert orjson.loads(leaf.encode()) == leaf.as_json()


def test_signed_version_and_digest_leaves_add_their_members() -> None:
    leaf = log.Leaf("d-1", 2, SHA, AT, kid="lk-0123456789abcdef", public_sha256="ab" * 32)
    assert leaf.encode() == (b'{"at":"2027-02-18T10:00:00.000000Z","dppId":"d-1","kid":"lk-0123456789abcdef",'
                             b'"kind":"passportVersion","publicSha256":"' + b"ab" * 32 + b'","sha256":"'
                             + SHA.encode() + b'","version":2}')
    digest = log.digest_leaf(sha256=SHA, from_id=7, to_id=9, count=3, at=AT)
    assert digest.encode() == (b'{"at":"2027-02-18T10:00:00.000000Z","count":3,"fromId":7,'
                               b'"kind":"accessLogDigest","sha256":"' + SHA.encode() + b'","toId":9}')
    assert digest.row()["detail"] == '{"count":3,"fromId":7,"toId":9}' and digest.row()["dpp_id"] == ""


@pytest.mark.parametrize("fields", [
    ("d", 1, SHA, AT, "passportVersion", "bad kid!"), ("d", 1, SHA, AT, "passportVersion", None, SHA.upper()),
    ("d", 1, SHA, AT, "passportVersion", None, None, {"fromId": 1, "toId": 1, "count": 1}),
    ("", 0, SHA, AT, "accessLogDigest"), ("", 0, SHA, AT, "accessLogDigest", None, None, {"fromId": 2, "toId": 1,
                                                                                         "count": 0}),
    ("d", 0, SHA, AT, "accessLogDigest", None, None, {"fromId": 1, "toId": 1, "count": 1}),
    ("", 0, SHA, AT, "accessLogDigest", None, None, {"fromId": 1, "toId": 1, "count": -1}),
    ("", 0, SHA, AT, "accessLogDigest", None, None, {"fromId": 1, "toId": 1}),
    ("", 0, SHA, AT, "other"),
])
def test_malformed_kinds_are_refused(fields: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError):
        log.Leaf(*fields)


@pytest.mark.parametrize("fields", [
    ("", 1, SHA, AT), ("x" * 257, 1, SHA, AT), ("d", 0, SHA, AT), ("d", True, SHA, AT), ("d", 1, SHA.upper(), AT),
    ("d", 1, SHA[:-1], AT), ("d", 1, SHA, "2027-02-18T10:00:00Z"), ("d", 1, SHA, AT, "accessLogDigest"),
])
def test_malformed_leaves_are_refused(fields: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError):
        log.Leaf(*fields)


# --- append ------------------------------------------------------------------------------------------------------


def test_batched_appends_store_exactly_the_complete_subtrees(session_factory: Any) -> None:
    leaves = [_leaf(i) for i in range(1, 140)]
    at = 0
    for n in (1, 1, 2, 5, 8, 3, 64, 55):
        with session_factory.begin() as s:
            assert log.append(s, leaves=leaves[at:at + n]) == range(at, at + n)
        at += n
    with session_factory.begin() as s:
        assert log.append(s, leaves=[]) == range(0)
    with session_factory() as s:
        assert _check_tree(s).size == 139


def test_proofs_from_storage_verify_against_the_signed_checkpoint(session_factory: Any,
                                                                  signer: Ed25519Signer) -> None:
    leaves = [_leaf(i) for i in range(37)]
    tree = merkle.MemoryTree()
    with session_factory.begin() as s:
        log.append(s, leaves=leaves)
    for leaf in leaves:
        tree.append(leaf.encode())
    stored = _sign(session_factory, signer)
    assert stored is not None and stored.size == 37
    opened = verify_checkpoint(stored.note.encode(), origin=ORIGIN, verifiers=[signer.verifier])
    assert (opened.checkpoint.size, opened.checkpoint.root_hash) == (37, tree.root())
    with session_factory() as s:
        for size in range(1, 38):
            root = tree.root(size)
            for index in range(size):
                proof = log.inclusion_proof(s, index=index, size=size)
                assert proof == tree.inclusion_proof(index, size)
                merkle.verify_inclusion(leaf_hash=leaves[index].leaf_hash(), index=index, size=size, proof=proof,
                                        root=root)
            for size1 in range(size + 1):
                proof = log.consistency_proof(s, size1=size1, size2=size)
                merkle.verify_consistency(size1=size1, size2=size, root1=tree.root(size1), root2=root, proof=proof)
        with pytest.raises(ProofError):  # another leaf does not verify with that proof
            merkle.verify_inclusion(leaf_hash=leaves[4].leaf_hash(), index=5, size=37,
                                    proof=log.inclusion_proof(s, index=5, size=37), root=tree.root())


def test_proofs_need_exactly_the_planned_nodes_in_one_query(session_factory: Any, signer: Ed25519Signer,
                                                            engine: Any) -> None:
    from sqlalchemy import event

    with session_factory.begin() as s:
        log.append(s, leaves=[_leaf(i) for i in range(1000)])
    _sign(session_factory, signer)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "log_nodes" in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with session_factory() as s:
            log.inclusion_proof(s, index=517, size=1000)
            log.consistency_proof(s, size1=333, size2=1000)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(statements) == 2


def test_a_rolled_back_append_leaves_nothing(session_factory: Any) -> None:
    with session_factory.begin() as s:
        log.append(s, leaves=[_leaf(1), _leaf(2)])
    s = session_factory()
    try:
        log.append(s, leaves=[_leaf(3), _leaf(4), _leaf(5)])
        assert log.size(s) == 5
    finally:
        s.rollback()
        s.close()
    with session_factory() as s:
        assert _check_tree(s).size == 2


def test_a_version_written_again_is_found_at_its_latest_leaf(session_factory: Any, signer: Ed25519Signer) -> None:
    # only possible when rows were deleted underneath the repository: both leaves stay in the log
    again = log.Leaf(_leaf(1).dpp_id, _leaf(1).version, "cd" * 32, AT)
    with session_factory.begin() as s:
        log.append(s, leaves=[_leaf(1), _leaf(2)])
        log.append(s, leaves=[again])
        log.checkpoint(s, signers=[signer], origin=ORIGIN)
    with session_factory() as s:
        found = log.find_leaf(s, dpp_id=again.dpp_id, version=again.version)
        assert (found.index, found.leaf) == (2, again)
        assert log.leaf_at(s, index=0).leaf == _leaf(1)


def test_concurrent_appenders_make_one_consistent_tree(session_factory: Any) -> None:
    barrier = threading.Barrier(6)

    def writer(t: int) -> None:
        barrier.wait()
        for j in range(8):
            with session_factory.begin() as s:
                log.append(s, leaves=[_leaf(t * 1000 + j * 10 + k) for k in range(1 + (t + j) % 4)])

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(writer, range(6)))
    with session_factory() as s:
        tree = _check_tree(s)
    assert tree.size == sum(1 + (t + j) % 4 for t in range(6) for j in range(8))


# --- passports: every version gets its leaf in its own transaction ----------------------------------------------


def test_every_passport_version_is_logged(session_factory: Any, fleet: list[dict[str, Any]]) -> None:
    evs = [copy.deepcopy(d) for d in fleet if d["generalProductInformation"]["batteryCategory"] == "ev"][:3]
    with session_factory.begin() as s:
        created = [service.create_passport(s, body=orjson.dumps(d)) for d in evs]
    ids = [c.dpp_id for c in created]
    with session_factory.begin() as s:
        service.patch_passport(s, dpp_id=ids[0], body=b'{"performanceAndDurability": {"ratedCapacity": 61.5}}')
        service.patch_element(s, dpp_id=ids[0], element_path="performanceAndDurability/ratedCapacity", body=b"62.5")
    with session_factory.begin() as s:
        lifecycle.create_successor(s, body=orjson.dumps({
            "operation": "repurposing", "predecessorDppIds": ids[1:3],
            "passport": successor_document(evs[1:3], "repurposing", index=0)}))
    with session_factory.begin() as s:
        lifecycle.mark_waste(s, dpp_id=ids[0], body=b'{"responsibleOperatorId": "urn:dbp:op:pro-recycling-eu"}')
    with session_factory.begin() as s:
        lifecycle.mark_recycled(s, dpp_id=ids[0], body=b"{}")
    with session_factory() as s:
        _every_version_logged_once(s)
        assert len(_versions(s)) == 3 + 2 + 1 + 2 + 1 + 1
        tree = _check_tree(s)
        # the leaf order is the order the versions were written
        assert [row[1:3] for row in _all_leaves(s)][:5] == [(ids[0], 1), (ids[1], 1), (ids[2], 1), (ids[0], 2),
                                                            (ids[0], 3)]
    assert tree.size == 10


def test_a_failed_write_logs_nothing(session_factory: Any, passport: dict[str, Any]) -> None:
    with session_factory.begin() as s:
        stored = service.create_passport(s, body=orjson.dumps(passport))
    s = session_factory()
    try:  # the version and its leaf are flushed, then the transaction rolls back
        service.patch_passport(s, dpp_id=stored.dpp_id, body=b'{"performanceAndDurability": {"ratedCapacity": 1.5}}')
        assert log.size(s) == 2
    finally:
        s.rollback()
        s.close()
    with pytest.raises(Conflict), session_factory.begin() as s:  # refused before anything is stored
        service.create_passport(s, body=orjson.dumps(passport))
    with session_factory() as s:
        _every_version_logged_once(s)
        assert _check_tree(s).size == 1


def test_bulk_import_logs_each_batch_in_one_append(session_factory: Any, fleet: list[dict[str, Any]],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = log.append

    def counting(session: Session, *, leaves: Any) -> range:
        calls.append(len(leaves))
        return real(session, leaves=leaves)

    monkeypatch.setattr(log, "append", counting)
    docs = [copy.deepcopy(d) for d in fleet[:10]]
    report = bulk.import_records(session_factory, [bulk.RecordSource("mem", i, raw=orjson.dumps(d))
                                                   for i, d in enumerate(docs, 1)], batch_size=4, workers=0)
    assert report.created == 10 and calls == [4, 4, 2]
    for d in docs[:5]:  # changed products: a new version each, logged with the batch
        d["performanceAndDurability"]["ratedCapacity"] = 12.5
    calls.clear()
    again = bulk.import_records(session_factory, [bulk.RecordSource("mem", i, raw=orjson.dumps(d))
                                                  for i, d in enumerate(docs, 1)], batch_size=4, workers=0)
    assert (again.created, again.updated, again.unchanged) == (0, 5, 5)
    assert calls == [4, 1, 0]
    with session_factory() as s:
        _every_version_logged_once(s)
        assert _check_tree(s).size == 15


def test_concurrent_passport_writers_make_one_consistent_tree(session_factory: Any,
                                                              fleet: list[dict[str, Any]]) -> None:
    docs = [copy.deepcopy(d) for d in fleet[:24]]
    barrier = threading.Barrier(4)

    def create_and_patch(t: int) -> None:
        barrier.wait()
        for d in docs[t * 4:(t + 1) * 4]:
            with session_factory.begin() as s:
                stored = service.create_passport(s, body=orjson.dumps(d))
            with session_factory.begin() as s:
                service.patch_passport(s, dpp_id=stored.dpp_id,
                                       body=b'{"performanceAndDurability": {"ratedCapacity": 70.5}}')

    def importer() -> None:
        barrier.wait()
        bulk.import_records(session_factory, [bulk.RecordSource("mem", i, raw=orjson.dumps(d))
                                              for i, d in enumerate(docs[12:], 1)], batch_size=3, workers=0)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(create_and_patch, t) for t in range(3)] + [pool.submit(importer)]
        for f in futures:
            f.result()
    with session_factory() as s:
        _every_version_logged_once(s)
        assert _check_tree(s).size == 12 * 2 + 12


# --- checkpoints and the key -------------------------------------------------------------------------------------


def test_checkpoints_are_made_when_the_log_grew_and_replace_the_last(session_factory: Any,
                                                                     signer: Ed25519Signer) -> None:
    first = _sign(session_factory, signer)
    assert first is not None and first.size == 0 and first.root_hash == merkle.EMPTY_ROOT
    assert _sign(session_factory, signer) is None
    with session_factory.begin() as s:
        log.append(s, leaves=[_leaf(1), _leaf(2), _leaf(3)])
        assert log.needs_checkpoint(s)
    second = _sign(session_factory, signer)
    assert second is not None and second.size == 3
    with session_factory() as s:
        assert not log.needs_checkpoint(s)
        assert s.scalar(select(func.count()).select_from(LogCheckpoint)) == 1
        assert log.latest_checkpoint(s) == second
    verify_checkpoint(second.note.encode(), origin=ORIGIN, verifiers=[signer.verifier])


def test_a_log_shorter_than_its_checkpoint_is_refused(session_factory: Any, signer: Ed25519Signer) -> None:
    with session_factory.begin() as s:
        log.append(s, leaves=[_leaf(1), _leaf(2)])
    _sign(session_factory, signer)
    with session_factory.begin() as s:  # history rewritten behind the log's back
        s.execute(text("DELETE FROM log_state"))
    with pytest.raises(VerificationError, match="expected at least the 2 leaves"):
        _sign(session_factory, signer)


def test_a_corrupt_frontier_is_refused(session_factory: Any) -> None:
    with session_factory.begin() as s:
        log.append(s, leaves=[_leaf(1), _leaf(2), _leaf(3)])
        s.execute(text("UPDATE log_state SET frontier = :f"), {"f": b"\x00" * 32})
    with pytest.raises(VerificationError, match="frontier of 3 leaves"), session_factory.begin() as s:
        log.append(s, leaves=[_leaf(4)])


def test_the_signing_key_is_created_once_and_stored_encrypted(session_factory: Any) -> None:
    # the repository's key is put back afterwards: the running server (and this process) signs with it
    with session_factory.begin() as s:
        kept = [dict(r._mapping) for r in s.execute(select(*LogKey.__table__.columns))]
        s.execute(text("DELETE FROM log_keys"))
    with session_factory.begin() as s:
        first = log.load_signer(s, secret_key="k" * 40, origin=ORIGIN)
    with session_factory.begin() as s:
        again = log.load_signer(s, secret_key="k" * 40, origin="other.example/log")
        rows = list(s.scalars(select(LogKey)))
    assert len(rows) == 1 and first.key_id != again.key_id  # same key, another name
    assert first.verifier.public_key == again.verifier.public_key == bytes(rows[0].public_key)
    assert base64.b64encode(first.verifier.public_key).decode() not in rows[0].private_encrypted
    with pytest.raises(VerificationError, match="cannot decrypt"), session_factory.begin() as s:
        log.load_signer(s, secret_key="another secret key of forty characters", origin=ORIGIN)
    with session_factory.begin() as s:
        s.execute(text("DELETE FROM log_keys"))
        if kept:
            s.execute(insert(LogKey), kept)


def test_origin_is_the_public_host_and_log() -> None:
    assert log.origin_of("https://dpp.example.com") == "dpp.example.com/log"
    assert log.origin_of("http://127.0.0.1:8000/") == "127.0.0.1:8000/log"
    assert log.origin_of("https://example.org/repo/") == "example.org/repo/log"


# --- refusals ----------------------------------------------------------------------------------------------------


def test_reads_need_a_checkpoint_and_stay_within_it(session_factory: Any, signer: Ed25519Signer) -> None:
    with session_factory.begin() as s:
        log.append(s, leaves=[_leaf(i) for i in range(10)])
    with session_factory() as s, pytest.raises(ServiceUnavailable):
        log.inclusion_proof(s, index=0, size=1)
    with session_factory.begin() as s:
        log.checkpoint(s, signers=[signer], origin=ORIGIN)
        log.append(s, leaves=[_leaf(i) for i in range(10, 12)])  # appended, not yet checkpointed
    with session_factory() as s:
        for call in (lambda: log.inclusion_proof(s, index=0, size=11),
                     lambda: log.consistency_proof(s, size1=1, size2=11),
                     lambda: log.leaves(s, start=5, end=11), lambda: log.leaf_at(s, index=10)):
            with pytest.raises(NotFound, match="latest signed checkpoint"):
                call()
        for call in (lambda: log.inclusion_proof(s, index=-1, size=3),
                     lambda: log.inclusion_proof(s, index=3, size=3),
                     lambda: log.inclusion_proof(s, index=True, size=3),  # type: ignore[arg-type]
                     lambda: log.consistency_proof(s, size1=4, size2=3),
                     lambda: log.consistency_proof(s, size1=0, size2=2**64),
                     lambda: log.leaves(s, start=3, end=3), lambda: log.leaves(s, start=0, end=1001)):
            with pytest.raises(BadRequest):
                call()
        with pytest.raises(NotFound):
            log.find_leaf(s, dpp_id="urn:uuid:nothing", version=1)
        assert [x.index for x in log.leaves(s, start=2, end=10)] == list(range(2, 10))
        assert log.find_leaf(s, dpp_id=_leaf(4).dpp_id, version=_leaf(4).version).index == 4


def test_a_missing_node_fails_closed(session_factory: Any, signer: Ed25519Signer) -> None:
    with session_factory.begin() as s:
        log.append(s, leaves=[_leaf(i) for i in range(8)])
        log.checkpoint(s, signers=[signer], origin=ORIGIN)
        s.execute(text("DELETE FROM log_nodes WHERE level = 1 AND idx = 1"))
    with session_factory() as s, pytest.raises(VerificationError, match=r"leaves \[2, 4\)"):
        log.inclusion_proof(s, index=0, size=8)


# --- migration ---------------------------------------------------------------------------------------------------


def test_the_migration_logs_versions_stored_before_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    upgrade(Settings(database_url=url, environment="test"), "0005")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for i, (dpp, version, at) in enumerate([("urn:b", 1, "2027-01-02T00:00:00.000000Z"),
                                                    ("urn:a", 1, "2027-01-02T00:00:00.000000Z"),
                                                    ("urn:b", 2, "2027-01-03T00:00:00.000000Z"),
                                                    ("urn:c", 1, "2027-01-01T00:00:00.000000Z")]):
                if version == 1:
                    conn.execute(text("INSERT INTO passports (dpp_id, product_id, current_version, dpp_status, "
                                      "operator_id, created_at, updated_at) VALUES (:d, :p, 1, 'draft', 'o', :at, "
                                      ":at)"), {"d": dpp, "p": f"p-{dpp}", "at": at})
                conn.execute(text("INSERT INTO passport_versions (dpp_id, version, created_at, change, sha256, "
                                  "canonical) VALUES (:d, :v, :at, 'create', :sha, '{}')"),
                             {"d": dpp, "v": version, "at": at, "sha": f"{i:064x}"})
        upgrade(Settings(database_url=url, environment="test"))
        with make_sessionmaker(engine)() as s:
            assert [r[1:3] for r in _all_leaves(s)] == [("urn:c", 1), ("urn:a", 1), ("urn:b", 1), ("urn:b", 2)]
            _every_version_logged_once(s)
            _check_tree(s)
    finally:
        engine.dispose()

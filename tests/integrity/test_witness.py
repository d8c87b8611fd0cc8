"""``dbp witness`` against a real repository over loopback (SQLite, and PostgreSQL when DBP_TEST_DATABASE_URL is
set): it follows the log as passports are written, and catches the log when its tables are rewritten underneath
(history rewritten, fork, rollback to a restored backup), a checkpoint signed by another key, a server that is
down, and hostile servers (oversize, slow, not a log)."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, insert, select
from typer.testing import CliRunner

from dbp.cli import app
from dbp.clock import timestamp
from dbp.errors import ProofError
from dbp.integrity import log, merkle
from dbp.integrity.checkpoint import Checkpoint, Ed25519Signer, parse_verifier_key, sign_checkpoint, verify_checkpoint
from dbp.integrity.models import LogCheckpoint, LogLeaf, LogNode, LogState
from dbp.integrity.witness import MAX_NOTE_BYTES, HttpTransport, Outcome, WitnessStore, witness_round

LOG_TABLES = (LogState, LogCheckpoint, LogLeaf, LogNode)  # log_state first: appenders and the checkpointer lock it
runner = CliRunner()


def _witness(*args: str) -> Any:
    result = runner.invoke(app, ["witness", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def _tick(server: Any) -> log.StoredCheckpoint | None:
    """Make the server's checkpointer sign now what the log holds (it also does every second by itself)."""
    return server.config.app.state.checkpointer.tick()  # type: ignore[no-any-return]


def _served(public: httpx.Client) -> tuple[int, bytes, str]:
    r = public.get("/api/v1/log/checkpoint", headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    body = r.json()
    return body["size"], base64.b64decode(body["rootHash"]), body["verifierKey"]


def _write(client: httpx.Client, fleet: list[dict[str, Any]], docs: range) -> None:
    for i in docs:
        r = client.post("/api/v1/dpps", json=copy.deepcopy(fleet[i]))
        assert r.status_code == 201, r.text


def _rewrite(session_factory: Any, leaves: int, *, tag: str) -> None:
    """Replace the whole log, in one transaction, by ``leaves`` forged leaves (the checkpointer then signs it)."""
    with session_factory.begin() as s:
        for model in LOG_TABLES:
            s.execute(delete(model))
        at = timestamp()
        log.append(s, leaves=[log.Leaf(f"urn:forged:{tag}:{i}", 1, hashlib.sha256(f"{tag}{i}".encode()).hexdigest(),
                                       at) for i in range(leaves)])


def _snapshot(session_factory: Any) -> dict[Any, list[dict[str, Any]]]:
    with session_factory() as s:
        return {model: [dict(row._mapping) for row in s.execute(select(model.__table__))] for model in LOG_TABLES}


def _restore(session_factory: Any, snapshot: dict[Any, list[dict[str, Any]]]) -> None:
    """Put the log tables back as they were (an operator restoring a backup)."""
    with session_factory.begin() as s:
        for model in LOG_TABLES:
            s.execute(delete(model))
        for model in reversed(LOG_TABLES):
            if snapshot[model]:
                s.execute(insert(model), snapshot[model])


def test_the_witness_follows_the_log_then_catches_a_rewritten_history(
        server: Any, client: httpx.Client, public: httpx.Client, session_factory: Any,
        fleet: list[dict[str, Any]], tmp_path: Path) -> None:
    state = tmp_path / "witness.sqlite3"
    _write(client, fleet, range(0, 3))
    _tick(server)
    first = _witness("check", "--url", server.base_url, "--state", str(state))
    assert first.exit_code == 0, first.output
    assert "trusting on first use" in first.stderr and "first checkpoint: size 3" in first.stdout

    _write(client, fleet, range(3, 5))
    _tick(server)
    grown = _witness("check", "--url", server.base_url, "--state", str(state))
    assert grown.exit_code == 0, grown.output
    assert "consistent: 3 → 5 leaves" in grown.stdout and "trusting" not in grown.stderr
    assert _witness("check", "--url", server.base_url, "--state", str(state)).exit_code == 0  # unchanged
    size, honest_root, vkey = _served(public)
    assert size == 5

    # the operator deletes the log and re-logs a different, longer history; the checkpointer signs it
    _rewrite(session_factory, 8, tag="rewrite")
    _tick(server)
    assert _served(public)[0] == 8
    caught = _witness("check", "--url", server.base_url, "--state", str(state))
    assert caught.exit_code == 3, caught.output
    assert "INCONSISTENCY DETECTED (history-rewritten)" in caught.stderr
    assert "expected the tree of 8 leaves to extend the signed tree of 5" in caught.stderr
    assert f"alert #1 in {state}" in caught.stderr

    # the evidence convinces anyone holding the log's key: two notes signed by it, and a proof that does not verify
    shown = _witness("show", "--state", str(state), "--alert", "1")
    assert shown.exit_code == 0, shown.output
    alert = json.loads(shown.stdout)
    assert alert["kind"] == "history-rewritten" and alert["evidence"]["verifierKey"] == vkey
    key = parse_verifier_key(vkey)
    old = verify_checkpoint(alert["evidence"]["notes"]["latest"].encode(), origin=key.name, verifiers=[key])
    new = verify_checkpoint(alert["evidence"]["notes"]["found"].encode(), origin=key.name, verifiers=[key])
    assert (old.checkpoint.size, old.checkpoint.root_hash, new.checkpoint.size) == (5, honest_root, 8)
    proof = alert["evidence"]["proof"]
    with pytest.raises(ProofError):
        merkle.verify_consistency(size1=5, size2=8, root1=old.checkpoint.root_hash, root2=new.checkpoint.root_hash,
                                  proof=[base64.b64decode(h) for h in proof["hashes"]])

    # the rewritten checkpoint was not accepted: the next check still shouts, and show lists one alert seen twice
    assert _witness("check", "--url", server.base_url, "--state", str(state)).exit_code == 3
    summary = _witness("show", "--state", str(state))
    assert summary.exit_code == 0
    assert "size 5 root" in summary.stdout and "1 alert(s)" in summary.stderr and "2×" in summary.stderr
    as_json = json.loads(_witness("show", "--state", str(state), "--json").stdout)
    assert as_json["logs"][0]["latest"]["size"] == 5 and as_json["logs"][0]["seen"] == 3


def test_a_fork_of_the_same_size_is_caught(server: Any, client: httpx.Client, session_factory: Any,
                                           fleet: list[dict[str, Any]], tmp_path: Path) -> None:
    _write(client, fleet, range(0, 4))
    _tick(server)
    with WitnessStore(tmp_path / "w.sqlite3") as store:
        transport = HttpTransport(timeout=10)
        try:
            assert witness_round(store, transport, server.base_url).outcome is Outcome.FIRST
            _rewrite(session_factory, 4, tag="fork")
            _tick(server)
            fork = witness_round(store, transport, server.base_url)
        finally:
            transport.close()
        assert fork.outcome is Outcome.FORK and fork.alert_id is not None
        assert "two different trees of size 4" in fork.message
        notes = store.alert(fork.alert_id).evidence["notes"]  # type: ignore[union-attr]
        record = store.log(fork.origin)
        assert record is not None
        opened = [verify_checkpoint(n.encode(), origin=fork.origin, verifiers=[record.key]) for n in notes.values()]
        assert {o.checkpoint.size for o in opened} == {4} and len({o.checkpoint.root_hash for o in opened}) == 2


def test_a_log_restored_from_an_older_backup_is_a_rollback(
        server: Any, client: httpx.Client, public: httpx.Client, session_factory: Any,
        fleet: list[dict[str, Any]], tmp_path: Path) -> None:
    _write(client, fleet, range(0, 2))
    _tick(server)
    backup = _snapshot(session_factory)
    _write(client, fleet, range(2, 6))
    _tick(server)
    state = str(tmp_path / "w.sqlite3")
    assert _witness("check", "--url", server.base_url, "--state", state).exit_code == 0
    _restore(session_factory, backup)  # the old signed checkpoint of 2 leaves is served again
    assert _served(public)[0] == 2
    caught = _witness("check", "--url", server.base_url, "--state", state)
    assert caught.exit_code == 3, caught.output
    assert "rollback: expected a tree of at least 6 leaves" in caught.stderr and "found one of 2" in caught.stderr


def test_a_checkpoint_signed_by_another_key_is_rejected(server: Any, public: httpx.Client, tmp_path: Path) -> None:
    _tick(server)
    _, _, vkey = _served(public)
    origin = parse_verifier_key(vkey).name
    impostor = Ed25519Signer(origin, Ed25519PrivateKey.generate()).verifier.encode()
    state = str(tmp_path / "w.sqlite3")
    rejected = _witness("check", "--url", server.base_url, "--state", state, "--key", impostor)
    assert rejected.exit_code == 3, rejected.output
    assert "INCONSISTENCY DETECTED (bad-signature)" in rejected.stderr
    assert f"expected a checkpoint signed by {impostor}" in rejected.stderr
    # the key the operator gave stays pinned: the server's own key is not taken instead
    again = _witness("check", "--url", server.base_url, "--state", state, "--key", vkey)
    assert again.exit_code == 1 and "never replaced silently" in again.stderr
    assert _witness("check", "--url", server.base_url, "--state", state).exit_code == 3
    # a witness given the right key accepts the very same checkpoint
    good = _witness("check", "--url", server.base_url, "--state", str(tmp_path / "good.sqlite3"), "--key", vkey)
    assert good.exit_code == 0 and "pinned the given key" in good.stderr


def test_watch_reports_rounds_and_stops(server: Any, client: httpx.Client, fleet: list[dict[str, Any]],
                                        session_factory: Any, tmp_path: Path) -> None:
    _write(client, fleet, range(0, 2))
    _tick(server)
    state = str(tmp_path / "w.sqlite3")
    calm = _witness("watch", "--url", server.base_url, "--state", state, "--interval", "0.1", "--rounds", "2")
    assert calm.exit_code == 0, calm.output
    assert calm.stdout.count("first checkpoint") == 1 and "unchanged" not in calm.stdout  # said once
    _rewrite(session_factory, 1, tag="watch")
    _tick(server)
    alarmed = _witness("watch", "--url", server.base_url, "--state", state, "--interval", "0.1", "--rounds", "2")
    assert alarmed.exit_code == 3, alarmed.output
    assert alarmed.stdout.count("INCONSISTENCY DETECTED (rollback)") == 2  # every round


def test_watch_stops_on_ctrl_c(server: Any, client: httpx.Client, fleet: list[dict[str, Any]],
                               tmp_path: Path) -> None:
    _write(client, fleet, range(0, 1))
    _tick(server)
    proc = subprocess.Popen([sys.executable, "-m", "dbp", "witness", "watch", "--url", server.base_url, "--state",
                             str(tmp_path / "w.sqlite3"), "--interval", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]  # waits for the first round's report
        assert "trusting on first use" in lines[0] and "first checkpoint: size 1" in lines[1], lines
        proc.send_signal(signal.SIGINT)
        rest, errors = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, errors
    assert "stopped after" in rest and "Traceback" not in errors


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_server_that_is_down_is_exit_1_through_the_installed_command(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    state = tmp_path / "w.sqlite3"
    done = subprocess.run([sys.executable, "-m", "dbp", "witness", "check", "--url", url, "--state", str(state),
                           "--timeout", "5"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 1, done.stderr
    assert "cannot reach the repository" in done.stderr and "check --url" in done.stderr
    assert "Traceback" not in done.stderr
    usage = subprocess.run([sys.executable, "-m", "dbp", "witness", "check", "--url", "dpp.example.com"],
                           capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "base URL" in usage.stderr


# --- hostile servers -------------------------------------------------------------------------------------------


class Hostile(ThreadingHTTPServer):
    """An HTTP server on loopback answering every GET with ``behaviour(handler)``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour: Any = None
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Hostile

    def do_GET(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.server.behaviour(self)

    def log_message(self, *args: object) -> None:
        pass

    def answer(self, status: int, body: bytes, *, kind: str = "text/plain; charset=utf-8",
               length: bool = True, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def hostile() -> Iterator[Hostile]:
    srv = Hostile()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _trickle(h: _Handler) -> None:
    """Headers at once, then one byte every 50 ms for up to 20 s: no read ever times out."""
    h.send_response(200)
    h.send_header("Content-Type", "text/plain")
    h.end_headers()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        h.wfile.write(b"x")
        h.wfile.flush()
        time.sleep(0.05)


def _late(h: _Handler) -> None:
    time.sleep(5)
    h.answer(200, b"late")


HOSTILE = {
    "oversize-announced": (lambda h: h.answer(200, b"x" * (MAX_NOTE_BYTES + 1)), "the server announces"),
    "oversize-unannounced": (lambda h: h.answer(200, b"x" * (MAX_NOTE_BYTES + 1), length=False), "got more"),
    "html": (lambda h: h.answer(200, b"<html>login</html>", kind="text/html"), "expected a signed note (text/plain)"),
    "not-a-note": (lambda h: h.answer(200, b"dpp.example/log\n5\n"), "expected a C2SP signed checkpoint note"),
    "error-object": (lambda h: h.answer(500, b'{"message": [{"text": "database is down"}]}', kind="application/json"),
                     "got 500: database is down"),
    "redirect": (lambda h: h.answer(301, b"", headers={"Location": "http://127.0.0.1:1/"}), "got 301"),
    "slow": (_late, "no answer within 0.3 s"),
    "trickle": (_trickle, "no complete answer within 0.9 s"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_checkpoint_answers_are_clear_errors(hostile: Hostile, tmp_path: Path, name: str) -> None:
    hostile.behaviour, message = HOSTILE[name]
    state = tmp_path / "w.sqlite3"
    result = _witness("check", "--url", hostile.url, "--state", str(state), "--timeout", "0.3")
    assert result.exit_code == 1, result.output
    assert message in result.stderr, result.stderr
    with WitnessStore(state) as store:
        assert store.logs() == [] and store.alerts() == []


def test_hostile_consistency_proofs_are_clear_errors(hostile: Hostile, tmp_path: Path) -> None:
    signer = Ed25519Signer("hostile.test/log", Ed25519PrivateKey.generate())
    notes = {size: sign_checkpoint(Checkpoint(signer.name, size, hashlib.sha256(b"%d" % size).digest()), [signer])
             for size in (3, 9)}
    size = [3]
    served = {"proof": b""}

    def behaviour(h: _Handler) -> None:
        if h.path == "/api/v1/log/checkpoint":
            h.answer(200, notes[size[0]], headers={"X-Log-Verifier-Key": signer.verifier.encode()})
        else:
            h.answer(200, served["proof"], kind="application/json", length=False)

    hostile.behaviour = behaviour
    state = str(tmp_path / "w.sqlite3")
    assert _witness("check", "--url", hostile.url, "--state", state).exit_code == 0
    size[0] = 9
    for proof, message in [(b"x" * (65 * 1024), "expected at most 65536 bytes"),
                           (b'{"from": 3, "to": 8, "hashes": []}', "expected 'to' = 9"),
                           (b"<html>", "expected JSON")]:
        served["proof"] = proof
        result = _witness("check", "--url", hostile.url, "--state", state)
        assert result.exit_code == 1 and message in result.stderr, result.output
    # a well-formed proof that does not verify: the log cannot show its new tree extends the old one
    served["proof"] = json.dumps({"from": 3, "to": 9, "hashes": [base64.b64encode(bytes(32)).decode()] * 4}).encode()
    caught = _witness("check", "--url", hostile.url, "--state", state)
    assert caught.exit_code == 3 and "history rewritten" in caught.stderr, caught.output

"""The witness's decisions, tested without a network: ``judge`` on real trees and proofs (every pair of sizes up
to 24, against the honest log and a log that changed one early leaf), the parsing of hostile answers, and whole
rounds through an in-memory transport that serves a real in-memory log (``MemoryLog``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dbp.integrity import merkle
from dbp.integrity.checkpoint import Checkpoint, Ed25519Signer, sign_checkpoint
from dbp.integrity.witness import (
    Answer,
    Outcome,
    Seen,
    WitnessError,
    WitnessStore,
    judge,
    needs_proof,
    normalise_url,
    note_origin,
    open_note,
    parse_consistency,
    witness_round,
)

ORIGIN = "dpp.example.test/log"
URL = "https://dpp.example.test"


def _signer(origin: str = ORIGIN) -> Ed25519Signer:
    return Ed25519Signer(origin, Ed25519PrivateKey.generate())


def _tree(leaves: list[bytes]) -> merkle.MemoryTree:
    tree = merkle.MemoryTree()
    for leaf in leaves:
        tree.append(leaf)
    return tree


def _seen(signer: Ed25519Signer, tree: merkle.MemoryTree, size: int | None = None) -> Seen:
    size = tree.size if size is None else size
    note = sign_checkpoint(Checkpoint(signer.name, size, tree.root(size)), [signer])
    return open_note(note, signer.verifier)


HONEST = [f"leaf {i}".encode() for i in range(24)]
FORGED = [b"forged 1" if i == 1 else leaf for i, leaf in enumerate(HONEST)]  # leaf 1 changed


def test_judge_accepts_every_honest_extension_and_catches_every_rewrite() -> None:
    signer = _signer()
    honest, forged = _tree(HONEST), _tree(FORGED)
    for size1 in range(0, 25):
        old = _seen(signer, honest, size1)
        for size2 in range(size1 + 1, 25):
            new = _seen(signer, honest, size2)
            assert needs_proof(old, new)
            verdict = judge(old, new, proof=honest.consistency_proof(size1, size2))
            assert verdict.outcome is Outcome.CONSISTENT, (size1, size2, verdict.message)
            # the log signs a tree whose leaf 1 differs and proves from it: caught whenever leaf 1 was in the old tree
            rewritten = _seen(signer, forged, size2)
            verdict = judge(old, rewritten, proof=forged.consistency_proof(size1, size2))
            expected = Outcome.REWRITTEN if size1 >= 2 else Outcome.CONSISTENT
            assert verdict.outcome is expected, (size1, size2, verdict.message)
            if expected is Outcome.REWRITTEN:
                assert verdict.evidence["notes"] == {"latest": old.note, "found": rewritten.note}
                assert verdict.evidence["proof"]["from"] == size1 and verdict.evidence["proof"]["to"] == size2
                assert verdict.evidence["error"]["reason"] in ("root-mismatch", "proof-length")
                assert f"signed tree of {size1}" in verdict.message


@pytest.mark.parametrize("mutation", ["flip-bit", "drop-last", "extra-hash", "empty"])
def test_a_mutated_proof_is_a_rewritten_history(mutation: str) -> None:
    signer = _signer()
    tree = _tree(HONEST)
    old, new = _seen(signer, tree, 7), _seen(signer, tree, 20)
    proof = tree.consistency_proof(7, 20)
    if mutation == "flip-bit":
        proof[1] = bytes([proof[1][0] ^ 0x01]) + proof[1][1:]
    elif mutation == "drop-last":
        proof = proof[:-1]
    elif mutation == "extra-hash":
        proof = [*proof, bytes(32)]
    else:
        proof = []
    verdict = judge(old, new, proof=proof)
    assert verdict.outcome is Outcome.REWRITTEN, verdict.message


def test_judge_first_unchanged_rollback_fork() -> None:
    signer = _signer()
    honest, forged = _tree(HONEST), _tree(FORGED)
    ten = _seen(signer, honest, 10)
    assert judge(None, ten).outcome is Outcome.FIRST
    assert not needs_proof(None, ten)
    assert judge(ten, _seen(signer, honest, 10)).outcome is Outcome.UNCHANGED
    rollback = judge(ten, _seen(signer, honest, 4))
    assert rollback.outcome is Outcome.ROLLBACK
    assert "at least 10 leaves" in rollback.message and "of 4" in rollback.message
    fork = judge(ten, _seen(signer, forged, 10))
    assert fork.outcome is Outcome.FORK
    assert fork.evidence["notes"] == {"latest": ten.note, "found": _seen(signer, forged, 10).note}
    # a fork against any earlier note of the same size wins over the proof (no proof needed, none asked)
    earlier = _seen(signer, forged, 12)
    verdict = judge(ten, _seen(signer, honest, 12), earlier=earlier)
    assert verdict.outcome is Outcome.FORK and verdict.evidence["notes"]["earlier"] == earlier.note
    with pytest.raises(ValueError, match="consistency proof"):
        judge(ten, _seen(signer, honest, 12))
    with pytest.raises(ValueError, match="same size"):
        judge(ten, _seen(signer, honest, 12), earlier=_seen(signer, honest, 12))


def _proof_body(**overrides: object) -> bytes:
    tree = _tree(HONEST)
    body: dict[str, object] = {"from": 5, "to": 9,
                               "hashes": [base64.b64encode(h).decode() for h in tree.consistency_proof(5, 9)]}
    body.update(overrides)
    return json.dumps(body).encode()


def test_parse_consistency_takes_a_well_formed_answer() -> None:
    assert parse_consistency(_proof_body(), size1=5, size2=9) == _tree(HONEST).consistency_proof(5, 9)


@pytest.mark.parametrize(("body", "message"), [
    (b"<html>proxy error</html>", "expected JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (_proof_body(**{"from": 4}), "expected 'from' = 5"),
    (_proof_body(**{"from": True}), "expected 'from' = 5"),
    (_proof_body(to="9"), "expected 'to' = 9"),
    (_proof_body(hashes="AAAA"), "expected a list"),
    (_proof_body(hashes=["A" * 44] * 129), "at most 128"),
    (_proof_body(hashes=["not base64!"]), "hashes[0]"),
    (_proof_body(hashes=[base64.b64encode(bytes(31)).decode()]), "hashes[0]"),
    (_proof_body(hashes=[base64.b64encode(bytes(32)).decode().rstrip("=")]), "hashes[0]"),
    (_proof_body(hashes=[7]), "hashes[0]"),
    (b"[" * 100000, "expected JSON"),
])
def test_parse_consistency_refuses_hostile_answers(body: bytes, message: str) -> None:
    with pytest.raises(WitnessError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_consistency(body, size1=5, size2=9)


def test_note_origin_and_open_note_refuse_what_is_not_a_checkpoint_of_the_key() -> None:
    signer, other = _signer(), _signer()
    note = sign_checkpoint(Checkpoint(ORIGIN, 3, merkle.EMPTY_ROOT), [signer])
    assert note_origin(note) == ORIGIN
    for garbage in (b"", b"<!doctype html><html></html>\n", note.replace(b"\n\n", b"\n"), note + b"trailing"):
        with pytest.raises(WitnessError, match="expected a C2SP signed checkpoint note"):
            note_origin(garbage)
    with pytest.raises(Exception, match="expected a signature by a known key"):
        open_note(note, other.verifier)
    wrong_origin = sign_checkpoint(Checkpoint("elsewhere.test/log", 3, merkle.EMPTY_ROOT), [signer])
    with pytest.raises(Exception, match="origin"):
        open_note(wrong_origin, signer.verifier)


@pytest.mark.parametrize("url", ["ftp://x", "dpp.example.com", "https://", "https://x/?a=1", "https://x/#f"])
def test_normalise_url_refuses_what_is_not_a_base_url(url: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        normalise_url(url)


def test_normalise_url() -> None:
    assert normalise_url(" https://dpp.example.com/ ") == "https://dpp.example.com"
    assert normalise_url("http://127.0.0.1:8000/repo/") == "http://127.0.0.1:8000/repo"


# --- rounds through an in-memory log ---------------------------------------------------------------------------


@dataclass
class MemoryLog:
    """A transparency log in memory, served through the witness's ``Transport`` protocol: its tree, its signer,
    the checkpoint it serves (signed on ``publish``) and the key it announces. ``answers`` override paths."""

    signer: Ed25519Signer = field(default_factory=_signer)
    tree: merkle.MemoryTree = field(default_factory=merkle.MemoryTree)
    note: bytes = b""
    announced: str | None = None
    answers: dict[str, Answer] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def grow(self, leaves: list[bytes]) -> MemoryLog:
        for leaf in leaves:
            self.tree.append(leaf)
        return self

    def publish(self, signer: Ed25519Signer | None = None) -> MemoryLog:
        signer = signer or self.signer
        self.note = sign_checkpoint(Checkpoint(ORIGIN, self.tree.size, self.tree.root()), [signer])
        return self

    def get(self, url: str, *, accept: str, limit: int) -> Answer:
        path = url.removeprefix(URL)
        self.asked.append(path)
        if path in self.answers:
            return self.answers[path]
        if path == "/api/v1/log/checkpoint":
            key = self.announced or self.signer.verifier.encode()
            return Answer(200, {"content-type": "text/plain; charset=utf-8", "x-log-verifier-key": key}, self.note)
        if path.startswith("/api/v1/log/proof/consistency?"):
            query = dict(part.split("=") for part in path.split("?")[1].split("&"))
            size1, size2 = int(query["from"]), int(query["to"])
            hashes = [base64.b64encode(h).decode() for h in self.tree.consistency_proof(size1, size2)]
            return Answer(200, {"content-type": "application/json"},
                          json.dumps({"from": size1, "to": size2, "hashes": hashes}).encode())
        return Answer(404, {}, b'{"statusCode": "ClientErrorResourceNotFound"}')


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[WitnessStore]:
    with WitnessStore(tmp_path / "state" / "witness.sqlite3") as s:
        yield s


def test_rounds_follow_a_growing_log_then_catch_a_rewrite(store: WitnessStore) -> None:
    served = MemoryLog().grow(HONEST[:5]).publish()
    first = witness_round(store, served, URL)
    assert (first.outcome, first.pinned, first.origin) == (Outcome.FIRST, "tofu", ORIGIN)
    assert witness_round(store, served, URL).outcome is Outcome.UNCHANGED
    served.grow(HONEST[5:9]).publish()
    grown = witness_round(store, served, URL)
    assert grown.outcome is Outcome.CONSISTENT and grown.pinned is None
    assert served.asked[-1] == "/api/v1/log/proof/consistency?from=5&to=9"
    record = store.log(ORIGIN)
    assert record is not None and record.latest is not None and record.latest.size == 9
    assert record.key == served.signer.verifier and record.pinned == "tofu"

    # the operator rebuilds the log with leaf 1 changed, longer, and signs it with the same key
    rewritten = MemoryLog(signer=served.signer).grow(FORGED[:12]).publish()
    caught = witness_round(store, rewritten, URL)
    assert caught.outcome is Outcome.REWRITTEN and caught.alert_id is not None
    again = witness_round(store, rewritten, URL)
    assert again.outcome is Outcome.REWRITTEN and again.alert_id == caught.alert_id  # one alert, seen twice
    alert = store.alert(caught.alert_id)
    assert alert is not None and alert.times_seen == 2 and alert.kind == "history-rewritten"
    assert alert.evidence["notes"] == {"latest": served.note.decode(), "found": rewritten.note.decode()}
    assert alert.evidence["verifierKey"] == served.signer.verifier.encode()
    # the rewritten checkpoint was seen (kept as evidence) but never accepted
    record = store.log(ORIGIN)
    assert record is not None and record.latest is not None and record.latest.size == 9
    assert [(s.size, outcome) for s, outcome, *_ in store.history(ORIGIN)] == [
        (5, "first"), (9, "consistent"), (12, "history-rewritten")]

    # showing the honest tree of 12 now is a fork against the rewritten note of 12 the witness kept
    served.grow(HONEST[9:12]).publish()
    fork = witness_round(store, served, URL)
    assert fork.outcome is Outcome.FORK
    assert fork.alert_id is not None and fork.alert_id != caught.alert_id
    assert "/api/v1/log/proof/consistency?from=9&to=12" not in served.asked  # no proof needed for a fork


def test_rollback_and_same_size_fork(store: WitnessStore) -> None:
    served = MemoryLog().grow(HONEST[:8]).publish()
    assert witness_round(store, served, URL).outcome is Outcome.FIRST
    old = MemoryLog(signer=served.signer).grow(HONEST[:6]).publish()
    rollback = witness_round(store, old, URL)
    assert rollback.outcome is Outcome.ROLLBACK and rollback.previous is not None and rollback.previous.size == 8
    other = MemoryLog(signer=served.signer).grow(FORGED[:8]).publish()
    fork = witness_round(store, other, URL)
    assert fork.outcome is Outcome.FORK
    assert {a.kind for a in store.alerts()} == {"rollback", "fork"}


def test_a_checkpoint_signed_by_another_key_is_rejected(store: WitnessStore) -> None:
    served = MemoryLog().grow(HONEST[:4]).publish()
    assert witness_round(store, served, URL).outcome is Outcome.FIRST
    impostor = _signer()
    served.grow(HONEST[4:6]).publish(impostor)
    served.announced = impostor.verifier.encode()  # announcing another key does not help
    result = witness_round(store, served, URL)
    assert result.outcome is Outcome.BAD_SIGNATURE and result.alert_id is not None
    assert served.signer.verifier.encode() in result.message
    record = store.log(ORIGIN)
    assert record is not None and record.latest is not None and record.latest.size == 4
    assert record.key == served.signer.verifier


def test_a_given_key_is_pinned_and_never_replaced(store: WitnessStore) -> None:
    served = MemoryLog().grow(HONEST[:4]).publish()
    other = _signer()
    rejected = witness_round(store, served, URL, keys=[other.verifier])  # the operator's key is another one
    assert rejected.outcome is Outcome.BAD_SIGNATURE and rejected.pinned == "given"
    record = store.log(ORIGIN)
    assert record is not None and record.latest is None and record.key == other.verifier
    with pytest.raises(WitnessError, match="never replaced silently"):
        witness_round(store, served, URL, keys=[served.signer.verifier])


def test_keys_for_other_logs_and_unusable_announced_keys_are_errors(tmp_path: Path) -> None:
    served = MemoryLog().grow(HONEST[:4]).publish()
    with WitnessStore(tmp_path / "a.sqlite3") as store:
        with pytest.raises(WitnessError, match=r"but --key names elsewhere\.test/log"):
            witness_round(store, served, URL, keys=[_signer("elsewhere.test/log").verifier])
        served.announced = _signer().verifier.encode()
        with pytest.raises(WitnessError, match="does not verify with the served key"):
            witness_round(store, served, URL)
        served.announced = _signer("elsewhere.test/log").verifier.encode()
        with pytest.raises(WitnessError, match="named like the log's origin"):
            witness_round(store, served, URL)
        served.announced = "not a key"
        with pytest.raises(WitnessError, match="published verifier key is malformed"):
            witness_round(store, served, URL)
        served.answers["/api/v1/log/checkpoint"] = Answer(200, {"content-type": "text/plain"}, served.note)
        with pytest.raises(WitnessError, match="pass it with --key"):
            witness_round(store, served, URL)
        assert store.logs() == [] and store.alerts() == []  # nothing stored for any of them


@pytest.mark.parametrize(("answer", "message"), [
    (Answer(503, {}, b'{"message": [{"text": "no checkpoint yet"}]}'), "no signed checkpoint yet"),
    (Answer(500, {}, b'{"message": [{"text": "boom"}]}'), "got 500: boom"),
    (Answer(302, {"location": "https://evil.test"}, b""), "got 302"),
    (Answer(200, {"content-type": "text/html"}, b"<html></html>"), "expected a signed note"),
    (Answer(200, {"content-type": "text/plain"}, b"hello\n"), "expected a C2SP signed checkpoint note"),
])
def test_bad_checkpoint_answers_are_errors(store: WitnessStore, answer: Answer, message: str) -> None:
    served = MemoryLog().grow(HONEST[:4]).publish()
    served.answers["/api/v1/log/checkpoint"] = answer
    with pytest.raises(WitnessError, match=message):
        witness_round(store, served, URL)
    assert store.logs() == []


def test_a_refused_or_malformed_proof_is_an_error_and_nothing_moves(store: WitnessStore) -> None:
    served = MemoryLog().grow(HONEST[:4]).publish()
    witness_round(store, served, URL)
    served.grow(HONEST[4:7]).publish()
    path = "/api/v1/log/proof/consistency?from=4&to=7"
    served.answers[path] = Answer(404, {}, b'{"message": [{"text": "to 7 is beyond the latest"}]}')
    with pytest.raises(WitnessError, match="must be able to prove"):
        witness_round(store, served, URL)
    served.answers[path] = Answer(200, {}, b'{"from": 4, "to": 7, "hashes": ["x"]}')
    with pytest.raises(WitnessError, match=r"hashes\[0\]"):
        witness_round(store, served, URL)
    record = store.log(ORIGIN)
    assert record is not None and record.latest is not None and record.latest.size == 4
    assert len(store.history(ORIGIN)) == 1
    del served.answers[path]
    assert witness_round(store, served, URL).outcome is Outcome.CONSISTENT


def test_a_url_that_serves_another_log_is_an_origin_change(store: WitnessStore) -> None:
    served = MemoryLog().grow(HONEST[:4]).publish()
    witness_round(store, served, URL)
    other = _signer("elsewhere.test/log")
    served.note = sign_checkpoint(Checkpoint(other.name, 1, merkle.hash_leaf(b"x")), [other])
    served.announced = other.verifier.encode()
    result = witness_round(store, served, URL)
    assert result.outcome is Outcome.ORIGIN_CHANGED and result.origin == ORIGIN
    assert "elsewhere.test/log" in result.message
    assert store.log("elsewhere.test/log") is None  # not trusted on first use behind the witness's back


def test_state_moves_only_from_the_value_a_round_started_from(store: WitnessStore) -> None:
    signer = _signer()
    tree = _tree(HONEST)
    with store.transaction():
        store.pin(ORIGIN, signer.verifier, how="given", url=URL)
        store.advance(ORIGIN, _seen(signer, tree, 3), previous=None)
    with pytest.raises(WitnessError, match="another witness process"), store.transaction():
        store.advance(ORIGIN, _seen(signer, tree, 5), previous=None)
    record = store.log(ORIGIN)
    assert record is not None and record.latest is not None and record.latest.size == 3


def test_a_state_file_that_is_not_sqlite_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "witness.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(WitnessError, match="cannot open it as a SQLite file"):
        WitnessStore(path)

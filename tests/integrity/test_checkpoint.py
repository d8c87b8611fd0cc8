"""dbp.integrity.checkpoint: C2SP signed notes and checkpoints against hand-built vectors (make_vectors.py), the
Go sumdb/note known answer, round trips, and refusal of every malformed or tampered note. Real Ed25519."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dbp.errors import ProofError, VerificationError
from dbp.integrity.checkpoint import (
    MAX_NOTE_BYTES,
    Checkpoint,
    Ed25519Signer,
    NoteSigner,
    VerifierKey,
    key_id,
    parse_checkpoint,
    parse_note,
    parse_verifier_key,
    serialise_checkpoint,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
    verify_note,
)
from dbp.integrity.merkle import EMPTY_ROOT, hash_leaf

HERE = Path(__file__).parent
VECTORS = json.loads((HERE / "vectors" / "checkpoint.json").read_text(encoding="utf-8"))
VKEY_VECTORS = json.loads((HERE / "vectors" / "verifier_keys.json").read_text(encoding="utf-8"))
ORIGIN = "dbp.example/log"
ROOT = hash_leaf(b"some root")


def _signer(entry: dict[str, Any]) -> Ed25519Signer:
    seed = base64.b64decode(entry["seed"])
    return Ed25519Signer(entry["name"], Ed25519PrivateKey.from_private_bytes(seed))


LOG = _signer(VECTORS["keys"][0])
WITNESS = _signer(VECTORS["keys"][1])


def _case_id(case: dict[str, Any]) -> str:
    return str(case["desc"])


@pytest.mark.parametrize("case", VECTORS["cases"], ids=_case_id)
def test_checkpoint_vectors(case: dict[str, Any]) -> None:
    data = base64.b64decode(case["note"])
    verifiers = [parse_verifier_key(v) for v in case["verifiers"]]
    if case["wantErr"]:
        with pytest.raises(ProofError) as caught:
            verify_checkpoint(data, origin=case["origin"], verifiers=verifiers)
        assert caught.value.reason == case["wantReason"], caught.value.message
        assert "expected" in caught.value.message or "does not verify" in caught.value.message
        return
    opened = verify_checkpoint(data, origin=case["origin"], verifiers=verifiers)
    assert opened.checkpoint == Checkpoint(case["origin"], case["size"], base64.b64decode(case["rootHash"]),
                                           tuple(case["extensions"]))
    assert [v.encode() for v in opened.verified_by] == case["verifiedBy"]
    assert opened.note.to_bytes() == data  # parse -> serialise gives back the exact bytes
    assert serialise_checkpoint(opened.checkpoint) == opened.note.text.encode()


def test_vectors_name_the_required_refusals() -> None:
    descs = {c["desc"]: c for c in VECTORS["cases"]}
    for desc in ["signature-bit-flip", "wrong-key", "wrong-origin", "extra-line-after-signatures",
                 "extra-body-line-after-signing", "missing-blank-line", "non-canonical-root-base64",
                 "non-canonical-signature-base64", "too-many-signatures", "duplicate-signature"]:
        assert descs[desc]["wantErr"], desc


@pytest.mark.parametrize("desc", ["happy-path", "empty-tree", "max-uint64-size", "extension-line"])
def test_signing_reproduces_the_vectors(desc: str) -> None:
    """Ed25519 is deterministic: our serialiser and signer give the hand-built note byte for byte."""
    case = next(c for c in VECTORS["cases"] if c["desc"] == desc)
    checkpoint = Checkpoint(case["origin"], case["size"], base64.b64decode(case["rootHash"]),
                            tuple(case["extensions"]))
    assert sign_checkpoint(checkpoint, [LOG]) == base64.b64decode(case["note"])


def test_go_sumdb_note_known_answer() -> None:
    """Interop with the reference implementation (golang.org/x/mod/sumdb/note): same key ID, verifier key
    string, signature and note bytes."""
    go = VECTORS["goSumdbNote"]
    signer = Ed25519Signer("PeterNeumann", Ed25519PrivateKey.from_private_bytes(base64.b64decode(go["seed"])))
    assert signer.verifier.encode() == go["vkey"]
    assert sign_note(go["text"], [signer]) == go["note"].encode()
    opened = verify_note(go["note"].encode(), [parse_verifier_key(go["vkey"])])
    assert opened.text == go["text"] and opened.verified_by == (signer.verifier,)
    with pytest.raises(ProofError) as caught:
        verify_note(go["note"].replace("cryptography", "cryptographY").encode(), [signer.verifier])
    assert caught.value.reason == "bad-signature"


@pytest.mark.parametrize("case", VKEY_VECTORS["cases"], ids=_case_id)
def test_verifier_key_vectors(case: dict[str, Any]) -> None:
    if case["wantErr"]:
        with pytest.raises(ProofError) as caught:
            parse_verifier_key(case["vkey"])
        assert caught.value.reason == case["wantReason"]
    else:
        key = parse_verifier_key(case["vkey"])
        assert key.encode() == case["vkey"]
        assert key.key_id == key_id(key.name, key.public_key)


@pytest.mark.parametrize("checkpoint", [
    Checkpoint(ORIGIN, 0, EMPTY_ROOT),
    Checkpoint(ORIGIN, 1, ROOT),
    Checkpoint(ORIGIN, 2**64 - 1, ROOT),
    Checkpoint("example.com/behind-the-sofa", 20852163, ROOT, ("one extension", "tw\u00f6 \u2014 lines")),
    Checkpoint("Some Log With Spaces", 12345678901234, b"\xff" * 32),
])
def test_round_trips(checkpoint: Checkpoint) -> None:
    text = serialise_checkpoint(checkpoint)
    assert parse_checkpoint(text) == checkpoint
    assert parse_checkpoint(text.decode()) == checkpoint
    note = sign_checkpoint(checkpoint, [LOG, WITNESS])
    assert parse_note(note).to_bytes() == note
    opened = verify_checkpoint(note, origin=checkpoint.origin, verifiers=[LOG.verifier, WITNESS.verifier])
    assert opened.checkpoint == checkpoint
    assert opened.verified_by == (LOG.verifier, WITNESS.verifier)


def test_the_c2sp_example_parses() -> None:
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    checkpoint = parse_checkpoint(text)
    assert (checkpoint.origin, checkpoint.size) == ("example.com/behind-the-sofa", 20852163)
    note = parse_note((text + "\n\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4"
                       "URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n").encode())
    assert note.text == text and len(note.signatures[0].signature) == 64


def test_every_single_bit_flip_is_refused() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 42, ROOT), [LOG])
    verify_checkpoint(note, origin=ORIGIN, verifiers=[LOG.verifier])
    reasons = set()
    for bit in range(len(note) * 8):
        flipped = bytearray(note)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ProofError) as caught:
            verify_checkpoint(bytes(flipped), origin=ORIGIN, verifiers=[LOG.verifier])
        reasons.add(caught.value.reason)
    assert {"bad-signature", "malformed-note", "no-known-signature"} <= reasons


def test_size_limit_is_exact() -> None:
    base = Checkpoint(ORIGIN, 7, ROOT)
    overhead = len(sign_checkpoint(base, [LOG]))
    extension = "x" * (MAX_NOTE_BYTES - overhead - 1)  # + its newline: exactly MAX_NOTE_BYTES
    fits = sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT, (extension,)), [LOG])
    assert len(fits) == MAX_NOTE_BYTES
    verify_checkpoint(fits, origin=ORIGIN, verifiers=[LOG.verifier])
    too_big = b"x" + fits  # refused on its size alone, before anything is parsed
    with pytest.raises(ProofError) as caught:
        verify_checkpoint(too_big, origin=ORIGIN, verifiers=[LOG.verifier])
    assert caught.value.reason == "note-too-large"
    with pytest.raises(ValueError):
        sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT, (extension + "x",)), [LOG])


def test_errors_are_verification_errors() -> None:
    with pytest.raises(VerificationError):
        verify_checkpoint(b"nonsense", origin=ORIGIN, verifiers=[LOG.verifier])
    with pytest.raises(VerificationError):
        parse_checkpoint(b"\xff\n1\n2\n")


class _CountingSigner:
    """Another NoteSigner (as a key held elsewhere would be): signs through an Ed25519Signer, counts calls."""

    def __init__(self, inner: Ed25519Signer) -> None:
        self.inner, self.calls = inner, 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def key_id(self) -> bytes:
        return self.inner.key_id

    def sign(self, message: bytes) -> bytes:
        self.calls += 1
        return self.inner.sign(message)


def test_any_note_signer_signs() -> None:
    signer: NoteSigner = _CountingSigner(LOG)
    note = sign_checkpoint(Checkpoint(ORIGIN, 3, ROOT), [signer])
    assert note == sign_checkpoint(Checkpoint(ORIGIN, 3, ROOT), [LOG])
    assert isinstance(signer, _CountingSigner) and signer.calls == 1


def test_signing_preconditions() -> None:
    for text in ["no newline", "tab\there\n", "cr\r\n", "lone \ud800 surrogate\n"]:
        with pytest.raises(ValueError):
            sign_note(text, [LOG])
    with pytest.raises(ValueError):
        sign_note("text\n", [])
    with pytest.raises(ValueError):
        sign_note("text\n", [LOG, LOG])
    with pytest.raises(ValueError):
        Ed25519Signer("bad name", Ed25519PrivateKey.generate())
    with pytest.raises(ValueError):
        Ed25519Signer("bad+name", Ed25519PrivateKey.generate())


@pytest.mark.parametrize("kwargs", [
    {"origin": ""}, {"origin": "two\nlines"}, {"origin": "tab\t"}, {"size": -1}, {"size": 2**64}, {"size": True},
    {"root_hash": ROOT[:31]}, {"root_hash": ROOT.hex()}, {"extensions": ("",)}, {"extensions": ("a\nb",)},
    {"extensions": ["list"]},
])
def test_checkpoint_construction_refuses_what_cannot_be_written(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Checkpoint(**{"origin": ORIGIN, "size": 1, "root_hash": ROOT, **kwargs})


def test_verifier_configuration_errors() -> None:
    with pytest.raises(ValueError):
        VerifierKey("name", b"\x00" * 31)
    with pytest.raises(ValueError):
        VerifierKey("", LOG.verifier.public_key)
    twin = VerifierKey(LOG.name, LOG.verifier.public_key)
    assert twin == LOG.verifier
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), [LOG])
    assert verify_note(note, [LOG.verifier, twin]).verified_by == (LOG.verifier,)


    class Colliding(VerifierKey):  # a real 4-byte key ID collision takes ~2**32 tries; pretend we found one
        @property
        def key_id(self) -> bytes:
            return LOG.key_id

    impostor = Colliding(LOG.name, WITNESS.verifier.public_key)
    with pytest.raises(ValueError, match="share key ID"):
        verify_note(note, [LOG.verifier, impostor])


def test_witness_cosignature_does_not_stand_in_for_a_bad_log_signature() -> None:
    checkpoint = Checkpoint(ORIGIN, 9, ROOT)
    note = parse_note(sign_checkpoint(checkpoint, [LOG, WITNESS]))
    bad_log = note.signatures[0].__class__(LOG.name, LOG.key_id, bytes(64))
    tampered = note.__class__(note.text, (bad_log, note.signatures[1])).to_bytes()
    with pytest.raises(ProofError) as caught:
        verify_checkpoint(tampered, origin=ORIGIN, verifiers=[LOG.verifier, WITNESS.verifier])
    assert caught.value.reason == "bad-signature"
    # Only the witness is known: the log's line is an unknown key's, ignored.
    assert verify_checkpoint(tampered, origin=ORIGIN, verifiers=[WITNESS.verifier]).verified_by == (WITNESS.verifier,)

"""C2SP signed notes (https://c2sp.org/signed-note) and transparency-log checkpoints
(https://c2sp.org/tlog-checkpoint), with Ed25519 signatures (signature type 0x01).

A signed note is UTF-8 text ending in a newline, a blank line, then one or more signature lines
``— <key name> <base64(4-byte key ID || signature)>`` (em dash U+2014, space). The signature covers the text
including its final newline, never the blank line. A checkpoint is a note whose text is::

    <origin>\\n<tree size, ASCII decimal, no leading zeroes>\\n<base64 RFC 6962 root hash>\\n[<extension line>\\n]*

What this module guarantees:

* ``parse_note`` / ``parse_checkpoint`` / ``parse_verifier_key`` accept only the canonical form: valid UTF-8,
  no control character but newline, canonical padded standard base64 (RFC 4648 §4), sizes without sign,
  space or leading zero, no empty checkpoint line, at most ``MAX_NOTE_BYTES`` and ``MAX_SIGNATURES``.
  Anything else raises ``ProofError`` with a ``reason`` and a message naming what was expected and found.
  Serialising what they return gives back the exact input bytes.
* ``verify_note`` / ``verify_checkpoint`` fail closed (signed-note §Signatures): signatures from unknown
  keys — matched on key name AND key ID — are ignored; a signature from a known key that does not verify,
  or a second one from the same key, rejects the whole note; a note with no verified signature by a known
  key is rejected. The checkpoint text is parsed only after a signature over it verified, and its origin
  must be the one the caller expects.
* Signing goes through the ``NoteSigner`` protocol (``Ed25519Signer`` holds a ``cryptography`` key in
  memory), so a key held elsewhere can sign the same way. Ed25519 is deterministic (RFC 8032), so the same
  key and text always give the same note.

Reasons: ``note-too-large``, ``malformed-note``, ``too-many-signatures``, ``duplicate-signature``,
``bad-signature``, ``no-known-signature``, ``malformed-checkpoint``, ``origin-mismatch``,
``malformed-verifier-key``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from dbp.errors import ProofError

#: signed-note: verifiers MUST accept at least 16 signatures, and post-quantum ones reach ~5 kB each.
MAX_NOTE_BYTES = 256 * 1024
#: The cap of Go's golang.org/x/mod/sumdb/note, the reference implementation.
MAX_SIGNATURES = 100
#: signed-note §Signature types.
ED25519 = 0x01
HASH_SIZE = 32
MAX_TREE_SIZE = 2**64 - 1
ED25519_SIGNATURE_SIZE = 64

_DASH = "\u2014 "
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # every ASCII control character but newline (0x0a)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str, what: str, reason: str) -> bytes:
    """Standard padded base64 (RFC 4648 §4), canonical only: the one encoding ``_b64encode`` gives back."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise ProofError(f"{what}: expected standard base64, got {text!r:.120}", reason=reason) from None
    if _b64encode(data) != text:
        raise ProofError(f"{what}: expected canonical base64 {_b64encode(data)!r:.120}, got {text!r:.120}",
                         reason=reason)
    return data


def _name_problem(name: str) -> str | None:
    """Why ``name`` is not a key name (signed-note §Format: non-empty, no Unicode space, no '+'), or None."""
    if not name:
        return "expected a non-empty key name, got an empty one"
    for ch in name:
        if ch.isspace() or ch == "+" or _CONTROL.match(ch):
            return f"expected a key name without spaces, '+' or control characters, got {name!r:.120}"
    return None


def key_id(name: str, public_key: bytes) -> bytes:
    """signed-note §Ed25519 signatures: SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


# --- keys ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifierKey:
    """A known Ed25519 note key: its name and 32-byte public key. ``ValueError`` if either is malformed."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        problem = _name_problem(self.name)
        if problem:
            raise ValueError(problem)
        if type(self.public_key) is not bytes or len(self.public_key) != 32:
            raise ValueError(f"expected a 32-byte Ed25519 public key, got {self.public_key!r:.80}")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def encode(self) -> str:
        """The verifier key string ``<name>+<hex key ID>+<base64(0x01 || public key)>`` (Go sumdb/note)."""
        return f"{self.name}+{self.key_id.hex()}+{_b64encode(bytes([ED25519]) + self.public_key)}"

    def verifies(self, message: bytes, signature: bytes) -> bool:
        """True iff ``signature`` is this key's Ed25519 signature of ``message`` (RFC 8032)."""
        if len(signature) != ED25519_SIGNATURE_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


def parse_verifier_key(text: str) -> VerifierKey:
    """Parse a verifier key string (``VerifierKey.encode``). Raises ``ProofError`` (``malformed-verifier-key``)
    for anything but the canonical form of an Ed25519 key whose key ID matches its name and key."""
    def refuse(message: str) -> ProofError:
        return ProofError(f"verifier key {text!r:.160}: {message}", reason="malformed-verifier-key")

    parts = text.split("+", 2)  # the name has no '+'; the base64 may
    if len(parts) != 3:
        raise refuse("expected <name>+<key ID>+<key>, got fewer parts")
    name, hex_id, encoded = parts
    problem = _name_problem(name)
    if problem:
        raise refuse(problem)
    if not re.fullmatch(r"[0-9a-f]{8}", hex_id, re.ASCII):
        raise refuse(f"expected a key ID of 8 lowercase hex digits, got {hex_id!r:.40}")
    raw = _b64decode(encoded, "verifier key material", "malformed-verifier-key")
    if not raw or raw[0] != ED25519:
        raise refuse(f"expected signature type 0x01 (Ed25519), got {raw[:1].hex() or 'nothing'}")
    if len(raw) != 33:
        raise refuse(f"expected a 32-byte Ed25519 public key, got {len(raw) - 1} bytes")
    key = VerifierKey(name, raw[1:])
    if key.key_id.hex() != hex_id:
        raise refuse(f"key ID: expected {key.key_id.hex()}, got {hex_id}")
    return key


class NoteSigner(Protocol):
    """Something that signs note text under a key name and key ID (signed-note §Signatures)."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class Ed25519Signer:
    """A ``NoteSigner`` over an in-memory ``cryptography`` Ed25519 private key."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._verifier = VerifierKey(name, public)  # validates the name
        self._key = private_key

    @property
    def name(self) -> str:
        return self._verifier.name

    @property
    def key_id(self) -> bytes:
        return self._verifier.key_id

    @property
    def verifier(self) -> VerifierKey:
        return self._verifier

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


# --- notes -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID, signature bytes (unverified as such)."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{_DASH}{self.name} {_b64encode(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    """A parsed signed note: the signed text (ending in a newline) and its signature lines, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def to_bytes(self) -> bytes:
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode("utf-8")


@dataclass(frozen=True)
class VerifiedNote:
    """A note with at least one verified signature; ``verified_by`` are the known keys that signed it."""

    note: Note
    verified_by: tuple[VerifierKey, ...]

    @property
    def text(self) -> str:
        return self.note.text


def _malformed(message: str) -> ProofError:
    return ProofError(f"signed note: {message}", reason="malformed-note")


def _text_problem(text: str, what: str = "the text") -> str | None:
    """Why ``text`` cannot be note text (or, with ``what``, a whole note), or None."""
    if not text.endswith("\n"):
        return f"expected {what} to end in a newline, got {text[-40:]!r}"
    bad = _CONTROL.search(text)
    if bad:
        return f"expected no control character but newline, got U+{ord(bad.group()):04X} at offset {bad.start()}"
    return None


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_DASH):
        raise _malformed(f"expected a signature line starting with an em dash and a space, got {line!r:.120}")
    fields = line[len(_DASH):].split(" ")
    if len(fields) != 2:
        raise _malformed(f"expected '— <key name> <base64 signature>', got {line!r:.120}")
    name, encoded = fields
    problem = _name_problem(name)
    if problem:
        raise _malformed(problem)
    raw = _b64decode(encoded, f"signature by {name!r:.80}", "malformed-note")
    if len(raw) < 5:
        raise _malformed(f"signature by {name!r:.80}: expected a 4-byte key ID and a signature, got {len(raw)} bytes")
    return NoteSignature(name, raw[:4], raw[4:])


def parse_note(data: bytes) -> Note:
    """Split a signed note into text and signature lines, refusing anything malformed (``ProofError``).
    Signatures are not verified here; ``Note.to_bytes`` gives back exactly ``data``."""
    if type(data) is not bytes:
        raise _malformed(f"expected bytes, got {type(data).__name__}")
    if len(data) > MAX_NOTE_BYTES:
        raise ProofError(f"signed note: expected at most {MAX_NOTE_BYTES} bytes, got {len(data)}",
                         reason="note-too-large")
    try:
        whole = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed(f"expected UTF-8, got an invalid byte at offset {exc.start}") from None
    problem = _text_problem(whole, "the note")
    if problem:
        raise _malformed(problem)
    split = whole.rfind("\n\n")  # the text ends at the last blank line
    if split < 0:
        raise _malformed("expected a blank line between the text and the signatures, got none")
    text, block = whole[:split + 1], whole[split + 2:]
    if not block:
        raise _malformed("expected at least one signature line after the blank line, got none")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise ProofError(f"signed note: expected at most {MAX_SIGNATURES} signatures, got {len(lines)}",
                         reason="too-many-signatures")
    return Note(text, tuple(_parse_signature_line(line) for line in lines))


def sign_note(text: str, signers: Sequence[NoteSigner]) -> bytes:
    """The signed note of ``text`` with one signature line per signer, in order. ``ValueError`` for text that
    is not note text, no signer, two signers with the same name and key ID, or a note over the size cap."""
    problem = _text_problem(text)
    if problem:
        raise ValueError(problem)
    try:
        message = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"expected text encodable as UTF-8, got {exc.reason} at offset {exc.start}") from None
    if not signers:
        raise ValueError("expected at least one signer")
    if len({(s.name, s.key_id) for s in signers}) != len(signers):
        raise ValueError("expected signers with distinct key names and IDs")
    signatures: list[NoteSignature] = []
    for signer in signers:
        problem = _name_problem(signer.name)
        if problem:
            raise ValueError(problem)
        if len(signer.key_id) != 4:
            raise ValueError(f"key ID: expected 4 bytes, got {len(signer.key_id)}")
        signatures.append(NoteSignature(signer.name, signer.key_id, signer.sign(message)))
    if len(signatures) > MAX_SIGNATURES:
        raise ValueError(f"expected at most {MAX_SIGNATURES} signers, got {len(signatures)}")
    note = Note(text, tuple(signatures)).to_bytes()
    if len(note) > MAX_NOTE_BYTES:
        raise ValueError(f"signed note: expected at most {MAX_NOTE_BYTES} bytes, got {len(note)}")
    return note


def verify_note(data: bytes, verifiers: Sequence[VerifierKey]) -> VerifiedNote:
    """Parse ``data`` and check its signatures against the known ``verifiers`` (signed-note §Signatures).
    ``ValueError`` if two verifiers share a name and key ID; ``ProofError`` if the note is refused."""
    known: dict[tuple[str, bytes], VerifierKey] = {}
    for verifier in verifiers:
        if known.setdefault((verifier.name, verifier.key_id), verifier) != verifier:
            raise ValueError(f"two verifier keys named {verifier.name!r} share key ID {verifier.key_id.hex()}")
    note = parse_note(data)
    message = note.text.encode("utf-8")
    verified: list[VerifierKey] = []
    for sig in note.signatures:
        key = known.get((sig.name, sig.key_id))
        if key is None:
            continue  # unknown keys are ignored, even if they share a name or an ID with a known key
        if key in verified:
            raise ProofError(f"signed note: expected one signature by {key.encode()}, got more",
                             reason="duplicate-signature")
        if not key.verifies(message, sig.signature):
            raise ProofError(f"signed note: signature by {key.encode()} does not verify over the text",
                             reason="bad-signature")
        verified.append(key)
    if not verified:
        expected = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in verifiers) or "none configured"
        found = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in note.signatures)
        raise ProofError(f"signed note: expected a signature by a known key ({expected}), got only {found}",
                         reason="no-known-signature")
    return VerifiedNote(note, tuple(verified))


# --- checkpoints -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """The body of a C2SP checkpoint: a log's origin, tree size, RFC 6962 root hash and optional extension
    lines. ``ValueError`` on construction from values that cannot be written as one."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for what, line in [("origin", self.origin), *(("extension line", e) for e in self.extensions)]:
            if not isinstance(line, str) or not line or "\n" in line or _CONTROL.search(line):
                raise ValueError(f"{what}: expected a non-empty line without control characters, got {line!r:.80}")
        if type(self.size) is not int or not 0 <= self.size <= MAX_TREE_SIZE:
            raise ValueError(f"tree size: expected an integer in 0..2**64-1, got {self.size!r:.40}")
        if type(self.root_hash) is not bytes or len(self.root_hash) != HASH_SIZE:
            raise ValueError(f"root hash: expected {HASH_SIZE} bytes, got {self.root_hash!r:.80}")
        if not isinstance(self.extensions, tuple):
            raise ValueError("extensions: expected a tuple of lines")

    def to_text(self) -> str:
        """The note text: origin, size, base64 root hash, extension lines, each ending in a newline."""
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)


def serialise_checkpoint(checkpoint: Checkpoint) -> bytes:
    """The UTF-8 note text of ``checkpoint`` (unsigned)."""
    return checkpoint.to_text().encode("utf-8")


def parse_checkpoint(text: str | bytes) -> Checkpoint:
    """Parse checkpoint note text (tlog-checkpoint §Note text), strictly. ``ProofError`` (``malformed-checkpoint``)
    for anything else; ``serialise_checkpoint`` of the result gives back exactly the input."""
    def refuse(message: str) -> ProofError:
        return ProofError(f"checkpoint: {message}", reason="malformed-checkpoint")

    if isinstance(text, bytes):
        if len(text) > MAX_NOTE_BYTES:
            raise refuse(f"expected at most {MAX_NOTE_BYTES} bytes, got {len(text)}")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise refuse(f"expected UTF-8, got an invalid byte at offset {exc.start}") from None
    if not text.endswith("\n"):
        raise refuse("expected the text to end in a newline")
    bad = _CONTROL.search(text)
    if bad:
        raise refuse(f"expected no control character but newline, got U+{ord(bad.group()):04X}")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise refuse(f"expected at least 3 lines (origin, size, root hash), got {len(lines)}")
    for number, line in enumerate(lines, 1):
        if not line:
            raise refuse(f"expected non-empty lines, got an empty line {number}")
    origin, size_text, root_text, *extensions = lines
    if not _SIZE.fullmatch(size_text) or int(size_text) > MAX_TREE_SIZE:
        raise refuse(f"tree size: expected decimal digits without leading zero in 0..2**64-1, got {size_text!r:.40}")
    root = _b64decode(root_text, "checkpoint root hash", "malformed-checkpoint")
    if len(root) != HASH_SIZE:
        raise refuse(f"root hash: expected {HASH_SIZE} bytes, got {len(root)}")
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[NoteSigner]) -> bytes:
    """The signed note of ``checkpoint``; the log's own signer should be named like its origin."""
    return sign_note(checkpoint.to_text(), signers)


@dataclass(frozen=True)
class VerifiedCheckpoint:
    """A checkpoint whose note carries a verified signature by each key in ``verified_by``."""

    checkpoint: Checkpoint
    verified_by: tuple[VerifierKey, ...]
    note: Note


def verify_checkpoint(data: bytes, *, origin: str, verifiers: Sequence[VerifierKey]) -> VerifiedCheckpoint:
    """Open a signed checkpoint of the log ``origin``: note syntax, then signatures (``verify_note``), then the
    checkpoint text, then its origin. Raises ``ProofError`` at the first failure."""
    verified = verify_note(data, verifiers)
    checkpoint = parse_checkpoint(verified.text)
    if checkpoint.origin != origin:
        raise ProofError(f"checkpoint origin: expected {origin!r}, got {checkpoint.origin!r:.200}",
                         reason="origin-mismatch")
    return VerifiedCheckpoint(checkpoint, verified.verified_by, verified.note)

"""What a backup node checks before it stores a change-feed entry (issue 6): the version's content hash, its
signature, its transparency-log leaf and that leaf's inclusion in a signed checkpoint — and, between two
checkpoints it has seen, that the log only grew. Pure (no I/O, no clock, no database) and fail closed: every
function returns only when every check passed, and otherwise raises ``VerificationError("expected X, got Y")``
(a ``ProofError`` with its ``reason`` slug when a Merkle or checkpoint check failed) at the first failed step,
the message starting with the step's name.

``verify_entry(entry, body=, keys=, inclusion=, checkpoint=)`` runs these steps in this order:

1. ``shape`` — the entry is a feed entry as ``dbp.replication.service`` writes it: exactly its fields (plus
   ``body``; an entry marked ``"stored": false`` has no body to verify and is refused), ``kind`` "version",
   ``position`` an integer >= 0, ``version`` an integer >= 1, ``sha256`` / ``publicSha256`` 64 lowercase hex
   digits, ``leafHash`` canonical standard base64 of 32 bytes (the feed's encoding), ``createdAt`` a stored
   timestamp, ``signature`` and ``kid`` strings. Entries of versions logged before signing existed (no kid)
   are refused: a backup stores only what it verified. The other arguments are checked here too (``body``
   bytes, ``keys`` kid -> 32-byte key, ``inclusion`` a list of 32-byte hashes, ``checkpoint`` a
   ``VerifiedCheckpoint``).
2. ``content hash`` — SHA-256 of ``body`` equals ``sha256``; when the entry carries ``body`` (``include=body``),
   its UTF-8 bytes are ``body``.
3. ``signature`` — the detached JWS verifies over ``body`` with the key its kid names in ``keys``
   (``dbp.integrity.signing.verify_version``: RFC 7515 Appendix F, RFC 8037), and that kid is ``entry.kid``.
4. ``leaf hash`` — the ``passportVersion`` leaf rebuilt from the entry (``dbp.integrity.log.Leaf``: dppId,
   version, sha256, createdAt, kid, publicSha256) hashes (RFC 9162 §2.1.1) to ``leafHash``.
5. ``tree size`` — ``position`` < the checkpoint's tree size (a precondition of step 6, checked first).
6. ``inclusion`` — ``inclusion`` proves that leaf at ``position`` in the checkpoint's tree (RFC 9162
   §2.1.3.2, ``dbp.integrity.merkle.verify_inclusion``).

**The checkpoint is verified by the caller**: ``checkpoint`` must be the ``VerifiedCheckpoint`` that
``dbp.integrity.checkpoint.verify_checkpoint`` returned for the repository's signed note, its origin and the
log's verifier key — the type is how this module knows a signature was checked; its size and root are used
together, as RFC 9162 requires. Inclusion proof hashes are raw 32-byte ``bytes`` (the log API serves them as
standard base64: decode them first).

``verify_checkpoint_step(old, new, proof)`` checks that the tree ``new`` = (size, root) extends the tree ``old``
(RFC 9162 §2.1.4.2, ``merkle.verify_consistency``): a smaller new size is a rollback, equal sizes need equal
roots (else a fork), a larger one needs a valid consistency proof — so a rewritten log is caught.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from dbp.errors import ProofError, VerificationError
from dbp.integrity import merkle
from dbp.integrity.checkpoint import VerifiedCheckpoint
from dbp.integrity.log import Leaf
from dbp.integrity.signing import verify_version

#: Every field of a feed entry (``dbp.replication.service._entry``); ``body`` only with ``include=body``.
FIELDS = frozenset({"position", "kind", "dppId", "version", "createdAt", "change", "operatorId", "dppStatus",
                    "sha256", "signature", "kid", "publicSha256", "leafHash"})
OPTIONAL = frozenset({"body"})
KIND = "version"
#: The longest value of each string field a backup stores (its columns; a signature is a compact JWS).
MAX_LENGTH = {"dppId": 256, "kid": 256, "signature": 4096, "change": 128, "operatorId": 512, "dppStatus": 64}
MAX_POSITION = merkle.MAX_TREE_SIZE - 1

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@dataclass(frozen=True, slots=True)
class VerifiedEntry:
    """A feed entry that passed every step: what a backup stores, and the checkpoint it was proven against."""

    position: int
    dpp_id: str
    version: int
    sha256: str
    kid: str
    leaf_hash: bytes
    body: bytes
    tree_size: int
    root_hash: bytes
    entry: dict[str, Any]


def _fail(step: str, message: str, exc: VerificationError | None = None) -> NoReturn:
    text = f"{step}: {message}"
    if isinstance(exc, ProofError):
        raise ProofError(text, reason=exc.reason) from None
    raise VerificationError(text) from None


def _shape(step: str, entry: object) -> dict[str, Any]:
    if not isinstance(entry, dict):
        _fail(step, f"expected a feed entry (JSON object), got {type(entry).__name__}")
    if entry.get("stored") is False:
        _fail(step, "expected a stored version, got an entry marked stored: false (the repository no longer holds "
                    "the version it logged)")
    missing = sorted(FIELDS - set(entry))
    if missing:
        _fail(step, f"expected every field of a feed entry, got none for {missing}")
    extra = sorted(set(entry) - FIELDS - OPTIONAL)
    if extra:
        _fail(step, f"expected only the feed's fields, got also {extra!r:.200}")
    position, version = entry["position"], entry["version"]
    if type(position) is not int or not 0 <= position <= MAX_POSITION:
        _fail(step, f"position: expected an integer in 0..2**64-2, got {position!r:.40}")
    if type(version) is not int or not 1 <= version <= 2**31 - 1:
        _fail(step, f"version: expected an integer >= 1, got {version!r:.40}")
    if entry["kind"] != KIND:
        _fail(step, f"kind: expected {KIND!r}, got {entry['kind']!r:.40}")
    for name in ("sha256", "publicSha256"):
        value = entry[name]
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            _fail(step, f"{name}: expected 64 lowercase hex digits, got {value!r:.80}")
    if not isinstance(entry["createdAt"], str) or not _TS.fullmatch(entry["createdAt"]):
        _fail(step, f"createdAt: expected a stored timestamp (2027-02-18T10:00:00.000000Z), "
                    f"got {entry['createdAt']!r:.40}")
    for name in ("dppId", "signature", "kid"):
        if not isinstance(entry[name], str) or not entry[name] or len(entry[name]) > MAX_LENGTH[name]:
            _fail(step, f"{name}: expected a non-empty string of at most {MAX_LENGTH[name]} characters, got "
                        f"{entry[name]!r:.80}")
    for name in ("change", "operatorId", "dppStatus"):
        if entry[name] is not None and (not isinstance(entry[name], str) or len(entry[name]) > MAX_LENGTH[name]):
            _fail(step, f"{name}: expected a string of at most {MAX_LENGTH[name]} characters or null, got "
                        f"{entry[name]!r:.80}")
    if "body" in entry and not isinstance(entry["body"], str):
        _fail(step, f"body: expected the canonical text, got {type(entry['body']).__name__}")
    leaf_hash = entry["leafHash"]
    if not isinstance(leaf_hash, str):
        _fail(step, f"leafHash: expected standard base64 of 32 bytes, got {type(leaf_hash).__name__}")
    try:
        raw = base64.b64decode(leaf_hash.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        _fail(step, f"leafHash: expected standard base64 of 32 bytes, got {leaf_hash!r:.80}")
    if len(raw) != merkle.HASH_SIZE or base64.b64encode(raw).decode("ascii") != leaf_hash:
        _fail(step, f"leafHash: expected canonical base64 of {merkle.HASH_SIZE} bytes, got {leaf_hash!r:.80}")
    return entry


def _arguments(step: str, body: object, keys: object, inclusion: object, checkpoint: object) -> list[bytes]:
    if type(body) is not bytes:
        _fail(step, f"body: expected bytes, got {type(body).__name__}")
    if not isinstance(keys, dict) or not all(
            isinstance(k, str) and type(v) is bytes and len(v) == 32 for k, v in keys.items()):
        _fail(step, "keys: expected a dict of kid -> 32-byte Ed25519 public key")
    if isinstance(inclusion, str | bytes | bytearray) or not isinstance(inclusion, Sequence):
        _fail(step, f"inclusion: expected a list of {merkle.HASH_SIZE}-byte hashes, got {type(inclusion).__name__}")
    for i, h in enumerate(inclusion):
        if type(h) is not bytes or len(h) != merkle.HASH_SIZE:
            _fail(step, f"inclusion[{i}]: expected a {merkle.HASH_SIZE}-byte hash, got {h!r:.80}")
    if not isinstance(checkpoint, VerifiedCheckpoint):
        _fail(step, f"checkpoint: expected a VerifiedCheckpoint (from verify_checkpoint), "
                    f"got {type(checkpoint).__name__}")
    return list(inclusion)


def _document(entry: dict[str, Any], body: bytes, keys: dict[str, bytes]) -> bytes:
    """Steps 2-4 (content hash, signature, leaf hash) of an entry whose shape was checked; the leaf hash."""
    digest = hashlib.sha256(body).hexdigest()
    if digest != entry["sha256"]:
        _fail("content hash", f"expected SHA-256 {entry['sha256']} of the body, got {digest}")
    if "body" in entry and entry["body"].encode("utf-8") != body:
        _fail("content hash", "expected the entry's body to be the body verified, got different bytes")

    try:
        kid = verify_version(entry["signature"], body, keys)
    except VerificationError as exc:
        _fail("signature", exc.message, exc)
    if kid != entry["kid"]:
        _fail("signature", f"expected the JWS kid to be the entry's kid {entry['kid']!r:.80}, got {kid!r:.80}")

    try:
        leaf = Leaf(entry["dppId"], entry["version"], entry["sha256"], entry["createdAt"], kid=entry["kid"],
                    public_sha256=entry["publicSha256"])
    except ValueError as exc:
        _fail("leaf hash", f"expected the fields of a passportVersion leaf ({exc})")
    leaf_hash = leaf.leaf_hash()
    if base64.b64encode(leaf_hash).decode("ascii") != entry["leafHash"]:
        _fail("leaf hash", f"expected leafHash {base64.b64encode(leaf_hash).decode('ascii')} (RFC 9162 §2.1.1 "
                           f"over the entry's leaf), got {entry['leafHash']}")
    return leaf_hash


def verify_entry(entry: dict[str, Any], *, body: bytes, keys: dict[str, bytes], inclusion: Sequence[bytes],
                 checkpoint: VerifiedCheckpoint) -> VerifiedEntry:
    """Verify one change-feed entry and its body against the repository's published version keys and a verified
    checkpoint (steps in the module docstring). Returns the ``VerifiedEntry``; raises ``VerificationError``
    (``ProofError`` for the Merkle steps) naming the first failed step."""
    entry = _shape("shape", entry)
    proof = _arguments("shape", body, keys, inclusion, checkpoint)
    leaf_hash = _document(entry, body, keys)

    size, root = checkpoint.checkpoint.size, checkpoint.checkpoint.root_hash
    position = entry["position"]
    if position >= size:
        _fail("tree size", f"expected position < the checkpoint's tree size {size}, got {position}")

    try:
        merkle.verify_inclusion(leaf_hash=leaf_hash, index=position, size=size, proof=proof, root=root)
    except VerificationError as exc:
        _fail("inclusion", f"RFC 9162 §2.1.3.2: {exc.message}", exc)

    return VerifiedEntry(position, entry["dppId"], entry["version"], entry["sha256"], entry["kid"], leaf_hash, body,
                         size, root, entry)


def verify_entry_in_tree(entry: dict[str, Any], *, body: bytes, keys: dict[str, bytes], audited: AuditedTree,
                         leaf_hash: bytes) -> VerifiedEntry:
    """``verify_entry`` for a backup that rebuilt the log's tree itself (``audit_leaves``): steps 1-5 as there,
    and step 6, ``inclusion``, is that the leaf rebuilt from the entry is the leaf ``leaf_hash`` the backup
    holds at the entry's position of ``audited`` — a tree whose root equals a verified checkpoint's, so every
    leaf in it is included (RFC 9162 §2.1.3: an inclusion proof only re-derives that root). Cheaper than a
    proof per entry, and it needs nothing from the repository but the leaves."""
    entry = _shape("shape", entry)
    _arguments("shape", body, keys, [], audited.checkpoint)
    if type(leaf_hash) is not bytes or len(leaf_hash) != merkle.HASH_SIZE:
        _fail("shape", f"leaf_hash: expected {merkle.HASH_SIZE} bytes, got {leaf_hash!r:.80}")
    rebuilt = _document(entry, body, keys)
    size, root = audited.size, audited.root
    position = entry["position"]
    if position >= size:
        _fail("tree size", f"expected position < the audited tree size {size}, got {position}")
    if rebuilt != leaf_hash:
        held, got = base64.b64encode(leaf_hash).decode("ascii"), base64.b64encode(rebuilt).decode("ascii")
        _fail("inclusion", f"expected the entry's leaf to be {held}, the leaf at position {position} of the audited "
                           f"log, got {got} (the feed and the log disagree)")
    return VerifiedEntry(position, entry["dppId"], entry["version"], entry["sha256"], entry["kid"], rebuilt, body,
                         size, root, entry)


# ------------------------------------------------------------------------------------------------ leaf audit
@dataclass(frozen=True, slots=True)
class AuditedTree:
    """A tree the backup rebuilt from the log's leaves whose root equals the verified ``checkpoint``'s."""

    size: int
    root: bytes
    checkpoint: VerifiedCheckpoint


def audit_leaves(frontier: merkle.Frontier, leaves: Sequence[object], *, start: int
                 ) -> tuple[merkle.Frontier, list[merkle.Subtree]]:
    """Append the leaves-API items ``leaves`` (``{"leafIndex", "leafData", "leafHash", …}``, as ``GET
    /api/v1/log/leaves`` serves them) to ``frontier`` (which holds the leaves below ``start``): each must be the
    next index, and its hash is computed here from ``leafData`` (RFC 9162 §2.1.1) and must equal the
    ``leafHash`` served. Returns the extended frontier (a new one: ``frontier`` is not changed) and every complete
    subtree the leaves completed (what a store keeps). Step ``leaves``."""
    if frontier.size != start:
        _fail("leaves", f"expected the audited tree to hold {start} leaves, got {frontier.size}")
    work = frontier.copy()
    completed: list[merkle.Subtree] = []
    for i, item in enumerate(leaves):
        index = start + i
        if not isinstance(item, dict) or item.get("leafIndex") != index:
            got = item.get("leafIndex") if isinstance(item, dict) else type(item).__name__
            _fail("leaves", f"expected leaf {index}, got {got!r:.40}")
        data, served = item.get("leafData"), item.get("leafHash")
        if not isinstance(data, str) or not isinstance(served, str) or len(data) > 64 * 1024:
            _fail("leaves", f"leaf {index}: expected leafData and leafHash (base64), got neither")
        try:
            raw = base64.b64decode(data.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error, ValueError):
            _fail("leaves", f"leaf {index}: leafData is not standard base64")
        leaf_hash = merkle.hash_leaf(raw)
        if base64.b64encode(leaf_hash).decode("ascii") != served:
            _fail("leaves", f"leaf {index}: expected leafHash {base64.b64encode(leaf_hash).decode('ascii')} over its "
                            f"leafData, got {served!r:.60}")
        completed.extend(work.append(leaf_hash))
    return work, completed


def check_audited_root(frontier: merkle.Frontier, checkpoint: VerifiedCheckpoint) -> AuditedTree:
    """The rebuilt tree must have the checkpoint's size and root (step ``leaves``): else the leaves served are
    not the log the repository signed."""
    if not isinstance(checkpoint, VerifiedCheckpoint):
        _fail("leaves", f"checkpoint: expected a VerifiedCheckpoint, got {type(checkpoint).__name__}")
    size, root = checkpoint.checkpoint.size, checkpoint.checkpoint.root_hash
    if frontier.size != size:
        _fail("leaves", f"expected {size} leaves audited, got {frontier.size}")
    got = frontier.root()
    if got != root:
        _fail("leaves", f"expected the leaves to hash to the checkpoint's root {base64.b64encode(root).decode()} at "
                        f"size {size}, got {base64.b64encode(got).decode()} (the leaves served are not the log "
                        "that was signed)")
    return AuditedTree(size, root, checkpoint)


def _tree(step: str, name: str, value: object) -> tuple[int, bytes]:
    if not isinstance(value, tuple) or len(value) != 2:
        _fail(step, f"{name}: expected (size, root), got {type(value).__name__}")
    size, root = value
    if type(size) is not int or not 0 <= size <= merkle.MAX_TREE_SIZE:
        _fail(step, f"{name} size: expected an integer in 0..2**64-1, got {size!r:.40}")
    if type(root) is not bytes or len(root) != merkle.HASH_SIZE:
        _fail(step, f"{name} root: expected {merkle.HASH_SIZE} bytes, got {root!r:.80}")
    return size, root


def verify_checkpoint_step(old: tuple[int, bytes], new: tuple[int, bytes], proof: Sequence[bytes]) -> None:
    """Check that the tree ``new`` (size, root) extends the tree ``old`` a backup saw before (RFC 9162 §2.1.4.2);
    both from verified checkpoints. ``VerificationError`` (step ``checkpoint``): a smaller size is a rollback,
    the same size with another root a fork, a larger one whose consistency ``proof`` (raw 32-byte hashes) does
    not verify a rewritten log."""
    size1, root1 = _tree("checkpoint", "old", old)
    size2, root2 = _tree("checkpoint", "new", new)
    if size2 < size1:
        _fail("checkpoint", f"expected a tree size >= {size1} seen before, got {size2} (a rollback)")
    if size2 == size1 and root2 != root1:
        _fail("checkpoint", f"expected root {root1.hex()} for tree size {size1} seen before, got {root2.hex()} "
                            "(a fork)")
    try:
        merkle.verify_consistency(size1=size1, size2=size2, root1=root1, root2=root2, proof=proof)
    except VerificationError as exc:
        _fail("checkpoint", f"RFC 9162 §2.1.4.2 consistency from {size1} to {size2}: {exc.message}", exc)

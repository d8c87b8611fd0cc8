"""Evidence bundles: everything needed to check one passport version offline, in one JSON document.

A bundle (``format`` ``dbp.evidence/1``)::

    {"format": "dbp.evidence/1", "dppId": …, "version": …, "view": "full" | "public",
     "document": "<the canonical bytes (RFC 8785) of the version, or of its public view, as a string>",
     "signature": "<detached compact JWS of the full version>" | null (public view),
     "leafIndex": n, "leaf": {<the log leaf's members>},
     "treeSize": N, "inclusionProof": ["<base64 hash>", …],
     "checkpoint": "<C2SP signed note of the tree of N leaves>", "origin": "<log origin>",
     "keys": [{"jwk": {<RFC 8037 public JWK>}, "createdAt": …, "retiredAt": … | null}, …],
     "issuedAt": …}

``view`` says what ``document`` is: the full version (for callers who may read all of it) is signed
(``signature``) and its SHA-256 is the leaf's ``sha256``; the public view (Annex XIII point 1, everyone else) is
not signed on its own, its SHA-256 is the leaf's ``publicSha256`` and it is authenticated through the signed
checkpoint. ``keys`` are the repository's keys (the same Ed25519 keys sign versions and checkpoints), each with
the period it signed in; a verifier that knows the keys another way (``dbp verify --url``, a pinned key) checks
them against these.

``parse_bundle`` accepts only this shape (``ProofError`` "expected X, got Y", reason ``malformed-bundle``);
``bundle_json`` of what it returns gives back an equal document. ``gather`` builds a bundle from the log.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.orm import Session

from dbp.errors import NotFound, ProofError
from dbp.integrity import log, signing
from dbp.integrity.checkpoint import MAX_NOTE_BYTES

FORMAT = "dbp.evidence/1"
MEDIA_TYPE = "application/json"
#: A bundle holds one passport (the data model caps documents well below this) and a proof of <= 64 hashes.
MAX_BUNDLE_BYTES = 8 * 1024 * 1024
MAX_KEYS = 100
VIEWS = ("full", "public")


@dataclass(frozen=True)
class KeyPeriod:
    """A repository key (raw Ed25519 public key) and the period it signed in (``retired_at`` None: still)."""

    kid: str
    public_key: bytes
    created_at: str
    retired_at: str | None

    def as_json(self) -> dict[str, Any]:
        return {"jwk": {"kty": "OKP", "crv": "Ed25519", "x": signing.b64url(self.public_key), "kid": self.kid,
                        "alg": signing.ALG, "use": "sig"},
                "createdAt": self.created_at, "retiredAt": self.retired_at}


@dataclass(frozen=True)
class Bundle:
    dpp_id: str
    version: int
    view: str
    document: bytes
    signature: str | None
    leaf_index: int
    leaf: dict[str, Any]
    tree_size: int
    inclusion_proof: tuple[bytes, ...]
    checkpoint: str
    origin: str
    keys: tuple[KeyPeriod, ...]
    issued_at: str

    def as_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "dppId": self.dpp_id, "version": self.version, "view": self.view,
                "document": self.document.decode("utf-8"), "signature": self.signature,
                "leafIndex": self.leaf_index, "leaf": self.leaf, "treeSize": self.tree_size,
                "inclusionProof": [base64.b64encode(h).decode("ascii") for h in self.inclusion_proof],
                "checkpoint": self.checkpoint, "origin": self.origin, "keys": [k.as_json() for k in self.keys],
                "issuedAt": self.issued_at}


def bundle_json(bundle: Bundle) -> bytes:
    return orjson.dumps(bundle.as_json(), option=orjson.OPT_INDENT_2)


# --- parsing ----------------------------------------------------------------------------------------------------


def _refuse(message: str) -> ProofError:
    return ProofError(f"evidence bundle: {message}", reason="malformed-bundle")


def _member(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], *, nullable: bool = False) -> Any:
    if name not in obj:
        raise _refuse(f"expected member {name!r}, got none")
    value = obj[name]
    if value is None and nullable:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _refuse(f"{name}: expected {names}, got {type(value).__name__}")
    return value


def _b64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise _refuse(f"{what}: expected a base64 string, got {type(text).__name__}")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise _refuse(f"{what}: expected standard base64, got {text!r:.60}") from None
    return data


def jwk_key(jwk: object, what: str) -> tuple[str, bytes]:
    """(kid, raw public key) of an RFC 8037 Ed25519 public JWK; ``ProofError`` (``malformed-bundle``) otherwise."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" \
            or not isinstance(jwk.get("kid"), str):
        raise _refuse(f"{what}: expected an OKP Ed25519 key with a kid, got {jwk!r:.120}")
    x = jwk.get("x")
    try:
        public = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)) if isinstance(x, str) else b""
    except (binascii.Error, ValueError):
        public = b""
    if len(public) != 32:
        raise _refuse(f"{what}.x: expected a base64url 32-byte Ed25519 key, got {x!r:.60}")
    return jwk["kid"], public


def _key(entry: object, i: int) -> KeyPeriod:
    if not isinstance(entry, dict):
        raise _refuse(f"keys[{i}]: expected an object, got {type(entry).__name__}")
    kid, public = jwk_key(_member(entry, "jwk", dict), f"keys[{i}].jwk")
    return KeyPeriod(kid, public, _member(entry, "createdAt", str), _member(entry, "retiredAt", str, nullable=True))


def parse_bundle(data: bytes | str | dict[str, Any]) -> Bundle:
    """A bundle from its JSON (bytes, text or already parsed). ``ProofError`` (``malformed-bundle``) for anything
    that is not exactly the documented shape."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, bytes):
        if len(data) > MAX_BUNDLE_BYTES:
            raise _refuse(f"expected at most {MAX_BUNDLE_BYTES} bytes, got {len(data)}")
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise _refuse(f"expected JSON, got {exc}") from None
    if not isinstance(data, dict):
        raise _refuse(f"expected a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise _refuse(f"format: expected {FORMAT!r}, got {data.get('format')!r:.60}")
    view = _member(data, "view", str)
    if view not in VIEWS:
        raise _refuse(f"view: expected one of {', '.join(VIEWS)}, got {view!r:.40}")
    signature = _member(data, "signature", str, nullable=True)
    if (signature is None) != (view == "public"):
        raise _refuse("signature: expected one for the full view and none for the public view")
    proof = _member(data, "inclusionProof", list)
    if len(proof) > 64:
        raise _refuse(f"inclusionProof: expected at most 64 hashes, got {len(proof)}")
    keys = _member(data, "keys", list)
    if not 0 < len(keys) <= MAX_KEYS:
        raise _refuse(f"keys: expected 1..{MAX_KEYS} keys, got {len(keys)}")
    checkpoint = _member(data, "checkpoint", str)
    if len(checkpoint) > MAX_NOTE_BYTES:
        raise _refuse(f"checkpoint: expected at most {MAX_NOTE_BYTES} characters, got {len(checkpoint)}")
    known = set(data) - {"format", "dppId", "version", "view", "document", "signature", "leafIndex", "leaf",
                         "treeSize", "inclusionProof", "checkpoint", "origin", "keys", "issuedAt"}
    if known:
        raise _refuse(f"expected no other members, got {sorted(known)!r:.120}")
    return Bundle(
        dpp_id=_member(data, "dppId", str), version=_member(data, "version", int), view=view,
        document=_member(data, "document", str).encode("utf-8"), signature=signature,
        leaf_index=_member(data, "leafIndex", int), leaf=_member(data, "leaf", dict),
        tree_size=_member(data, "treeSize", int),
        inclusion_proof=tuple(_b64(h, f"inclusionProof[{i}]") for i, h in enumerate(proof)),
        checkpoint=checkpoint, origin=_member(data, "origin", str),
        keys=tuple(_key(k, i) for i, k in enumerate(keys)), issued_at=_member(data, "issuedAt", str))


# --- building ---------------------------------------------------------------------------------------------------


def key_periods(session: Session, *, secret_key: str | None = None) -> tuple[KeyPeriod, ...]:
    """Every repository key with the period it signed in, oldest first."""
    return tuple(KeyPeriod(row.kid, bytes(row.public_key), row.created_at, row.retired_at)
                 for row in signing.public_keys(session, secret_key=secret_key))


def gather(session: Session, *, dpp_id: str, version: int, view: str, document: bytes, signature: str | None,
           origin: str, issued_at: str) -> Bundle:
    """The bundle of ``document`` (the version's canonical bytes, or its public view's) from the log: its leaf,
    the inclusion proof in the latest signed checkpoint, and the repository's keys. ``NotFound`` when the version
    is not logged yet or not covered by the latest checkpoint (one is made every second)."""
    stored = log.find_leaf(session, dpp_id=dpp_id, version=version)
    latest = log.require_checkpoint(session)
    if stored.index >= latest.size:
        raise NotFound(f"version {version} of passport {dpp_id} is not yet covered by a signed checkpoint; "
                       "one is made every second, retry shortly")
    proof = log.inclusion_proof(session, index=stored.index, size=latest.size)
    return Bundle(dpp_id=dpp_id, version=version, view=view, document=document, signature=signature,
                  leaf_index=stored.index, leaf=stored.leaf.as_json(), tree_size=latest.size,
                  inclusion_proof=tuple(proof), checkpoint=latest.note, origin=origin, keys=key_periods(session),
                  issued_at=issued_at)

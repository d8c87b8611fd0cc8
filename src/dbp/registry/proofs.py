"""Proofs of registration (IR 2026/1778 Art. 9): what the registry signs when it registers a passport, and the
reference verification. Pure: no database, no network.

A proof is a compact JWS (RFC 7515 §7.1) whose payload is the RFC 8785 canonical JSON of::

    {"type": "dbp.registrationProof/1", "registrationId", "revision", "uniqueProductIdentifier", "dppId",
     "economicOperatorId", "facilityId", "commodityCode", "granularity", "dppVersion", "versionHash",
     "etagVerified", "registeredAt", "issuedAt", "registry"}

``versionHash`` is the SHA-256 (hex) of the exact bytes the registry read at the repository's
``GET /api/v1/dpps/{dppId}`` (the public view: the repository's ``ETag`` and its transparency log's
``publicSha256`` for that version); ``etagVerified`` says whether the repository's ``ETag`` was present and
equal to it. The protected header is ``{"alg":"EdDSA","kid":"<registry key id>","typ":"dbp-registration+jws"}``
(RFC 8037 EdDSA over Ed25519), signed by the registry node's active key; ``kid`` names a key of the registry's
JWK Set (``/.well-known/jwks.json``, retired keys stay published).

``verify_proof`` fails closed and checks preconditions first, each refusal a ``VerificationError("expected X,
got Y")``: size and shape (three non-empty unpadded canonical base64url parts — non-zero trailing bits refused, so one
token per signature —: trailing garbage is a fourth part or a
character outside the alphabet), header (a JSON object of exactly alg/kid/typ, no duplicate members, ``alg``
EdDSA — never ``none`` —, ``typ`` ours, ``kid`` a published key), the Ed25519 signature over ASCII(header "."
payload) (RFC 7515 §5.2 step 8), then the payload (canonical JSON, so one byte string per proof; type
``dbp.registrationProof/1``; every member present with its type).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from dbp.errors import VerificationError
from dbp.integrity.canonical import DuplicateMember, canonical_bytes, unique_members

PROOF_TYPE = "dbp.registrationProof/1"
TYP = "dbp-registration+jws"
ALG = "EdDSA"
MAX_PROOF_BYTES = 64 * 1024
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_HEX64 = re.compile(r"[0-9a-f]{64}")

#: Payload members and their JSON types (``None`` allowed where the registration may lack the value).
FIELDS: dict[str, tuple[type, ...]] = {
    "type": (str,), "registrationId": (str,), "revision": (int,), "uniqueProductIdentifier": (str,),
    "dppId": (str,), "economicOperatorId": (str,), "facilityId": (str, type(None)),
    "commodityCode": (str, type(None)), "granularity": (str,), "dppVersion": (int,), "versionHash": (str,),
    "etagVerified": (bool,), "registeredAt": (str,), "issuedAt": (str,), "registry": (str,),
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str, what: str) -> bytes:
    if not text or not _B64URL.fullmatch(text):
        raise VerificationError(f"{what}: expected unpadded base64url, got {text!r:.40}")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise VerificationError(f"{what}: expected unpadded base64url, got {text!r:.40}") from None
    if b64url(raw) != text:  # non-zero trailing bits: another spelling of the same bytes (RFC 4648 §3.5)
        raise VerificationError(f"{what}: expected canonical base64url (zero trailing bits, RFC 4648 §3.5), got "
                                f"{text[-8:]!r} at the end")
    return raw


def header(kid: str) -> dict[str, str]:
    return {"alg": ALG, "kid": kid, "typ": TYP}


def sign_proof(payload: Mapping[str, Any], *, kid: str, private_key: Ed25519PrivateKey) -> str:
    """The compact JWS of ``payload`` (header and payload RFC 8785 canonical JSON). ``VerificationError`` for a
    payload that is not a proof payload (a programming error: nothing unverifiable is ever signed)."""
    check_payload(dict(payload))
    head = b64url(canonical_bytes(header(kid)))
    body = b64url(canonical_bytes(dict(payload)))
    signature = private_key.sign(f"{head}.{body}".encode("ascii"))
    return f"{head}.{body}.{b64url(signature)}"


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw, object_pairs_hook=unique_members)
    except DuplicateMember as exc:
        raise VerificationError(f"{what}: expected unique member names, got {exc.args[0]!r} twice") from None
    except (ValueError, RecursionError):
        raise VerificationError(f"{what}: expected a JSON object, got {raw[:40]!r}") from None
    if not isinstance(value, dict):
        raise VerificationError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def check_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` is a proof payload: the type, exactly the members of :data:`FIELDS` with their types."""
    if payload.get("type") != PROOF_TYPE:
        raise VerificationError(f"proof payload type: expected {PROOF_TYPE}, got {payload.get('type')!r:.80}")
    if set(payload) != set(FIELDS):
        missing, extra = sorted(set(FIELDS) - set(payload)), sorted(set(payload) - set(FIELDS))
        raise VerificationError(f"proof payload members: expected {sorted(FIELDS)}, got missing {missing} and "
                                f"unknown {extra}")
    for name, types in FIELDS.items():
        value = payload[name]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise VerificationError(f"proof payload {name}: expected {' or '.join(t.__name__ for t in types)}, "
                                    f"got {type(value).__name__}")
    if not _HEX64.fullmatch(payload["versionHash"]):
        raise VerificationError(f"proof payload versionHash: expected 64 lowercase hex digits, got "
                                f"{payload['versionHash']!r:.80}")
    if payload["revision"] < 1 or payload["dppVersion"] < 1:
        raise VerificationError(f"proof payload revision and dppVersion: expected >= 1, got {payload['revision']} "
                                f"and {payload['dppVersion']}")
    return payload


def kid_of(token: str) -> str | None:
    """The ``kid`` the proof's header names (unverified: to pick a key or say which is unknown); None if unreadable."""
    try:
        head = _json_object(_unb64url(token.split(".", 1)[0], "proof header"), "proof header")
    except VerificationError:
        return None
    kid = head.get("kid")
    return kid if isinstance(kid, str) else None


def verify_proof(token: object, keys: Mapping[str, bytes], *, max_bytes: int = MAX_PROOF_BYTES) -> dict[str, Any]:
    """The payload of a valid proof signed by one of ``keys`` (kid → raw 32-byte Ed25519 public key); otherwise
    ``VerificationError("expected X, got Y")`` naming the first check that failed."""
    if not isinstance(token, str):
        raise VerificationError(f"proof: expected a compact JWS string, got {type(token).__name__}")
    if len(token) > max_bytes:
        raise VerificationError(f"proof: expected at most {max_bytes} bytes, got {len(token)}")
    parts = token.split(".")
    if len(parts) != 3:
        raise VerificationError(f"proof: expected a compact JWS of 3 parts (RFC 7515 §7.1), got {len(parts)}")
    head_b64, body_b64, sig_b64 = parts
    head = _json_object(_unb64url(head_b64, "proof header"), "proof header")
    if head.get("alg") != ALG:
        raise VerificationError(f"proof header alg: expected {ALG}, got {head.get('alg')!r:.40}")
    if set(head) != {"alg", "kid", "typ"}:
        raise VerificationError(f"proof header: expected exactly alg, kid and typ, got {sorted(head)!r:.120}")
    if head.get("typ") != TYP:
        raise VerificationError(f"proof header typ: expected {TYP}, got {head.get('typ')!r:.60}")
    kid = head.get("kid")
    public = keys.get(kid) if isinstance(kid, str) else None
    if public is None:
        raise VerificationError(f"proof header kid: expected a key the registry publishes ({sorted(keys)!r:.200}), "
                                f"got {kid!r:.80}")
    signature = _unb64url(sig_b64, "proof signature")
    body = _unb64url(body_b64, "proof payload")
    if len(signature) != 64:
        raise VerificationError(f"proof signature: expected 64 bytes (Ed25519), got {len(signature)}")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, f"{head_b64}.{body_b64}".encode("ascii"))
    except (InvalidSignature, ValueError):
        raise VerificationError(f"proof signature: expected a valid EdDSA signature by {kid}, got an invalid "
                                "one") from None
    payload = _json_object(body, "proof payload")
    if canonical_bytes(payload) != body:
        raise VerificationError("proof payload: expected RFC 8785 canonical JSON, got another serialisation")
    return check_payload(payload)


def keys_from_jwks(jwks: object) -> dict[str, bytes]:
    """kid → raw Ed25519 public key of every usable key of an RFC 7517 JWK Set (OKP / Ed25519, RFC 8037 §2);
    ``VerificationError`` for something that is not a JWK Set. Keys of other types are skipped."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise VerificationError("registry keys: expected a JWK Set {\"keys\": [...]}, got something else")
    out: dict[str, bytes] = {}
    for key in jwks["keys"]:
        if not isinstance(key, dict) or key.get("kty") != "OKP" or key.get("crv") != "Ed25519":
            continue
        kid, x = key.get("kid"), key.get("x")
        if not isinstance(kid, str) or not isinstance(x, str) or "d" in key:
            continue
        raw = _unb64url(x, f"JWK {kid!r:.40} x")
        if len(raw) == 32:
            out[kid] = raw
    return out


def summary(payload: Mapping[str, Any]) -> str:
    """One line for people: what the proof says."""
    return (f"{payload['registrationId']} revision {payload['revision']}: {payload['uniqueProductIdentifier']} "
            f"(passport {payload['dppId']} v{payload['dppVersion']}, sha-256 {payload['versionHash']}) by "
            f"{payload['economicOperatorId']} at {payload['registeredAt']}, registry {payload['registry']}")


def dumps(payload: Mapping[str, Any]) -> bytes:
    return orjson.dumps(dict(payload))

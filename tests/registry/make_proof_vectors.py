"""Writes vectors/proof_vectors.json: proofs of registration signed with fixed Ed25519 keys (RFC 8032 test key 1
and a second one), each with what ``dbp.registry.proofs.verify_proof`` must answer. Run from the repository root:
``.venv/bin/python tests/registry/make_proof_vectors.py``."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from dbp.integrity.canonical import canonical_bytes
from dbp.registry import proofs

KEY = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KID = "k-registry-1"
NONE = b'{"alg":"none","kid":"k-registry-1","typ":"dbp-registration+jws"}'
PAYLOAD: dict[str, Any] = {
    "type": proofs.PROOF_TYPE, "registrationId": "urn:dbp:registration:6f1c2b9e-0d4a-4a53-9d0e-1b2c3d4e5f60",
    "revision": 1, "uniqueProductIdentifier": "https://id.dbp.example/01/05904417101006/21/PO101000000001",
    "dppId": "urn:uuid:0b9e0c5e-1111-4222-8333-444455556666", "economicOperatorId": "5904417000002",
    "facilityId": "5904417000101", "commodityCode": "850760", "granularity": "item", "dppVersion": 3,
    "versionHash": "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8", "etagVerified": True,
    "registeredAt": "2027-02-18T10:00:00.000000Z", "issuedAt": "2027-02-18T10:00:00.000000Z",
    "registry": "https://registry.example"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_sign(header: bytes, payload: bytes, key: Ed25519PrivateKey = KEY) -> str:
    signing_input = f"{b64(header)}.{b64(payload)}"
    return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


def _sibling(last: str) -> str:
    """Another base64url character with the same top two bits (the ones a 64-byte value's last character carries):
    the same bytes decoded, a different spelling."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return alphabet[alphabet.index(last) ^ 1]


def main() -> None:
    good = proofs.sign_proof(PAYLOAD, kid=KID, private_key=KEY)
    head, body, sig = good.split(".")
    header = canonical_bytes(proofs.header(KID))
    flipped = bytearray(base64.urlsafe_b64decode(sig + "=="))
    flipped[10] ^= 0x01
    tampered = dict(PAYLOAD, dppVersion=4)
    vectors = [
        {"name": "valid", "token": good, "valid": True},
        {"name": "alg-none", "token": f"{b64(NONE)}.{body}.", "error": "alg: expected EdDSA, got 'none'"},
        {"name": "alg-hs256", "token": raw_sign(b'{"alg":"HS256","kid":"k-registry-1","typ":"dbp-registration+jws"}',
                                                canonical_bytes(PAYLOAD)), "error": "expected EdDSA, got 'HS256'"},
        {"name": "tampered-payload", "token": f"{head}.{b64(canonical_bytes(tampered))}.{sig}",
         "error": "expected a valid EdDSA signature"},
        {"name": "modified-signature-bit", "token": f"{head}.{body}.{b64(bytes(flipped))}",
         "error": "expected a valid EdDSA signature"},
        {"name": "wrong-key", "token": raw_sign(header, canonical_bytes(PAYLOAD), OTHER),
         "error": "expected a valid EdDSA signature"},
        {"name": "unknown-kid", "token": proofs.sign_proof(PAYLOAD, kid="k-elsewhere", private_key=KEY),
         "error": "kid: expected a key the registry publishes"},
        {"name": "trailing-garbage-part", "token": good + ".AAAA", "error": "expected a compact JWS of 3 parts"},
        {"name": "trailing-garbage-bytes", "token": good + "==", "error": "proof signature: expected unpadded"},
        {"name": "trailing-garbage-space", "token": good + " ", "error": "proof signature: expected unpadded"},
        {"name": "short-signature", "token": f"{head}.{body}.{sig[:40]}", "error": "expected 64 bytes"},
        {"name": "empty-payload", "token": f"{head}..{sig}", "error": "proof payload: expected unpadded"},
        {"name": "header-not-json", "token": f"{b64(b'not json')}.{body}.{sig}", "error": "proof header: expected"},
        {"name": "header-duplicate-alg", "token": raw_sign(
            b'{"alg":"EdDSA","alg":"EdDSA","kid":"k-registry-1","typ":"dbp-registration+jws"}',
            canonical_bytes(PAYLOAD)), "error": "expected unique member names"},
        {"name": "header-crit", "token": raw_sign(
            b'{"alg":"EdDSA","crit":["x"],"kid":"k-registry-1","typ":"dbp-registration+jws","x":1}',
            canonical_bytes(PAYLOAD)), "error": "expected exactly alg, kid and typ"},
        {"name": "wrong-typ", "token": raw_sign(b'{"alg":"EdDSA","kid":"k-registry-1","typ":"JWT"}',
                                                canonical_bytes(PAYLOAD)), "error": "typ: expected"},
        {"name": "wrong-payload-type", "token": raw_sign(header, canonical_bytes(dict(PAYLOAD, type="other/1"))),
         "error": "proof payload type: expected dbp.registrationProof/1"},
        {"name": "missing-member", "token": raw_sign(header, canonical_bytes(
            {k: v for k, v in PAYLOAD.items() if k != "versionHash"})), "error": "missing ['versionHash']"},
        {"name": "bad-version-hash", "token": raw_sign(header, canonical_bytes(dict(PAYLOAD, versionHash="AB"))),
         "error": "versionHash: expected 64 lowercase hex digits"},
        {"name": "revision-as-string", "token": raw_sign(header, canonical_bytes(dict(PAYLOAD, revision="1"))),
         "error": "revision: expected int"},
        {"name": "not-canonical-payload", "token": raw_sign(header, json.dumps(PAYLOAD, indent=1).encode()),
         "error": "expected RFC 8785 canonical JSON"},
        {"name": "non-canonical-base64", "token": f"{head}.{body}.{sig[:-1]}{_sibling(sig[-1])}",
         "error": "proof signature: expected canonical base64url"},
        {"name": "payload-array", "token": raw_sign(header, b"[1]"), "error": "proof payload: expected a JSON object"},
    ]
    public = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    out = {"keys": {KID: b64(public)}, "payload": PAYLOAD, "vectors": vectors}
    path = Path(__file__).parent / "vectors" / "proof_vectors.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {len(vectors)} vectors to {path}")


if __name__ == "__main__":
    main()

"""Proofs of registration from JSON vectors (tests/registry/vectors, written by make_proof_vectors.py): the valid
one verifies, every named mutation is refused with its "expected X, got Y" reason."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from dbp.errors import VerificationError
from dbp.registry import proofs

VECTORS = json.loads((Path(__file__).parent / "vectors" / "proof_vectors.json").read_text())
KEYS = {kid: base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)) for kid, x in VECTORS["keys"].items()}


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=[v["name"] for v in VECTORS["vectors"]])
def test_vector(vector: dict[str, Any]) -> None:
    if vector.get("valid"):
        assert proofs.verify_proof(vector["token"], KEYS) == VECTORS["payload"]
        return
    with pytest.raises(VerificationError) as caught:
        proofs.verify_proof(vector["token"], KEYS)
    assert vector["error"] in caught.value.message
    assert "expected" in caught.value.message


def test_every_mutation_is_named_once() -> None:
    names = [v["name"] for v in VECTORS["vectors"]]
    assert len(names) == len(set(names))
    assert {"alg-none", "tampered-payload", "wrong-key", "unknown-kid", "trailing-garbage-part",
            "modified-signature-bit"} <= set(names)


def test_no_keys_and_non_strings_fail_closed() -> None:
    good = VECTORS["vectors"][0]["token"]
    with pytest.raises(VerificationError, match="kid: expected a key"):
        proofs.verify_proof(good, {})
    for value in (None, 1, b"bytes", ["a"]):
        with pytest.raises(VerificationError, match="expected a compact JWS string"):
            proofs.verify_proof(value, KEYS)
    with pytest.raises(VerificationError, match="at most"):
        proofs.verify_proof("a" * (proofs.MAX_PROOF_BYTES + 1), KEYS)


def test_signing_refuses_what_it_could_not_verify() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    with pytest.raises(VerificationError):
        proofs.sign_proof({**VECTORS["payload"], "type": "x"}, kid="k", private_key=Ed25519PrivateKey.generate())


def test_jwks_parsing_keeps_only_public_ed25519_keys() -> None:
    x = VECTORS["keys"]["k-registry-1"]
    keys = proofs.keys_from_jwks({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": x},
        {"kty": "OKP", "crv": "Ed25519", "kid": "private", "x": x, "d": x},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": x, "y": x},
        {"kty": "OKP", "crv": "Ed25519", "kid": "short", "x": "AAAA"}, "junk"]})
    assert list(keys) == ["a"]
    bad: object
    for bad in ({}, [], {"keys": {}}, None):
        with pytest.raises(VerificationError):
            proofs.keys_from_jwks(bad)

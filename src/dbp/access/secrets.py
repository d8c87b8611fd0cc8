"""Secrets: random credentials, their hashes, password hashing (argon2id) and encryption at rest.

Client secrets and device keys are 256 random bits, so a single SHA-256 is a sufficient verifier
(no dictionary to attack); people's passwords get argon2id. Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.fernet import Fernet, InvalidToken

DEVELOPMENT_SECRET = "dbp-development-secret-do-not-use-in-production"
_HASHER = PasswordHasher()


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def matches_sha256(value: str, expected_hex: str) -> bool:
    return hmac.compare_digest(sha256_hex(value), expected_hex)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password: str, stored: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"dbp/signing-key-encryption/" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(secret_key: str, plaintext: bytes) -> str:
    return _fernet(secret_key).encrypt(plaintext).decode()


def decrypt(secret_key: str, token: str) -> bytes:
    """Raises ValueError when the data was encrypted under another key or tampered with."""
    try:
        return _fernet(secret_key).decrypt(token.encode())
    except InvalidToken as exc:
        raise ValueError("cannot decrypt: wrong DBP_SECRET_KEY or tampered data") from exc

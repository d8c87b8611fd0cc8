"""Signed passport versions: the repository's Ed25519 key (the one in ``log_keys`` that signs checkpoints) signs
every version's canonical bytes as a compact JWS with a detached payload (RFC 7515 §7.1 and Appendix F)::

    BASE64URL(header) + ".." + BASE64URL(Ed25519(ASCII(BASE64URL(header) + "." + BASE64URL(canonical bytes))))

with the header ``{"alg":"EdDSA","kid":"<log key id>","typ":"dbp-version+jws"}`` (RFC 8037 EdDSA, no padding).
A verifier rebuilds the signing input from the canonical bytes it was served and checks the signature with the
public key ``kid`` names in ``/.well-known/jwks.json`` (retired keys stay published).

**Who signs.** A writer calls ``sign_version(session, canonical)``; the signer is the ``VersionSigner`` attached
to the session's factory (``attach``, done by ``create_app`` with DBP_SECRET_KEY), else a process-wide one whose
secret is DBP_SECRET_KEY from the environment or the development secret (the CLI, scripts). The active key's id is
read in the caller's transaction (a rotation — ``log.rotate_key``, ``dbp keys rotate`` — is followed at once) and
the decrypted key cached once it is known to be committed (it existed before this transaction); a key created
here — the very first version of an empty repository — is used but not cached, so a rollback leaves nothing
signed with a key that does not exist. Fails closed: a key that cannot be decrypted, or
whose private half is not its public half's, raises ``VerificationError``.

``verify_version`` is the reference check (``VerificationError("expected X, got Y")``); ``jwks`` and
``did_document`` publish every key.
"""

from __future__ import annotations

import base64
import binascii
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dbp.errors import VerificationError
from dbp.integrity import log
from dbp.integrity.models import LogKey

TYP = "dbp-version+jws"
ALG = "EdDSA"
#: ``Session.info`` key of the attached ``VersionSigner``.
SIGNER = "dbp.version_signer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str, what: str) -> bytes:
    """Unpadded base64url (RFC 7515 §2) to bytes; ``VerificationError`` naming ``what`` otherwise."""
    if not text or "=" in text:
        raise VerificationError(f"{what}: expected unpadded base64url, got {text!r:.40}")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise VerificationError(f"{what}: expected unpadded base64url, got {text!r:.40}") from None


def protected_header(kid: str) -> str:
    """BASE64URL of the JWS protected header for ``kid`` (members in a fixed order)."""
    return b64url(orjson.dumps({"alg": ALG, "kid": kid, "typ": TYP}))


@dataclass(frozen=True)
class VersionKey:
    kid: str
    private_key: Ed25519PrivateKey
    header: str  # protected_header(kid)

    def sign(self, canonical: bytes) -> str:
        """The detached compact JWS of ``canonical``."""
        signature = self.private_key.sign(f"{self.header}.{b64url(canonical)}".encode("ascii"))
        return f"{self.header}..{b64url(signature)}"


class VersionSigner:
    """Signs versions with the repository's active key, decrypted with ``secret_key``; thread-safe."""

    def __init__(self, *, secret_key: str) -> None:
        self.secret_key = secret_key
        self._key: VersionKey | None = None
        self._lock = threading.Lock()

    def key(self, session: Session) -> VersionKey:
        """The active key, looked up in the caller's transaction (one small query: a rotation by another process
        is followed at once), decrypted once per key."""
        cached = self._key
        if cached is not None and cached.kid == log.active_kid(session):
            return cached
        row, private, created = log.load_key(session, secret_key=self.secret_key)
        key = VersionKey(row.kid, private, protected_header(row.kid))
        if not created:
            with self._lock:
                self._key = key
        return key

    def sign(self, session: Session, canonical: bytes) -> str:
        return self.key(session).sign(canonical)


def attach(factory: sessionmaker[Session], signer: VersionSigner) -> None:
    """Sessions of ``factory`` sign versions with ``signer``."""
    info = dict(factory.kw.get("info") or {})
    info[SIGNER] = signer
    factory.configure(info=info)


_default: VersionSigner | None = None
_default_lock = threading.Lock()


def _default_signer() -> VersionSigner:
    global _default
    with _default_lock:
        if _default is None:
            from dbp.access.secrets import DEVELOPMENT_SECRET
            from dbp.config import Settings

            _default = VersionSigner(secret_key=Settings().secret_key or DEVELOPMENT_SECRET)
        return _default


def signer_of(session: Session) -> VersionSigner:
    signer = session.info.get(SIGNER)
    return signer if isinstance(signer, VersionSigner) else _default_signer()


def sign_version(session: Session, canonical: bytes) -> str:
    """The detached JWS of a version's canonical bytes, by the repository's active key."""
    return signer_of(session).sign(session, canonical)


def kid_of(jws: str) -> str:
    """The ``kid`` of a detached JWS this module made (its header is ``protected_header(kid)``);
    ``VerificationError`` for anything else."""
    header_b64 = jws.split(".", 1)[0]
    try:
        header = orjson.loads(unb64url(header_b64, "JWS header"))
    except orjson.JSONDecodeError:
        raise VerificationError("JWS header: expected a JSON object") from None
    kid = header.get("kid") if isinstance(header, dict) else None
    if not isinstance(kid, str) or protected_header(kid) != header_b64:
        raise VerificationError(f"JWS header: expected {{alg, kid, typ}} as this repository signs, got {header!r:.120}")
    return kid


# --- verification and publication ------------------------------------------------------------------------------


def verify_version(jws: str, canonical: bytes, keys: dict[str, bytes]) -> str:
    """Check ``jws`` (detached compact form) over ``canonical`` with the raw Ed25519 public key its kid names in
    ``keys``; returns the kid. ``VerificationError`` for anything else."""
    parts = jws.split(".")
    if len(parts) != 3 or parts[1] != "":
        raise VerificationError("version signature: expected a detached compact JWS (header..signature)")
    header_b64, _, sig_b64 = parts
    try:
        header = orjson.loads(unb64url(header_b64, "JWS header"))
    except orjson.JSONDecodeError:
        raise VerificationError("JWS header: expected a JSON object") from None
    if not isinstance(header, dict) or header.get("alg") != ALG or header.get("typ") != TYP:
        raise VerificationError(f"JWS header: expected alg {ALG} and typ {TYP}, got {header!r:.120}")
    kid = header.get("kid")
    public = keys.get(kid) if isinstance(kid, str) else None
    if public is None:
        raise VerificationError(f"JWS header: expected the kid of a published key, got {kid!r:.80}")
    signature = unb64url(sig_b64, "JWS signature")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature,
                                                           f"{header_b64}.{b64url(canonical)}".encode("ascii"))
    except (InvalidSignature, ValueError):
        raise VerificationError(f"version signature: expected a valid EdDSA signature by {kid}, got an "
                                "invalid one") from None
    return str(kid)


def public_keys(session: Session, *, secret_key: str | None = None) -> list[LogKey]:
    """Every repository key, current and retired, oldest first; with ``secret_key`` only those this repository
    made (``authentic``): a key written into ``log_keys`` with database access alone is never published."""
    rows = list(session.scalars(select(LogKey).order_by(LogKey.created_at, LogKey.kid)))
    return rows if secret_key is None else [row for row in rows if authentic(row, secret_key)]


_authentic: dict[tuple[str, bytes, str, str], bool] = {}  # Fernet decryption is ~50 µs: once per key and secret


def authentic(row: LogKey, secret_key: str) -> bool:
    """Does ``row``'s private half decrypt with ``secret_key`` to its public half?"""
    key = (row.kid, bytes(row.public_key), row.private_encrypted, secret_key)
    known = _authentic.get(key)
    if known is None:
        try:
            log.decrypt_key(row, secret_key)
            known = True
        except VerificationError:
            known = False
        if len(_authentic) > 1000:
            _authentic.clear()
        _authentic[key] = known
    return known


def jwk(row: LogKey) -> dict[str, Any]:
    """RFC 8037 §2 public JWK of a key."""
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(row.public_key)), "kid": row.kid, "alg": ALG,
            "use": "sig"}


def jwks(session: Session, *, secret_key: str | None = None) -> dict[str, Any]:
    """RFC 7517 §5 JWK Set of every key; retired ones stay for verifying what they signed."""
    return {"keys": [jwk(row) for row in public_keys(session, secret_key=secret_key)]}


def did_of(base_url: str) -> str:
    """The did:web identifier of the repository at ``base_url`` (its host; a port's colon percent-encoded)."""
    return "did:web:" + quote(urlsplit(base_url).netloc, safe="")


def did_document(session: Session, *, base_url: str, secret_key: str | None = None) -> dict[str, Any]:
    """The did:web DID document: every key as a JsonWebKey2020 verification method; the active ones (not
    retired) are also its assertion methods."""
    did = did_of(base_url)
    rows = public_keys(session, secret_key=secret_key)
    methods = [{"id": f"{did}#{row.kid}", "type": "JsonWebKey2020", "controller": did, "publicKeyJwk": jwk(row)}
               for row in rows]
    active = [f"{did}#{row.kid}" for row in rows if row.retired_at is None]
    return {"@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/suites/jws-2020/v1"],
            "id": did, "verificationMethod": methods, "assertionMethod": active}

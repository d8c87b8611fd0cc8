"""Access tokens: short-lived JWTs signed with Ed25519 (RFC 8037 / RFC 9864 ``Ed25519``).

Signing keys live in the database, encrypted with DBP_SECRET_KEY; the newest active key signs,
retired keys keep verifying until every token they signed has expired, so rotation needs no
downtime. Verified tokens are cached until they expire (an Ed25519 verification costs ~150 µs);
the cache keys on the whole token string, so a forged token can never hit a cached entry.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dbp.access.models import SigningKey
from dbp.access.oidc import OidcVerifier
from dbp.access.principal import Principal, PrincipalKind, Role
from dbp.access.secrets import decrypt, encrypt
from dbp.errors import Unauthorized

ALG = "Ed25519"
CACHE_SIZE = 10000
KEY_REFRESH_SECONDS = 60


def _now_ts(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def create_signing_key(session: Session, *, secret_key: str, now: datetime | None = None) -> str:
    """Add a new active signing key; returns its kid."""
    kid = f"k-{uuid.uuid4().hex[:16]}"
    key = OKPKey.generate_key("Ed25519", parameters={"kid": kid})
    session.add(SigningKey(kid=kid, private_encrypted=encrypt(secret_key, key.as_pem(private=True)),
                           public_jwk=_public_json(key), created_at=_now_ts(now)))
    session.flush()
    return kid


def _public_json(key: OKPKey) -> str:
    return orjson.dumps(key.as_dict(private=False)).decode()


def rotate_signing_keys(session: Session, *, secret_key: str, now: datetime | None = None) -> str:
    """Retire every active key (they keep verifying) and create the one that signs from now on."""
    for key in session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))):
        key.retired_at = _now_ts(now)
    return create_signing_key(session, secret_key=secret_key, now=now)


def _issuer_of(token: str) -> str | None:
    """The unverified ``iss`` claim, only to route the token to the right verifier."""
    try:
        payload = token.split(".")[1]
        data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return data.get("iss") if isinstance(data, dict) else None
    except (IndexError, ValueError, orjson.JSONDecodeError):
        return None


@dataclass
class _Signer:
    kid: str
    key: OKPKey


class TokenService:
    """Issues and verifies access tokens for one repository (issuer = its base URL)."""

    def __init__(self, factory: sessionmaker[Session], *, issuer: str, secret_key: str, ttl_seconds: int,
                 oidc: OidcVerifier | None = None) -> None:
        self.oidc = oidc
        self.factory = factory
        self.issuer = issuer
        self.secret_key = secret_key
        self.ttl = ttl_seconds
        self._signer: _Signer | None = None
        self._loaded_at = 0.0
        self._keys = KeySet([])
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    # ---------------------------------------------------------------- keys
    def _load(self) -> None:
        # One transaction: on first use it creates the signing key (rare; a few ms on the caller's thread).
        with self.factory.begin() as session:
            rows = list(session.scalars(select(SigningKey).order_by(SigningKey.created_at)))
            if not any(r.retired_at is None for r in rows):
                create_signing_key(session, secret_key=self.secret_key)
                rows = list(session.scalars(select(SigningKey).order_by(SigningKey.created_at)))
        limit = _now_ts(datetime.now(UTC) - timedelta(seconds=self.ttl + 60))
        public: list[Any] = [OKPKey.import_key(orjson.loads(r.public_jwk)) for r in rows
                             if r.retired_at is None or r.retired_at > limit]
        self._keys = KeySet(public)
        self._loaded_at = time.monotonic()
        active = [r for r in rows if r.retired_at is None][-1]
        self._signer = _Signer(active.kid, OKPKey.import_key(decrypt(self.secret_key, active.private_encrypted),
                                                             parameters={"kid": active.kid}))

    def reload(self) -> None:
        self._load()
        self._cache.clear()

    def jwks(self) -> dict[str, Any]:
        if self._signer is None:
            self._load()
        return dict(self._keys.as_dict(private=False))

    # ---------------------------------------------------------------- issue / verify
    def issue(self, principal: Principal, *, scope: str = "", now: float | None = None) -> tuple[str, int]:
        if self._signer is None or time.monotonic() - self._loaded_at > KEY_REFRESH_SECONDS:
            self._load()  # picks up a rotation (dbp keys rotate) made by another process
        assert self._signer is not None
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": principal.subject, "iat": issued, "exp": issued + self.ttl,
            "jti": uuid.uuid4().hex, "org": principal.org_id, "opid": principal.operator_id,
            "role": principal.role.value if principal.role else None, "kind": principal.kind.value,
            "scope": scope,
        }
        if principal.purpose:
            claims["purpose"] = principal.purpose
        token = jwt.encode({"alg": ALG, "kid": self._signer.kid}, claims, self._signer.key, algorithms=[ALG])
        return token, self.ttl

    def verify(self, token: str, *, now: float | None = None) -> Principal:
        """The principal a valid token names; Unauthorized (with the reason) otherwise."""
        moment = now if now is not None else time.time()
        hit = self._cache.get(token)
        if hit is not None:
            if hit[0] > moment:
                return hit[1]
            self._cache.pop(token, None)
            raise Unauthorized("access token expired")
        if self.oidc is not None and _issuer_of(token) == self.oidc.issuer:
            principal = self.oidc.verify(token, now=moment)
            self._cache[token] = (moment + 60, principal)  # re-verified at least every minute
            return principal
        if self._signer is None:
            self._load()
        if len(token) > 4096 or token.count(".") != 2:
            raise Unauthorized("malformed access token")
        try:
            decoded = self._decode(token)
        except JoseError as exc:
            raise Unauthorized(f"invalid access token: {exc.error}") from None
        except ValueError:
            raise Unauthorized("malformed access token") from None
        claims = decoded.claims
        registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": self.issuer}, exp={"essential": True}, sub={"essential": True},
            now=int(moment), leeway=0)
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise Unauthorized(f"access token rejected: {exc.error} {exc.description or ''}".strip()) from None
        try:
            principal = Principal(
                kind=PrincipalKind(claims.get("kind", "client")), subject=str(claims["sub"]),
                org_id=claims.get("org"), operator_id=claims.get("opid"),
                role=Role(claims["role"]) if claims.get("role") else None, purpose=claims.get("purpose"),
                scopes=frozenset(str(claims.get("scope", "")).split()))
        except (ValueError, KeyError):
            raise Unauthorized("access token carries unknown role or kind") from None
        self._cache[token] = (float(claims["exp"]), principal)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal

    def _decode(self, token: str) -> Any:
        try:
            return jwt.decode(token, self._keys, algorithms=[ALG])
        except JoseError:
            self._load()  # a key rotated in another process: reload once, then decide
            return jwt.decode(token, self._keys, algorithms=[ALG])

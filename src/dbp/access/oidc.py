"""Tokens from an external OpenID Connect provider (DBP_OIDC_ISSUER + DBP_OIDC_JWKS_URL).

The provider's signing keys are fetched from its JWKS URL and cached; a token with an unknown
``kid`` triggers one refetch (key rollover at the provider). The token must name one of our
organisations in the claim ``dbp_org`` (its id or operator identifier): the organisation, not the
provider, decides the role — so a provider can never grant itself more than we registered.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.orm import Session, sessionmaker

from dbp.access import service
from dbp.access.principal import Principal, PrincipalKind, Role
from dbp.errors import DbpError, Unauthorized

ALGORITHMS = ["RS256", "ES256", "PS256", "Ed25519", "EdDSA"]
JWKS_TTL_SECONDS = 300
ORG_CLAIM = "dbp_org"


class OidcVerifier:
    def __init__(self, *, issuer: str, jwks_url: str, factory: sessionmaker[Session]) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self.factory = factory
        self._keys: KeySet | None = None
        self._fetched = 0.0

    def _jwks(self, *, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh or time.monotonic() - self._fetched > JWKS_TTL_SECONDS:
            try:
                response = httpx.get(self.jwks_url, timeout=5)
                response.raise_for_status()
                self._keys = KeySet.import_key_set(response.json())
            except (httpx.HTTPError, ValueError, JoseError) as exc:
                raise Unauthorized(f"cannot fetch the identity provider's keys: {exc}") from None
            self._fetched = time.monotonic()
        return self._keys

    def verify(self, token: str, *, now: float | None = None) -> Principal:
        try:
            try:
                decoded = jwt.decode(token, self._jwks(), algorithms=ALGORITHMS)
            except JoseError:
                decoded = jwt.decode(token, self._jwks(refresh=True), algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(iss={"essential": True, "value": self.issuer}, exp={"essential": True},
                                  sub={"essential": True}, now=int(now or time.time())).validate(decoded.claims)
        except JoseError as exc:
            raise Unauthorized(f"identity provider token rejected: {exc.error}") from None
        claims: dict[str, Any] = decoded.claims
        ref = claims.get(ORG_CLAIM)
        if not isinstance(ref, str) or not ref:
            raise Unauthorized(f"identity provider token lacks the {ORG_CLAIM} claim naming a registered organisation")

        try:
            with self.factory() as session:
                org = service.org_by_ref(session, ref=ref)
                role, org_id, operator_id = Role(org.role), org.id, org.operator_id
        except DbpError:
            raise Unauthorized(f"organisation {ref} is not registered here") from None
        purpose = claims.get("purpose") if isinstance(claims.get("purpose"), str) else None
        return Principal(kind=PrincipalKind.user, subject=f"{self.issuer}#{claims['sub']}", org_id=org_id,
                         operator_id=operator_id, role=role, purpose=purpose)

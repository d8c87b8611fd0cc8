"""The repository's side of registration: a ``RegistryClient`` Protocol that registers one passport and returns the
registry's signed proof, checked.

``HttpRegistry`` talks to a remote registry (``DBP_REGISTRY_URL``): OAuth2 client credentials at its
``/api/v1/auth/token`` (``DBP_REGISTRY_CLIENT_ID`` / ``_SECRET``; the token is reused until shortly before it
expires), ``POST /api/v1/registerDPP``, and its published keys (``/.well-known/jwks.json``) to verify each proof.
``EmbeddedRegistry`` is the registry of this very process (DBP_REGISTRY_URL unset, registry role on): the same
``flow.register`` the HTTP route runs, the passport read in-process, on behalf of the passport's operator.

Every proof is verified before it becomes a receipt (``check_receipt``): signed by a key the registry publishes,
for this passport, and hashing the public view of the version it names exactly as this repository stored it —
a registry that registered something else is caught here, not trusted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
import orjson
from sqlalchemy.orm import Session

from dbp.access.principal import Principal, PrincipalKind, Role
from dbp.db import transaction
from dbp.errors import DbpError, VerificationError
from dbp.registry import flow, proofs, service
from dbp.registry.fetch import AsgiFetcher, HttpFetcher, NodeFetcher
from dbp.registry.schemas import RegisterRequest

T = TypeVar("T")
TIMEOUT = 15.0


class RegistrationFailed(Exception):
    """The registry refused or could not be reached; ``message`` says why (stored as the receipt's last error)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class Receipt:
    registration_id: str
    revision: int
    dpp_version: int
    version_hash: str
    proof: str
    registered_at: str
    payload: dict[str, Any]


class RegistryClient(Protocol):
    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        """The registry's answer to ``POST /api/v1/registerDPP`` with ``body``; ``RegistrationFailed`` otherwise."""
        ...

    async def keys(self) -> dict[str, bytes]:
        """kid → public key of the registry's published keys."""
        ...


def check_receipt(answer: dict[str, Any], keys: dict[str, bytes], *, dpp_id: str,
                  public_sha256: Callable[[int], str | None]) -> Receipt:
    """The receipt of a registry's answer, once its proof verifies and names this passport and the hash of the
    public view of the version it names (``public_sha256(version)``, as this repository stored it)."""
    proof = answer.get("proof")
    payload = proofs.verify_proof(proof, keys)
    assert isinstance(proof, str)
    if payload["dppId"] != dpp_id:
        raise VerificationError(f"proof dppId: expected {dpp_id}, got {payload['dppId']}")
    ours = public_sha256(payload["dppVersion"])
    if ours != payload["versionHash"]:
        raise VerificationError(f"proof versionHash of version {payload['dppVersion']}: expected {ours} (this "
                                f"repository's public view), got {payload['versionHash']}")
    return Receipt(payload["registrationId"], payload["revision"], payload["dppVersion"], payload["versionHash"],
                   proof, payload["registeredAt"], payload)


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """The answer as a JSON object; ``RegistrationFailed`` (temporary: a misbehaving registry may recover) for
    anything else."""
    try:
        value = response.json()
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise RegistrationFailed(f"{what}: expected a JSON object from the registry, got HTTP "
                                 f"{response.status_code} {response.text[:120]!r}")
    return value


def aliases_of(doc: dict[str, Any]) -> list[str]:
    """The passport's ``productIdentifierAliases`` that are well-formed product identifiers (at most 20): sent as
    the registration's aliases, which the registry accepts only because the passport lists them."""
    from dbp.identifiers import IdentifierError, product_key

    value = doc.get("productIdentifierAliases")
    out: list[str] = []
    for text in value if isinstance(value, list) else []:
        if not isinstance(text, str):
            continue
        try:
            product_key(text)
        except IdentifierError:
            continue
        out.append(text)
    return out[:20]


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        msg = body["message"][0]
        details = "; ".join(f"{d.get('path')}: {d.get('message')}" for d in msg.get("details", [])[:5])
        return f"{response.status_code} {msg['text']}" + (f" ({details})" if details else "")
    except (ValueError, KeyError, IndexError, TypeError):
        return f"{response.status_code} {response.text[:300]}"


class HttpRegistry:
    """A remote registry over HTTP; ``transport`` may be injected."""

    def __init__(self, *, base_url: str, client_id: str | None, client_secret: str | None,
                 transport: httpx.AsyncBaseTransport | None = None, timeout: float = TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.transport = transport
        self.timeout = timeout
        self._token: tuple[str, float] | None = None
        self._keys: tuple[dict[str, bytes], float] | None = None

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout, transport=self.transport,
                                 follow_redirects=False, trust_env=False)

    async def _access_token(self, http: httpx.AsyncClient) -> str:
        if self._token is not None and self._token[1] > time.monotonic():
            return self._token[0]
        if not self.client_id or not self.client_secret:
            raise RegistrationFailed("DBP_REGISTRY_CLIENT_ID and DBP_REGISTRY_CLIENT_SECRET are needed to register "
                                     f"with {self.base_url}", permanent=True)
        r = await http.post("/api/v1/auth/token", data={"grant_type": "client_credentials",
                                                        "client_id": self.client_id,
                                                        "client_secret": self.client_secret})
        if r.status_code != 200:
            raise RegistrationFailed(f"the registry refused this repository's credentials: {_error_text(r)}",
                                     permanent=r.status_code in (400, 401, 403))
        body = _json_object(r, "token")
        token, expires = body.get("access_token"), body.get("expires_in", 60)
        if not isinstance(token, str) or not token or isinstance(expires, bool) or not isinstance(expires, int | float):
            raise RegistrationFailed(f"token: expected access_token (a string) and expires_in (seconds), got "
                                     f"{sorted(body)[:10]!r}")
        self._token = (token, time.monotonic() + max(int(expires) - 30, 5))
        return self._token[0]

    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._client() as http:
                token = await self._access_token(http)
                r = await http.post("/api/v1/registerDPP", content=orjson.dumps(body),
                                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                if r.status_code == 401:  # expired or rotated: one fresh token
                    self._token = None
                    token = await self._access_token(http)
                    r = await http.post("/api/v1/registerDPP", content=orjson.dumps(body), headers={
                        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise RegistrationFailed(f"registry {self.base_url} unreachable: {type(exc).__name__}: {exc}") from None
        if r.status_code not in (200, 201):
            raise RegistrationFailed(f"registry refused: {_error_text(r)}", permanent=400 <= r.status_code < 500
                                     and r.status_code not in (408, 429))
        return _json_object(r, "registerDPP")

    async def keys(self) -> dict[str, bytes]:
        if self._keys is not None and self._keys[1] > time.monotonic():
            return self._keys[0]
        try:
            async with self._client() as http:
                r = await http.get("/.well-known/jwks.json")
        except httpx.HTTPError as exc:
            raise RegistrationFailed(f"registry keys unreachable: {type(exc).__name__}: {exc}") from None
        if r.status_code != 200:
            raise RegistrationFailed(f"registry keys: {_error_text(r)}")
        keys = proofs.keys_from_jwks(_json_object(r, "registry keys"))
        self._keys = (keys, time.monotonic() + 60)
        return keys

    def forget_keys(self) -> None:
        self._keys = None


def repository_principal(operator_id: str) -> Principal:
    """Who registers in the embedded process: this repository, on behalf of the passport's operator."""
    return Principal(kind=PrincipalKind.client, subject="dbp:repository:auto-register", org_id=None,
                     operator_id=operator_id, role=Role.economic_operator)


class EmbeddedRegistry:
    """The registry of this process (see the module docstring)."""

    def __init__(self, app: Any) -> None:
        settings = app.state.settings
        self.app = app
        self.node = flow.Node(base_url=settings.base_url, http_hosts=tuple(settings.registry_endpoint_http_hosts))
        self.fetcher = NodeFetcher(own=settings.base_url, local=AsgiFetcher(app, base_url=settings.base_url),
                                   remote=HttpFetcher(http_hosts=settings.registry_endpoint_http_hosts))

    async def _read(self, work: Callable[[Session], T]) -> T:
        def run() -> T:
            with self.app.state.read_sessionmaker() as session:
                try:
                    return work(session)
                finally:
                    session.rollback()

        return await asyncio.to_thread(run)

    async def _write(self, work: Callable[[Session], T]) -> T:
        def run() -> T:
            with transaction(self.app.state.sessionmaker) as session:
                return work(session)

        return await asyncio.to_thread(run)

    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        from dbp.registry.schemas import parse_body

        try:
            req = parse_body(orjson.dumps(body), RegisterRequest)
            issued = await flow.register(run_read=self._read, run_write=self._write, fetcher=self.fetcher,
                                         node=self.node, principal=repository_principal(req.economicOperatorId),
                                         req=req, request_id="auto-register")
        except DbpError as exc:
            details = "; ".join(f"{d.path}: {d.message}" for d in exc.details[:5])
            raise RegistrationFailed(f"registry refused: {exc.http_status} {exc.message}" +
                                     (f" ({details})" if details else ""),
                                     permanent=400 <= exc.http_status < 500) from None
        return {"registrationId": issued.registration["registrationId"],
                "revision": issued.registration["revision"], "proof": issued.proof,
                "registration": issued.registration}

    async def keys(self) -> dict[str, bytes]:
        secret = self.app.state.checkpointer.secret_key
        return await self._read(lambda s: service.published_keys(s, secret_key=secret))


def client_for(app: Any) -> RegistryClient | None:
    """The registry this process registers with: DBP_REGISTRY_URL, else its own registry role, else None."""
    from dbp.config import Role as NodeRole

    settings = app.state.settings
    if settings.registry_url:
        return HttpRegistry(base_url=settings.registry_url, client_id=settings.registry_client_id,
                            client_secret=settings.registry_client_secret)
    if NodeRole.registry in settings.roles:
        return EmbeddedRegistry(app)
    return None

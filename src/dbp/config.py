"""Runtime configuration from ``DBP_*`` environment variables.

Nothing here runs at import time: callers build ``Settings()`` (from the environment) or
``Settings(...)`` (tests) and hand it to ``create_app``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Role(StrEnum):
    repository = "repository"
    registry = "registry"
    backup = "backup"


DEFAULT_SQLITE_PATH = Path("var") / "dbp.sqlite3"

# Values that ship in examples, docs and compose files; refused as DBP_SECRET_KEY in production.
PLACEHOLDER_SECRETS = frozenset({
    "secret", "changeme", "change-me", "change_me", "changeit", "default", "dev", "development", "test",
    "password", "insecure", "dbp", "dbp-secret", "dbp-dev-secret", "dev-secret", "dev-secret-key",
    "please-change-me", "your-secret-key", "your-secret-key-here", "secret-key",
    "insecure-development-key-do-not-use-in-production",
    "dbp-development-secret-do-not-use-in-production",  # dbp.access.secrets.DEVELOPMENT_SECRET
    "0123456789abcdef0123456789abcdef", "00000000000000000000000000000000",
})
PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "change this", "change-this", "replace-me", "replace_me",
                     "your-secret", "your_secret", "do-not-use", "not-for-production", "insecure", "example")
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s?#@]+")


def _comma_list(value: object) -> list[object] | None:
    """A DBP_* list given as "a,b,c" (environment) or as a list (code); None for anything else."""
    if isinstance(value, str):
        return list(value.split(","))
    return list(value) if isinstance(value, list | tuple) else None


class Settings(BaseSettings):
    """All knobs of one dbp process. Refuses unsafe combinations in production."""

    model_config = SettingsConfigDict(env_prefix="DBP_", extra="ignore")

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_SQLITE_PATH}",
        description="SQLAlchemy URL; sqlite:///path or postgresql://user@host:port/db",
        # the two databases dbp supports: anything else is refused here, with the other settings, not later
        # with a driver-loading traceback
        pattern=r"^(sqlite|postgresql)(\+[a-z0-9_]+)?://",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    roles: Annotated[list[Role], NoDecode] = Field(default_factory=lambda: list(Role))
    environment: str = Field(default="development", pattern="^(development|production|test)$")
    public_base_url: str | None = Field(
        default=None, description="external base URL used in links; defaults to http://host:port"
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    sql_echo: bool = False
    token_ttl_seconds: int = Field(default=600, ge=30, le=86400, description="lifetime of issued access tokens")
    access_policy_file: str | None = Field(
        default=None, description="TOML file of read rights per role and purpose; default: the bundled policy")
    oidc_issuer: str | None = Field(default=None, description="accept tokens of this external OpenID provider")
    oidc_jwks_url: str | None = Field(default=None, description="its JWKS URL (with DBP_OIDC_ISSUER)")
    telemetry: bool = Field(
        default=False, description="FastAPI's OpenTelemetry traces, metrics and logs per request (exporters from "
                                   "the OTEL_* variables with FASTAPI_OTEL_AUTO_CONFIGURE=true); off: no per-request "
                                   "check of the OpenTelemetry providers")
    read_log_batch: int = Field(default=256, ge=1, le=10000, description="access-log records per durable batch")
    read_log_max_delay: float = Field(
        default=0.0, ge=0, le=1, description="seconds a read waits for its batch to fill; 0 = self-clocking")
    # Tamper evidence (dbp.sentinel): access-log digests in the log, background integrity sweeps.
    access_digest_interval: float = Field(
        default=60.0, ge=0, description="seconds between access-log digest leaves (and one at shutdown); 0 = none")
    integrity_sweep_budget: float = Field(
        default=0.02, ge=0, le=1, description="share of one core the background integrity sweep may use; 0 = off")
    integrity_sweep_pause: float = Field(default=60.0, ge=0, description="seconds between two integrity sweeps")

    # Hardening (dbp.hardening): secrets, rate limits, request sanity, CORS.
    secret_key: str | None = Field(
        default=None, repr=False,
        description="server secret (at least 32 characters, random); required when DBP_ENVIRONMENT=production")
    rate_limit_enabled: bool = True
    rate_limit_per_address: float = Field(default=200.0, gt=0, description="requests per second per client address")
    rate_limit_per_address_burst: int = Field(default=400, ge=1)
    rate_limit_per_principal: float = Field(
        default=100.0, gt=0, description="requests per second per credential (Authorization / X-API-Key value)")
    rate_limit_per_principal_burst: int = Field(default=200, ge=1)
    rate_limit_max_keys: int = Field(default=100_000, ge=100, description="buckets kept per family (LRU)")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For "
                    "names the client the address rate limit applies to")
    max_url_bytes: int = Field(default=8192, ge=1024, description="longer path + query string: 414")
    max_header_count: int = Field(default=100, ge=16, description="more request headers: 431")
    max_header_bytes: int = Field(default=32 * 1024, ge=4096, description="larger request headers in all: 431")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated origins (https://app.example) allowed by CORS; '*' for any (public reads); "
                    "empty: no CORS headers")
    cors_max_age: int = Field(default=600, ge=0, le=86400, description="seconds a browser may cache a preflight")
    did_web_http_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated hosts (or host:port) whose did:web DID documents are fetched over plain http "
                    "and may be on loopback or private addresses (tests, development); every other issuer: https "
                    "to public addresses only")

    # Registry (dbp.registry): the registry node's passport reads, and this repository's auto-registration.
    registry_url: str | None = Field(
        default=None, description="base URL of the registry this repository registers its passports with; "
                                  "unset: the registry of this process (when DBP_ROLES includes registry)")
    registry_client_id: str | None = Field(default=None, description="OAuth2 client of this repository at the "
                                                                     "remote registry (POST /api/v1/auth/token)")
    registry_client_secret: str | None = Field(default=None, repr=False, description="its secret")
    auto_register: bool = Field(
        default=True, description="register active passports with the registry and keep them current (background "
                                  "task of the repository role)")
    registry_backup_node: str | None = Field(
        default=None, max_length=128, description="node id of the backup provider named in registrations")
    registry_commodity_code: str | None = Field(
        default=None, pattern=r"^[0-9]{6,10}$", description="HS/CN/TARIC code named in registrations (6-10 digits)")
    registry_sync_interval: float = Field(default=5.0, gt=0, le=3600,
                                          description="seconds between two auto-registration rounds")
    registry_probe_interval: float = Field(
        default=30.0, ge=0, le=3600, description="seconds between two probes of the repositories in the registry's "
                                                 "node directory (0: off); one that fails 3 in a row is routed around")
    backup_follow: bool = Field(
        default=True, description="the backup role follows its sources (dbp backup add) in a background thread")
    backup_interval: float = Field(default=2.0, gt=0, le=3600,
                                   description="seconds between two rounds of the backup follower per source")
    registry_endpoint_http_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated hosts (or host:port) whose passport endpoints the registry reads over plain "
                    "http and on loopback or private addresses (tests, development, closed networks); every other "
                    "endpoint: https to public addresses only")

    @field_validator("did_web_http_hosts", "registry_endpoint_http_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        items = _comma_list(value)
        return value if items is None else [str(v).strip().lower() for v in items if str(v).strip()]

    @model_validator(mode="before")
    @classmethod
    def _split_roles(cls, data: dict) -> dict:  # type: ignore[type-arg]
        roles = data.get("roles") if isinstance(data, dict) else None
        if isinstance(roles, str):
            data["roles"] = [r.strip() for r in roles.split(",") if r.strip()]
        return data

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_cors_origins(cls, value: object) -> object:
        items = _comma_list(value)
        if items is None:
            return value
        origins = []
        for raw in items:
            origin = str(raw).strip().rstrip("/").lower()
            if not origin:
                continue
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"DBP_CORS_ORIGINS: {raw!r} is not an origin such as https://app.example[:port]")
            origins.append(origin)
        return origins

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_trusted_proxies(cls, value: object) -> object:
        items = _comma_list(value)
        if items is None:
            return value
        try:
            return [str(ip_network(str(v).strip(), strict=False)) for v in items if str(v).strip()]
        except ValueError as exc:
            raise ValueError(f"DBP_TRUSTED_PROXIES: {exc}") from None

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.environment != "production":
            return self
        key = self.secret_key
        if not key:
            raise ValueError("DBP_SECRET_KEY must be set when DBP_ENVIRONMENT=production")
        if len(key) < 32:
            raise ValueError("DBP_SECRET_KEY must be at least 32 characters when DBP_ENVIRONMENT=production")
        folded = key.strip().lower()
        if folded in PLACEHOLDER_SECRETS or any(word in folded for word in PLACEHOLDER_WORDS) or len(set(key)) < 10:
            raise ValueError("DBP_SECRET_KEY is a default or placeholder value; generate one, e.g. "
                             "python -c 'import secrets; print(secrets.token_urlsafe(48))'")
        return self

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.environment == "production" and self.database_url.startswith("sqlite"):
            raise ValueError("DBP_DATABASE_URL must point to PostgreSQL when DBP_ENVIRONMENT=production")
        return self

    @property
    def base_url(self) -> str:
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    def sqlite_path(self) -> Path | None:
        """The SQLite file behind ``database_url``, or None for other databases / in-memory."""
        prefix = "sqlite:///"
        if not self.database_url.startswith(prefix):
            return None
        path = self.database_url[len(prefix):]
        return None if path in ("", ":memory:") else Path(path)

"""Runtime configuration from ``DBP_*`` environment variables.

Nothing here runs at import time: callers build ``Settings()`` (from the environment) or
``Settings(...)`` (tests) and hand it to ``create_app``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Role(StrEnum):
    repository = "repository"
    registry = "registry"
    backup = "backup"


DEFAULT_SQLITE_PATH = Path("var") / "dbp.sqlite3"


class Settings(BaseSettings):
    """All knobs of one dbp process. Refuses unsafe combinations in production."""

    model_config = SettingsConfigDict(env_prefix="DBP_", extra="ignore")

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_SQLITE_PATH}",
        description="SQLAlchemy URL; sqlite:///path or postgresql://user@host:port/db",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    roles: Annotated[list[Role], NoDecode] = Field(default_factory=lambda: list(Role))
    environment: str = Field(default="development", pattern="^(development|production|test)$")
    public_base_url: str | None = Field(
        default=None, description="external base URL used in links; defaults to http://host:port"
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_page_size: int = Field(default=1000, ge=1)
    sql_echo: bool = False

    @model_validator(mode="before")
    @classmethod
    def _split_roles(cls, data: dict) -> dict:  # type: ignore[type-arg]
        roles = data.get("roles") if isinstance(data, dict) else None
        if isinstance(roles, str):
            data["roles"] = [r.strip() for r in roles.split(",") if r.strip()]
        return data

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

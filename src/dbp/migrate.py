"""Schema migrations (Alembic) run programmatically: ``dbp db upgrade`` and the test set-up."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from dbp.config import Settings
from dbp.db import normalise_url


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", normalise_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database to ``revision``; creates the SQLite folder if needed."""
    path = settings.sqlite_path()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings.database_url), revision)

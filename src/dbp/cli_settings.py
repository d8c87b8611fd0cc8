"""Settings and database work for a CLI command: ``DBP_*`` from the environment, flags override; an invalid
configuration, a refused operation or an unreachable database is reported on stderr and ends the command with the
given exit code (every ``dbp`` command reads them this way)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dbp.config import Settings
from dbp.errors import DbpError

T = TypeVar("T")


def settings_or_exit(*, exit_code: int = 2, **overrides: Any) -> Settings:
    """``Settings(**overrides)`` without the ``None`` ones; ``typer.Exit(exit_code)`` if they are invalid."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        Console(stderr=True).print(f"[red]invalid configuration:[/red] {escape(str(exc))}")
        raise typer.Exit(exit_code) from None


def run_or_exit(settings: Settings, work: Callable[[Session], T], *, write: bool = False, exit_code: int = 1) -> T:
    """``work(session)`` on ``settings``' database — in one transaction committed at the end when ``write``, else
    read-only and rolled back; a ``DbpError`` (its message and rules) or an unreachable database is reported on
    stderr and ends the command with ``exit_code``."""
    from dbp.db import make_engine, make_sessionmaker, transaction

    engine = make_engine(settings.database_url, read_only=not write)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        if write:
            with transaction(make_sessionmaker(engine)) as session:
                return work(session)
        with make_sessionmaker(engine)() as session:
            try:
                return work(session)
            finally:
                session.rollback()
    except DbpError as exc:
        rules = ", ".join(d.rule for d in exc.details)
        err.print(f"[red]{escape(exc.message)}[/red]" + (f" ({escape(rules)})" if rules else ""))
        raise typer.Exit(exit_code) from None
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        err.print(f"[red]cannot use {escape(settings.database_url)}:[/red] {escape(str(cause))}")
        raise typer.Exit(exit_code) from None
    finally:
        engine.dispose()

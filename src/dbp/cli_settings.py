"""Settings for a CLI command: ``DBP_*`` from the environment, flags override; an invalid configuration is
reported on stderr and ends the command with the given exit code (every ``dbp`` command reads them this way)."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from dbp.config import Settings


def settings_or_exit(*, exit_code: int = 2, **overrides: Any) -> Settings:
    """``Settings(**overrides)`` without the ``None`` ones; ``typer.Exit(exit_code)`` if they are invalid."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        Console(stderr=True).print(f"[red]invalid configuration:[/red] {escape(str(exc))}")
        raise typer.Exit(exit_code) from None

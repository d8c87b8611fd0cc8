"""``dbp registry``: this repository's registrations, and proofs of registration.

* ``dbp registry status`` — registered / pending / failing passports and the last errors (exit 0);
* ``dbp registry sync`` — register every pending passport now, ignoring back-off, with progress (exit 0 all
  registered, 1 some failed or no registry configured);
* ``dbp registry verify-proof FILE --registry URL`` — check a proof of registration (a compact JWS, or a JSON
  answer of ``POST /api/v1/registerDPP`` holding ``proof``) against the keys the registry publishes at
  ``URL/.well-known/jwks.json``: exit 0 valid, 3 invalid, 1 the keys or the file could not be read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.markup import escape

from dbp.cli_settings import settings_or_exit
from dbp.config import Settings
from dbp.errors import VerificationError
from dbp.registry import proofs

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INVALID = 0, 1, 2, 3
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)
DbUrl = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (DBP_DATABASE_URL)")]


async def _sync(settings: Settings, progress: Callable[[int], None] | None) -> Any:
    from dbp.app import create_app
    from dbp.registry.client import RegistrationFailed, client_for
    from dbp.registry.worker import options_of, sync_all

    app = create_app(settings.model_copy(update={"auto_register": False}))
    async with app.router.lifespan_context(app):
        client = client_for(app)
        if client is None:
            raise RegistrationFailed("no registry: set DBP_REGISTRY_URL (or run the registry role in this process)")
        return await sync_all(app.state.sessionmaker, client, options_of(settings), progress=progress)


def sync_now(settings: Settings, *, progress: Callable[[int], None] | None = None) -> Any:
    """Register every pending passport of ``settings``' repository now (the embedded registry in-process, or
    DBP_REGISTRY_URL); returns the worker's report. Raises ``RegistrationFailed`` when there is no registry."""
    return asyncio.run(_sync(settings, progress))


def pending_count(settings: Settings) -> int:
    from dbp.db import make_engine, make_sessionmaker
    from dbp.registry.worker import counts

    engine = make_engine(settings.database_url, read_only=True)
    try:
        with make_sessionmaker(engine)() as session:
            return int(counts(session)["pending"])
    finally:
        engine.dispose()


def _read_proof(path: Path) -> str:
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("{"):
        data = orjson.loads(text)
        proof = data.get("proof") if isinstance(data, dict) else None
        if not isinstance(proof, str):
            raise ValueError("the JSON file holds no proof member")
        return proof
    return text


def register(app: typer.Typer) -> None:
    registry_app = typer.Typer(help="Registration with the passport registry: status, sync, proof verification.",
                               no_args_is_help=True)
    app.add_typer(registry_app, name="registry")

    @registry_app.command("status")
    def status(database_url: DbUrl = None) -> None:
        """Registered, pending and failing passports of this repository, and the last errors."""
        from sqlalchemy.exc import SQLAlchemyError

        from dbp.db import make_engine, make_sessionmaker
        from dbp.registry.worker import counts

        settings = settings_or_exit(exit_code=EXIT_USAGE, database_url=database_url)
        engine = make_engine(settings.database_url, read_only=True)
        try:
            with make_sessionmaker(engine)() as session:
                data = counts(session)
        except SQLAlchemyError as exc:
            err.print(f"[red]cannot read {escape(settings.database_url)}:[/red] {escape(str(exc))}")
            raise typer.Exit(EXIT_ERROR) from None
        finally:
            engine.dispose()
        registry = settings.registry_url or f"{settings.base_url} (embedded)"
        out.print(f"registry: {escape(registry)}")
        out.print(f"registered: {data['registered']}   pending: {data['pending']}   failing: {data['failing']}")
        for e in data["lastErrors"]:
            out.print(f"  {escape(e['dppId'])} (attempt {e['attempts']}, next {e['nextAttemptAt']}): "
                      f"{escape(e['error'] or '')}")

    @registry_app.command("sync")
    def sync(database_url: DbUrl = None) -> None:
        """Register every pending passport now (back-off ignored), with progress; exit 1 if any failed."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from dbp.registry.client import RegistrationFailed

        settings = settings_or_exit(exit_code=EXIT_USAGE, database_url=database_url)
        total = pending_count(settings)
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err) as bar:
                task = bar.add_task("registering", total=total)
                report = sync_now(settings, progress=lambda n: bar.advance(task, n))
        except RegistrationFailed as exc:
            err.print(f"[red]{escape(exc.message)}[/red]")
            raise typer.Exit(EXIT_ERROR) from None
        out.print(f"registered {report.registered}, failed {report.failed}")
        for dpp_id, message in report.errors[:20]:
            err.print(f"  [yellow]{escape(dpp_id)}[/yellow] {escape(message)}")
        raise typer.Exit(EXIT_ERROR if report.failed else EXIT_OK)

    @registry_app.command("verify-proof")
    def verify_proof(
        file: Annotated[Path, typer.Argument(help="the proof (compact JWS) or a registerDPP answer (JSON)")],
        registry: Annotated[str, typer.Option("--registry", help="the registry's base URL (its keys: "
                                                                  "/.well-known/jwks.json)")],
    ) -> None:
        """Verify a proof of registration against the registry's published keys: exit 0 valid, 3 invalid,
        1 the keys or the file could not be read."""
        try:
            token = _read_proof(file)
        except (OSError, ValueError) as exc:
            err.print(f"[red]cannot read {escape(str(file))}:[/red] {escape(str(exc))}")
            raise typer.Exit(EXIT_ERROR) from None
        url = registry.rstrip("/") + "/.well-known/jwks.json"
        try:
            response = httpx.get(url, timeout=10, follow_redirects=False, headers={"Accept": "application/json"})
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            keys = proofs.keys_from_jwks(response.json())
        except (httpx.HTTPError, ValueError, VerificationError) as exc:
            err.print(f"[red]cannot read the registry's keys at {escape(url)}:[/red] "
                      f"{escape(getattr(exc, 'message', str(exc)))}")
            raise typer.Exit(EXIT_ERROR) from None
        try:
            payload = proofs.verify_proof(token, keys)
        except VerificationError as exc:
            out.print(f"[red]INVALID[/red] proof of registration: {escape(exc.message)}")
            raise typer.Exit(EXIT_INVALID) from None
        if payload["registry"].rstrip("/") != registry.rstrip("/"):
            out.print(f"[red]INVALID[/red] proof of registration: registry: expected {escape(registry)}, got "
                      f"{escape(payload['registry'])}")
            raise typer.Exit(EXIT_INVALID)
        out.print(f"[green]VALID[/green] proof of registration {escape(proofs.summary(payload))} "
                  f"(key {escape(str(proofs.kid_of(token)))})")

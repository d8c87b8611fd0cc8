"""The ``dbp`` command line: serve, demo, import, export, db upgrade.

Every command reads ``DBP_*`` settings from the environment (flags override), exits non-zero on
failure and says why on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dbp.access.cli import register as register_access_commands
from dbp.carrier.cli import register as register_qr_command
from dbp.cli_settings import settings_or_exit
from dbp.config import Role, Settings
from dbp.federation_cli import register as register_federation_command
from dbp.integrity.verify_cli import register as register_verify_command
from dbp.integrity.witness_cli import register as register_witness_commands
from dbp.registry.cli import register as register_registry_commands
from dbp.replication.backup_cli import register as register_backup_commands
from dbp.replication.cli import register as register_feed_command
from dbp.resolver.cli import register as register_resolver_commands
from dbp.tamper_cli import register as register_tamper_commands

app = typer.Typer(help="dbp — Digital Battery Passport system (EU Regulation 2023/1542).", no_args_is_help=True)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")
register_access_commands(app)
register_witness_commands(app)
register_tamper_commands(app)
register_verify_command(app)
register_qr_command(app)
register_registry_commands(app)
register_resolver_commands(app)
register_feed_command(app)
register_backup_commands(app)
register_federation_command(app)
err = Console(stderr=True)
out = Console()

Host = Annotated[str | None, typer.Option(help="interface to listen on (DBP_HOST)")]
Port = Annotated[int | None, typer.Option(help="TCP port (DBP_PORT)")]
DbUrl = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (DBP_DATABASE_URL)")]


def _settings(host: str | None = None, port: int | None = None, database_url: str | None = None) -> Settings:
    return settings_or_exit(exit_code=2, host=host, port=port, database_url=database_url)


def _upgrade(settings: Settings) -> None:
    from dbp.migrate import upgrade

    try:
        upgrade(settings)
    except Exception as exc:  # an unreachable or broken database: say which, exit non-zero
        err.print(f"[red]cannot migrate {settings.database_url}:[/red] {exc}")
        raise typer.Exit(1) from None


def _serve(settings: Settings) -> None:
    import uvicorn

    from dbp.app import create_app

    # a feed stream (GET /api/v1/feed/stream) stays open for minutes: Ctrl-C waits at most 5 s for such responses
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                proxy_headers=False, timeout_graceful_shutdown=5)


@db_app.command("upgrade")
def db_upgrade(database_url: DbUrl = None) -> None:
    """Create or migrate the database schema to the latest revision."""
    settings = _settings(database_url=database_url)
    _upgrade(settings)
    out.print(f"database at head: {settings.database_url}")


@app.command()
def serve(host: Host = None, port: Port = None, database_url: DbUrl = None) -> None:
    """Migrate the database and serve every configured role (DBP_ROLES) over HTTP."""
    settings = _settings(host, port, database_url)
    _upgrade(settings)
    out.print(f"dbp serving {settings.base_url}  (API docs {settings.base_url}/docs)")
    _serve(settings)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err, transient=False)


@app.command("import")
def import_cmd(
    paths: Annotated[list[Path], typer.Argument(help="JSON, NDJSON or CSV files, or folders of them")],
    database_url: DbUrl = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10000, help="records per transaction")] = 500,
    report: Annotated[Path | None, typer.Option(help="write the full JSON report here")] = None,
    workers: Annotated[int | None, typer.Option(min=0, max=64, help="validation processes (default: CPUs)")]
    = None,
) -> None:
    """Import passports (upsert by product identifier; safe to re-run). Exit 1 if any record failed."""
    from dbp.db import make_engine, make_sessionmaker
    from dbp.passports import bulk

    settings = _settings(database_url=database_url)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        err.print(f"[red]no such file or folder:[/red] {', '.join(missing)}")
        raise typer.Exit(2)
    _upgrade(settings)
    files = list(bulk.iter_files(paths))
    engine = make_engine(settings.database_url)
    with _progress() as progress:
        task = progress.add_task("importing", total=None)
        records = (r for f in files for r in bulk.read_records(f))
        result = bulk.import_records(make_sessionmaker(engine), records, batch_size=batch_size, workers=workers,
                                     progress=lambda n: progress.advance(task, n))
    engine.dispose()
    summary = result.as_json()
    if report:
        report.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    for e in result.errors[:20]:
        first = e["details"][0] if e["details"] else {}
        err.print(f"[yellow]{e['source']}:{e['line']}[/yellow] {e['message']} {first.get('path', '')} "
                  f"{first.get('rule', '')} {first.get('message', '')}")
    out.print_json(data={k: v for k, v in summary.items() if k != "errors"})
    raise typer.Exit(1 if result.failed else 0)


@app.command("export")
def export_cmd(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="NDJSON file (default stdout)")] = None,
    all_versions: Annotated[bool, typer.Option("--all-versions", help="every version, not only current")] = False,
    database_url: DbUrl = None,
) -> None:
    """Export passports as NDJSON of their canonical (RFC 8785) stored bytes."""
    from dbp.db import make_engine, make_sessionmaker
    from dbp.passports import bulk

    settings = _settings(database_url=database_url)
    engine = make_engine(settings.database_url)
    sink = output.open("wb") if output else sys.stdout.buffer
    count = 0
    try:
        with _progress() as progress:
            task = progress.add_task("exporting", total=None)
            for line in bulk.export_current(make_sessionmaker(engine), all_versions=all_versions):
                sink.write(line)
                count += 1
                progress.advance(task)
    except Exception as exc:
        err.print(f"[red]export failed after {count} passports:[/red] {exc}")
        raise typer.Exit(1) from None
    finally:
        if output:
            sink.close()
        engine.dispose()
    err.print(f"exported {count} passport versions")


@app.command()
def demo(
    count: Annotated[int, typer.Option(min=1, max=1_000_000, help="batteries in the synthetic fleet")] = 1000,
    host: Host = None, port: Port = None, database_url: DbUrl = None,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="start the server after seeding")] = True,
) -> None:
    """Seed a realistic synthetic fleet (EV, LMT, industrial, stationary; some second-life) and serve it."""
    from dbp.demo_seed import seed

    settings = _settings(host, port, database_url)
    _upgrade(settings)
    with _progress() as progress:
        task = progress.add_task("seeding demo fleet", total=count)
        sample = seed(settings, count=count, progress=lambda n: progress.advance(task, n))
    _register_demo(settings)  # every demo passport resolves at once: registered before the URLs are printed
    if Role.backup in settings.roles:
        from dbp.demo_seed import follow_self
        follow_self(settings)  # the backup role of this process follows the demo repository once it serves
    base = settings.base_url
    out.print("\n[bold]dbp is ready[/bold] — every role in one process, database " + settings.database_url,
              soft_wrap=True)
    _url(f"  API docs (Swagger UI):  {base}/docs")
    _url(f"  sample passport (JSON): {base}/api/v1/dpps/{sample.dpp_id}")
    _url("  same, as a page:        open the link above in a browser (Accept: text/html)")
    _url(f"  product-identifier link: {base}/api/v1/dppsByProductId/{quote(sample.product_id, safe='')}")
    _url(f"  search (recall query):  {base}/api/v1/dpps?category=ev&limit=10")
    if sample.successor_id:
        _url(f"  second-life passport:   {base}/api/v1/dpps/{sample.successor_id}")
    _url(f"  its QR code (PNG):      {base}/api/v1/dpps/{sample.dpp_id}/qr?format=png&scale=8")
    scanned = urlsplit(sample.product_id).path  # the QR link's path, answered by this node's resolver
    _url(f"  scan -> resolver (307): {base}{scanned}   (curl -sL -H 'Accept: application/json' …)")
    _url(f"  its linkset (RFC 9264): {base}{scanned}?linkType=linkset")
    _url(f"  its registration:       {base}/api/v1/registry/registrations?productId="
         f"{quote(sample.product_id, safe='')}")
    _url(f"  transparency log:       {base}/api/v1/log/checkpoint")
    _url(f"  evidence bundle:        {base}/api/v1/dpps/{sample.dpp_id}/evidence")
    _url(f"  verify it (2nd shell):  .venv/bin/dbp verify {base}/api/v1/dpps/{sample.dpp_id}")
    if Role.backup in settings.roles:
        _url(f"  backup's verified copy: {base}/backup/api/v1/dpps/{sample.dpp_id}   (once caught up, seconds)")
        _url("  backup status (lag):    .venv/bin/dbp backup status     (a federation of 4 processes: make federation)")
    creds_file = Path("var") / "demo-credentials.json"
    creds_file.parent.mkdir(parents=True, exist_ok=True)
    creds_file.write_bytes(orjson.dumps(sample.credentials, option=orjson.OPT_INDENT_2))
    creds_file.chmod(0o600)
    recycler = sample.credentials["urn:dbp:demo:recycler"]
    _url(f"  demo API clients (secrets, one per organisation): {creds_file}")
    _url(f"  e.g. a recycler's view: TOKEN=$(curl -s -d grant_type=client_credentials "
         f"-d client_id={recycler['client_id']} -d client_secret={recycler['client_secret']} "
         f"-d purpose=dismantling {base}/api/v1/auth/token | python3 -c 'import json,sys; "
         f"print(json.load(sys.stdin)[\"access_token\"])')")
    _url(f'        curl -H "Authorization: Bearer $TOKEN" {base}/api/v1/dpps/{sample.dpp_id}')
    if serve_after:
        _serve(settings)


def _register_demo(settings: Settings) -> None:
    from dbp.demo_seed import register_all
    from dbp.registry.cli import pending_count

    with _progress() as progress:
        task = progress.add_task("registering with the registry", total=pending_count(settings))
        report = register_all(settings, progress=lambda n: progress.advance(task, n))
    if report is not None and report.failed:
        err.print(f"[yellow]{report.failed} demo passports not registered:[/yellow] {report.errors[:3]}")


def _url(line: str) -> None:
    """Links are printed whole (never wrapped) so that they can be copied or clicked."""
    print(line, flush=True)


def main() -> None:  # pragma: no cover - console entry point
    app()

"""``dbp audit-log verify`` — the full re-check of the repository's stored integrity data (``dbp.passports.tamper``).

Exit codes: 0 everything re-derives and verifies; 3 tampering found (each problem a numbered finding naming the
first bad entry); 1 the check could not run (database unreachable, schema missing); 2 a usage error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dbp.cli_settings import settings_or_exit
from dbp.errors import DbpError

EXIT_OK, EXIT_ERROR, EXIT_TAMPERED = 0, 1, 3

audit_log_app = typer.Typer(
    help="Re-check the transparency log, passport versions and the access log against each other. Exit codes: "
         "0 clean, 3 tampering found, 1 cannot run.", no_args_is_help=True)
err = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


@audit_log_app.command("verify")
def verify(
    database_url: Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (DBP_DATABASE_URL)")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON on stdout")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Full re-check: every leaf's bytes and hash from its columns, every stored subtree hash (level by level),
    the state frontier, the latest checkpoint's root and signature (with the repository keys); every passport
    version's hashes, signature and leaf (exactly one each); every access-log digest against the entries it
    covers. Each problem is a numbered finding naming the first bad entry."""
    from dbp.access.secrets import DEVELOPMENT_SECRET
    from dbp.db import make_engine, make_sessionmaker
    from dbp.passports.tamper import FullCheck

    settings = settings_or_exit(exit_code=EXIT_ERROR, database_url=database_url)
    engine = make_engine(settings.database_url, read_only=True)
    factory = make_sessionmaker(engine)
    check = FullCheck(secret_key=settings.secret_key or DEVELOPMENT_SECRET)
    try:
        with factory() as session:
            if engine.dialect.name == "postgresql":  # one snapshot for the whole check
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})

            @contextlib.contextmanager
            def scope() -> Iterator[Session]:
                yield session

            total = _work(session)
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          TimeRemainingColumn(), console=err, disable=quiet or as_json, transient=True) as bar:
                task = bar.add_task("log leaves", total=total)
                base = {"log": 0, "versions": 0, "access": 0}
                for phase, done in check.steps(scope):
                    if phase == "versions" and base["versions"] == 0:
                        base["versions"] = check.log_size
                        bar.update(task, description="passport versions")
                    if phase == "access" and base["access"] == 0:
                        base["access"] = check.log_size + check.versions
                        bar.update(task, description="access-log digests")
                    bar.update(task, completed=min(total, base[phase] + done))
            session.rollback()
    except (SQLAlchemyError, DbpError) as exc:
        err.print(f"[red]cannot verify {escape(settings.database_url)}:[/red] {escape(str(exc).splitlines()[0])}")
        raise typer.Exit(EXIT_ERROR) from None
    finally:
        engine.dispose()
    findings = check.findings
    if as_json:
        typer.echo(orjson.dumps(check.as_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        for n, f in enumerate(findings.items, 1):
            out.print(f"{n}. {escape(f.text())}")
        if findings.total > len(findings.items):
            out.print(f"… and {findings.total - len(findings.items)} more findings")
        summary = (f"{check.log_size} leaves, {check.versions} passport versions, {check.access_rows} digested "
                   f"access-log entries (digested up to id {check.access_covered_upto})")
        if findings.total:
            err.print(f"[red]TAMPERING FOUND[/red]: {findings.total} finding(s) in {summary}")
        else:
            err.print(f"[green]OK[/green]: {summary} verified")
    raise typer.Exit(EXIT_TAMPERED if findings.total else EXIT_OK)


def _work(session: Session) -> int:
    """Leaves + versions + access-log rows: the progress bar's total."""
    from dbp.audit.models import AccessLog
    from dbp.integrity.models import LogLeaf
    from dbp.passports.models import PassportVersion

    return sum(int(session.scalar(select(func.count()).select_from(t)) or 0)
               for t in (LogLeaf, PassportVersion, AccessLog))


def register(app: typer.Typer) -> None:
    app.add_typer(audit_log_app, name="audit-log")

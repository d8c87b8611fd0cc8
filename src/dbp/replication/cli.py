"""``dbp feed``: the repository's change feed as NDJSON, read from its own database (for operators and debugging).

Whoever runs it holds the database, so it reads every entry (and, with ``--include-body``, every body), like
``dbp export``; remote followers use ``GET /api/v1/feed`` with credentials. One entry per line on stdout, in log
order (``dbp.replication.service``); the cursor to resume from is printed on stderr at the end (and on
interruption). ``--follow`` keeps polling for new entries until interrupted. Exit codes: 0 done (or interrupted
while following), 1 the database failed, 2 a bad argument or setting.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import orjson
import typer

from dbp.access.principal import ANONYMOUS
from dbp.cli_settings import settings_or_exit
from dbp.errors import DbpError


def register(app: typer.Typer) -> None:
    app.command("feed")(feed)


def feed(
    cursor: Annotated[str | None, typer.Option(help="resume after this cursor (a previous run's nextCursor)")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="keep printing new entries until interrupted")] = False,
    include_body: Annotated[bool, typer.Option("--include-body", help="add each version's canonical body")]
    = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="entries per database read")] = 1000,
    interval: Annotated[float, typer.Option(min=0.05, max=60, help="seconds between looks with --follow")] = 0.5,
    database_url: Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (DBP_DATABASE_URL)")]
    = None,
) -> None:
    """Print the change feed (every passport version in log order) as NDJSON; --follow waits for more."""
    from dbp.db import make_engine, make_sessionmaker
    from dbp.replication import service

    settings = settings_or_exit(exit_code=2, database_url=database_url)
    try:
        position = service.decode_cursor(cursor)
    except DbpError as exc:
        typer.echo(f"dbp feed: {exc.message}", err=True)
        raise typer.Exit(2) from None
    engine = make_engine(settings.database_url, read_only=True)
    factory = make_sessionmaker(engine)
    out = sys.stdout.buffer
    count = 0
    try:
        while True:
            with factory() as session:
                try:
                    page = service.read_page(session, principal=ANONYMOUS, scope=service.LOCAL, start=position,
                                             limit=limit, include_body=include_body, policy=None)
                finally:
                    session.rollback()
            for entry in page.entries:
                out.write(orjson.dumps(entry) + b"\n")
            out.flush()
            count += len(page.entries)
            position = page.next_position
            if page.full:
                continue
            if not follow:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    except DbpError as exc:
        typer.echo(f"dbp feed: {exc.message}", err=True)
        raise typer.Exit(2 if exc.http_status < 500 else 1) from None
    except Exception as exc:  # an unreachable or broken database
        typer.echo(f"dbp feed: cannot read the feed from {settings.database_url}: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    typer.echo(f"{count} entries; nextCursor {service.encode_cursor(position)}", err=True)

"""``dbp backup``: the backup node's command line (role ``backup``; ``dbp.replication.follower`` does the work).

* ``dbp backup add SOURCE URL --client-id --client-secret [--key VKEY]`` — follow the repository at ``URL``
  (its base URL) as the backup provider it appointed. The log key is pinned: ``--key`` (the C2SP verifier key
  the operator gave you), or, without it, the key the repository serves (trust on first use, said so).
* ``dbp backup sync [SOURCE] [--rescan]`` — run rounds now until caught up, with progress (exit 0 caught up, 1 a
  round failed, 3 a source is halted by the witness check); ``--rescan`` first looks behind the cursor for entries
  the feed lists now but the backup does not hold (the follower does it every 10 minutes);
* ``dbp backup status [--json]`` — per source: status, cursor, verified tree size, lag, copies, open
  rejections, alerts, last error (exit 0; 3 when a source is halted);
* ``dbp backup verify [SOURCE]`` — re-check everything held from the database alone (``recheck``): exit 0 all
  good, 3 a problem (listed), 1 could not run;
* ``dbp backup resume SOURCE`` — follow a halted source again after looking at its alert;
* ``dbp backup remove SOURCE`` — stop following and drop everything held of it;
* ``dbp backup export SOURCE --out FILE [--operator ID …]`` — the custody file of what is held
  (``dbp.replication.custody``);
* ``dbp restore FILE --source-id ID --key VKEY`` — import a custody file into this node (a successor), verified
  against the original operator's keys before anything is stored: exit 0 restored, 3 refused (problems listed),
  1 could not run, 2 usage.
"""

from __future__ import annotations

import time
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from dbp.cli_settings import run_or_exit, settings_or_exit

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INVALID = 0, 1, 2, 3
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)
backup_app = typer.Typer(help="The backup node: follow repositories, verify and keep their passports.",
                         no_args_is_help=True)
DbUrl = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (DBP_DATABASE_URL)")]
Source = Annotated[str, typer.Argument(help="the source's id (a short name: acme, repo-2, ...)")]
OptionalSource = Annotated[str | None, typer.Argument(help="one source (default: all)")]


def register(app: typer.Typer) -> None:
    app.add_typer(backup_app, name="backup")
    app.command("restore")(restore_cmd)


@backup_app.command("add")
def add(source: Source,
        url: Annotated[str, typer.Argument(help="the repository's base URL, e.g. https://dpp.example.com")],
        client_id: Annotated[str | None, typer.Option(help="the backup provider's client at that repository")] = None,
        client_secret: Annotated[str | None, typer.Option(help="its secret (or DBP_BACKUP_CLIENT_SECRET)",
                                                          envvar="DBP_BACKUP_CLIENT_SECRET")] = None,
        key: Annotated[str | None, typer.Option(help="the log's C2SP verifier key (else trusted on first use)")]
        = None,
        database_url: DbUrl = None) -> None:
    """Follow a repository: pin its log key, store its credentials (encrypted), start at its first entry."""
    from dbp.access.secrets import DEVELOPMENT_SECRET
    from dbp.errors import ProofError
    from dbp.integrity import witness
    from dbp.integrity.checkpoint import parse_verifier_key, verify_checkpoint
    from dbp.replication import backup
    from dbp.replication.follower import FollowError, RepositoryClient

    settings = settings_or_exit(exit_code=EXIT_USAGE, database_url=database_url)
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        err.print(f"dbp backup add: expected an http(s) URL, got {escape(url)}")
        raise typer.Exit(EXIT_USAGE)
    client = RepositoryClient(base, client_id=client_id, client_secret=client_secret)
    try:
        answer = client.checkpoint()
        origin = witness.note_origin(answer.body)
        how = "given"
        if key is None:
            key = answer.headers.get(witness.KEY_HEADER)
            how = "trusted on first use"
            if not key:
                raise FollowError(f"{base} does not publish its log key; pass --key")
        vkey = parse_verifier_key(key)
        verify_checkpoint(answer.body, origin=origin, verifiers=[vkey])
        if client_id:
            client.feed(0, 1)  # the credentials work and the repository appointed us (else 401/403 now, not later)
    except (FollowError, witness.WitnessError, ProofError) as exc:
        err.print(f"dbp backup add: {escape(str(exc))}")
        raise typer.Exit(EXIT_ERROR) from None
    finally:
        client.close()
    run_or_exit(settings, lambda s: backup.add_source(
        s, source_id=source, url=base, origin=origin, verifier_key=vkey.encode(), client_id=client_id,
        client_secret=client_secret, secret_key=settings.secret_key or DEVELOPMENT_SECRET), write=True,
        exit_code=EXIT_ERROR)
    out.print(f"following {escape(source)}: {escape(base)}, log {escape(origin)}")
    out.print(f"pinned log key ({how}): {escape(vkey.encode())}")
    if how != "given":
        err.print("[yellow]the key was trusted on first use: compare it with the one the operator gave you[/]")


def _lines(r: dict[str, object]) -> str:
    """One source, readable in a narrow terminal."""
    text = (f"[bold]{escape(str(r['sourceId']))}[/]: {r['status']} — {escape(str(r['url']))}\n"
            f"  cursor {r['cursor']} of verified tree {r['treeSize']} (log {r['logSize']}, lag {r['lagLeaves']} "
            f"leaves); {r['passports']} passports, {r['versions']} versions held; {r['openRejections']} open "
            f"rejection(s), {r['alerts']} alert(s)\n  last success {r['lastSuccessAt'] or '-'}")
    if r["status"] == "halted":
        text += f"\n  [red]halted: {escape(str(r['haltedReason']))}[/]"
    elif r["lastError"]:
        text += f"\n  [yellow]last error ({r['failures']} in a row, next try {r['nextAttemptAt']}): " \
                f"{escape(str(r['lastError']))}[/]"
    return text


@backup_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
           database_url: DbUrl = None) -> None:
    """Per source: status, cursor, lag, what is held, rejections, alerts, last error."""
    from dbp.replication import backup

    settings = settings_or_exit(exit_code=EXIT_USAGE, database_url=database_url)
    rows = run_or_exit(settings, lambda s: [st.as_json() for st in backup.status(s)], exit_code=EXIT_ERROR)
    if as_json:
        typer.echo(orjson.dumps({"sources": rows}, option=orjson.OPT_INDENT_2).decode())
    elif not rows:
        out.print("no sources: dbp backup add SOURCE URL --client-id … --client-secret …")
    else:
        for r in rows:
            out.print(_lines(r))
    if any(r["status"] == backup.HALTED for r in rows):
        raise typer.Exit(EXIT_INVALID)


@backup_app.command("sync")
def sync(source: OptionalSource = None,
         rounds: Annotated[int, typer.Option(min=1, max=100000, help="rounds at most")] = 1000,
         rescan: Annotated[bool, typer.Option("--rescan", help="first look behind the cursor for entries the "
                                                               "feed lists now but the backup does not hold")]
         = False,
         database_url: DbUrl = None) -> None:
    """Follow now (ignoring back-off) until every source is caught up; prints progress."""
    from dbp.access.secrets import DEVELOPMENT_SECRET
    from dbp.db import make_engine, make_sessionmaker
    from dbp.replication import backup
    from dbp.replication.follower import FollowError, RepositoryClient, RoundReport, follow_once

    settings = settings_or_exit(exit_code=EXIT_USAGE, database_url=database_url)
    engine = make_engine(settings.database_url)
    factory = make_sessionmaker(engine)
    code = EXIT_OK
    try:
        with factory() as session:
            chosen = [backup.get_source(session, source_id=source)] if source else backup.sources(session)
            todo = [(s.source_id, s.url, s.client_id,
                     backup.client_secret(s, secret_key=settings.secret_key or DEVELOPMENT_SECRET)) for s in chosen]
        for source_id, url, client_id, secret in todo:
            started = time.monotonic()

            def progress(report: RoundReport, started: float = started) -> None:
                rate = report.stored / max(time.monotonic() - started, 1e-6)
                err.print(f"{report.source_id}: cursor f1.{report.cursor} of tree {report.tree_size}, "
                          f"{report.stored} stored ({rate:,.0f}/s), {report.rejected} rejected")

            client = RepositoryClient(url, client_id=client_id, client_secret=secret)
            try:
                for round_number in range(rounds):
                    try:
                        report = follow_once(factory, client, source_id=source_id, progress=progress,
                                             rescan=rescan and round_number == 0)
                    except FollowError as exc:
                        from dbp.db import transaction
                        with transaction(factory) as session:
                            backup.schedule_failure(session, source_id=source_id, error=str(exc))
                        err.print(f"[red]{escape(source_id)}: {escape(str(exc))}[/]")
                        code = max(code, EXIT_ERROR)
                        break
                    found = f" (rescan: {report.rescanned} missing found)" if rescan and round_number == 0 else ""
                    out.print(f"{escape(source_id)}: {report.outcome}: {escape(report.message)}{found}")
                    if report.outcome == "halted" or report.outcome == "skipped":
                        code = EXIT_INVALID
                        break
                    if report.cursor >= report.tree_size and report.stored == 0 and report.leaves == 0:
                        break
            finally:
                client.close()
    except Exception as exc:  # an unreachable database or an unknown source: say so, exit 1
        from dbp.errors import DbpError
        err.print(f"dbp backup sync: {escape(exc.message if isinstance(exc, DbpError) else str(exc))}")
        raise typer.Exit(EXIT_ERROR) from None
    finally:
        engine.dispose()
    raise typer.Exit(code)


@backup_app.command("verify")
def verify_all(source: OptionalSource = None,
               as_json: Annotated[bool, typer.Option("--json", help="JSON report")] = False,
               database_url: DbUrl = None) -> None:
    """Re-check everything held (tree, checkpoints, every version) from this database alone."""
    from dbp.replication.recheck import recheck

    settings = settings_or_exit(exit_code=EXIT_USAGE, database_url=database_url)
    last = [0.0]

    def progress(what: str, done: int, total: int) -> None:
        if time.monotonic() - last[0] > 1.0:
            last[0] = time.monotonic()
            err.print(f"{what}: {done:,} of {total:,}")

    results = run_or_exit(settings, lambda s: recheck(s, source_id=source, progress=progress), exit_code=EXIT_ERROR)
    if as_json:
        typer.echo(orjson.dumps({"sources": [r.as_json() for r in results]}, option=orjson.OPT_INDENT_2).decode())
    else:
        for r in results:
            verdict = "[green]ok[/]" if r.ok else f"[red]{r.problem_count} problem(s)[/]"
            out.print(f"{escape(r.source_id)}: {verdict}: {r.leaves} leaves, {r.nodes} nodes, {r.checkpoints} "
                      f"checkpoints, {r.versions} versions re-verified")
            for p in r.problems:
                out.print(f"  {escape(p)}")
    if any(not r.ok for r in results):
        raise typer.Exit(EXIT_INVALID)


@backup_app.command("resume")
def resume(source: Source, database_url: DbUrl = None) -> None:
    """Follow a halted source again (after its alert was looked at: dbp backup status, /api/v1/backup/alerts)."""
    from dbp.replication import backup

    settings = settings_or_exit(exit_code=EXIT_USAGE, database_url=database_url)
    run_or_exit(settings, lambda s: backup.resume(s, source_id=source), write=True, exit_code=EXIT_ERROR)
    out.print(f"{escape(source)}: following again")


@backup_app.command("remove")
def remove(source: Source, yes: Annotated[bool, typer.Option("--yes", help="really drop every copy held")] = False,
           database_url: DbUrl = None) -> None:
    """Stop following a source and drop everything held of it."""
    from dbp.replication import backup

    if not yes:
        err.print("dbp backup remove drops every copy held of the source; pass --yes")
        raise typer.Exit(EXIT_USAGE)
    settings = settings_or_exit(exit_code=EXIT_USAGE, database_url=database_url)
    run_or_exit(settings, lambda s: backup.forget(s, source_id=source), write=True, exit_code=EXIT_ERROR)
    out.print(f"{escape(source)}: removed")


@backup_app.command("export")
def export_cmd(source: Source,
               out_file: Annotated[str, typer.Option("--out", help="the custody file to write (NDJSON)")],
               operator: Annotated[list[str] | None, typer.Option(
                   "--operator", help="only this operator's passports (repeatable; default: every one held)")]
               = None,
               database_url: DbUrl = None) -> None:
    """Write everything held of a source (or of some operators) as a custody file for dbp restore."""
    from pathlib import Path

    from dbp.replication import custody

    settings = settings_or_exit(exit_code=EXIT_USAGE, database_url=database_url)
    target = Path(out_file)
    partial = target.with_name(target.name + ".partial")

    def progress(done: int) -> None:
        err.print(f"{done:,} versions written")

    def work(session: object) -> int:
        lines = 0
        with partial.open("wb") as fh:
            for line in custody.export(session, source_id=source,  # type: ignore[arg-type]
                                       operator_ids=frozenset(operator) if operator else None, progress=progress):
                fh.write(line)
                lines += 1
        return lines

    try:
        run_or_exit(settings, work, exit_code=EXIT_ERROR)
    except OSError as exc:
        err.print(f"dbp backup export: cannot write {escape(out_file)}: {escape(str(exc))}")
        raise typer.Exit(EXIT_ERROR) from None
    partial.replace(target)  # a cut export never looks complete
    out.print(f"custody file of {escape(source)} written to {escape(out_file)}")


def restore_cmd(file: Annotated[str, typer.Argument(help="a custody file written by dbp backup export")],
                source_id: Annotated[str, typer.Option("--source-id", help="the name to hold it under here")],
                key: Annotated[str | None, typer.Option(
                    help="the original log's C2SP verifier key, obtained independently (registry node directory, "
                         "a witness): the anchor every key and signature is checked from")] = None,
                trust_file_key: Annotated[bool, typer.Option(
                    "--trust-file-key", help="anchor on the key the file names (only for a file you made)")] = False,
                as_json: Annotated[bool, typer.Option("--json", help="JSON report")] = False,
                database_url: DbUrl = None) -> None:
    """Restore a backup copy into this node (a successor taking over an exited operator's passports): verify
    everything against the original operator's keys, store it in one transaction, serve it under /backup."""
    from dbp.db import make_engine, make_sessionmaker
    from dbp.errors import DbpError
    from dbp.replication import custody

    if key is None and not trust_file_key:
        err.print("dbp restore: pass --key (the original log's verifier key) — or --trust-file-key for a file you "
                  "exported yourself")
        raise typer.Exit(EXIT_USAGE)
    settings = settings_or_exit(exit_code=EXIT_USAGE, database_url=database_url)
    engine = make_engine(settings.database_url)
    session = make_sessionmaker(engine)()

    def progress(what: str, done: int) -> None:
        err.print(f"{what}: {done:,}")

    try:
        with open(file, "rb") as fh:
            result = custody.restore(session, fh, source_id=source_id, anchor=key, progress=progress)
        if result.ok:
            session.commit()
        else:
            session.rollback()
    except OSError as exc:
        err.print(f"dbp restore: cannot read {escape(file)}: {escape(str(exc))}")
        raise typer.Exit(EXIT_ERROR) from None
    except DbpError as exc:
        session.rollback()
        err.print(f"dbp restore: {escape(exc.message)}")
        raise typer.Exit(EXIT_INVALID if exc.http_status == 400 else EXIT_ERROR) from None
    finally:
        session.close()
        engine.dispose()
    if as_json:
        typer.echo(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2).decode())
    elif result.ok:
        out.print(f"restored {result.passports} passports ({result.versions} versions, {result.leaves} log leaves, "
                  f"{result.checkpoints} checkpoints) of {escape(result.origin)} as {escape(source_id)}; every "
                  f"version verified against the original keys {', '.join(result.keys)}")
        out.print("served at /backup/api/v1/dpps/{dppId} by this node's backup role; re-point the registrations "
                  "to this node's /backup endpoint (POST /api/v1/registry/registrations/{id}/routing)")
    else:
        out.print(f"[red]nothing restored: {len(result.problems)} problem(s)[/]")
        for p in result.problems:
            out.print(f"  {escape(p)}")
    if not result.ok:
        raise typer.Exit(EXIT_INVALID)

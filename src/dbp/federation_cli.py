"""``dbp federation``: start a small federation on this machine (``dbp.federation``) — a registry with its
resolver, two repositories and an independent backup node, each its own ``dbp serve`` process and database — seed
it, wait until everything is registered and backed up, print what to look at, and serve until Ctrl-C.
``--no-serve`` stops after the checks (exit 0 when every step finished, 1 otherwise, with the nodes' logs)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("federation")(federation)


def _say(line: str) -> None:
    print(line, flush=True)  # links whole, never wrapped


def federation(
    directory: Annotated[Path, typer.Option("--dir", help="where the nodes' databases and logs go (emptied first)")]
    = Path("var/federation"),
    base_port: Annotated[int, typer.Option(min=1024, max=65000, help="the four nodes use this port and the next 3")]
    = 8100,
    count: Annotated[int, typer.Option(min=1, max=500, help="demo passports per repository")] = 10,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="keep serving until Ctrl-C")] = True,
) -> None:
    """Start a registry, two repositories and a backup node as separate processes; seed, register, back up."""
    from dbp.federation import Federation, FederationError

    if directory.exists():
        shutil.rmtree(directory)
    fed = Federation(directory, base_port=base_port, count=count)
    started = time.monotonic()
    try:
        err.print("setting up four databases and their identities…")
        fed.prepare()
        err.print("starting registry, repo-a, repo-b and backup…")
        fed.start()
        err.print("entering the node directory and the operators' backup appointments…")
        fed.connect()
        for name in ("repo-a", "repo-b"):
            fed.publish(name)
        err.print(f"published {count} passports on each repository; waiting for their registration…")
        for name in ("repo-a", "repo-b"):
            fed.wait_registered(name)
            fed.follow(name)
        err.print("registered; the backup follows both repositories and verifies every version…")
        for name in ("repo-a", "repo-b"):
            fed.wait_backed_up(name, count)
    except FederationError as exc:
        err.print(f"[red]dbp federation: {escape(str(exc))}[/]")
        fed.stop()
        raise typer.Exit(1) from None
    except BaseException:
        fed.stop()
        raise
    n = fed.nodes
    a_id, a_product = fed.dpp_ids("repo-a")[0], fed.product_ids("repo-a")[0]
    scan = f"{n['registry'].base_url}/{a_product.split('://', 1)[1].split('/', 1)[1]}"
    _say(f"\nfederation up in {time.monotonic() - started:.0f} s (databases and logs in {directory}/):")
    for node in n.values():
        pid = node.proc.pid if node.proc else "-"
        _say(f"  {node.name:9} {node.base_url}   roles {','.join(node.roles)}   pid {pid}")
    _say("\nwhat to look at:")
    _say(f"  a QR scan of a repo-a battery (307 to repo-a): {scan}")
    _say(f"  the registry's node directory:                 {n['registry'].base_url}/api/v1/registry/nodes")
    _say(f"  the backup's copy of that passport:            {n['backup'].base_url}/backup/api/v1/dpps/{a_id}")
    _say(f"  its evidence (verifies with repo-a's keys):    {n['backup'].base_url}/backup/api/v1/dpps/{a_id}/evidence")
    _say(f"  repo-a's keys (save them before the kill):     {n['repo-a'].base_url}/api/v1/log/keys")
    _say("  the backup's status (lag, copies, alerts):     "
         f"dbp backup status --database-url {n['backup'].database_url}")
    _say("\nfailover: kill repo-a (kill -9 "
         f"{n['repo-a'].proc.pid if n['repo-a'].proc else '?'}); within ~{3 * fed.probe_interval:.0f} s the registry "
         "marks it unreachable and the scan above redirects to the backup.")
    if not serve:
        fed.stop()
        return
    _say("serving until Ctrl-C")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        fed.stop()

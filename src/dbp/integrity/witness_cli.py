"""``dbp witness check|watch|show`` — witness repositories' transparency logs (``dbp.integrity.witness``).

Exit codes: 0 every checkpoint consistent with what the witness saw before; 3 an inconsistency was detected
(rollback, fork, rewritten history, bad signature, origin change — the evidence is in the state file); 1 a network,
server or configuration problem (nothing was decided; the message says what to do); 2 a usage error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from dbp.errors import ProofError
from dbp.integrity.checkpoint import VerifierKey, parse_verifier_key
from dbp.integrity.witness import (
    DEFAULT_STATE,
    DEFAULT_TIMEOUT,
    HttpTransport,
    RoundResult,
    WitnessError,
    WitnessStore,
    normalise_url,
    watch,
    witness_round,
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INCONSISTENT = 0, 1, 2, 3

witness_app = typer.Typer(
    help="Witness transparency logs: fetch signed checkpoints, check each is consistent with the last one seen, "
         "keep them, and report a log that rewrote its history, rolled back or forked. Exit codes: 0 consistent, "
         "3 inconsistency detected, 1 network/config error, 2 usage.",
    no_args_is_help=True)
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``dbp witness …`` to the main command line."""
    app.add_typer(witness_app, name="witness")


def _url(value: str) -> str:
    try:
        return normalise_url(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _urls(values: list[str]) -> list[str]:
    return [_url(v) for v in values]


def _keys(values: list[str] | None) -> list[VerifierKey]:
    keys: list[VerifierKey] = []
    for value in values or []:
        try:
            keys.append(parse_verifier_key(value.strip()))
        except ProofError as exc:
            raise typer.BadParameter(f"{exc} (expected a C2SP verifier key, as served in the X-Log-Verifier-Key "
                                     "header of GET /api/v1/log/checkpoint)") from None
    if len({k.name for k in keys}) != len(keys):
        raise typer.BadParameter("expected at most one --key per log (key name)")
    return keys


Url = Annotated[str, typer.Option("--url", help="the repository's base URL, e.g. https://dpp.example.com",
                                  callback=_url)]
Urls = Annotated[list[str], typer.Option("--url", help="a repository's base URL (repeat for several)",
                                         callback=_urls)]
Keys = Annotated[list[str] | None, typer.Option(
    "--key", help="the log's verifier key (C2SP vkey '<origin>+<id>+<key>'); repeatable. Without it the key the "
                  "server publishes is trusted on first use (a warning says so) and pinned")]
State = Annotated[Path, typer.Option("--state", help="the witness's SQLite state file", dir_okay=False)]
Timeout = Annotated[float, typer.Option(help="seconds to wait for a connection or a read", min=0.1, max=600)]


def _state(path: Path) -> WitnessStore:
    try:
        return WitnessStore(path)
    except WitnessError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_ERROR) from None


def _report(result: RoundResult, state: Path, *, ok: Console = out, alarm: Console = err, prefix: str = "") -> None:
    """Say what a round found: "ok" lines on ``ok``, warnings and inconsistencies on ``alarm``."""
    if result.pinned == "tofu":
        alarm.print(f"{prefix}[yellow]warning: trusting on first use[/yellow] the verifier key "
                    f"{escape(result.key or '')} published by {escape(result.url)} for the log "
                    f"{escape(result.origin)}; it is pinned in {state}. "
                    "Compare it with the operator's published key, or pass --key next time.")
    elif result.pinned == "given":
        alarm.print(f"{prefix}pinned the given key for the log {escape(result.origin)} in {state}")
    if result.outcome.alarming:
        alarm.print(f"{prefix}[bold red]INCONSISTENCY DETECTED ({result.outcome.value})[/bold red] in the log "
                  f"[bold]{escape(result.origin)}[/bold] at {escape(result.url)}")
        alarm.print(f"[red]{escape(result.message)}[/red]")
        if result.previous is not None:
            alarm.print(f"  last accepted checkpoint: {escape(result.previous.describe())}")
        alarm.print(f"  evidence: alert #{result.alert_id} in {state} — show it with: "
                  f"dbp witness show --state {state} --alert {result.alert_id}")
        return
    ok.print(f"{prefix}[green]ok[/green] {escape(result.origin)}: {escape(result.message)}")


def _round(store: WitnessStore, transport: HttpTransport, url: str, keys: Sequence[VerifierKey]) -> RoundResult:
    return witness_round(store, transport, url, keys=keys)


@witness_app.command()
def check(url: Url, key: Keys = None, state: State = DEFAULT_STATE, timeout: Timeout = DEFAULT_TIMEOUT) -> None:
    """Fetch the log's checkpoint once, check it against the last one accepted, store it (for cron).

    Exit 0 consistent (or first seen), 3 inconsistency detected, 1 network/config error, 2 usage."""
    keys = _keys(key)
    store = _state(state)
    transport = HttpTransport(timeout=timeout)
    try:
        result = _round(store, transport, url, keys)
    except WitnessError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_ERROR) from None
    finally:
        transport.close()
        store.close()
    _report(result, state)
    raise typer.Exit(EXIT_INCONSISTENT if result.outcome.alarming else EXIT_OK)


@witness_app.command("watch")
def watch_cmd(url: Urls, key: Keys = None, state: State = DEFAULT_STATE, timeout: Timeout = DEFAULT_TIMEOUT,
              interval: Annotated[float, typer.Option(help="seconds between rounds", min=0.1)] = 5.0,
              rounds: Annotated[int | None, typer.Option(help="stop after this many rounds (default: until "
                                                                  "Ctrl-C)", min=1)] = None) -> None:
    """Check the logs every --interval seconds until Ctrl-C, printing what changes.

    Network errors are reported and retried at the next round. Exit 3 if any round detected an inconsistency,
    else 1 if the last round of a log failed, else 0."""
    keys = _keys(key)
    store = _state(state)
    transport = HttpTransport(timeout=timeout)
    done = 0
    alarmed = False
    failing: dict[str, str] = {}
    last: dict[str, Any] = {}

    def one_round() -> None:
        nonlocal done, alarmed
        done += 1
        for target in url:
            at = f"{time.strftime('%H:%M:%S')} "
            try:
                result = _round(store, transport, target, keys)
            except WitnessError as exc:
                if failing.get(target) != str(exc):  # said once until it changes
                    out.print(f"{at}[yellow]{escape(target)}:[/yellow] {escape(str(exc))} (retrying every "
                              f"{interval:g} s)")
                failing[target] = str(exc)
                continue
            if failing.pop(target, None) is not None:
                out.print(f"{at}{escape(target)} answers again")
            alarmed = alarmed or result.outcome.alarming
            changed = last.get(target) != result.seen  # said once per new checkpoint, alerts every round
            last[target] = result.seen
            if changed or result.outcome.alarming:
                _report(result, state, ok=out, alarm=out, prefix=at)
        status.update(f"round {done}: watching {len(url)} log(s) every {interval:g} s"
                      f"{' — INCONSISTENCY DETECTED' if alarmed else ''}; Ctrl-C stops")

    # one console for the lines and the spinner below them, so they never overwrite each other
    status = out.status("first round…")
    try:
        with status:
            watch(one_round, interval=interval, stop=lambda: rounds is not None and done >= rounds)
    except KeyboardInterrupt:
        out.print(f"stopped after {done} round(s)")
    finally:
        transport.close()
        store.close()
    raise typer.Exit(EXIT_INCONSISTENT if alarmed else EXIT_ERROR if failing else EXIT_OK)


@witness_app.command()
def show(state: State = DEFAULT_STATE,
         alert: Annotated[int | None, typer.Option(help="print this alert's evidence (JSON: the signed notes, "
                                                        "the proof) and nothing else")] = None,
         as_json: Annotated[bool, typer.Option("--json", help="print everything as JSON")] = False) -> None:
    """What the witness has seen: each log, its pinned key, latest accepted checkpoint, history and alerts."""
    if not state.exists():
        err.print(f"[red]error:[/red] no witness state at {state}; run dbp witness check --url URL first "
                  "(or pass --state)")
        raise typer.Exit(EXIT_ERROR)
    store = _state(state)
    try:
        if alert is not None:
            found = store.alert(alert)
            if found is None:
                err.print(f"[red]error:[/red] no alert #{alert} in {state}")
                raise typer.Exit(EXIT_ERROR)
            print(json.dumps({"id": found.id, "kind": found.kind, "origin": found.origin, "url": found.url,
                              "message": found.message, "firstSeen": found.first_seen, "lastSeen": found.last_seen,
                              "timesSeen": found.times_seen, "evidence": found.evidence}, indent=2,
                             ensure_ascii=False))
            return
        logs = store.logs()
        alerts = store.alerts()
        if as_json:
            print(json.dumps({"logs": [{
                "origin": r.origin, "url": r.url, "verifierKey": r.key.encode(), "pinned": r.pinned,
                "pinnedAt": r.pinned_at, "checkedAt": r.checked_at,
                "latest": None if r.latest is None else {"size": r.latest.size, "note": r.latest.note,
                                                         "acceptedAt": r.latest_at},
                "seen": len(store.history(r.origin))} for r in logs],
                "alerts": [{"id": a.id, "kind": a.kind, "origin": a.origin, "message": a.message,
                            "firstSeen": a.first_seen, "lastSeen": a.last_seen, "timesSeen": a.times_seen}
                           for a in alerts]}, indent=2, ensure_ascii=False))
            return
        if not logs:
            out.print(f"no log witnessed yet in {state}")
        for r in logs:
            out.print(f"[bold]{escape(r.origin)}[/bold]  ({escape(r.url)})")
            how = "given" if r.pinned == "given" else "trusted on first use"
            out.print(f"  key      {escape(r.key.encode())}  ({how}, pinned {r.pinned_at})")
            latest = escape(r.latest.describe()) if r.latest else "none accepted"
            out.print(f"  latest   {latest}  (accepted {r.latest_at or '-'}, last checked {r.checked_at or '-'})")
            out.print(f"  seen     {len(store.history(r.origin))} distinct verified checkpoint(s)")
        if alerts:
            err.print(f"[bold red]{len(alerts)} alert(s)[/bold red]")
            for a in alerts:
                err.print(f"  [red]#{a.id} {a.kind}[/red] {escape(a.origin)} (first {a.first_seen}, last {a.last_seen},"
                          f" {a.times_seen}×): {escape(a.message)}")
            err.print(f"  evidence: dbp witness show --state {state} --alert ID")
        else:
            out.print("no alerts")
    finally:
        store.close()

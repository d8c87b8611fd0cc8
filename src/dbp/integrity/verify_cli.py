"""``dbp verify`` — check a passport version's evidence bundle, offline or fetched from its repository.

Sources: a bundle file (``GET /api/v1/dpps/{id}/evidence`` saved; fully offline), a passport URL
(``https://host/api/v1/dpps/{id}`` — its bundle and the repository's published keys are fetched), or a passport
document file with ``--url`` of the repository (is this file what the repository logged?). Exit codes: 0 valid,
3 not valid (the failing step is named), 4 consistent but only its own keys vouch for it (no ``--keys``, no URL),
1 the source could not be read or fetched, 2 usage.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table

from dbp.errors import VerificationError
from dbp.integrity import evidence
from dbp.integrity.canonical import CanonicalizationError, canonical_bytes
from dbp.integrity.verify import FAIL, PASS, WARN, Report, Trusted, trusted_keys, trusted_periods, verify_bundle

MAX_FETCH = evidence.MAX_BUNDLE_BYTES
out = Console()
err = Console(stderr=True)
COLOURS = {PASS: "green", FAIL: "bold red", WARN: "yellow"}


class FetchError(Exception):
    """A source could not be read or fetched: the message says which and why."""


def _get(client: httpx.Client, url: str, **params: Any) -> Any:
    try:
        with client.stream("GET", url, params=params or None) as r:
            body = b""
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > MAX_FETCH:
                    raise FetchError(f"{url}: answer larger than {MAX_FETCH} bytes")
    except httpx.HTTPError as exc:
        raise FetchError(f"cannot fetch {url}: {exc}") from None
    if r.status_code != 200:
        raise FetchError(f"{url}: HTTP {r.status_code}: {body[:300].decode('utf-8', 'replace')}")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FetchError(f"{url}: expected JSON, got {exc}") from None


def _base(url: str) -> tuple[str, str | None]:
    """(repository base URL, dppId or None) of a passport URL or a repository URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FetchError(f"expected an http(s) URL, got {url!r}")
    path = parts.path
    marker = "/api/v1/dpps/"
    dpp_id = None
    if marker in path:
        path, rest = path.split(marker, 1)
        dpp_id = rest.split("/", 1)[0] or None
    return urlunsplit((parts.scheme, parts.netloc, path.rstrip("/"), "", "")), dpp_id


def _trusted_checkpoint(client: httpx.Client | None, base: str | None, note: str | None,
                        tree_size: int) -> Trusted:
    if note is None:
        return Trusted()
    proof: list[bytes] = []
    if client is not None and base is not None:
        from dbp.integrity.checkpoint import parse_checkpoint, parse_note

        try:
            size = parse_checkpoint(parse_note(note.encode()).text).size
        except VerificationError as exc:
            raise FetchError(f"trusted checkpoint: {exc}") from None
        if size != tree_size:
            small, large = sorted((size, tree_size))
            url = f"{base}/api/v1/log/proof/consistency"
            answer = _get(client, url, **{"from": small, "to": large})
            hashes = answer.get("hashes") if isinstance(answer, dict) else None
            if not isinstance(hashes, list) or len(hashes) > 128:
                raise FetchError(f"{url}: expected {{hashes: [base64, …]}}, got {str(answer)[:120]}")
            try:
                proof = [base64.b64decode(str(h), validate=True) for h in hashes]
            except (binascii.Error, ValueError):
                raise FetchError(f"{url}: expected standard base64 hashes") from None
    return Trusted(checkpoint=note, consistency_proof=proof)


def _document_bytes(path: Path) -> tuple[bytes, dict[str, Any]]:
    try:
        parsed = orjson.loads(path.read_bytes())
        return canonical_bytes(parsed), parsed
    except (OSError, orjson.JSONDecodeError, CanonicalizationError) as exc:
        raise FetchError(f"{path}: {exc}") from None


def run(source: str, *, url: str | None, version: int | None, keys_file: Path | None,
        trusted_checkpoint: Path | None, token: str | None = None) -> Report:
    """Fetch or read what ``source`` names and verify it (module doc). ``FetchError`` when it cannot."""
    note = trusted_checkpoint.read_text() if trusted_checkpoint else None
    pinned, periods = None, None
    if keys_file:  # a keys document (GET /api/v1/log/keys, with signing periods) or a plain JWK Set
        doc = orjson.loads(keys_file.read_bytes())
        pinned, periods = trusted_keys(doc), trusted_periods(doc)
    if source.startswith(("http://", "https://")):
        url, source_file = source, None
    else:
        source_file = Path(source)
        if not source_file.is_file():
            raise FetchError(f"{source}: no such file (give a bundle file, a document file, or a passport URL)")
    if source_file is not None and url is None:  # a bundle file, offline
        data = source_file.read_bytes()
        try:
            looks_like_bundle = isinstance(parsed := orjson.loads(data), dict) and "format" in parsed
        except orjson.JSONDecodeError as exc:
            raise FetchError(f"{source}: expected JSON (an evidence bundle), got {exc}") from None
        if not looks_like_bundle:
            raise FetchError(f"{source}: not an evidence bundle; to check a passport document give --url of its "
                             "repository")
        return verify_bundle(parsed, trusted=Trusted(keys=pinned, checkpoint=note, periods=periods))
    assert url is not None
    base, dpp_id = _base(url)
    document: bytes | None = None
    if source_file is not None:
        document, parsed = _document_bytes(source_file)
        dpp_id = parsed.get("dppId") if isinstance(parsed, dict) else None
        if not isinstance(dpp_id, str):
            raise FetchError(f"{source}: expected a passport document with a dppId")
    if dpp_id is None:
        raise FetchError(f"{url}: expected a passport URL (…/api/v1/dpps/<dppId>)")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=20, follow_redirects=False, headers=headers) as client:
        params = {} if version is None else {"version": version}
        raw = _get(client, f"{base}/api/v1/dpps/{dpp_id}/evidence", **params)
        if pinned is None:  # the repository's published keys and the period each signed in
            published_doc = _get(client, f"{base}/api/v1/log/keys")
            pinned, periods = trusted_keys(published_doc), trusted_periods(published_doc)
        bundle = evidence.parse_bundle(raw)
        if document is not None:  # is the file what was logged? (its hash is compared with the leaf)
            bundle = evidence.Bundle(**{**bundle.__dict__, "document": document})
        trusted = _trusted_checkpoint(client, base, note, bundle.tree_size)
    return verify_bundle(bundle, trusted=Trusted(keys=pinned, checkpoint=trusted.checkpoint, periods=periods,
                                                 consistency_proof=trusted.consistency_proof))


def show(report: Report) -> None:
    table = Table(title=f"{report.view or '?'} view of version {report.version} of {report.dpp_id}")
    for column in ("#", "step", "verdict", "detail"):
        table.add_column(column)
    for step in report.steps:
        colour = COLOURS.get(step.verdict, "dim")
        table.add_row(str(step.number), step.name, f"[{colour}]{step.verdict}[/{colour}]", step.detail)
    out.print(table)
    failed = report.first_failure
    if report.valid:
        out.print("[bold green]VALID[/bold green]: every check passed, with keys you trust")
    elif failed is None:
        err.print("[bold yellow]UNAUTHENTICATED[/bold yellow]: the bundle is consistent, but only its own keys vouch "
                  "for it (anyone can make such a bundle): give --keys (GET /api/v1/log/keys, obtained from the "
                  "operator) or check it with a passport URL")
    else:
        err.print(f"[bold red]NOT VALID[/bold red]: step {failed.number} ({failed.name}) failed: {failed.detail}")


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify_cmd(
        source: Annotated[str, typer.Argument(help="evidence bundle file, passport URL, or passport document file")],
        url: Annotated[str | None, typer.Option(help="repository (or passport) URL, to check a document file")] = None,
        version: Annotated[int | None, typer.Option(min=1, help="version to fetch (default: current)")] = None,
        keys: Annotated[Path | None, typer.Option(help="keys to trust: GET /api/v1/log/keys saved (with signing "
                                                    "periods) or a JWK Set")]
        = None,
        trusted_checkpoint: Annotated[Path | None, typer.Option(help="a signed checkpoint note you trust")] = None,
        token: Annotated[str | None, typer.Option(envvar="DBP_TOKEN", help="bearer token: callers who may read the "
                                                  "whole passport get the signed full version, others its public view")]
        = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    ) -> None:
        """Verify a passport version: canonical bytes, content hash, signature, log inclusion, checkpoint
        signature, keys, consistency. Exit 0 valid, 3 not valid, 4 consistent but vouched for only by its own keys
        (give --keys), 1 cannot read/fetch."""
        try:
            report = run(source, url=url, version=version, keys_file=keys, trusted_checkpoint=trusted_checkpoint,
                         token=token)
        except (FetchError, VerificationError, OSError, orjson.JSONDecodeError) as exc:
            err.print(f"[red]cannot verify:[/red] {exc}")
            raise typer.Exit(1) from None
        if as_json:
            out.print_json(orjson.dumps(report.as_json()).decode())
        else:
            show(report)
        raise typer.Exit(0 if report.valid else 4 if report.consistent else 3)

"""``dbp qr DPP_ID``: a passport's QR code (its product identifier link) as an SVG or PNG file;
``dbp qr-labels``: printable label sheets of a batch (PDF, SVG pages, or a ZIP of one file per battery).

Exit codes: 0 written; 1 unknown passport or nothing selected, database unreachable, identifier too large for
the chosen level, more than 5000 labels, or the file cannot be written; 2 a usage error (unknown option, value
out of range, no selection, a layout that leaves no room for a readable code).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dbp.carrier import qr, sheets
from dbp.cli_settings import run_or_exit, settings_or_exit
from dbp.errors import DbpError

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _format_of(fmt: qr.Format | None, output: Path | None) -> qr.Format:
    """The chosen format; without one, the output file's suffix (``.png``) decides, else SVG."""
    if fmt is not None:
        return fmt
    return qr.Format.png if output is not None and output.suffix.lower() == ".png" else qr.Format.svg


def register(app: typer.Typer) -> None:
    register_labels(app)

    @app.command("qr")
    def qr_cmd(
        dpp_id: Annotated[str, typer.Argument(help="passport identifier, e.g. urn:uuid:…")],
        fmt: Annotated[qr.Format | None, typer.Option("--format", case_sensitive=False,
                                                      help="svg or png (default: from -o's suffix, else svg)")]
        = None,
        scale: Annotated[int, typer.Option(min=qr.SCALE_MIN, max=qr.SCALE_MAX, help="pixels per module")]
        = qr.SCALE_DEFAULT,
        ecc: Annotated[qr.Ecc, typer.Option(case_sensitive=False, help="error-correction level")] = qr.Ecc.M,
        border: Annotated[int, typer.Option(min=qr.BORDER_MIN, max=qr.BORDER_MAX,
                                            help="quiet zone in modules (4 is the QR standard's)")]
        = qr.BORDER_DEFAULT,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write (default stdout)")]
        = None,
        database_url: Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (DBP_DATABASE_URL)")]
        = None,
    ) -> None:
        """Write the QR code of passport DPP_ID: it encodes the battery's product identifier link
        (uniqueProductIdentifier), never the passport id. Exit 0 written, 1 not found or error, 2 usage."""
        from dbp.carrier import service

        opts = qr.QrOptions(format=_format_of(fmt, output), scale=scale, ecc=ecc, border=border)
        settings = settings_or_exit(exit_code=EXIT_USAGE, database_url=database_url)
        carried, image = run_or_exit(settings, lambda s: service.qr_code(s, dpp_id=dpp_id, opts=opts),
                                     exit_code=EXIT_ERROR)
        if not qr.is_web_link(carried.product_id):
            err.print(f"[yellow]note:[/yellow] the product identifier {escape(carried.product_id)!s} is not an "
                      "http(s) link; the code carries it as the passport states it")
        if output is None:
            sys.stdout.buffer.write(image.data)
            sys.stdout.buffer.flush()
            return
        try:
            output.write_bytes(image.data)
        except OSError as exc:
            err.print(f"[red]cannot write {escape(str(output))}:[/red] {escape(exc.strerror or str(exc))}")
            raise typer.Exit(EXIT_ERROR) from None
        err.print(f"{escape(str(output))}: QR version {image.version}, {image.pixels}×{image.pixels} px, "
                  f"level {opts.ecc.value}, carrying {escape(carried.product_id)}")


class LabelFormat(StrEnum):
    pdf = "pdf"
    svg = "svg"
    zip = "zip"


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        err.print(f"[red]cannot write {escape(str(path))}:[/red] {escape(exc.strerror or str(exc))}")
        raise typer.Exit(EXIT_ERROR) from None


def register_labels(app: typer.Typer) -> None:
    @app.command("qr-labels")
    def labels_cmd(
        output: Annotated[Path, typer.Option("--output", "-o", help="file to write (svg of several pages: "
                                                                    "FILE-001.svg, FILE-002.svg, …)")],
        batch: Annotated[str | None, typer.Option(help="passports of this batch (batchNumber)")] = None,
        model: Annotated[str | None, typer.Option(help="passports of this battery model")] = None,
        operator: Annotated[str | None, typer.Option(help="passports of this responsible operator")] = None,
        dpp_id: Annotated[list[str] | None, typer.Option("--dpp-id", help="this passport (repeatable; not with "
                                                                          "--batch/--model/--operator)")] = None,
        fmt: Annotated[LabelFormat | None, typer.Option("--format", case_sensitive=False,
                                                        help="pdf, svg or zip (default: from -o's suffix, else pdf)")]
        = None,
        page: Annotated[sheets.Page, typer.Option(case_sensitive=False, help="page size")] = sheets.Page.a4,
        columns: Annotated[int, typer.Option(min=sheets.COLUMNS_MIN, max=sheets.COLUMNS_MAX, help="labels across")]
        = sheets.COLUMNS_DEFAULT,
        rows: Annotated[int, typer.Option(min=sheets.ROWS_MIN, max=sheets.ROWS_MAX, help="labels down")]
        = sheets.ROWS_DEFAULT,
        margin: Annotated[float, typer.Option(min=sheets.MARGIN_MIN, max=sheets.MARGIN_MAX, help="page margin, mm")]
        = sheets.MARGIN_DEFAULT,
        gap: Annotated[float, typer.Option(min=sheets.GAP_MIN, max=sheets.GAP_MAX, help="gap between labels, mm")]
        = sheets.GAP_DEFAULT,
        code_size: Annotated[float | None, typer.Option(min=sheets.CODE_MIN, max=sheets.CODE_MAX,
                                                        help="code side incl. quiet zone, mm (default: largest)")]
        = None,
        font_size: Annotated[float, typer.Option(min=sheets.FONT_MIN_PT, max=sheets.FONT_MAX_PT,
                                                 help="largest caption size, pt (shrinks to fit)")]
        = sheets.FONT_DEFAULT_PT,
        ecc: Annotated[qr.Ecc, typer.Option(case_sensitive=False, help="error-correction level")] = qr.Ecc.M,
        border: Annotated[int, typer.Option(min=sheets.BORDER_MIN, max=sheets.BORDER_MAX,
                                            help="quiet zone in modules (4 is the QR standard's)")]
        = sheets.BORDER_DEFAULT,
        files: Annotated[sheets.FileKind, typer.Option(case_sensitive=False,
                                                       help="zip: svg labels or png codes per battery")]
        = sheets.FileKind.svg,
        scale: Annotated[int, typer.Option(min=sheets.SCALE_MIN, max=sheets.SCALE_MAX,
                                           help="zip of png: pixels per module")] = sheets.SCALE_DEFAULT,
        database_url: Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (DBP_DATABASE_URL)")]
        = None,
    ) -> None:
        """Write printable QR label sheets for a batch: each label is the code of a battery's product identifier
        link (uniqueProductIdentifier) with the identifier, model and batch as text. Select with --batch,
        --model, --operator (combinable) or repeated --dpp-id; at most 5000 labels. Exit 0 written, 1 nothing
        found or error, 2 usage."""
        from dbp.carrier import service

        chosen = fmt or next((f for f in LabelFormat if output.suffix.lower() == f".{f.value}"), LabelFormat.pdf)
        if dpp_id and (batch or model or operator):
            err.print("[red]--dpp-id stands alone: not with --batch, --model or --operator[/red]")
            raise typer.Exit(EXIT_USAGE)
        if not (dpp_id or batch or model or operator):
            err.print("[red]name what to print: --batch, --model, --operator or --dpp-id[/red]")
            raise typer.Exit(EXIT_USAGE)
        try:
            opts = sheets.options(page=page.value, columns=columns, rows=rows, margin=margin, gap=gap,
                                  code_size=code_size, font_size=font_size, ecc=ecc.value, border=border)
        except DbpError as exc:
            err.print(f"[red]{escape(exc.message)}[/red]")
            raise typer.Exit(EXIT_USAGE) from None
        settings = settings_or_exit(exit_code=EXIT_USAGE, database_url=database_url)
        selected = run_or_exit(settings, lambda s: service.label_rows(
            s, batch=batch, model=model, operator_id=operator, dpp_ids=dpp_id), exit_code=EXIT_ERROR)
        labels = [service.label_of(r) for r in selected]
        odd = sum(not qr.is_web_link(r.product_id) for r in selected)
        if odd:
            err.print(f"[yellow]note:[/yellow] {odd} product identifier(s) are not http(s) links; the codes carry "
                      "them as the passports state them")
        title = f"Battery passport labels: {batch or model or operator or f'{len(labels)} passports'}"
        with Progress(TextColumn("drawing labels"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err, transient=True, disable=len(labels) < 200) as progress:
            task = progress.add_task("labels", total=len(labels))

            def advance(done: int) -> None:
                progress.update(task, completed=done)

            try:
                if chosen is LabelFormat.pdf:
                    written = [(output, sheets.pdf(labels, opts, title=title, progress=advance))]
                elif chosen is LabelFormat.zip:
                    written = [(output, sheets.zip_files(labels, opts, files=files, scale=scale, progress=advance))]
                else:
                    pages = sheets.svg_pages(labels, opts, progress=advance)
                    written = [(output, pages[0])] if len(pages) == 1 else [
                        (output.with_name(f"{output.stem}-{n:03d}{output.suffix or '.svg'}"), p)
                        for n, p in enumerate(pages, start=1)]
            except DbpError as exc:
                progress.stop()
                err.print(f"[red]{escape(exc.message)}[/red]")
                raise typer.Exit(EXIT_ERROR) from None
        for path, data in written:
            _write(path, data)
        pages_count = -(-len(labels) // opts.per_page)
        names = ", ".join(escape(str(p)) for p, _ in written[:3]) + (" …" if len(written) > 3 else "")
        err.print(f"{names}: {len(labels)} labels on {pages_count} page(s) of {opts.columns} × {opts.rows} "
                  f"({opts.page.value}, level {opts.ecc.value})")

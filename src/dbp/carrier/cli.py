"""``dbp qr DPP_ID``: a passport's QR code (its product identifier link) as an SVG or PNG file.

Exit codes: 0 written; 1 unknown passport, database unreachable, identifier too large for the chosen level, or
the file cannot be written; 2 a usage error (unknown option, value out of range).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from dbp.carrier import qr
from dbp.cli_settings import settings_or_exit
from dbp.errors import DbpError

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _format_of(fmt: qr.Format | None, output: Path | None) -> qr.Format:
    """The chosen format; without one, the output file's suffix (``.png``) decides, else SVG."""
    if fmt is not None:
        return fmt
    return qr.Format.png if output is not None and output.suffix.lower() == ".png" else qr.Format.svg


def register(app: typer.Typer) -> None:
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
        from dbp.db import make_engine, make_sessionmaker

        opts = qr.QrOptions(format=_format_of(fmt, output), scale=scale, ecc=ecc, border=border)
        settings = settings_or_exit(exit_code=EXIT_USAGE, database_url=database_url)
        engine = make_engine(settings.database_url, read_only=True)
        try:
            with make_sessionmaker(engine)() as session:
                carried, image = service.qr_code(session, dpp_id=dpp_id, opts=opts)
                session.rollback()
        except DbpError as exc:
            err.print(f"[red]{escape(exc.message)}[/red]")
            raise typer.Exit(EXIT_ERROR) from None
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            err.print(f"[red]cannot read {escape(settings.database_url)}:[/red] {escape(str(cause))}")
            raise typer.Exit(EXIT_ERROR) from None
        finally:
            engine.dispose()
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

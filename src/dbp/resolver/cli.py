"""``dbp resolver links add|list|remove``: the resolver links of any operator, managed with database access (the
registry operator's administration; operators use ``/api/v1/resolver/links``). Output is JSON on stdout.

Exit codes: 0 done; 1 refused (the broken rule on stderr), unknown link, database unreachable; 2 usage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from sqlalchemy.orm import Session

from dbp.cli_settings import run_or_exit, settings_or_exit

T = TypeVar("T")
EXIT_ERROR, EXIT_USAGE = 1, 2
err = Console(stderr=True, highlight=False, soft_wrap=True)
DbUrl = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (DBP_DATABASE_URL)")]


def _in_transaction(database_url: str | None, work: Callable[[Session], T]) -> T:
    settings = settings_or_exit(exit_code=EXIT_USAGE, database_url=database_url)
    return run_or_exit(settings, work, write=True, exit_code=EXIT_ERROR)


def _print(data: Any) -> None:
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def register(app: typer.Typer) -> None:
    resolver_app = typer.Typer(help="The GS1 resolver of the registry node.", no_args_is_help=True)
    links_app = typer.Typer(help="Links operators configure for their batteries (gs1:pip, …).",
                            no_args_is_help=True)
    resolver_app.add_typer(links_app, name="links")
    app.add_typer(resolver_app, name="resolver")

    @links_app.command("add")
    def add(
        operator: Annotated[str, typer.Option("--operator", help="operator identifier of the scope")],
        link_type: Annotated[str, typer.Option("--type", help="GS1 link type, e.g. gs1:pip")],
        href: Annotated[str, typer.Option(help="https URL template: {dppId} {gtin} {serial} {productId} "
                                               "{endpoint}")],
        title: Annotated[str, typer.Option(help="human-readable title")],
        gtin: Annotated[str | None, typer.Option(help="only this GTIN's batteries")] = None,
        product_id: Annotated[str | None, typer.Option("--product-id", help="only this battery")] = None,
        media_type: Annotated[str | None, typer.Option("--media-type", help="media type of the target")] = None,
        hreflang: Annotated[str | None, typer.Option(help="comma-separated language tags")] = None,
        default: Annotated[bool, typer.Option("--default", help="redirect here without linkType")] = False,
        database_url: DbUrl = None,
    ) -> None:
        """Add a link; prints it. Exit 1 with the broken rule when a value is refused."""
        from dbp.resolver import service

        _print(_in_transaction(database_url, lambda s: service.link_json(service.add_link(
            s, operator_id=operator, link_type=link_type, href=href, title=title, gtin=gtin, product_id=product_id,
            media_type=media_type, hreflang=hreflang, default=default, created_by="cli"))))

    @links_app.command("list")
    def list_(
        operator: Annotated[str | None, typer.Option("--operator", help="only this operator's links")] = None,
        database_url: DbUrl = None,
    ) -> None:
        """Print the links (all operators' without --operator)."""
        from dbp.resolver import service

        _print({"items": _in_transaction(database_url, lambda s: [
            service.link_json(x) for x in service.list_links(s, operator_id=operator)])})

    @links_app.command("remove")
    def remove(link_id: Annotated[int, typer.Argument(help="the link's id", min=1)],
               database_url: DbUrl = None) -> None:
        """Remove a link. Exit 1 when there is none with that id."""
        from dbp.resolver import service

        _print(_in_transaction(database_url, lambda s: service.link_json(service.remove_link(s, link_id=link_id))))

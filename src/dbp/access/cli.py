"""``dbp orgs|clients|users|apikeys|keys|authorise`` — identity administration on the database.

Every command prints JSON on stdout (secrets appear once, here, and are stored only hashed) and
exits non-zero with a reason on stderr when it cannot do what was asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from sqlalchemy.orm import Session

from dbp.access import service
from dbp.access.principal import Role
from dbp.access.secrets import DEVELOPMENT_SECRET
from dbp.access.tokens import rotate_signing_keys
from dbp.config import Settings
from dbp.errors import DbpError

orgs_app = typer.Typer(help="Organisations (economic operators, repairers, recyclers, authorities, …).",
                       no_args_is_help=True)
clients_app = typer.Typer(help="OAuth2 API clients (client credentials).", no_args_is_help=True)
users_app = typer.Typer(help="Portal users (argon2id password hashes).", no_args_is_help=True)
apikeys_app = typer.Typer(help="Device API keys (battery management gateways).", no_args_is_help=True)
keys_app = typer.Typer(help="Signing keys: access tokens and the repository key (versions, checkpoints).",
                       no_args_is_help=True)
err = Console(stderr=True)
T = TypeVar("T")

RoleOpt = Annotated[Role, typer.Option(help="role of the organisation / client")]
OrgOpt = Annotated[str, typer.Option("--org", help="organisation id or operator identifier")]


def _print(data: Any) -> None:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@contextmanager
def _session() -> Iterator[Session]:
    from dbp.db import make_engine, make_sessionmaker
    from dbp.migrate import upgrade

    settings = Settings()
    upgrade(settings)
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine).begin() as session:
            yield session
    finally:
        engine.dispose()


def _run(work: Callable[[Session], T]) -> T:
    try:
        with _session() as session:
            return work(session)
    except DbpError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None


@orgs_app.command("create")
def orgs_create(name: Annotated[str, typer.Option()], operator_id: Annotated[str, typer.Option()],
                role: RoleOpt) -> None:
    """Register an organisation with its operator identifier (e.g. a GLN, LEI or EORI)."""
    org = _run(lambda s: service.create_org(s, name=name, operator_id=operator_id, role=role))
    _print({"id": org.id, "name": org.name, "operatorId": org.operator_id, "role": org.role})


@orgs_app.command("list")
def orgs_list() -> None:
    """List organisations."""
    _print(_run(lambda s: [{"id": o.id, "name": o.name, "operatorId": o.operator_id, "role": o.role}
                           for o in service.list_orgs(s)]))


@clients_app.command("create")
def clients_create(org: OrgOpt, role: RoleOpt) -> None:
    """Create an API client; prints client_id and client_secret (shown once)."""
    def work(s: Session) -> service.IssuedClient:
        return service.create_client(s, org_id=service.org_by_ref(s, ref=org).id, role=role)

    issued = _run(work)
    _print({"client_id": issued.client_id, "client_secret": issued.client_secret, "org": issued.org_id,
            "role": issued.role.value})


@users_app.command("create")
def users_create(org: OrgOpt, username: Annotated[str, typer.Option()],
                 password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)]
                 ) -> None:
    """Create a portal user of an organisation."""
    user = _run(lambda s: service.create_user(s, org_id=service.org_by_ref(s, ref=org).id, username=username,
                                              password=password))
    _print({"id": user.id, "username": user.username, "org": user.org_id})


@apikeys_app.command("create")
def apikeys_create(org: OrgOpt, dpp_id: Annotated[list[str] | None, typer.Option(
        help="a battery the key may feed (repeat); default: all of the organisation's")] = None) -> None:
    """Create a device API key (send it as X-API-Key); shown once."""
    issued = _run(lambda s: service.create_api_key(s, org_id=service.org_by_ref(s, ref=org).id,
                                                   dpp_ids=dpp_id or None))
    _print({"api_key": issued.api_key, "key_id": issued.key_id})


@keys_app.command("rotate")
def keys_rotate(which: Annotated[str, typer.Option(
        help="tokens (access-token keys), repository (the key that signs versions and log checkpoints) or all")]
        = "all") -> None:
    """Start signing with new keys. Old token keys verify tokens until they expire; the old repository key stays
    published (jwks.json, did.json) for what it signed and co-signs checkpoints for 30 days."""
    from dbp.integrity import log as integrity_log

    if which not in ("tokens", "repository", "all"):
        err.print(f"[red]--which: expected tokens, repository or all, got {which!r}[/red]")
        raise typer.Exit(2)
    secret = Settings().secret_key or DEVELOPMENT_SECRET
    out: dict[str, str] = {}
    if which in ("tokens", "all"):
        out["signingKey"] = _run(lambda s: rotate_signing_keys(s, secret_key=secret))
    if which in ("repository", "all"):
        out["repositoryKey"] = _run(lambda s: integrity_log.rotate_key(s, secret_key=secret))
    _print({**out, "note": "running servers sign with the new keys within a second (tokens: a minute); old tokens "
                           "stay valid until they expire; retired repository keys stay published"})


def authorise(operator: Annotated[str, typer.Option(help="the economic operator (id or operator id)")],
              agent: Annotated[str, typer.Option(help="the organisation it authorises")],
              reference: Annotated[str, typer.Option(help="the written authorisation")]) -> None:
    """Record an economic operator's written authorisation of another organisation (Art. 77(4))."""
    def work(s: Session) -> dict[str, str]:
        op, ag = service.org_by_ref(s, ref=operator), service.org_by_ref(s, ref=agent)
        service.authorise(s, operator_org_id=op.id, agent_org_id=ag.id, reference=reference)
        return {"operator": op.operator_id, "agent": ag.operator_id, "reference": reference}

    _print(_run(work))


def register(app: typer.Typer) -> None:
    app.add_typer(orgs_app, name="orgs")
    app.add_typer(clients_app, name="clients")
    app.add_typer(users_app, name="users")
    app.add_typer(apikeys_app, name="apikeys")
    app.add_typer(keys_app, name="keys")
    app.command("authorise")(authorise)

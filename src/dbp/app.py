"""``create_app(settings)``: builds engine, readers and routes. Nothing is built at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.telemetry import TelemetryConfig
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp

from dbp import __version__
from dbp.access import routes as access_routes
from dbp.access.oidc import OidcVerifier
from dbp.access.policy import load_policy
from dbp.access.secrets import DEVELOPMENT_SECRET
from dbp.access.tokens import TokenService
from dbp.audit import routes as audit_routes
from dbp.audit.durable import ReadLogWriter
from dbp.config import Role, Settings
from dbp.db import make_engine, make_sessionmaker
from dbp.errors import DbpError, FieldError, ServiceUnavailable
from dbp.hardening import Hardening
from dbp.http import CorrelationAndLimits, correlation_id, error_response, json_response, result_response
from dbp.integrity import log as integrity_log
from dbp.integrity import routes as integrity_routes
from dbp.integrity import serving as log_serving
from dbp.integrity import signing, verify_routes
from dbp.passports import evidence as evidence_routes
from dbp.passports import routes as passport_routes
from dbp.passports.guard import ReadContexts
from dbp.passports.reads import CurrentVersionReader, FastCurrentReads
from dbp.passports.redaction import ViewCache
from dbp.passports.schemas import BatteryPassport
from dbp.passports.validation import json_path

log = logging.getLogger("dbp")
TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}

_HTTP_CODES = {400: "ClientErrorBadRequest", 401: "ClientNotAuthorized", 403: "ClientForbidden",
               404: "ClientErrorResourceNotFound", 405: "ClientMethodNotAllowed", 406: "ClientErrorNotAcceptable",
               409: "ClientResourceConflict", 413: "ClientErrorPayloadTooLarge",
               415: "ClientErrorUnsupportedMediaType", 422: "ClientErrorBadRequest"}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DbpError)
    async def dbp_error(request: Request, exc: DbpError) -> Response:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> Response:
        details = [FieldError(json_path(tuple(e.get("loc", ()))), f"request.{e.get('type', 'invalid')}",
                              str(e.get("msg", ""))).as_dict() for e in exc.errors()]
        return result_response(http_status=400, status_code="ClientErrorBadRequest",
                               text="request parameters are invalid", correlation=correlation_id(request),
                               details=details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return result_response(http_status=exc.status_code,
                               status_code=_HTTP_CODES.get(exc.status_code, "ClientError"),
                               text=str(exc.detail), correlation=correlation_id(request))

    @app.exception_handler(OperationalError)
    async def database_unavailable(request: Request, exc: OperationalError) -> Response:
        log.warning("database unavailable: %s", exc.orig)
        response = error_response(request, ServiceUnavailable("the database is busy or unreachable; retry shortly"))
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        cid = correlation_id(request)
        log.exception("unhandled error, correlation id %s", cid)
        return result_response(http_status=500, status_code="ServerInternalError",
                               text="internal error; quote the correlation id when reporting it", correlation=cid)


class DbpApp(FastAPI):
    """FastAPI with the hot-read fast paths (passports, log proofs) in front of its whole middleware stack."""

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        if Role.registry in self.state.settings.roles:  # the GS1 resolver's paths, answered before FastAPI
            from dbp.resolver.serving import ResolverApp

            inner = self.state.resolver = ResolverApp(inner, self.state, self.state.settings)
        return Hardening(inner, self.state.settings, fast=FastCurrentReads(self.state),
                         fast_by_prefix=[(log_serving.PREFIX, self._log_reads())])

    def _log_reads(self) -> log_serving.FastLogReads:
        """The log's fast responder, kept in the state so that shutdown closes its connections."""
        self.state.log_reads = log_serving.FastLogReads(self.state)
        return self.state.log_reads


def create_app(settings: Settings) -> FastAPI:
    engine = make_engine(settings.database_url, echo=settings.sql_echo)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:  # read records a killed process left staged reach access_log now, not at the first query
            await app.state.read_log.flush()
        except ServiceUnavailable as exc:
            log.warning("staged access-log records not moved at start-up (they stay staged): %s", exc.__cause__)
        app.state.checkpointer.start()  # signs a checkpoint every second while the log grows
        registrar = None
        if Role.repository in settings.roles and settings.auto_register:  # keeps registrations current
            from dbp.registry.worker import start_for
            registrar = start_for(app)
        prober = None
        if Role.registry in settings.roles and settings.registry_probe_interval > 0:  # routes around dead repos
            from dbp.registry.health import NodeProber
            from dbp.registry.routes import node_fetcher
            prober = app.state.node_prober = NodeProber(app.state.sessionmaker, node_fetcher(app),
                                                        interval=settings.registry_probe_interval)
            prober.start()
        follower = None
        if Role.backup in settings.roles and settings.backup_follow:  # follows the repositories it backs up
            from dbp.replication.follower import Follower
            follower = app.state.follower = Follower(app.state.sessionmaker, interval=settings.backup_interval,
                                                     secret_key=settings.secret_key or DEVELOPMENT_SECRET)
            follower.start()
        yield
        if follower is not None:
            await run_in_threadpool(follower.stop)
        if prober is not None:
            await prober.stop()
        if registrar is not None:
            await registrar.stop()
        await app.state.checkpointer.stop()
        await app.state.read_log.close()
        app.state.reader.close()
        if getattr(app.state, "log_reads", None) is not None:
            app.state.log_reads.close()
        if getattr(app.state, "resolver", None) is not None:
            app.state.resolver.close()
        engine.dispose()
        read_engine.dispose()

    app = DbpApp(
        title="dbp — Digital Battery Passport",
        version=__version__,
        description="EN 18222 passport API for batteries under Regulation (EU) 2023/1542 (Art. 77-78, Annex XIII).",
        lifespan=lifespan,
        # FastAPI checks the OpenTelemetry providers on every request unless told not to (~4 % of a read)
        telemetry=None if settings.telemetry else TELEMETRY_OFF,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    # every passport version written through it is signed with the repository key (dbp.integrity.signing)
    signing.attach(app.state.sessionmaker, signing.VersionSigner(secret_key=settings.secret_key or DEVELOPMENT_SECRET))
    # Reads through a session (search, versions, elements) must not queue behind SQLite's write lock.
    read_engine = make_engine(settings.database_url, read_only=True) if engine.dialect.name == "sqlite" else engine
    app.state.read_sessionmaker = make_sessionmaker(read_engine)
    app.state.reader = CurrentVersionReader(engine)
    app.state.read_log = ReadLogWriter(app.state.sessionmaker, batch_size=settings.read_log_batch,
                                       max_delay=settings.read_log_max_delay)
    app.state.views = ViewCache()
    app.state.read_contexts = ReadContexts()
    app.state.policy = load_policy(settings.access_policy_file)
    app.state.tokens = TokenService(app.state.sessionmaker, issuer=settings.base_url,
                                    secret_key=settings.secret_key or DEVELOPMENT_SECRET,
                                    ttl_seconds=settings.token_ttl_seconds, oidc=_oidc(settings, app))
    app.state.checkpointer = integrity_log.Checkpointer(
        app.state.sessionmaker, read_factory=app.state.read_sessionmaker,
        secret_key=settings.secret_key or DEVELOPMENT_SECRET, origin=integrity_log.origin_of(settings.base_url))
    _install_error_handlers(app)
    app.add_middleware(CorrelationAndLimits, max_body=settings.max_body_bytes)
    app.include_router(passport_routes.router)
    app.include_router(access_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(integrity_routes.router)
    app.include_router(integrity_routes.well_known)
    app.include_router(evidence_routes.router)
    app.include_router(verify_routes.router)
    from dbp.carrier import routes as carrier_routes  # the QR data carrier
    app.include_router(carrier_routes.router)
    from dbp.passports import credentials as credential_routes  # VCs and supplier attestations
    app.include_router(credential_routes.router)
    from dbp.resolver import routes as resolver_routes  # the links operators configure on the resolver
    app.include_router(resolver_routes.router)
    from dbp.replication import routes as replication_routes  # the change feed (issue 6)
    replication_routes.install(app)
    if Role.backup in settings.roles:
        from dbp.replication import backup_routes  # verified copies served when an operator is gone
        app.include_router(backup_routes.router)
    if Role.registry in settings.roles:
        from dbp.registry import routes as registry_routes  # the registry node (registrations, proofs, nodes)
        app.include_router(registry_routes.router)
    from dbp.sentinel import install as install_sentinel  # tamper flags on reads, access-log digests

    install_sentinel(app)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/docs")

    @app.get("/health", tags=["operations"], summary="Liveness and database reachability")
    def health() -> Response:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return json_response({"status": "ok", "version": __version__, "roles": [r.value for r in settings.roles]})

    _add_passport_schema(app)
    return app


def _oidc(settings: Settings, app: FastAPI) -> OidcVerifier | None:
    if not (settings.oidc_issuer and settings.oidc_jwks_url):
        return None
    return OidcVerifier(issuer=settings.oidc_issuer, jwks_url=settings.oidc_jwks_url,
                        factory=app.state.read_sessionmaker)


def _add_passport_schema(app: FastAPI) -> None:
    """Routes read bodies raw; register the passport model so OpenAPI can reference it."""
    original = app.openapi

    def openapi() -> dict:  # type: ignore[type-arg]
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        model = BatteryPassport.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(model.pop("$defs", {}))
        components["BatteryPassport"] = model
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

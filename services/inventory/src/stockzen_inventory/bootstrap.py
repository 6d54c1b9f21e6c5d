"""The composition root of the inventory service: settings in, a ready FastAPI app out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from stockzen_contracts import Code
from stockzen_platform.api_docs import serve_api_docs
from stockzen_platform.disconnects import CancelOnDisconnect
from stockzen_platform.http import RequestContextMiddleware, error_response, install_error_handlers
from stockzen_platform.identity import internal_token_verifier
from stockzen_platform.postgres import assert_role_is_restricted, create_pool

from .adapters.reads import PostgresInventoryReader
from .config import InventorySettings
from .entrypoints import http, read_routes
from .metrics import METRICS

log = logging.getLogger(__name__)

_DATABASE_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
)

_DESCRIPTION = """The inventory read API and change feed. Clients reach it through the gateway,
which vouches for the caller with a short-lived internal token; called directly without one,
every route but `/healthz` and `/metrics` answers `401 UNAUTHORIZED`."""


def build_app(settings: InventorySettings) -> FastAPI:
    """Wire the app; the database pool opens when the app starts, never at import."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(
            settings.database_url,
            max_size=settings.database_pool_size,
            statement_seconds=settings.database_statement_seconds,
        )
        try:
            await assert_role_is_restricted(pool)
            app.state.pool = pool
            app.state.reader = PostgresInventoryReader(pool, time_limit_ms=settings.read_time_limit_ms)
            yield
        finally:
            await pool.close()

    # docs_url/redoc_url None: FastAPI's pages load their scripts from a CDN; serve_api_docs does not.
    app = FastAPI(
        title="StockZen inventory",
        version="0.1.0",
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.verifier = internal_token_verifier(settings.internal_token_secret.get_secret_value())
    install_error_handlers(app)
    _answer_database_outages(app)
    # Inside the request log, so a read stopped because its caller left is logged as 499.
    app.add_middleware(CancelOnDisconnect)
    app.add_middleware(RequestContextMiddleware, metrics=METRICS.http)
    app.include_router(http.router)
    app.include_router(read_routes.router)
    serve_api_docs(app)
    return app


def _answer_database_outages(app: FastAPI) -> None:
    """A database that cannot be reached is a 503 the client may retry, not an internal error."""

    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable", extra={"error": type(exc).__name__})
        return error_response(503, Code.UNAVAILABLE, "the inventory database is unavailable", {"Retry-After": "5"})

    async def closed_under_us(request: Request, exc: Exception) -> JSONResponse:
        # When Postgres goes away mid-transaction, the rollback on the way out raises asyncpg's
        # InterfaceError "connection is closed" in place of the connection error: still an outage.
        # Any other InterfaceError is a bug and stays an internal error.
        if "closed" in str(exc):
            return await unavailable(request, exc)
        raise exc

    async def cut_mid_command(request: Request, exc: Exception) -> JSONResponse:
        # Postgres terminating a connection in the middle of a command can leave asyncpg's protocol
        # half-way, and the commit on the way out then fails with "cannot switch to state ...;
        # another operation is in progress" (seen when Postgres shuts down under reads). Every route
        # here only reads, so answering 503 lets the client retry safely; the message is logged.
        log.warning("database connection left mid-command", extra={"error": str(exc)})
        return await unavailable(request, exc)

    for error in _DATABASE_UNAVAILABLE:
        app.add_exception_handler(error, unavailable)
    app.add_exception_handler(asyncpg.InterfaceError, closed_under_us)
    app.add_exception_handler(asyncpg.exceptions.InternalClientError, cut_mid_command)

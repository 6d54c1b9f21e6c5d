"""Operational routes of the gateway (health), the headers every answer carries, and what it answers
when Redis is away. ``/metrics`` is not here: it has a listener of its own (``GATEWAY_METRICS_PORT``,
on loopback unless told otherwise), so the public port never shows it."""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockzen_contracts import Code
from stockzen_gateway.metrics import METRICS
from stockzen_platform.http import error_response

log = logging.getLogger(__name__)
router = APIRouter()


def answer_redis_outages(app: FastAPI) -> None:
    """Redis holds the request-key records: without it a request cannot keep their promises,
    so it answers 503 rather than 500; retrying with the same ids is always safe."""

    @app.exception_handler(RedisError)
    async def _redis_away(_: Request, exc: RedisError) -> JSONResponse:
        METRICS.redis_errors.labels("request").inc()
        log.warning("redis unavailable", extra={"error": str(exc)})
        return error_response(503, Code.UNAVAILABLE, "a dependency is unavailable; retry later", {"Retry-After": "5"})


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


class AnswerHeaders:
    """Every answer says ``X-Content-Type-Options: nosniff`` (a browser never runs a JSON answer as a
    script or a page), and one that sets no ``Cache-Control`` of its own, every API answer, says
    ``no-store``: tenant data must not stay in a browser's or a proxy's cache. The browser app's files
    and ``/docs`` set their own (they may be cached)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                headers.setdefault("cache-control", "no-store")
                headers.setdefault("x-content-type-options", "nosniff")
            await send(message)

        await self._app(scope, receive, send_with_headers)

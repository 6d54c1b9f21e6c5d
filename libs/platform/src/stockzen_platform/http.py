"""HTTP plumbing both web services share: the ``{code, message}`` error shape, request ids, request logs
and request metrics. Needs the ``http`` extra (FastAPI)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stockzen_contracts import Code

from .logging import log_context

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STATUS_CODES = {
    401: Code.UNAUTHORIZED,
    403: Code.UNAUTHORIZED,
    404: Code.NOT_FOUND,
    413: Code.PAYLOAD_TOO_LARGE,
    415: Code.UNSUPPORTED_MEDIA_TYPE,
    429: Code.RATE_LIMITED,
    503: Code.UNAVAILABLE,
}  # any other 4xx is VALIDATION_ERROR, any other 5xx INTERNAL_ERROR


class ApiError(Exception):
    """A whole-request failure, answered as ``{code, message}`` with ``status_code``."""

    def __init__(self, status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The one error shape of every StockZen HTTP API."""
    return JSONResponse({"code": code, "message": message}, status_code=status_code, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in list(exc.errors())[:5]:
        loc = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc}: {error.get('msg')}" if loc else str(error.get("msg")))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Make every failure of ``app`` answer in the ``{code, message}`` shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(
            exc.status_code, Code.INTERNAL_ERROR if exc.status_code >= 500 else Code.VALIDATION_ERROR
        )
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, Code.VALIDATION_ERROR, _describe_validation(exc))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, Code.INTERNAL_ERROR, "internal error; the request id names it in the logs")


class HttpMetrics:
    """Request counts and latencies by route template, method and status."""

    def __init__(self, namespace: str) -> None:
        self.requests = Counter(
            f"{namespace}_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
        )
        self.latency = Histogram(
            f"{namespace}_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route", "method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )


class RequestContextMiddleware:
    """Gives each request an id (``X-Request-Id``, taken from the caller when well-formed), logs one
    line per request with it, and records request metrics. Headers are never logged."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        with log_context(request_id=request_id):
            try:
                await self._app(scope, receive, send_with_id)
            finally:
                self._finish(scope, status, time.perf_counter() - started)

    def _finish(self, scope: Scope, status: int, elapsed: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope["method"]
        self._metrics.requests.labels(route, method, str(status)).inc()
        self._metrics.latency.labels(route, method).observe(elapsed)
        fields: dict[str, Any] = {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
        }
        identity = scope.get("state", {}).get("identity")
        if identity is not None:
            fields["tenant_id"] = str(identity.tenant_id)
            fields["user_id"] = identity.user_id
        log.info("request", extra=fields)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


def request_id_of(request: Request) -> str:
    """The id the middleware gave this request."""
    value: object = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else uuid.uuid4().hex

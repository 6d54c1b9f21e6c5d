"""Operational routes of the gateway (health, metrics) and what it answers when Redis is away."""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

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


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition of this process's series."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

"""Operational routes of the inventory service: health and metrics (open: they carry no tenant data)."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter()


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


Pool = Annotated[asyncpg.Pool, Depends(_pool)]


@router.get("/healthz", tags=["health"])
async def healthz(pool: Pool) -> dict[str, str]:
    """Alive and able to reach Postgres."""
    await pool.fetchval("SELECT 1")
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition of this process's series."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

"""HTTP routes of the inventory service."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Request

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

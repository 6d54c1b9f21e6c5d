"""Waiting the way a client or an operator would: retry with the same ids, poll until true."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx


async def sync_until_final(client: httpx.AsyncClient, ops: list[dict[str, Any]], seconds: float = 40) -> httpx.Response:
    """Retry with the same ids, as a client does, until every item has a final result (200),
    waiting out rate limits as ``Retry-After`` says."""
    deadline = time.monotonic() + seconds
    while True:
        response = await client.post("/api/sync", json={"operations": ops})
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(_pause(response))


async def get_within_limits(
    client: httpx.AsyncClient, path: str, params: dict[str, str] | None = None, seconds: float = 40
) -> httpx.Response:
    """GET, waiting out rate limits (a busy test may exceed a user's read burst)."""
    deadline = time.monotonic() + seconds
    while True:
        response = await client.get(path, params=params)
        if response.status_code != 429 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(_pause(response))


def _pause(response: httpx.Response) -> float:
    return float(response.headers["retry-after"]) if response.status_code == 429 else 0.5


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 30) -> None:
    """Poll ``check`` until it holds, failing after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.3)

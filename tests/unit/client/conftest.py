"""Clients of an in-memory server, each with its own SQLite profile, on a clock the test moves."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from stockzen_client import Backoff, EngineSettings, Profile, StockzenClient
from tests.support.fake_gateway import SERVER_URL, FakeGateway


class Clock:
    """Wall-clock time the test moves by hand (next attempt times are compared with it)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def device_token(tenant_id: uuid.UUID, user: str = "user-1", expires: int = 4_000_000_000) -> str:
    """A token naming the tenant (the fake server does not check signatures)."""
    return jwt.encode({"tenant_id": str(tenant_id), "sub": user, "exp": expires}, "k" * 32, algorithm="HS256")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(tenant_id: uuid.UUID) -> FakeGateway:
    return FakeGateway(tenant_id)


ClientFactory = Callable[..., StockzenClient]


async def eventually(check: Callable[[], bool | Awaitable[bool]], seconds: float = 10) -> None:
    """Wait (polling, with a deadline) until ``check`` holds."""
    deadline = time.monotonic() + seconds
    while True:
        outcome = check()
        if outcome if isinstance(outcome, bool) else await outcome:
            return
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.02)


@pytest.fixture
async def make_client(
    tmp_path: Path, server: FakeGateway, clock: Clock, tenant_id: uuid.UUID
) -> AsyncIterator[ClientFactory]:
    """``make_client("phone")`` opens (or reopens) that device's profile against ``server`` (or ``transport``);
    keyword arguments set the engine's settings."""
    opened: list[StockzenClient] = []

    def make(
        device: str = "device",
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: Backoff | None = None,
        **settings: Any,
    ) -> StockzenClient:
        profile = Profile.create(tmp_path / device, SERVER_URL, device_token(tenant_id))
        client = StockzenClient(
            profile,
            transport=transport or server.transport(device),
            settings=EngineSettings(**{"lock_wait": 2.0, **settings}),
            backoff=backoff or Backoff(base=1.0, cap=30.0),
            clock=clock,
        )
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.aclose()


@asynccontextmanager
async def running(client: StockzenClient) -> AsyncIterator[None]:
    """The client's engine runs for the block's duration."""
    stop = asyncio.Event()
    engine = asyncio.create_task(client.run(stop))
    try:
        yield
    finally:
        stop.set()
        await engine

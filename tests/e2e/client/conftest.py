"""Python clients of the real stack, each with its own profile, stopped and closed after the test."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

import pytest

from stockzen_client import Backoff, EngineSettings, Profile, StockzenClient, SyncState
from tests.support.stack import user_token

FAST = EngineSettings(tick=0.1, probe_every=0.25, sync_every=3.0, stuck_after=2, lock_wait=20.0)


class Device:
    """A client and, once started, its engine's own loop."""

    def __init__(self, client: StockzenClient) -> None:
        self.client = client
        self._stop = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Let the engine sync by itself from now on."""
        self._loop = asyncio.create_task(self.client.run(self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._loop is not None:
            await self._loop

    async def until(self, check: Callable[[StockzenClient], bool], seconds: float = 40) -> None:
        """Wait (polling, with a deadline) until ``check`` holds for the client."""
        deadline = time.monotonic() + seconds
        while not check(self.client):
            status = self.client.status
            assert time.monotonic() < deadline, f"never held; status: {status.describe()}"
            await asyncio.sleep(0.1)

    async def until_state(self, state: SyncState, seconds: float = 40) -> None:
        await self.until(lambda client: client.status.state is state, seconds)


class DeviceFactory(Protocol):
    def __call__(
        self, name: str, server_url: str, settings: EngineSettings = FAST, *, ttl_seconds: int = 600
    ) -> Device: ...


@pytest.fixture
async def device(tmp_path: Path, tenant_id: uuid.UUID) -> AsyncIterator[DeviceFactory]:
    """``device(name, server_url)``: a client of the tenant signed in as user ``name`` (``FAST`` settings
    unless others are given; a negative ``ttl_seconds`` signs it in with an expired token)."""
    made: list[Device] = []

    def make(name: str, server_url: str, settings: EngineSettings = FAST, *, ttl_seconds: int = 600) -> Device:
        profile = Profile.create(tmp_path / name, server_url, user_token(tenant_id, name, ttl_seconds=ttl_seconds))
        made.append(Device(StockzenClient(profile, settings=settings, backoff=Backoff(base=0.3, cap=2.0))))
        return made[-1]

    yield make
    for each in made:
        await each.stop()
        await each.client.aclose()

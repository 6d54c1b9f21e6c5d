"""The live stream's text, with an in-memory announcements fake."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from stockzen_gateway.entrypoints.stream_routes import announcement_events


class _Subscription:
    def __init__(self, checkpoints: list[str]) -> None:
        self.checkpoints = checkpoints
        self.closed = False

    async def next_checkpoint(self, timeout_seconds: float) -> str | None:
        return self.checkpoints.pop(0) if self.checkpoints else None


class _Announcements:
    def __init__(self, checkpoints: list[str]) -> None:
        self.subscription = _Subscription(checkpoints)
        self.tenants: list[uuid.UUID] = []

    @asynccontextmanager
    async def subscribe(self, tenant_id: uuid.UUID) -> AsyncIterator[_Subscription]:
        self.tenants.append(tenant_id)
        yield self.subscription

    def close_soon(self) -> None:
        self.subscription.closed = True

    async def aclose(self) -> None:
        self.close_soon()


async def test_ready_then_checkpoints_and_heartbeats_until_the_gateway_closes() -> None:
    tenant = uuid.uuid4()
    announcements = _Announcements(["7", "8"])
    chunks = []
    async for chunk in announcement_events(announcements, tenant, heartbeat_seconds=1, max_seconds=600):
        chunks.append(chunk)
        if chunk.startswith(":"):
            announcements.close_soon()
    assert announcements.tenants == [tenant]
    assert chunks == [
        "retry: 3000\nevent: ready\ndata: {}\n\n",
        'event: checkpoint\ndata: {"checkpoint": "7"}\n\n',
        'event: checkpoint\ndata: {"checkpoint": "8"}\n\n',
        ": heartbeat\n\n",
    ]


async def test_the_stream_ends_by_itself_after_its_maximum_life() -> None:
    chunks = [
        c async for c in announcement_events(_Announcements([]), uuid.uuid4(), heartbeat_seconds=1, max_seconds=0)
    ]
    assert chunks == ["retry: 3000\nevent: ready\ndata: {}\n\n"]

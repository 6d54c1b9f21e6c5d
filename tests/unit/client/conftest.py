"""Clients of an in-memory server, each with its own SQLite profile, on a clock the test moves.

The server is ``tests/support/fake_gateway.py``'s, with the first-download route added here
(``GET /api/sync/snapshot``) and feed pages that say how many changes remain.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from stockzen_client import Backoff, EngineSettings, Profile, StockzenClient
from stockzen_contracts import ChangeFeedPage, Code, ProductView, SnapshotPage, StockMovementState
from tests.support.fake_gateway import SERVER_URL, FakeGateway, failure
from tests.support.memory_inventory import MemoryTenantTransaction

SNAPSHOT = "/api/sync/snapshot"
FEED = "/api/sync/changes"


@dataclass
class Gateway(FakeGateway):
    """The fake gateway with the snapshot route: live products ordered by id, each with its stock level
    as of the snapshot's checkpoint C (the movements up to C), C carried in the cursor.

    ``snapshot_page_size`` pages it; ``reset_next_snapshot_page`` answers the next page that has a
    cursor with ``409 RESET_REQUIRED`` (the snapshot outlived the tombstones); ``snapshot_cursors``
    records the cursor of each snapshot request (None for a first page).
    """

    snapshot_page_size: int = 1000
    reset_next_snapshot_page: bool = False
    snapshot_cursors: list[str | None] = field(default_factory=list)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != SNAPSHOT:
            return await super().handle(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.tokens_seen.append(token)
        if self.accepted_token is not None and token != self.accepted_token:
            return failure(401, Code.UNAUTHORIZED, "the bearer token is invalid or expired")
        if self.failures:
            return self.failures.pop(0)
        cursor = request.url.params.get("cursor")
        self.snapshot_cursors.append(cursor)
        return self._snapshot(cursor, int(request.url.params.get("limit", "500")))

    def _snapshot(self, cursor: str | None, limit: int) -> httpx.Response:
        if cursor is None:
            checkpoint, after = self.data.checkpoint, ""
        elif self.reset_next_snapshot_page:
            self.reset_next_snapshot_page = False
            return failure(409, Code.RESET_REQUIRED, "the snapshot is too old: start it again")
        else:
            at, after = cursor.split("/")
            checkpoint = int(at)
        tenant = MemoryTenantTransaction(self.data, [])
        live = sorted(
            (state for state in map(tenant._state, self.data.products.values()) if not state.deleted),
            key=lambda state: str(state.id),
        )
        following = [state for state in live if str(state.id) > after]
        page = following[: min(limit, self.snapshot_page_size)]
        levels = self.levels_at(checkpoint)
        answer = SnapshotPage(
            checkpoint=str(checkpoint),
            items=[
                ProductView.model_validate({**state.model_dump(), "stock_level": levels.get(state.id, 0)})
                for state in page
            ],
            next_cursor=f"{checkpoint}/{page[-1].id}" if len(following) > len(page) else None,
            total_products=len(live) if cursor is None else None,
        )
        return httpx.Response(200, json=answer.to_wire())

    def _pull(self, since: str | None, limit: int) -> httpx.Response:
        answer = super()._pull(since, limit)
        if answer.status_code != 200:
            return answer
        page = ChangeFeedPage.model_validate_json(answer.content)
        remaining = len(self.changes_after(int(page.checkpoint))) if page.has_more else 0
        return httpx.Response(200, json=page.model_copy(update={"remaining": remaining}).to_wire())

    def levels_at(self, checkpoint: int) -> dict[uuid.UUID, int]:
        """Each product's stock level counting the movements up to ``checkpoint`` only."""
        levels: dict[uuid.UUID, int] = {}
        for movement in self.data.movements.values():
            state = movement.get("state")
            if isinstance(state, StockMovementState) and int(state.checkpoint) <= checkpoint:
                sign = 1 if state.kind.value == "entry" else -1
                levels[state.product_id] = levels.get(state.product_id, 0) + sign * state.quantity
        return levels


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
def server(tenant_id: uuid.UUID) -> Gateway:
    return Gateway(tenant_id)


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
    tmp_path: Path, server: Gateway, clock: Clock, tenant_id: uuid.UUID
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

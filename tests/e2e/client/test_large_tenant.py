"""A new device of a shop with a year of history, against the real stack: it shows correct stock from a
snapshot without the ledger, and the snapshot's edges hold (writes racing it, a delete between it and
the feed, a reset with changes queued or in doubt).

Nothing here is timed (the benchmark measures speed); the size is one at which a client that replayed
the ledger would fail the benchmark's budget by far."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx

from stockzen_client import Backoff, Profile, StockzenClient, SyncState
from tests.e2e.client.conftest import FAST
from tests.support.large_tenant import seed_large_tenant, server_levels
from tests.support.ops import create_product, delete_product, movement
from tests.support.services import ServiceUrls
from tests.support.stack import Stack, user_token

Hook = Callable[[httpx.Request], Awaitable[None]]


class HookedTransport(httpx.AsyncBaseTransport):
    """The network, with a test's own step run before a request or after its answer (the stack stays real)."""

    def __init__(self, *, before: Hook | None = None, after: Hook | None = None) -> None:
        self._network = httpx.AsyncHTTPTransport()
        self._before, self._after = before, after

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._before is not None:
            await self._before(request)
        response = await self._network.handle_async_request(request)
        if self._after is not None:
            await response.aread()
            await self._after(request)
        return response

    async def aclose(self) -> None:
        await self._network.aclose()


def _client(
    home: Path, gateway_url: str, tenant: uuid.UUID, transport: httpx.AsyncBaseTransport | None = None
) -> StockzenClient:
    profile = Profile.create(home, gateway_url, user_token(tenant, home.name))
    return StockzenClient(profile, transport=transport, settings=FAST, backoff=Backoff(base=0.2, cap=1.0))


async def _push(gateway_url: str, tenant: uuid.UUID, operations: list[dict[str, object]]) -> None:
    """Another device's changes, applied before this returns."""
    headers = {"Authorization": f"Bearer {user_token(tenant, 'other-device')}"}
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=30) as http:
        answer = await http.post("/api/sync", json={"checkpoint": None, "operations": operations})
    assert answer.status_code == 200, answer.text
    assert {r["status"] for r in answer.json()["results"]} <= {"applied"}, answer.text


def _shown(client: StockzenClient) -> dict[str, tuple[str | None, int]]:
    return {str(p.id): (p.name, p.stock_level) for p in client.products()}


def _held_movements(client: StockzenClient) -> int:
    with sqlite3.connect(client.profile.database) as db:
        count: int = db.execute("SELECT count(*) FROM movements").fetchone()[0]
    return count


async def test_a_new_device_shows_every_level_of_a_year_of_history_without_downloading_it(
    stack: Stack, database: ServiceUrls, tenant_id: uuid.UUID, tmp_path: Path
) -> None:
    await seed_large_tenant(database.admin_url, tenant_id, products=2_000, movements=100_000)
    client = _client(tmp_path / "new-device", stack.gateway_url, tenant_id)
    try:
        status = await client.sync()
        assert status.state is SyncState.UP_TO_DATE, status.describe()
        assert _shown(client) == await server_levels(database.admin_url, tenant_id)
        assert _held_movements(client) == 0  # the ledger stayed on the server

        # History: online, the newest page comes from the read API, this device's unsent movement on top;
        # offline, the device shows what it holds (its own movement only).
        product = client.products()[0].id
        mine = client.stock_in(product, 4)
        online, from_server = await client.recent_history(product, 20)
        assert from_server
        assert len(online) == 20
        assert online[0].id == mine
        assert online[0].queued
        assert all(not m.queued for m in online[1:])
        assert [m.id for m in client.history(product)] == [mine]
    finally:
        await client.aclose()


async def test_writes_racing_the_snapshot_are_each_counted_once(
    stack: Stack, database: ServiceUrls, tenant_id: uuid.UUID, tmp_path: Path
) -> None:
    # 2,500 products: three snapshot pages, with other devices' writes landing between them.
    await seed_large_tenant(database.admin_url, tenant_id, products=2_500, movements=10_000)
    products = list(await server_levels(database.admin_url, tenant_id))
    raced: list[int] = []

    async def write_between_pages(request: httpx.Request) -> None:
        if request.url.path != "/api/sync/snapshot":
            return
        # Movements on products already read, on products still to come, and a product created now.
        raced.append(len(raced))
        fresh = uuid.uuid4()
        await _push(
            stack.gateway_url,
            tenant_id,
            [
                movement(tenant_id, uuid.UUID(products[(len(raced) * 977 + n * 131) % len(products)]), "entry", 2)
                for n in range(20)
            ]
            + [
                create_product(tenant_id, fresh, name=f"Raced {len(raced)}"),
                movement(tenant_id, fresh, "entry", 7),
            ],
        )

    client = _client(tmp_path / "racing", stack.gateway_url, tenant_id, HookedTransport(after=write_between_pages))
    try:
        status = await client.sync()
        assert status.state is SyncState.UP_TO_DATE, status.describe()
        assert len(raced) >= 3  # every page raced a write
        assert _shown(client) == await server_levels(database.admin_url, tenant_id)
    finally:
        await client.aclose()


async def test_a_product_deleted_between_the_snapshot_and_the_feed_is_gone_on_the_device(
    stack: Stack, database: ServiceUrls, tenant_id: uuid.UUID, tmp_path: Path
) -> None:
    await seed_large_tenant(database.admin_url, tenant_id, products=300, movements=3_000)
    doomed, kept = (uuid.UUID(p) for p in list(await server_levels(database.admin_url, tenant_id))[:2])
    deleted: list[bool] = []

    async def delete_before_the_feed(request: httpx.Request) -> None:
        if request.url.path == "/api/sync/changes" and not deleted:
            deleted.append(True)
            await _push(
                stack.gateway_url, tenant_id, [delete_product(tenant_id, doomed), movement(tenant_id, kept, "exit", 3)]
            )

    client = _client(tmp_path / "deleted", stack.gateway_url, tenant_id, HookedTransport(before=delete_before_the_feed))
    try:
        status = await client.sync()
        assert status.state is SyncState.UP_TO_DATE, status.describe()
        assert deleted
        shown = _shown(client)
        assert str(doomed) not in shown
        assert shown == await server_levels(database.admin_url, tenant_id)
    finally:
        await client.aclose()


async def _force_reset(admin: asyncpg.Connection, tenant: uuid.UUID) -> None:
    """Every checkpoint a device holds becomes older than the tombstone horizon (as a purge would make it)."""
    await admin.execute("UPDATE tenants SET feed_horizon = last_checkpoint WHERE tenant_id = $1", tenant)


async def test_a_reset_with_queued_changes_keeps_them_and_counts_each_once(
    stack: Stack, database: ServiceUrls, admin: asyncpg.Connection, tenant_id: uuid.UUID, tmp_path: Path
) -> None:
    await seed_large_tenant(database.admin_url, tenant_id, products=200, movements=4_000)
    client = _client(tmp_path / "reset", stack.gateway_url, tenant_id)
    try:
        assert (await client.sync()).state is SyncState.UP_TO_DATE
        first, second, renamed = (p.id for p in client.products()[:3])
        client.stock_in(first, 5)
        client.stock_out(second, 2)
        client.edit_product(renamed, name="Renamed while queued")
        await _push(stack.gateway_url, tenant_id, [movement(tenant_id, first, "entry", 10)])
        await _force_reset(admin, tenant_id)

        status = await client.sync()  # push the queue, pull: RESET_REQUIRED, snapshot, feed
        assert status.state is SyncState.UP_TO_DATE, status.describe()
        assert (status.queued, status.failed) == (0, 0)
        server = await server_levels(database.admin_url, tenant_id)
        assert _shown(client) == server
        assert server[str(renamed)][0] == "Renamed while queued"
    finally:
        await client.aclose()


async def test_a_reset_waits_while_a_movement_is_in_doubt_then_counts_it_once(
    own_stack: Stack, database: ServiceUrls, admin: asyncpg.Connection, tenant_id: uuid.UUID, tmp_path: Path
) -> None:
    await asyncio.to_thread(own_stack.start_inventory)
    await asyncio.to_thread(own_stack.start_worker)
    await asyncio.to_thread(own_stack.start_gateway, SYNC_RESULT_TIMEOUT_SECONDS="1")
    await seed_large_tenant(database.admin_url, tenant_id, products=50, movements=500)
    client = _client(tmp_path / "doubt", own_stack.gateway_url, tenant_id)
    try:
        assert (await client.sync()).state is SyncState.UP_TO_DATE
        product = client.products()[0]
        # Another device's write moves the tenant past this device's checkpoint, so the reset applies.
        await _push(own_stack.gateway_url, tenant_id, [movement(tenant_id, client.products()[1].id, "entry", 1)])
        await asyncio.to_thread(own_stack.processes["worker"].stop)
        client.stock_in(product.id, 4)  # answered 202 pending: queued on the broker, its fate unknown here
        await _force_reset(admin, tenant_id)
        waiting = await client.sync()
        assert waiting.state is SyncState.SYNCING, waiting.describe()
        # The device kept its data and the pending movement's effect; nothing was downloaded twice.
        assert client.product(product.id) is not None
        assert client.product(product.id).stock_level == product.stock_level + 4  # type: ignore[union-attr]

        await asyncio.to_thread(own_stack.start_worker)  # the queued batch is applied now
        for _ in range(50):
            status = await client.sync()
            if status.state is SyncState.UP_TO_DATE:
                break
            await asyncio.sleep(0.2)
        assert status.state is SyncState.UP_TO_DATE, status.describe()
        assert _shown(client) == await server_levels(database.admin_url, tenant_id)
        assert client.product(product.id).stock_level == product.stock_level + 4  # type: ignore[union-attr]
    finally:
        await client.aclose()

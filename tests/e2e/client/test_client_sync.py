"""The Python client against the real gateway, worker and Postgres, its connection through a cuttable proxy."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import datetime

import asyncpg

from stockzen_client import Profile, StockzenClient, SyncProgress, SyncState, SyncStatus
from tests.e2e.client.conftest import FAST, DeviceFactory
from tests.support.db import applied_rows, movement_rows, product_row, stock_level
from tests.support.proxy import CuttableProxy
from tests.support.retry import get_within_limits
from tests.support.services import ServiceUrls
from tests.support.stack import Stack, gateway_client, user_token


def operation_ids(client: StockzenClient) -> list[str]:
    return [str(op) for op in client.store.operation_ids()]


def listing(client: StockzenClient) -> dict[uuid.UUID, tuple[object, ...]]:
    return {p.id: (p.name, p.sku, p.price_cents, p.unit, p.stock_level) for p in client.products()}


async def test_changes_made_while_cut_off_queue_and_sync_by_themselves_once_restored(
    stack: Stack, device: DeviceFactory, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    async with CuttableProxy.in_front_of(stack.gateway_url) as proxy:
        phone = device("phone", proxy.url(stack.gateway_url))
        phone.start()
        await phone.until_state(SyncState.UP_TO_DATE)

        await proxy.cut()
        client = phone.client
        product = client.add_product("Blue mug", sku="MUG-1", price_cents=1299)
        client.stock_in(product, 10, reason="delivery")
        client.stock_out(product, 3)
        client.edit_product(product, price_cents=1499)
        await phone.until(lambda c: c.status.state is SyncState.OFFLINE and c.status.queued == 4)
        assert await product_row(admin, tenant_id, product) is None
        shown = client.product(product)
        assert shown is not None
        assert (shown.price_cents, shown.stock_level) == (1499, 7)

        await proxy.restore()  # nothing else: the engine notices and syncs by itself
        await phone.until_state(SyncState.UP_TO_DATE)

    ids = operation_ids(client)
    assert len(ids) == 4
    assert await applied_rows(admin, tenant_id, ids) == 4
    assert await movement_rows(admin, tenant_id, ids) == 2
    assert await stock_level(admin, tenant_id, product) == 7
    row = await product_row(admin, tenant_id, product)
    assert row is not None
    assert (row["name"], row["price_cents"]) == ("Blue mug", 1499)
    assert client.status.queued == 0
    assert client.status.last_synced_at is not None


async def test_a_server_that_keeps_failing_means_error_and_work_goes_on_until_it_recovers(
    own_stack: Stack, database: ServiceUrls, device: DeviceFactory, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    async with CuttableProxy.in_front_of(database.amqp_url) as broker:
        await asyncio.to_thread(own_stack.start_inventory)
        await asyncio.to_thread(own_stack.start_worker)  # the worker keeps its own, direct connection
        await asyncio.to_thread(own_stack.start_gateway, AMQP_URL=broker.url(database.amqp_url))
        async with CuttableProxy.in_front_of(own_stack.gateway_url) as proxy:
            till = device("till", proxy.url(own_stack.gateway_url))
            first = till.client.add_product("Before the outage")
            till.start()
            await till.until_state(SyncState.UP_TO_DATE)

            await broker.cut()  # the gateway cannot queue batches: 503 UNAVAILABLE
            during = till.client.add_product("During the outage")
            await till.until_state(SyncState.ERROR)
            assert "503" in (till.client.status.last_error or "")
            later = till.client.add_product("Still working")  # accepted locally while in error
            till.client.stock_in(later, 4)
            await till.until(lambda c: c.status.queued == 3)
            assert till.client.status.state is SyncState.ERROR

            await broker.restore()
            await till.until_state(SyncState.UP_TO_DATE, seconds=60)

    ids = operation_ids(till.client)
    assert await applied_rows(admin, tenant_id, ids) == len(ids) == 4
    for product in (first, during, later):
        assert await product_row(admin, tenant_id, product) is not None
    assert await stock_level(admin, tenant_id, later) == 4


async def test_a_conflict_from_another_device_replaces_the_local_record_with_a_notice(
    stack: Stack, device: DeviceFactory
) -> None:
    phone, tablet = device("phone", stack.gateway_url), device("tablet", stack.gateway_url)
    product = phone.client.add_product("Mug", unit="pcs")
    assert (await phone.client.sync()).state is SyncState.UP_TO_DATE
    assert (await tablet.client.sync()).state is SyncState.UP_TO_DATE
    tablet.client.edit_product(product, name="Tablet's mug")  # made first: loses
    # Stamps count milliseconds: two devices' edits within the same one tie, and a tie goes to the
    # operation id (random here). Let the clock move on so that "first" means first.
    await asyncio.sleep(0.005)
    phone.client.edit_product(product, name="Phone's mug")
    assert (await phone.client.sync()).state is SyncState.UP_TO_DATE
    heard: list[SyncStatus] = []
    tablet.client.engine.hub.subscribe(heard.append)

    status = await tablet.client.sync()

    assert status.state is SyncState.UP_TO_DATE
    shown = tablet.client.product(product)
    assert shown is not None
    assert (shown.name, shown.unit) == ("Phone's mug", "pcs")
    conflicts = [n for n in status.notices if n.kind == "conflict" and n.entity_id == str(product)]
    assert len(conflicts) == 1
    assert any(n.kind == "conflict" for s in heard for n in s.notices)


async def test_two_clients_of_one_tenant_converge(stack: Stack, device: DeviceFactory, tenant_id: uuid.UUID) -> None:
    phone, till = device("phone", stack.gateway_url), device("till", stack.gateway_url)
    shared = phone.client.add_product("Shared", price_cents=100)
    await phone.client.sync()
    await till.client.sync()
    phone.client.stock_in(shared, 5)
    till.client.stock_out(shared, 2)
    phone.client.edit_product(shared, price_cents=150)
    till.client.edit_product(shared, sku="SH-1")
    till_only = till.client.add_product("Till only")
    till.client.stock_in(till_only, 9)
    doomed = phone.client.add_product("Doomed")
    phone.client.remove_product(doomed)
    phone.start()
    till.start()

    def settled(client: StockzenClient) -> bool:
        return client.status.state is SyncState.UP_TO_DATE and {shared, till_only} <= {p.id for p in client.products()}

    await phone.until(settled)
    await till.until(settled)
    await phone.until(lambda c: listing(c) == listing(till.client))  # the periodic pull catches up
    assert listing(phone.client)[shared] == ("Shared", "SH-1", 150, None, 3)
    assert listing(phone.client)[till_only][-1] == 9
    assert doomed not in listing(phone.client)

    async with gateway_client(stack, tenant_id) as server:
        answer = await get_within_limits(server, "/api/products")
    assert answer.status_code == 200
    on_server = {
        uuid.UUID(p["id"]): (p["name"], p["sku"], p["priceCents"], p["unit"], p["stockLevel"])
        for p in answer.json()["items"]
    }
    assert on_server == listing(phone.client)


async def test_a_running_engine_hears_another_devices_change_through_the_live_stream(
    stack: Stack, device: DeviceFactory
) -> None:
    # Periodic syncs five minutes apart, a loop that rests a minute: only the stream can bring it in time.
    phone = device("phone", stack.gateway_url, replace(FAST, sync_every=300.0, tick=60.0))
    till = device("till", stack.gateway_url)
    synced: set[datetime | None] = set()

    def note_sync(status: SyncStatus) -> None:
        if status.state is SyncState.UP_TO_DATE:
            synced.add(status.last_synced_at)

    phone.client.engine.hub.subscribe(note_sync)
    phone.start()
    # The first sync, then the one the stream's ``ready`` asks for: from here on the stream listens.
    await phone.until(lambda _: len(synced) >= 2)

    product = till.client.add_product("Made on the till", price_cents=250)
    till.client.stock_in(product, 4)
    assert (await till.client.sync()).state is SyncState.UP_TO_DATE

    await phone.until(lambda c: (shown := c.product(product)) is not None and shown.stock_level == 4)
    shown = phone.client.product(product)
    assert shown is not None
    assert (shown.name, shown.price_cents, shown.queued_changes) == ("Made on the till", 250, 0)


async def test_a_running_engine_takes_a_new_login_and_its_live_stream_without_a_restart(
    stack: Stack, device: DeviceFactory, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    # Periodic syncs five minutes apart: after the new login, only the stream can bring the till's change.
    phone = device("phone", stack.gateway_url, replace(FAST, sync_every=300.0), ttl_seconds=-600)
    till = device("till", stack.gateway_url)
    queued = phone.client.add_product("Made before the new login")
    phone.start()
    await phone.until(lambda c: "log in again" in (c.status.last_error or ""))
    assert await product_row(admin, tenant_id, queued) is None

    # `stockzen login` in another terminal, as the same user of the same tenant.
    Profile.create(phone.client.profile.directory, stack.gateway_url, user_token(tenant_id, "phone")).save()

    await phone.until(lambda c: c.status.state is SyncState.UP_TO_DATE)
    assert await product_row(admin, tenant_id, queued) is not None
    assert phone.client.status.queued == 0
    product = till.client.add_product("Made on the till")
    assert (await till.client.sync()).state is SyncState.UP_TO_DATE
    await phone.until(lambda c: c.product(product) is not None, seconds=30)


async def test_a_new_device_takes_a_snapshot_of_levels_and_then_only_the_movements_after_it(
    stack: Stack, device: DeviceFactory, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    phone, tablet = device("phone", stack.gateway_url), device("tablet", stack.gateway_url)
    products = [phone.client.add_product(f"Item {n}") for n in range(3)]
    for n, product in enumerate(products, start=1):
        phone.client.stock_in(product, 10 * n)
        phone.client.stock_out(product, n)
    assert (await phone.client.sync()).state is SyncState.UP_TO_DATE
    told: list[SyncProgress] = []

    assert (await tablet.client.sync(told.append)).state is SyncState.UP_TO_DATE

    assert [(p.phase, p.done, p.total) for p in told if p.phase == "snapshot"] == [("snapshot", 3, 3)]
    assert listing(tablet.client) == listing(phone.client)
    for n, product in enumerate(products, start=1):
        assert listing(tablet.client)[product][-1] == 9 * n == await stock_level(admin, tenant_id, product)
        assert tablet.client.history(product) == []  # the ledger before the snapshot stays on the server

    phone.client.stock_out(products[0], 4)
    assert (await phone.client.sync()).state is SyncState.UP_TO_DATE
    assert (await tablet.client.sync()).state is SyncState.UP_TO_DATE
    assert listing(tablet.client)[products[0]][-1] == 5
    assert [(m.kind.value, m.quantity) for m in tablet.client.history(products[0])] == [("exit", 4)]

"""The inventory's reads against real Postgres, on rows the worker's own adapter wrote."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from stockzen_contracts import ChangeFeedPage, ChangeOperation, EntityType
from stockzen_inventory import services
from stockzen_inventory.adapters.reads import PostgresInventoryReader
from stockzen_inventory.domain.feed import InvalidCheckpoint, ResetRequired
from stockzen_inventory.domain.pagination import InvalidCursor
from stockzen_inventory.domain.products import ProductFilter
from stockzen_platform.postgres import tenant_transaction
from tests.support.tenant_writer import TenantWriter


@pytest.fixture
def reader(app_pool: asyncpg.Pool) -> PostgresInventoryReader:
    return PostgresInventoryReader(app_pool)


@pytest.fixture
def writer(app_pool: asyncpg.Pool, tenant_id: uuid.UUID) -> TenantWriter:
    return TenantWriter(app_pool, tenant_id)


async def _all_products(
    reader: PostgresInventoryReader, tenant: uuid.UUID, product_filter: ProductFilter, limit: int
) -> list[list[str]]:
    """Every page's product names, following the cursors."""
    pages, cursor = [], None
    while True:
        page = await services.list_products(reader, tenant, product_filter, cursor=cursor, limit=limit)
        pages.append([p.name or "" for p in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


async def test_products_are_listed_by_name_with_their_stock_and_without_tombstones(
    reader: PostgresInventoryReader, writer: TenantWriter, tenant_id: uuid.UUID
) -> None:
    names = ["banana", "Apple", "cherry", "apple", "Date", "elder"]
    ids = {name: await writer.create_product(name) for name in names}
    await writer.record_movement(ids["cherry"], "entry", 10)
    await writer.record_movement(ids["cherry"], "exit", 3)
    await writer.delete_product(ids["Date"])

    # Names compare case-insensitively; equal ones by id, so the order never changes between pages.
    apples = sorted(["Apple", "apple"], key=lambda name: ids[name])
    pages = await _all_products(reader, tenant_id, ProductFilter(), limit=2)
    assert pages == [apples, ["banana", "cherry"], ["elder"]]
    listed = await services.list_products(reader, tenant_id, ProductFilter(), cursor=None, limit=50)
    assert listed.next_cursor is None
    stock = {p.name: p.stock_level for p in listed.items}
    assert (stock["cherry"], stock["banana"]) == (7, 0)


async def test_products_are_filtered_by_text_and_archived(
    reader: PostgresInventoryReader, writer: TenantWriter, tenant_id: uuid.UUID
) -> None:
    await writer.create_product("Blue mug", sku="MUG-B", barcode="4006381333931")
    await writer.create_product("Red cup", sku="CUP-R", archived=True)
    await writer.create_product("100% cotton", sku="TSH_1")
    await writer.create_product("1000 cottonballs")

    async def names(text: str | None, archived: bool | None = None) -> list[str | None]:
        page = await services.list_products(reader, tenant_id, ProductFilter.of(text, archived), cursor=None, limit=50)
        return [p.name for p in page.items]

    assert await names("MUG") == ["Blue mug"]
    assert await names("cup-r") == ["Red cup"]
    assert await names("33393") == ["Blue mug"]
    assert await names("0% c") == ["100% cotton"]  # '%' is a character, not a wildcard
    assert await names("h_1") == ["100% cotton"]  # '_' too
    assert await names(None, archived=True) == ["Red cup"]
    assert await names("c", archived=False) == ["100% cotton", "1000 cottonballs"]


async def test_a_malformed_cursor_is_refused(reader: PostgresInventoryReader, tenant_id: uuid.UUID) -> None:
    with pytest.raises(InvalidCursor):
        await services.list_products(reader, tenant_id, ProductFilter(), cursor="garbage!", limit=5)
    with pytest.raises(InvalidCursor):
        await services.movement_history(reader, tenant_id, uuid.uuid4(), cursor="e30", limit=5)


async def test_one_product_with_its_stock_and_never_a_tombstone(
    reader: PostgresInventoryReader, writer: TenantWriter, tenant_id: uuid.UUID
) -> None:
    product = await writer.create_product("Mug", unit="pc", price_cents=450)
    await writer.record_movement(product, "entry", 5)
    view = await services.get_product(reader, tenant_id, product)
    assert (view.name, view.unit, view.price_cents, view.stock_level, view.deleted) == ("Mug", "pc", 450, 5, False)
    await writer.delete_product(product)
    with pytest.raises(services.ProductNotFound):
        await services.get_product(reader, tenant_id, product)
    with pytest.raises(services.ProductNotFound):
        await services.movement_history(reader, tenant_id, product, cursor=None, limit=5)
    with pytest.raises(services.ProductNotFound):
        await services.get_product(reader, tenant_id, uuid.uuid4())


async def test_no_read_shows_another_tenants_rows(app_pool: asyncpg.Pool, reader: PostgresInventoryReader) -> None:
    owner, intruder = TenantWriter(app_pool, uuid.uuid4()), TenantWriter(app_pool, uuid.uuid4())
    product = await owner.create_product("Secret")
    await owner.record_movement(product, "entry", 3)
    await intruder.create_product("Own")
    other = intruder.tenant_id
    with pytest.raises(services.ProductNotFound):
        await services.get_product(reader, other, product)
    with pytest.raises(services.ProductNotFound):
        await services.movement_history(reader, other, product, cursor=None, limit=5)
    listed = await services.list_products(reader, other, ProductFilter(), cursor=None, limit=50)
    assert [p.name for p in listed.items] == ["Own"]
    feed = await services.change_feed(reader, other, checkpoint=None, limit=100)
    assert [c.product.name for c in feed.changes if c.product] == ["Own"]
    assert all(c.entity_type is EntityType.PRODUCT for c in feed.changes)


async def test_history_is_newest_first_with_ties_broken_by_checkpoint(
    reader: PostgresInventoryReader, writer: TenantWriter, tenant_id: uuid.UUID
) -> None:
    product = await writer.create_product()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    when = [base + timedelta(minutes=m) for m in (5, 1, 5, 3, 5, 1)]
    ids = [await writer.record_movement(product, occurred_at=t) for t in when]
    pages, cursor = [], None
    while True:
        page = await services.movement_history(reader, tenant_id, product, cursor=cursor, limit=2)
        pages.append([m.id for m in page.items])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    # 5 minutes (three of them, the latest recorded first), then 3, then 1 (two).
    assert pages == [[ids[4], ids[2]], [ids[0], ids[3]], [ids[5], ids[1]]]


async def test_history_pages_stay_whole_while_movements_are_recorded(
    reader: PostgresInventoryReader, writer: TenantWriter, tenant_id: uuid.UUID
) -> None:
    product = await writer.create_product()
    base = datetime.now(UTC) - timedelta(days=1)
    # Several movements share an instant: only the checkpoint orders them.
    before = [await writer.record_movement(product, occurred_at=base + timedelta(minutes=i // 3)) for i in range(40)]
    done = asyncio.Event()

    async def record_more() -> None:
        while not done.is_set():
            # New ones land at the top, in the middle of what is being read, and on existing instants.
            offset = random.choice([timedelta(days=2), timedelta(minutes=random.randint(0, 13))])
            await writer.record_movement(product, occurred_at=base + offset)

    recorders = [asyncio.create_task(record_more()) for _ in range(3)]
    seen, cursor = [], None
    try:
        while True:
            page = await services.movement_history(reader, tenant_id, product, cursor=cursor, limit=3)
            seen.extend(page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
            await asyncio.sleep(0.005)
    finally:
        done.set()
        await asyncio.gather(*recorders)

    keys = [(m.occurred_at, int(m.checkpoint)) for m in seen]
    assert keys == sorted(keys, reverse=True)
    assert len(keys) == len(set(keys))
    assert len({m.id for m in seen}) == len(seen)
    assert set(before) <= {m.id for m in seen}


async def _pull_all(
    reader: PostgresInventoryReader, tenant: uuid.UUID, since: str | None, limit: int
) -> ChangeFeedPage:
    """Follow the feed until nothing more; returns one page holding every change seen."""
    changes, checkpoint = [], since
    while True:
        page = await services.change_feed(reader, tenant, checkpoint=checkpoint, limit=limit)
        changes.extend(page.changes)
        checkpoint = page.checkpoint
        if not page.has_more:
            return ChangeFeedPage(checkpoint=checkpoint, has_more=False, changes=changes)


async def test_the_feed_shows_current_states_tombstones_and_movements_in_order(
    reader: PostgresInventoryReader, writer: TenantWriter, tenant_id: uuid.UUID
) -> None:
    empty = await services.change_feed(reader, tenant_id, checkpoint=None, limit=10)
    assert (empty.checkpoint, empty.has_more, empty.changes) == ("0", False, [])

    kept = await writer.create_product("Mug")
    gone = await writer.create_product("Cup")
    entry = await writer.record_movement(kept, "entry", 4)
    await writer.update_product(kept, name="Big mug")
    await writer.update_product(kept, price_cents=900)
    await writer.delete_product(gone)

    feed = await _pull_all(reader, tenant_id, None, limit=2)
    assert [(c.entity_type, c.entity_id, c.operation) for c in feed.changes] == [
        (EntityType.STOCK_MOVEMENT, entry, ChangeOperation.UPSERT),
        (EntityType.PRODUCT, kept, ChangeOperation.UPSERT),
        (EntityType.PRODUCT, gone, ChangeOperation.DELETE),
    ]
    latest = feed.changes[1].product
    assert latest is not None
    assert (latest.name, latest.price_cents) == ("Big mug", 900)  # superseded states are not repeated
    checkpoints = [int(c.checkpoint) for c in feed.changes]
    assert checkpoints == sorted(checkpoints)
    assert feed.checkpoint == str(await writer.checkpoint())

    # From there, only what happens next.
    await writer.update_product(kept, archived=True)
    after = await _pull_all(reader, tenant_id, feed.checkpoint, limit=2)
    assert [(c.entity_id, c.operation) for c in after.changes] == [(kept, ChangeOperation.UPSERT)]
    assert after.changes[0].product is not None
    assert after.changes[0].product.archived is True


async def _purge_tombstone(admin: asyncpg.Connection, writer: TenantWriter, product: uuid.UUID) -> None:
    """Age the product's tombstone past the retention window and let the worker's purge take it."""
    await admin.execute(
        "UPDATE products SET deleted_at = now() - interval '31 days' WHERE tenant_id = $1 AND id = $2",
        writer.tenant_id,
        product,
    )
    await writer.purge_expired_tombstones()


async def test_a_checkpoint_past_the_purged_tombstones_must_reset(
    app_pool: asyncpg.Pool,
    reader: PostgresInventoryReader,
    writer: TenantWriter,
    tenant_id: uuid.UUID,
    admin: asyncpg.Connection,
) -> None:
    await writer.create_product("Keep")
    doomed = await writer.create_product("Doomed")
    before_delete = str(await writer.checkpoint())
    await writer.delete_product(doomed)
    after_delete = str(await writer.checkpoint())
    await writer.create_product("Later")
    await _purge_tombstone(admin, writer, doomed)
    async with tenant_transaction(app_pool, tenant_id, readonly=True) as db:
        horizon = await db.fetchval("SELECT feed_horizon FROM tenants WHERE tenant_id = $1", tenant_id)
    assert str(horizon) == after_delete

    for stale in ("0", before_delete):
        with pytest.raises(ResetRequired, match="retention"):
            await services.change_feed(reader, tenant_id, checkpoint=stale, limit=10)
    resumed = await services.change_feed(reader, tenant_id, checkpoint=after_delete, limit=10)
    assert [c.product.name for c in resumed.changes if c.product] == ["Later"]
    fresh = await services.change_feed(reader, tenant_id, checkpoint=None, limit=10)
    assert sorted(c.product.name or "" for c in fresh.changes if c.product) == ["Keep", "Later"]
    with pytest.raises(ResetRequired, match="ahead"):
        await services.change_feed(reader, tenant_id, checkpoint=str(int(fresh.checkpoint) + 1), limit=10)
    with pytest.raises(InvalidCheckpoint):
        await services.change_feed(reader, tenant_id, checkpoint="abc", limit=10)


async def test_a_reader_pulling_during_concurrent_commits_sees_each_change_once(
    app_pool: asyncpg.Pool, reader: PostgresInventoryReader, tenant_id: uuid.UUID
) -> None:
    writer = TenantWriter(app_pool, tenant_id)
    product = await writer.create_product("Shared")
    recorded: list[uuid.UUID] = []
    done = asyncio.Event()

    async def write(n: int) -> None:
        for _ in range(n):
            recorded.append(await writer.record_movement(product, quantity=random.randint(1, 5)))
            await asyncio.sleep(random.uniform(0, 0.003))

    seen: Counter[uuid.UUID] = Counter()
    checkpoints: list[int] = []

    async def pull() -> None:
        checkpoint: str | None = None
        while True:
            finished = done.is_set()  # read before the pull: a pull after the last commit must follow
            page = await services.change_feed(reader, tenant_id, checkpoint=checkpoint, limit=7)
            for change in page.changes:
                checkpoints.append(int(change.checkpoint))
                if change.entity_type is EntityType.STOCK_MOVEMENT:
                    seen[change.entity_id] += 1
            checkpoint = page.checkpoint
            if finished and not page.has_more:
                return

    puller = asyncio.create_task(pull())
    await asyncio.gather(*(write(15) for _ in range(8)))
    done.set()
    await puller
    assert seen == Counter(recorded)
    assert checkpoints == sorted(set(checkpoints))


async def _snapshot_then_feed(
    reader: PostgresInventoryReader,
    tenant: uuid.UUID,
    *,
    limit: int,
    between_pages: Callable[[int], Awaitable[None]] | None = None,
) -> tuple[dict[uuid.UUID, int], set[uuid.UUID]]:
    """What a new device ends with: each live product's level (snapshot level + feed movements after C)
    and the set of live products, following every snapshot page and then the feed from C.
    ``between_pages(n)`` runs after page ``n`` is read (writes racing the download)."""
    levels: dict[uuid.UUID, int] = {}
    live: set[uuid.UUID] = set()
    cursor: str | None = None
    checkpoints: set[str] = set()
    pages = 0
    while True:
        page = await services.snapshot(reader, tenant, cursor=cursor, limit=limit)
        checkpoints.add(page.checkpoint)
        for item in page.items:
            levels[item.id] = item.stock_level
            live.add(item.id)
        pages += 1
        if between_pages is not None:
            await between_pages(pages)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(checkpoints) == 1, "every page of one snapshot is read as of the same checkpoint"
    seen: set[uuid.UUID] = set()
    feed = await _pull_all(reader, tenant, checkpoints.pop(), limit=limit)
    for change in feed.changes:
        if change.movement is not None:
            assert change.entity_id not in seen, "each movement after C comes once"
            seen.add(change.entity_id)
            signed = change.movement.quantity if change.movement.kind.value == "entry" else -change.movement.quantity
            levels[change.movement.product_id] = levels.get(change.movement.product_id, 0) + signed
        elif change.product is not None:
            (live.discard if change.product.deleted else live.add)(change.entity_id)
    return {product: level for product, level in levels.items() if product in live}, live


async def _server_levels(reader: PostgresInventoryReader, tenant: uuid.UUID) -> dict[uuid.UUID, int]:
    listed = await services.list_products(reader, tenant, ProductFilter(), cursor=None, limit=200)
    return {p.id: p.stock_level for p in listed.items}


async def test_a_snapshot_gives_each_live_product_its_level_as_of_its_checkpoint(
    reader: PostgresInventoryReader, writer: TenantWriter, tenant_id: uuid.UUID
) -> None:
    empty = await services.snapshot(reader, tenant_id, cursor=None, limit=10)
    assert (empty.checkpoint, empty.items, empty.next_cursor, empty.total_products) == ("0", [], None, 0)

    products = [await writer.create_product(f"P{n}") for n in range(5)]
    for n, product in enumerate(products):
        await writer.record_movement(product, "entry", 10 + n)
    await writer.record_movement(products[0], "exit", 4)
    await writer.delete_product(products[4])
    first = await services.snapshot(reader, tenant_id, cursor=None, limit=2)
    assert first.checkpoint == str(await writer.checkpoint())
    assert first.total_products == 4
    assert first.next_cursor is not None
    second = await services.snapshot(reader, tenant_id, cursor=first.next_cursor, limit=2)
    assert second.total_products is None  # counted once, on the first page

    levels, live = await _snapshot_then_feed(reader, tenant_id, limit=2)
    assert live == set(products[:4])
    assert levels == {products[0]: 6, products[1]: 11, products[2]: 12, products[3]: 13}


async def test_a_snapshot_racing_writes_misses_nothing_and_counts_nothing_twice(
    reader: PostgresInventoryReader, writer: TenantWriter, tenant_id: uuid.UUID
) -> None:
    products = [await writer.create_product(f"R{n}") for n in range(9)]
    for product in products:
        await writer.record_movement(product, "entry", 5)
    added: list[uuid.UUID] = []

    async def write_meanwhile(page: int) -> None:
        # After each page: movements on products already read and on products still to come, and a
        # product created mid-download (so on a later page, or only in the feed).
        for product in (products[0], products[-1], random.choice(products)):
            await writer.record_movement(product, random.choice(["entry", "exit"]), random.randint(1, 3))
        added.append(await writer.create_product(f"New{page}"))
        await writer.record_movement(added[-1], "entry", page)

    levels, live = await _snapshot_then_feed(reader, tenant_id, limit=2, between_pages=write_meanwhile)
    assert live == set(products) | set(added)
    assert levels == await _server_levels(reader, tenant_id)


async def test_a_product_deleted_between_the_snapshot_and_the_feed_is_gone_on_the_device(
    reader: PostgresInventoryReader, writer: TenantWriter, tenant_id: uuid.UUID
) -> None:
    products = sorted([await writer.create_product(f"D{n}") for n in range(4)])
    for product in products:
        await writer.record_movement(product, "entry", 3)

    async def delete_both(page: int) -> None:
        if page == 1:  # one product already read, one not yet: both must end up gone
            await writer.delete_product(products[0])
            await writer.delete_product(products[-1])
            await writer.record_movement(products[1], "exit", 1)

    levels, live = await _snapshot_then_feed(reader, tenant_id, limit=2, between_pages=delete_both)
    assert live == {products[1], products[2]}
    assert levels == await _server_levels(reader, tenant_id) == {products[1]: 2, products[2]: 3}


async def test_a_snapshot_outliving_the_tombstone_window_must_start_again(
    app_pool: asyncpg.Pool,
    reader: PostgresInventoryReader,
    writer: TenantWriter,
    tenant_id: uuid.UUID,
    admin: asyncpg.Connection,
) -> None:
    for n in range(3):
        await writer.create_product(f"S{n}")
    first = await services.snapshot(reader, tenant_id, cursor=None, limit=1)
    assert first.next_cursor is not None
    doomed = await writer.create_product("Doomed")
    await writer.delete_product(doomed)
    await _purge_tombstone(admin, writer, doomed)
    with pytest.raises(ResetRequired, match="retention"):
        await services.snapshot(reader, tenant_id, cursor=first.next_cursor, limit=1)
    with pytest.raises(InvalidCursor):
        await services.snapshot(reader, tenant_id, cursor="e30", limit=1)
    again = await services.snapshot(reader, tenant_id, cursor=None, limit=10)
    assert (again.total_products, len(again.items)) == (3, 3)


async def test_a_snapshot_shows_another_tenant_nothing(app_pool: asyncpg.Pool, reader: PostgresInventoryReader) -> None:
    owner = TenantWriter(app_pool, uuid.uuid4())
    product = await owner.create_product("Secret")
    await owner.record_movement(product, "entry", 3)
    page = await services.snapshot(reader, uuid.uuid4(), cursor=None, limit=10)
    assert (page.items, page.total_products) == ([], 0)

"""What only Postgres and Redis can show: tombstones expiring by the clock (and the ids of purged
products kept under row-level security, by the purge and by migration 0004), the cache's Redis keys.

The scenarios every ledger must pass run on Postgres too, in ``test_apply_batch.py``.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import asyncpg
import pytest
import redis.asyncio as aioredis

from stockzen_contracts import Code, ItemResult, ItemStatus, ProductState, SyncBatchApplied
from stockzen_inventory.adapters.migrations import bundled_migrations
from stockzen_platform.postgres import tenant_transaction, tenant_transaction_in_one_round_trip
from stockzen_sync_worker.adapters.result_cache import result_key
from stockzen_sync_worker.domain.outcomes import StoredResult
from tests.support.harness import T0, PostgresHarness, apply
from tests.support.harness import TOMBSTONE_RETENTION as RETENTION
from tests.support.ops import create_product, delete_product, movement, update_product
from tests.support.scratch_db import Scratch, apply_on


@pytest.fixture
def harness(postgres_harness: PostgresHarness) -> PostgresHarness:
    """Here always the Postgres one (``conftest.py``)."""
    return postgres_harness


@pytest.fixture
def redis_client(postgres_harness: PostgresHarness) -> aioredis.Redis:
    """The harness's Redis client."""
    return postgres_harness.redis


async def test_expired_tombstones_are_purged_and_move_the_feed_horizon(
    harness: PostgresHarness, admin: asyncpg.Connection
) -> None:
    tenant, old, fresh = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    await apply(harness, tenant, [create_product(tenant, old, "Old", T0), delete_product(tenant, old, T0)])
    old_checkpoint = await admin.fetchval(
        "SELECT checkpoint FROM products WHERE tenant_id = $1 AND id = $2", tenant, old
    )
    await admin.execute(
        "UPDATE products SET deleted_at = now() - $3::interval WHERE tenant_id = $1 AND id = $2",
        tenant,
        old,
        RETENTION + timedelta(hours=1),
    )
    assert await admin.fetchval("SELECT feed_horizon FROM tenants WHERE tenant_id = $1", tenant) == 0

    await apply(harness, tenant, [create_product(tenant, fresh, "Fresh", T0), delete_product(tenant, fresh, T0)])

    assert await harness.product(tenant, old) is None
    fresh_row = await harness.product(tenant, fresh)
    assert fresh_row is not None
    assert fresh_row["deleted"]
    assert await admin.fetchval("SELECT feed_horizon FROM tenants WHERE tenant_id = $1", tenant) == old_checkpoint


async def test_the_purge_keeps_the_ids_of_purged_products_each_under_its_tenant(
    harness: PostgresHarness, admin: asyncpg.Connection, app_pool: asyncpg.Pool
) -> None:
    tenant, stranger, product = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await apply(harness, stranger, [create_product(stranger, uuid.uuid4(), "Theirs", T0)])
    await apply(harness, tenant, [create_product(tenant, product, "Old", T0), delete_product(tenant, product, T0)])
    tombstone = await admin.fetchrow(
        "SELECT modified_at, checkpoint FROM products WHERE tenant_id = $1 AND id = $2", tenant, product
    )
    assert tombstone is not None
    await harness.age_tombstone(tenant, product, RETENTION + timedelta(hours=1))
    other = uuid.uuid4()
    await apply(harness, tenant, [create_product(tenant, other, "Other", T0), delete_product(tenant, other, T0)])

    # Moved in the purge's own statement: gone from products, its id (and its tombstone's time and
    # checkpoint) kept; the fresh tombstone stays where it is.
    assert await harness.product(tenant, product) is None
    kept = await admin.fetch(
        "SELECT product_id, modified_at, checkpoint FROM purged_products WHERE tenant_id = $1", tenant
    )
    assert [tuple(r) for r in kept] == [(product, tombstone["modified_at"], tombstone["checkpoint"])]

    # The pattern of every tenant table: forced row-level security, keys led by tenant_id, and the
    # services' role may read and add rows only.
    table = await admin.fetchrow(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'purged_products'"
    )
    assert table is not None
    assert tuple(table) == (True, True)
    key = await admin.fetchval(
        "SELECT array_agg(a.attname::text ORDER BY k.n) FROM pg_index AS i "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, n) "
        "JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = 'purged_products'::regclass AND i.indisprimary"
    )
    assert key == ["tenant_id", "product_id"]
    async with tenant_transaction(app_pool, stranger, readonly=True) as theirs:
        assert await theirs.fetchval("SELECT count(*) FROM purged_products WHERE tenant_id = $1", tenant) == 0
    async with tenant_transaction(app_pool, tenant, readonly=True) as own:
        assert await own.fetchval("SELECT count(*) FROM purged_products") == 1
    for statement, args in (
        (
            "INSERT INTO purged_products (tenant_id, product_id, modified_at, checkpoint) VALUES ($1, $2, now(), 1)",
            (stranger, uuid.uuid4()),
        ),
        ("DELETE FROM purged_products WHERE product_id = $1", (product,)),
        ("UPDATE purged_products SET checkpoint = 0 WHERE product_id = $1", (product,)),
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with tenant_transaction(app_pool, tenant) as own:
                await own.execute(statement, *args)
    assert await admin.fetchval("SELECT count(*) FROM purged_products WHERE tenant_id = $1", tenant) == 1


async def test_migration_0004_remembers_products_purged_before_it_and_can_run_again(scratch: Scratch) -> None:
    # On a database of its own: running a migration again takes table locks that would deadlock with
    # the shared stack's workers writing to the shared test database.
    admin = scratch.admin
    tenant, purged, refused, live = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await apply_on(
        scratch,
        tenant,
        [
            create_product(tenant, purged, "Old", T0),
            delete_product(tenant, purged, T0),
            create_product(tenant, live, "Live", T0),
        ],
    )
    # As a purge before this migration left it: the row gone, no id kept, the horizon moved past it.
    await admin.execute("DELETE FROM products WHERE tenant_id = $1 AND id = $2", tenant, purged)
    await admin.execute("UPDATE tenants SET feed_horizon = 2 WHERE tenant_id = $1", tenant)
    # A product operation refused for good never had a row: it names no purged product.
    await admin.execute(
        "INSERT INTO applied_operations (tenant_id, operation_id, message_id, entity_type, entity_id, result) "
        "VALUES ($1, $2, 'm', 'product', $3, $4)",
        tenant,
        uuid.uuid4(),
        refused,
        json.dumps({"status": "rejected", "code": "VALIDATION_ERROR", "retryable": False}),
    )

    (migration,) = [m for m in bundled_migrations() if m.version == "0004"]
    for _ in range(2):
        async with admin.transaction():
            await admin.execute("SET LOCAL ROLE stockzen_owner")
            await admin.execute(migration.sql)
        rows = await admin.fetch("SELECT product_id, checkpoint FROM purged_products WHERE tenant_id = $1", tenant)
        assert [tuple(r) for r in rows] == [(purged, 2)]
    forced = await admin.fetch(
        "SELECT relname FROM pg_class WHERE relforcerowsecurity AND relname = ANY($1::text[])",
        ["applied_operations", "products", "tenants", "purged_products"],
    )
    assert len(forced) == 4

    outcome = await apply_on(
        scratch, tenant, [update_product(tenant, purged, T0, name="x"), movement(tenant, purged, "entry", 1)]
    )
    assert [(r.code, r.retryable) for r in outcome.applied.results] == [(Code.NOT_FOUND, False)] * 2


async def test_the_cache_keeps_results_answers_the_gateway_and_only_moves_checkpoints_forward(
    harness: PostgresHarness, redis_client: aioredis.Redis
) -> None:
    tenant, op = uuid.uuid4(), uuid.uuid4()
    reply_to = f"{harness.prefix}reply:{uuid.uuid4().hex}"
    stored = StoredResult("m-1", ItemResult(operation_id=op, status=ItemStatus.APPLIED))
    applied = SyncBatchApplied(request_id="r", checkpoint="7", results=[stored.result])
    await harness.cache.deliver(tenant, {op: stored}, 7, reply_to, applied)
    await harness.cache.deliver(tenant, {}, 5, reply_to, applied)

    found, checkpoint = await harness.cache.lookup(tenant, [op, uuid.uuid4()])
    assert found == {op: stored}
    assert checkpoint == 7
    popped = await redis_client.blpop([reply_to], timeout=1)
    assert popped is not None
    assert SyncBatchApplied.model_validate_json(popped[1]) == applied
    assert 0 < await redis_client.ttl(reply_to) <= 300


async def test_cached_results_kept_in_the_earlier_layout_are_still_read(
    harness: PostgresHarness, redis_client: aioredis.Redis
) -> None:
    tenant, old_op, new_op = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    state = ProductState(
        id=uuid.uuid4(),
        name="Blue mug",
        sku=None,
        barcode=None,
        unit="pcs",
        price_cents=350,
        low_stock_threshold=None,
        archived=False,
        deleted=False,
        modified_at=T0,
        checkpoint="12",
    )
    conflict = ItemResult(
        operation_id=old_op,
        status=ItemStatus.CONFLICT,
        code=Code.CONFLICT_RESOLVED,
        message="newer edits won for name",
        retryable=False,
        server_state=state,
    )
    # As entries were written before results were encoded once: json.dumps of the model's wire dict.
    earlier = {"messageId": "m-0", "result": conflict.to_wire(), "fingerprint": "f" * 64}
    await redis_client.set(result_key(harness.prefix, tenant, old_op), json.dumps(earlier))
    renamed = conflict.model_copy(update={"operation_id": new_op})
    stored = StoredResult("m-1", renamed, "e" * 64)
    applied = SyncBatchApplied(request_id="r", checkpoint="12", results=[renamed])
    await harness.cache.deliver(tenant, {new_op: stored}, 12, f"{harness.prefix}reply:{uuid.uuid4().hex}", applied)

    found, _ = await harness.cache.lookup(tenant, [old_op, new_op])
    assert found == {old_op: StoredResult("m-0", conflict, "f" * 64), new_op: stored}
    assert 0 < await redis_client.ttl(result_key(harness.prefix, tenant, new_op)) <= 600


_TAKE = "INSERT INTO tenants (tenant_id) VALUES (app_current_tenant())"


async def _fail_after_taking(pool: asyncpg.Pool, tenant: uuid.UUID) -> None:
    async with tenant_transaction_in_one_round_trip(pool, tenant, then=_TAKE) as own:
        assert await own.fetchval("SELECT count(*) FROM tenants") == 1  # its own row only
        raise RuntimeError("the block failed")


async def test_a_transaction_opened_in_one_round_trip_is_scoped_to_its_tenant_and_undone_on_failure(
    app_pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    tenant, other = uuid.uuid4(), uuid.uuid4()
    async with tenant_transaction_in_one_round_trip(app_pool, other, then=_TAKE) as theirs:
        assert await theirs.fetchval("SELECT app_current_tenant()") == other
    with pytest.raises(RuntimeError, match="the block failed"):
        await _fail_after_taking(app_pool, tenant)
    assert await admin.fetchval("SELECT count(*) FROM tenants WHERE tenant_id = $1", tenant) == 0
    assert await admin.fetchval("SELECT count(*) FROM tenants WHERE tenant_id = $1", other) == 1
    async with app_pool.acquire() as connection:  # given back to the pool with no transaction open
        assert not connection.is_in_transaction()

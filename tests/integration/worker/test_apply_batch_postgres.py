"""The worker's service layer against real Postgres (as the application role) and real Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from stockzen_contracts import Code, ItemResult, ItemStatus, ProductState, SyncBatchApplied
from stockzen_sync_worker.adapters.ledger import PostgresLedger
from stockzen_sync_worker.adapters.result_cache import RedisResultCache
from stockzen_sync_worker.domain.outcomes import StoredResult
from tests.support.apply_scenarios import (  # noqa: F401 (pytest collects the imported scenarios)
    T0,
    apply,
    test_a_device_ahead_of_the_server_keeps_its_own_order_within_a_request,
    test_a_future_clock_is_clamped_to_when_the_server_received_the_change,
    test_a_movement_refused_by_the_ledger_is_rejected_alone,
    test_a_redelivered_message_gets_its_original_results_and_another_gets_duplicates,
    test_an_edit_or_movement_that_overtook_its_create_applies_once_the_create_lands,
    test_an_operation_id_reused_for_another_change_is_refused_and_the_same_change_stays_a_duplicate,
    test_checkpoints_count_the_changes,
    test_deletes_leave_tombstones_that_win,
    test_edits_merge_field_by_field,
    test_equal_times_are_settled_by_operation_id_whatever_the_arrival_order,
    test_equal_times_of_one_request_that_were_not_clamped_still_fall_to_the_operation_id,
    test_movements_build_the_stock_level_and_a_reused_movement_id_is_refused,
    test_movements_see_the_creates_and_deletes_before_them_in_their_request,
    test_one_item_refused_by_the_ledger_does_not_undo_the_others,
    test_the_same_operation_twice_in_one_batch_is_applied_once,
    test_what_does_not_exist_is_not_found,
)
from tests.support.db import stock_level
from tests.support.ops import create_product, delete_product
from tests.support.services import ServiceUrls
from tests.support.stack import delete_redis_keys

RETENTION = timedelta(days=30)


class PostgresHarness:
    def __init__(
        self, pool: asyncpg.Pool, admin: asyncpg.Connection, client: aioredis.Redis, redis_url: str, prefix: str
    ) -> None:
        self.ledger = PostgresLedger(pool, tombstone_retention=RETENTION)
        self.cache = RedisResultCache(client, prefix=prefix, result_ttl_seconds=600)
        self._admin = admin
        self._redis_url = redis_url
        self.prefix = prefix

    async def product(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> dict[str, Any] | None:
        row = await self._admin.fetchrow(
            "SELECT *, deleted_at IS NOT NULL AS deleted FROM products WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            product_id,
        )
        return dict(row) if row else None

    async def level(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> int | None:
        return await stock_level(self._admin, tenant_id, product_id)

    async def flush_cache(self) -> None:
        await delete_redis_keys(self._redis_url, self.prefix)


@pytest.fixture
async def redis_client(database: ServiceUrls) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(database.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def harness(
    app_pool: asyncpg.Pool, admin: asyncpg.Connection, redis_client: aioredis.Redis, database: ServiceUrls
) -> AsyncIterator[PostgresHarness]:
    prefix = f"{database.redis_prefix}{uuid.uuid4().hex[:6]}:"
    yield PostgresHarness(app_pool, admin, redis_client, database.redis_url, prefix)
    await delete_redis_keys(database.redis_url, prefix)


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
    await redis_client.set(f"{harness.prefix}result:{tenant}:{old_op}", json.dumps(earlier))
    renamed = conflict.model_copy(update={"operation_id": new_op})
    stored = StoredResult("m-1", renamed, "e" * 64)
    applied = SyncBatchApplied(request_id="r", checkpoint="12", results=[renamed])
    await harness.cache.deliver(tenant, {new_op: stored}, 12, f"{harness.prefix}reply:{uuid.uuid4().hex}", applied)

    found, _ = await harness.cache.lookup(tenant, [old_op, new_op])
    assert found == {old_op: StoredResult("m-0", conflict, "f" * 64), new_op: stored}
    assert 0 < await redis_client.ttl(f"{harness.prefix}result:{tenant}:{new_op}") <= 600

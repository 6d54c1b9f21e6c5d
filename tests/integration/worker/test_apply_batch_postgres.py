"""What only Postgres and Redis can show: tombstones expiring by the clock, the cache's Redis keys.

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
from stockzen_sync_worker.domain.outcomes import StoredResult
from tests.support.harness import T0, PostgresHarness, apply
from tests.support.harness import TOMBSTONE_RETENTION as RETENTION
from tests.support.ops import create_product, delete_product


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

"""The result cache keeps each deduped operation in at most 200 bytes of Redis (MEMORY USAGE, with
this test's key prefix, longer than the services' ``sz:``), and gives back exactly what it was given."""

from __future__ import annotations

import json
import statistics
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from stockzen_contracts import Code, ItemResult, ItemStatus, ProductState, SyncBatchApplied, parse_operation
from stockzen_sync_worker.adapters.result_cache import RedisResultCache, result_key
from stockzen_sync_worker.domain.outcomes import StoredResult, operation_fingerprint
from tests.support.ops import movement
from tests.support.services import ServiceUrls
from tests.support.stack import delete_redis_keys

BOUND = 200  # bytes per deduped operation (issue 18)


@pytest.fixture
async def redis_cache(database: ServiceUrls) -> AsyncIterator[tuple[RedisResultCache, aioredis.Redis, str]]:
    prefix = f"{database.redis_prefix}{uuid.uuid4().hex[:6]}:"
    client = aioredis.Redis.from_url(database.redis_url)
    yield RedisResultCache(client, prefix=prefix, result_ttl_seconds=600), client, prefix
    await client.aclose()
    await delete_redis_keys(database.redis_url, prefix)


def _applied(tenant: uuid.UUID) -> tuple[uuid.UUID, StoredResult]:
    """A movement applied by a dramatiq message, with the fingerprint the gateway computes."""
    wire = movement(tenant, uuid.uuid4(), "entry", 3)
    op = uuid.UUID(wire["operationId"])
    fingerprint = operation_fingerprint(parse_operation(wire))
    return op, StoredResult(str(uuid.uuid4()), ItemResult(operation_id=op, status=ItemStatus.APPLIED), fingerprint)


async def _deliver(cache: RedisResultCache, tenant: uuid.UUID, results: dict[uuid.UUID, StoredResult]) -> None:
    answer = SyncBatchApplied(request_id="r", checkpoint="1", results=[s.result for s in results.values()])
    await cache.deliver(tenant, results, 1, f"reply:{uuid.uuid4().hex}", answer)


async def test_an_applied_operation_takes_at_most_200_bytes_of_redis(
    redis_cache: tuple[RedisResultCache, aioredis.Redis, str],
) -> None:
    cache, client, prefix = redis_cache
    tenant = uuid.uuid4()
    results = dict(_applied(tenant) for _ in range(50))
    await _deliver(cache, tenant, results)

    sizes = [int(await client.memory_usage(result_key(prefix, tenant, op), samples=0) or 0) for op in results]
    # The layout before: a JSON entry under a text key (kept here as the figure to compare with).
    op, stored = next(iter(results.items()))
    before = f"{prefix}result:{tenant}:{op}"
    entry = {"messageId": stored.message_id, "result": json.loads(stored.result.wire_json())}
    await client.set(before, json.dumps({**entry, "fingerprint": stored.fingerprint}, separators=(",", ":")), ex=60)
    earlier = int(await client.memory_usage(before, samples=0) or 0)
    print(f"redis per deduped operation: {statistics.fmean(sizes):.0f} B (JSON under a text key: {earlier} B)")
    assert min(sizes) > 0
    assert max(sizes) <= BOUND
    assert earlier > BOUND  # what the compact form is for

    found, _ = await cache.lookup(tenant, list(results))
    assert found == results


async def test_every_kind_of_result_comes_back_as_it_was_given(
    redis_cache: tuple[RedisResultCache, aioredis.Redis, str],
) -> None:
    cache, _, _ = redis_cache
    tenant = uuid.uuid4()
    ops = [uuid.uuid4() for _ in range(6)]
    state = ProductState(
        id=uuid.uuid4(),
        name='Mug "blue" \u00e9',
        sku=None,
        barcode=None,
        unit="pcs",
        price_cents=350,
        low_stock_threshold=None,
        archived=False,
        deleted=False,
        modified_at=datetime(2026, 11, 1, 12, tzinfo=UTC),
        checkpoint="12",
    )
    conflict = ItemResult(
        operation_id=ops[0],
        status=ItemStatus.CONFLICT,
        code=Code.CONFLICT_RESOLVED,
        message="newer edits won for name",
        retryable=False,
        server_state=state,
    )
    results = {
        ops[0]: StoredResult(str(uuid.uuid4()), conflict, "a" * 64),
        ops[1]: StoredResult("m-1", ItemResult.rejected(ops[1], Code.NOT_FOUND, "product x was deleted"), "b" * 64),
        ops[2]: StoredResult(str(uuid.uuid4()), ItemResult(operation_id=ops[2], status=ItemStatus.APPLIED), None),
        ops[3]: StoredResult("m-3", ItemResult(operation_id=ops[3], status=ItemStatus.APPLIED), "not a sha256"),
        # An applied result that says more than its status, and a message id in another spelling.
        ops[4]: StoredResult(
            str(uuid.uuid4()).upper(),
            ItemResult(operation_id=ops[4], status=ItemStatus.APPLIED, retryable=False),
            "F" * 64,
        ),
        ops[5]: StoredResult("", ItemResult(operation_id=None, status=ItemStatus.APPLIED), "c" * 64),
    }
    await _deliver(cache, tenant, results)

    found, _ = await cache.lookup(tenant, ops)
    assert found == results

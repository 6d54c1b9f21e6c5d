"""Checkpoint announcements through real Redis: what the worker's result cache publishes after a
commit reaches the gateway's listeners of that tenant, and only them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from stockzen_contracts import SyncBatchApplied, checkpoint_channel
from stockzen_gateway.adapters.checkpoint_announcements import RedisCheckpointAnnouncements
from stockzen_gateway.ports import CheckpointSubscription
from stockzen_sync_worker.adapters.result_cache import RedisResultCache
from tests.support.retry import eventually
from tests.support.services import ServiceUrls
from tests.support.stack import delete_redis_keys


@pytest.fixture
async def prefix(database: ServiceUrls) -> AsyncIterator[str]:
    chosen = f"{database.redis_prefix}{uuid.uuid4().hex[:6]}:"
    yield chosen
    await delete_redis_keys(database.redis_url, chosen)


async def _listening(
    client: aioredis.Redis, prefix: str, tenant: uuid.UUID, subscription: CheckpointSubscription
) -> None:
    """Probe until the subscription hears (Redis may hold other runs' pattern subscriptions, so
    counting patterns proves nothing): a publish before it is in place would reach nobody."""
    channel = checkpoint_channel(prefix, tenant)

    async def heard() -> bool:
        await client.publish(channel, "0")
        return await subscription.next_checkpoint(0.2) == "0"

    await eventually(heard, seconds=10)


async def test_a_delivered_batch_announces_its_checkpoint_to_its_tenant_only(
    database: ServiceUrls, prefix: str
) -> None:
    announcements = RedisCheckpointAnnouncements(aioredis.Redis.from_url(database.redis_url), prefix=prefix)
    worker_client = aioredis.Redis.from_url(database.redis_url)
    cache = RedisResultCache(worker_client, prefix=prefix, result_ttl_seconds=60)
    tenant, neighbour = uuid.uuid4(), uuid.uuid4()
    try:
        async with announcements.subscribe(tenant) as mine, announcements.subscribe(neighbour) as theirs:
            await _listening(worker_client, prefix, tenant, mine)
            applied = SyncBatchApplied(request_id="r1", checkpoint="41", results=[])
            await cache.deliver(tenant, {}, 41, f"{prefix}reply:r1", applied)
            await cache.deliver(tenant, {}, 42, f"{prefix}reply:r2", applied)
            heard: list[str] = []
            while "42" not in heard:
                checkpoint = await mine.next_checkpoint(5)
                assert checkpoint is not None, f"heard only {heard}"
                if checkpoint != "0":  # a late probe
                    heard.append(checkpoint)
            # In order, and a listener that fell behind may skip to the newest: ["41", "42"] or ["42"].
            assert heard in (["41", "42"], ["42"])
            assert await theirs.next_checkpoint(0.5) is None
            announcements.close_soon()
            assert await mine.next_checkpoint(5) is None
            assert mine.closed
    finally:
        await announcements.aclose()
        await worker_client.aclose()


async def test_a_checkpoint_that_does_not_move_forward_is_not_announced(database: ServiceUrls, prefix: str) -> None:
    # A batch of replays answers with the checkpoint already cached, and a worker may store a lower
    # checkpoint after a higher one: neither has anything new to pull, so no device is woken.
    announcements = RedisCheckpointAnnouncements(aioredis.Redis.from_url(database.redis_url), prefix=prefix)
    worker_client = aioredis.Redis.from_url(database.redis_url)
    cache = RedisResultCache(worker_client, prefix=prefix, result_ttl_seconds=60)
    tenant = uuid.uuid4()
    applied = SyncBatchApplied(request_id="r1", checkpoint="7", results=[])
    try:
        async with announcements.subscribe(tenant) as mine:
            await _listening(worker_client, prefix, tenant, mine)
            await cache.deliver(tenant, {}, 7, f"{prefix}reply:r1", applied)
            assert await mine.next_checkpoint(5) == "7"
            await cache.deliver(tenant, {}, 7, f"{prefix}reply:r2", applied)  # replayed
            assert await mine.next_checkpoint(1) is None
            await cache.deliver(tenant, {}, 6, f"{prefix}reply:r3", applied)  # stored late
            assert await mine.next_checkpoint(1) is None
            await cache.deliver(tenant, {}, 8, f"{prefix}reply:r4", applied)
            assert await mine.next_checkpoint(5) == "8"
            # Every batch was still answered.
            for reply in ("r1", "r2", "r3", "r4"):
                assert await worker_client.llen(f"{prefix}reply:{reply}") == 1
            announcements.close_soon()
    finally:
        await announcements.aclose()
        await worker_client.aclose()

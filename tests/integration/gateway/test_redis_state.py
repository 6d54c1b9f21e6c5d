"""The gateway's Redis scripts against real Redis: token buckets and Idempotency-Key records."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from stockzen_gateway.adapters.redis_rate_limiter import RedisRateLimiter
from stockzen_gateway.adapters.redis_state import RedisGatewayState
from stockzen_gateway.domain.rate_limits import RateLimit
from stockzen_gateway.domain.request_keys import RequestKeyState, StoredResponse
from tests.support.services import ServiceUrls
from tests.support.stack import delete_redis_keys


@pytest.fixture
async def state(database: ServiceUrls) -> AsyncIterator[RedisGatewayState]:
    client = aioredis.Redis.from_url(database.redis_url)
    prefix = f"{database.redis_prefix}{uuid.uuid4().hex[:6]}:"
    yield RedisGatewayState(client, prefix=prefix)
    await client.aclose()
    await delete_redis_keys(database.redis_url, prefix)


@pytest.fixture
async def limiter(database: ServiceUrls) -> AsyncIterator[RedisRateLimiter]:
    client = aioredis.Redis.from_url(database.redis_url)
    prefix = f"{database.redis_prefix}{uuid.uuid4().hex[:6]}:"
    yield RedisRateLimiter(client, prefix=prefix)
    await client.aclose()
    await delete_redis_keys(database.redis_url, prefix)


async def test_a_bucket_allows_its_burst_then_says_when_to_come_back(limiter: RedisRateLimiter) -> None:
    limit = RateLimit("sync", per_minute=60, burst=5)
    tenant = uuid.uuid4()
    decisions = await asyncio.gather(*(limiter.take_token(limit, tenant, "u") for _ in range(8)))
    assert sum(d.allowed for d in decisions) == 5  # atomic under concurrency: never more than the burst
    refused = [d for d in decisions if not d.allowed]
    assert all(d.retry_after_seconds == 1 for d in refused)  # one token per second refills
    assert (await limiter.take_token(limit, tenant, "other-user")).allowed
    assert (await limiter.take_token(RateLimit("read", 60, 5), tenant, "u")).allowed
    await asyncio.sleep(1.1)
    assert (await limiter.take_token(limit, tenant, "u")).allowed


async def test_a_slow_bucket_names_a_longer_wait(limiter: RedisRateLimiter) -> None:
    limit = RateLimit("sync", per_minute=2, burst=1)
    tenant = uuid.uuid4()
    assert (await limiter.take_token(limit, tenant, "u")).allowed
    refused = await limiter.take_token(limit, tenant, "u")
    assert not refused.allowed
    assert 29 <= refused.retry_after_seconds <= 30


async def test_a_key_is_claimed_once_then_replayed_and_refused_for_another_body(state: RedisGatewayState) -> None:
    tenant = uuid.uuid4()
    claims = await asyncio.gather(
        *(state.claim_request_key(tenant, "k", "fp-1", in_flight_seconds=30) for _ in range(5))
    )
    assert sorted(c.state for c in claims) == [RequestKeyState.CLAIMED] + [RequestKeyState.IN_FLIGHT] * 4
    (token,) = [c.token for c in claims if c.token is not None]
    assert (await state.claim_request_key(tenant, "k", "fp-2", in_flight_seconds=30)).state is RequestKeyState.MISMATCH
    response = StoredResponse(200, b'{"results": []}')
    assert await state.complete_request_key(tenant, "k", token, response, ttl_seconds=60)
    replay = await state.claim_request_key(tenant, "k", "fp-1", in_flight_seconds=30)
    assert (replay.state, replay.stored) == (RequestKeyState.COMPLETED, response)
    assert (
        await state.claim_request_key(uuid.uuid4(), "k", "fp-2", in_flight_seconds=30)
    ).state is RequestKeyState.CLAIMED


async def test_only_the_claimant_can_release_a_key(state: RedisGatewayState) -> None:
    tenant = uuid.uuid4()
    claim = await state.claim_request_key(tenant, "k", "fp-1", in_flight_seconds=30)
    assert claim.token is not None
    await state.release_request_key(tenant, "k", "another-claims-token")
    assert (await state.claim_request_key(tenant, "k", "fp-1", in_flight_seconds=30)).state is RequestKeyState.IN_FLIGHT
    await state.release_request_key(tenant, "k", claim.token)
    assert (await state.claim_request_key(tenant, "k", "fp-1", in_flight_seconds=30)).state is RequestKeyState.CLAIMED


async def test_a_claim_lost_to_a_redis_restart_completes_nothing(
    state: RedisGatewayState, database: ServiceUrls
) -> None:
    tenant = uuid.uuid4()
    first = await state.claim_request_key(tenant, "k", "fp-1", in_flight_seconds=30)
    assert first.token is not None
    # The store forgets the claim (a restart without persistence), and another body claims the key.
    client = aioredis.Redis.from_url(database.redis_url)
    try:
        forgotten = [key async for key in client.scan_iter(match=f"{database.redis_prefix}*idem:{tenant}:k")]
        assert len(forgotten) == 1
        await client.delete(*forgotten)
    finally:
        await client.aclose()
    other = await state.claim_request_key(tenant, "k", "fp-2", in_flight_seconds=30)
    assert other.state is RequestKeyState.CLAIMED
    assert other.token is not None
    assert not await state.complete_request_key(tenant, "k", first.token, StoredResponse(200, b"first"), ttl_seconds=60)
    assert (await state.claim_request_key(tenant, "k", "fp-2", in_flight_seconds=30)).state is RequestKeyState.IN_FLIGHT
    assert await state.complete_request_key(tenant, "k", other.token, StoredResponse(200, b"other"), ttl_seconds=60)
    replay = await state.claim_request_key(tenant, "k", "fp-2", in_flight_seconds=30)
    assert (replay.state, replay.stored) == (RequestKeyState.COMPLETED, StoredResponse(200, b"other"))
    # A completed key cannot be completed again, even by its own claim.
    assert not await state.complete_request_key(tenant, "k", other.token, StoredResponse(200, b"again"), ttl_seconds=60)


async def test_waiting_for_a_reply_returns_none_past_the_deadline(state: RedisGatewayState) -> None:
    assert await state.wait_for_reply(state.new_reply_key(), 0.2) is None
    assert state.new_reply_key() != state.new_reply_key()

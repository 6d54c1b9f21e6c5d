"""The gateway's limits against real Redis: tenant ceilings, waiting for results on one connection,
and the budget of kept answers per tenant."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from stockzen_contracts import SyncBatchApplied
from stockzen_gateway.adapters.redis_rate_limiter import RedisRateLimiter
from stockzen_gateway.adapters.redis_state import RedisGatewayState
from stockzen_gateway.domain.rate_limits import RateLimit, TenantCeiling
from stockzen_gateway.domain.request_keys import RequestKeyState, StoredResponse
from stockzen_gateway.ports import RateLimiterOverloaded
from tests.support.services import ServiceUrls
from tests.support.stack import delete_redis_keys


@pytest.fixture
def prefix(database: ServiceUrls) -> str:
    return f"{database.redis_prefix}{uuid.uuid4().hex[:6]}:"


@pytest.fixture
async def small_pool(database: ServiceUrls, prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A client on a pool of 8 connections, the way the gateway builds its own (blocking when empty)."""
    pool = aioredis.BlockingConnectionPool.from_url(database.redis_url, max_connections=8, timeout=2)
    client = aioredis.Redis.from_pool(pool)
    yield client
    await client.aclose()
    await delete_redis_keys(database.redis_url, prefix)


async def test_a_tenant_ceiling_holds_back_all_its_users_together_and_refusals_cost_nothing(
    small_pool: aioredis.Redis, prefix: str
) -> None:
    limiter = RedisRateLimiter(small_pool, prefix=prefix)
    limit = RateLimit("sync", per_minute=60, burst=3, tenant=TenantCeiling(per_minute=6, burst=5))
    tenant = uuid.uuid4()
    decisions = [await limiter.take_token(limit, tenant, f"user-{i}") for i in range(4) for _ in range(2)]
    assert sum(d.allowed for d in decisions) == 5
    refused = [d for d in decisions if not d.allowed]
    assert all(d.by_tenant and 9 <= d.retry_after_seconds <= 10 for d in refused)
    # user-3 was refused by the tenant twice: its own bucket is still full once the tenant's refills.
    other_tenant = await limiter.take_token(limit, uuid.uuid4(), "user-3")
    assert other_tenant.allowed


async def test_hundreds_of_requests_wait_for_results_on_one_connection_while_the_limiter_answers(
    small_pool: aioredis.Redis, database: ServiceUrls, prefix: str
) -> None:
    state = RedisGatewayState(small_pool, prefix=prefix)
    limiter_client = aioredis.Redis.from_url(database.redis_url, max_connections=2)
    limiter = RedisRateLimiter(limiter_client, prefix=prefix, max_concurrent=2)
    worker = aioredis.Redis.from_url(database.redis_url)
    try:
        replies = [state.new_reply_key() for _ in range(300)]
        waits = [asyncio.create_task(state.wait_for_reply(reply, 10)) for reply in replies]
        await asyncio.sleep(0.3)
        # 300 waiters on a pool of 8: the pool still serves short commands at once.
        claim = await asyncio.wait_for(state.claim_request_key(uuid.uuid4(), "k", "fp", in_flight_seconds=30), 1)
        assert claim.state is RequestKeyState.CLAIMED
        assert (await limiter.take_token(RateLimit("sync", 60, 5), uuid.uuid4(), "u")).allowed
        for index, reply in enumerate(replies[:-1]):  # as the worker answers: RPUSH onto the reply list
            answer = SyncBatchApplied(request_id=f"r{index}", checkpoint=str(index), results=[])
            await worker.rpush(reply, answer.model_dump_json())
        done = await asyncio.wait_for(asyncio.gather(*waits[:-1]), 10)
        assert [a.request_id if a else None for a in done] == [f"r{i}" for i in range(299)]
        assert not waits[-1].done()  # nothing came for the last one: it waits on, then gives up
        waits[-1].cancel()
        assert await state.wait_for_reply(state.new_reply_key(), 0.2) is None
    finally:
        await state.aclose()
        await limiter_client.aclose()
        await worker.aclose()


async def test_past_its_budget_a_tenants_answers_are_not_kept_and_their_keys_are_let_go(
    small_pool: aioredis.Redis, prefix: str
) -> None:
    state = RedisGatewayState(small_pool, prefix=prefix, tenant_budget_bytes=3_000)
    tenant, other = uuid.uuid4(), uuid.uuid4()
    answer = StoredResponse(200, b"x" * 1_000)

    async def keep(tenant_id: uuid.UUID, key: str) -> bool:
        claim = await state.claim_request_key(tenant_id, key, "fp", in_flight_seconds=30)
        assert claim.token is not None
        return await state.complete_request_key(tenant_id, key, claim.token, answer, ttl_seconds=3600)

    assert [await keep(tenant, f"k{i}") for i in range(3)] == [True, True, False]  # each costs its body + ~200
    assert (await state.claim_request_key(tenant, "k2", "fp", in_flight_seconds=30)).state is RequestKeyState.CLAIMED
    assert (await state.claim_request_key(tenant, "k0", "fp", in_flight_seconds=30)).stored == answer
    assert await keep(other, "k0")  # the budget is the tenant's own


async def test_a_limiter_whose_connections_stay_busy_says_it_is_overloaded_rather_than_away(prefix: str) -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # a Redis that takes the command and says nothing: a stalled server
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=5, max_connections=1)
    limiter = RedisRateLimiter(client, prefix=prefix, max_concurrent=1)
    try:
        stuck = asyncio.create_task(limiter.take_token(RateLimit("sync", 60, 5), uuid.uuid4(), "a"))
        await asyncio.sleep(0.1)
        with pytest.raises(RateLimiterOverloaded):
            await limiter.take_token(RateLimit("sync", 60, 5), uuid.uuid4(), "b")
        stuck.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stuck
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()

"""Limits that keep one caller from hurting everyone, tried from outside against running services:
the rate limiter under its own load, what one request key may store, and a tenant's ceiling."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.support.ops import create_product, movement
from tests.support.retry import eventually
from tests.support.services import ServiceUrls
from tests.support.stack import Stack, queue_counts, user_token
from tests.support.tokens import expect_error


def _auth(tenant_id: uuid.UUID, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token(tenant_id, user)}"}


def _refused_items(count: int) -> dict[str, Any]:
    """``count`` items of another tenant: the gateway refuses each on the spot, nothing waits."""
    return {"operations": [movement(uuid.uuid4(), uuid.uuid4()) for _ in range(count)]}


def _noise() -> str:
    return "".join(uuid.uuid4().hex for _ in range(3))


async def _memory(database: ServiceUrls, pattern: str) -> dict[str, int]:
    """``MEMORY USAGE`` of every key of this run matching ``pattern`` (after the prefix)."""
    client = aioredis.Redis.from_url(database.redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{database.redis_prefix}{pattern}")]
        return {key.decode(): await client.memory_usage(key, samples=0) or 0 for key in keys}
    finally:
        await client.aclose()


@pytest.mark.slow
async def test_requests_waiting_for_results_past_the_redis_pool_never_switch_the_rate_limiter_off(
    own_stack: Stack, tenant_id: uuid.UUID
) -> None:
    await asyncio.to_thread(own_stack.start_worker)  # declares the queue
    await asyncio.to_thread(own_stack.processes["worker"].stop)  # then nobody answers: requests wait
    await asyncio.to_thread(
        own_stack.start_gateway,
        GATEWAY_REDIS_MAX_CONNECTIONS="8",
        SYNC_RESULT_TIMEOUT_SECONDS="8",
        SYNC_RATE_LIMIT_BURST="3",
        SYNC_RATE_LIMIT_PER_MINUTE="1",
    )
    waiting_users = 48  # six times the pool: each used to hold a connection until its deadline
    async with httpx.AsyncClient(base_url=own_stack.gateway_url, timeout=90) as client:
        waiting = [
            asyncio.create_task(
                client.post(
                    "/api/sync",
                    json={"operations": [movement(tenant_id, uuid.uuid4())]},
                    headers=_auth(tenant_id, f"w{i}"),
                )
            )
            for i in range(waiting_users)
        ]

        async def all_queued() -> bool:
            return (await asyncio.to_thread(queue_counts, own_stack.services.amqp_url, own_stack.queue))[0] >= 48

        await eventually(all_queued)  # every one of them published its batch and now waits

        # A caller over its budget is still held back, at once: the limiter has connections of its own.
        over = _auth(tenant_id, "over-budget")
        statuses = []
        for _ in range(5):
            answer = await client.post("/api/sync", json=_refused_items(1), headers=over, timeout=3)
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                expect_error(answer, 429, "RATE_LIMITED")
        assert statuses == [200, 200, 200, 429, 429]
        # And a request key is still claimed and kept: short commands are not starved either.
        keyed = await client.post(
            "/api/sync",
            json=_refused_items(2),
            headers={**_auth(tenant_id, "keyed"), "Idempotency-Key": "k"},
            timeout=3,
        )
        assert keyed.status_code == 200, keyed.text

        assert not any(task.done() for task in waiting)  # all of that while every one of them waited
        await asyncio.to_thread(own_stack.start_worker)  # and now their results come
        answers = await asyncio.gather(*waiting)
    assert Counter(a.status_code for a in answers) == {200: waiting_users}


async def test_one_request_key_of_500_refused_items_keeps_under_2_kb_and_replays_exactly(
    gateway: httpx.AsyncClient, database: ServiceUrls, tenant_id: uuid.UUID
) -> None:
    body = _refused_items(500)
    key = f"big-{uuid.uuid4()}"
    first = await gateway.post("/api/sync", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 200
    assert len(first.content) > 70_000
    assert {r["code"] for r in first.json()["results"]} == {"TENANT_MISMATCH"}

    kept = await _memory(database, f"idem:{tenant_id}:{key}")
    assert len(kept) == 1
    assert next(iter(kept.values())) < 2_000  # it was 98,832 B, the answer kept whole

    replay = await gateway.post("/api/sync", json=body, headers={"Idempotency-Key": key})
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content


@pytest.mark.slow
async def test_what_one_tenants_request_keys_keep_is_bounded_by_its_budget(
    own_stack: Stack, database: ServiceUrls, tenant_id: uuid.UUID
) -> None:
    await asyncio.to_thread(own_stack.start_gateway, IDEMPOTENCY_TENANT_BUDGET_BYTES="20000")
    headers = _auth(tenant_id, "keeper")
    # Answers that do not compress: each item refused with the random field name it carried.
    noisy = [{"operations": [{**movement(tenant_id, uuid.uuid4()), _noise(): 1} for _ in range(100)]} for _ in range(8)]
    async with httpx.AsyncClient(base_url=own_stack.gateway_url, headers=headers, timeout=30) as client:
        firsts = [
            await client.post("/api/sync", json=body, headers={"Idempotency-Key": f"n{i}"})
            for i, body in enumerate(noisy)
        ]
        assert {f.status_code for f in firsts} == {200}
        assert all(r["status"] == "rejected" for f in firsts for r in f.json()["results"])
        replays = [
            await client.post("/api/sync", json=body, headers={"Idempotency-Key": f"n{i}"})
            for i, body in enumerate(noisy)
        ]
    replayed = [r.headers.get("idempotent-replayed") == "true" for r in replays]
    assert replayed[0]
    assert not replayed[-1]  # past the budget: answered, not kept; its retry ran again
    assert [r.content for r, again in zip(replays, replayed, strict=True) if again] == [
        f.content for f, again in zip(firsts, replayed, strict=True) if again
    ]
    kept = await _memory(database, f"idem:{tenant_id}:*")
    assert 0 < sum(kept.values()) <= 20_000 * 1.25  # the count is of bodies; Redis's allocator rounds up


@pytest.mark.slow
async def test_a_tenant_flooding_from_many_users_is_held_at_its_ceiling_while_another_is_served(
    own_stack: Stack, tenant_id: uuid.UUID
) -> None:
    await asyncio.to_thread(own_stack.start_worker)
    await asyncio.to_thread(
        own_stack.start_gateway, SYNC_TENANT_RATE_LIMIT_BURST="10", SYNC_TENANT_RATE_LIMIT_PER_MINUTE="30"
    )
    other = uuid.uuid4()
    async with httpx.AsyncClient(base_url=own_stack.gateway_url, timeout=30) as client:
        # 25 users of one tenant, each well within its own bucket (20), 50 requests in all.
        flood = await asyncio.gather(
            *(
                client.post("/api/sync", json=_refused_items(1), headers=_auth(tenant_id, f"u{i % 25}"))
                for i in range(50)
            )
        )
        counted = Counter(answer.status_code for answer in flood)
        assert counted[200] <= 11  # the ceiling's burst, and what refilled meanwhile
        assert counted[429] >= 39
        refused = next(answer for answer in flood if answer.status_code == 429)
        assert "all its users together" in expect_error(refused, 429, "RATE_LIMITED")["message"]

        product = uuid.uuid4()
        served = [
            await client.post(
                "/api/sync",
                json={"operations": [create_product(other, product), movement(other, product, "entry", i + 1)]},
                headers=_auth(other, f"b{i}"),
            )
            for i in range(5)
        ]
    assert [answer.status_code for answer in served] == [200] * 5
    assert all(r["status"] in ("applied", "duplicate") for answer in served for r in answer.json()["results"])

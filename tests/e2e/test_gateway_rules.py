"""The gateway's rules for whole requests: tokens, rate limits, envelopes and Idempotency-Keys."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from tests.support.db import applied_rows
from tests.support.ops import create_product, movement
from tests.support.retry import eventually, sync_until_final
from tests.support.services import ServiceUrls
from tests.support.stack import Stack, user_token
from tests.support.tokens import bad_tokens, expect_error


async def test_every_kind_of_bad_token_gets_401(stack: Stack, tenant_id: uuid.UUID) -> None:
    body = {"operations": [movement(tenant_id, uuid.uuid4())]}
    async with httpx.AsyncClient(base_url=stack.gateway_url) as client:
        for name, header in bad_tokens(tenant_id).items():
            headers = {"Authorization": header} if header is not None else {}
            response = await client.post("/api/sync", json=body, headers=headers)
            error = expect_error(response, 401, "UNAUTHORIZED")
            assert response.headers["www-authenticate"] == "Bearer", name
            assert "secret" not in error["message"].lower(), name


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 422, "VALIDATION_ERROR"),
        (b'{"operations": {}}', "application/json", 422, "VALIDATION_ERROR"),
        (b'{"operations": []}', "application/json", 422, "VALIDATION_ERROR"),
        (b'{"operations": [{}], "since": 3}', "application/json", 422, "VALIDATION_ERROR"),
        (b"[1, 2]", "application/json", 422, "VALIDATION_ERROR"),
        (b'{"operations": [{}]}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b'{"operations": [' + b",".join([b"{}"] * 501) + b"]}", "application/json", 413, "TOO_MANY_OPERATIONS"),
        (b'{"operations": [{"pad": "' + b"x" * 1_100_000 + b'"}]}', "application/json", 413, "PAYLOAD_TOO_LARGE"),
    ],
    ids=[
        "not json",
        "operations not a list",
        "no operations",
        "unknown field",
        "not an object",
        "media type",
        "too many operations",
        "too large",
    ],
)
async def test_a_bad_envelope_fails_the_request_with_the_error_shape(
    gateway: httpx.AsyncClient, body: bytes, content_type: str, status: int, code: str
) -> None:
    response = await gateway.post("/api/sync", content=body, headers={"Content-Type": content_type})
    expect_error(response, status, code)


async def test_past_the_rate_limit_the_gateway_answers_429_with_retry_after(
    own_stack: Stack, tenant_id: uuid.UUID
) -> None:
    await asyncio.to_thread(own_stack.start_inventory)
    await asyncio.to_thread(own_stack.start_gateway, SYNC_RATE_LIMIT_BURST="3", SYNC_RATE_LIMIT_PER_MINUTE="2")
    # Items of another tenant are refused by the gateway itself: no worker is needed here.
    body = {"operations": [movement(uuid.uuid4(), uuid.uuid4())]}
    async with httpx.AsyncClient(base_url=own_stack.gateway_url) as client:
        alice = {"Authorization": f"Bearer {user_token(tenant_id, 'alice')}"}
        statuses = [(await client.post("/api/sync", json=body, headers=alice)).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = await client.post("/api/sync", json=body, headers=alice)
        expect_error(limited, 429, "RATE_LIMITED")
        assert 1 <= int(limited.headers["retry-after"]) <= 30
        # The limit is per (tenant, user): a colleague is not held back by alice.
        bob = {"Authorization": f"Bearer {user_token(tenant_id, 'bob')}"}
        assert (await client.post("/api/sync", json=body, headers=bob)).status_code == 200
        # Reads have a bucket of their own: alice, held back on sync, still reads.
        assert (await client.get("/api/products", headers=alice)).status_code == 200


async def test_a_single_operation_key_must_be_the_operation_id(
    gateway: httpx.AsyncClient, tenant_id: uuid.UUID
) -> None:
    one = movement(tenant_id, uuid.uuid4())
    response = await gateway.post(
        "/api/sync", json={"operations": [one]}, headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    expect_error(response, 400, "IDEMPOTENCY_KEY_MISMATCH")
    malformed = await gateway.post(
        "/api/sync", json={"operations": [one, one]}, headers={"Idempotency-Key": "has spaces in it"}
    )
    expect_error(malformed, 400, "VALIDATION_ERROR")


async def test_a_batch_key_replays_its_response_and_refuses_another_body(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    product = uuid.uuid4()
    ops = [create_product(tenant_id, product), movement(tenant_id, product, "entry", 4)]
    key = f"batch-{uuid.uuid4()}"
    first = await gateway.post("/api/sync", json={"operations": ops}, headers={"Idempotency-Key": key})
    assert first.status_code == 200
    assert [r["status"] for r in first.json()["results"]] == ["applied", "applied"]

    # The same body with its keys in another order and other whitespace is the same request.
    reordered = json.dumps({"operations": [dict(reversed(list(o.items()))) for o in ops]}, indent=2)
    replay = await gateway.post(
        "/api/sync", content=reordered, headers={"Idempotency-Key": key, "Content-Type": "application/json"}
    )
    assert replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content

    changed = await gateway.post(
        "/api/sync", json={"operations": [*ops, movement(tenant_id, product)]}, headers={"Idempotency-Key": key}
    )
    expect_error(changed, 422, "IDEMPOTENCY_KEY_REUSED")
    assert await applied_rows(admin, tenant_id, [o["operationId"] for o in ops]) == 2


async def test_keys_are_scoped_by_tenant(stack: Stack) -> None:
    key = f"shared-{uuid.uuid4()}"
    async with httpx.AsyncClient(base_url=stack.gateway_url) as client:
        for tenant in (uuid.uuid4(), uuid.uuid4()):
            product = uuid.uuid4()
            response = await client.post(
                "/api/sync",
                json={"operations": [create_product(tenant, product), movement(tenant, product)]},
                headers={"Authorization": f"Bearer {user_token(tenant)}", "Idempotency-Key": key},
            )
            assert response.status_code == 200
            assert "idempotent-replayed" not in response.headers
            assert [r["status"] for r in response.json()["results"]] == ["applied", "applied"]


async def _exists(redis: aioredis.Redis, key: str) -> bool:
    return bool(await redis.exists(key))


async def test_a_key_in_flight_gets_409_and_a_pending_answer_is_not_replayed(
    own_stack: Stack, database: ServiceUrls, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    await asyncio.to_thread(own_stack.start_worker)  # declares the queue
    await asyncio.to_thread(own_stack.processes["worker"].stop)  # then nobody consumes it
    # The first request must still be waiting when the second arrives: give it time on a busy machine.
    await asyncio.to_thread(own_stack.start_gateway, SYNC_RESULT_TIMEOUT_SECONDS="8")
    product = uuid.uuid4()
    ops = [create_product(tenant_id, product), movement(tenant_id, product, "entry", 2)]
    key = f"k-{uuid.uuid4()}"
    headers = {"Authorization": f"Bearer {user_token(tenant_id)}", "Idempotency-Key": key}
    async with httpx.AsyncClient(base_url=own_stack.gateway_url, headers=headers, timeout=30) as client:
        first = asyncio.create_task(client.post("/api/sync", json={"operations": ops}))
        redis = aioredis.Redis.from_url(database.redis_url)
        try:
            claimed = f"{database.redis_prefix}idem:{tenant_id}:{key}"
            await eventually(lambda: _exists(redis, claimed))  # the first request holds the key
        finally:
            await redis.aclose()
        expect_error(await client.post("/api/sync", json={"operations": ops}), 409, "IDEMPOTENCY_KEY_IN_FLIGHT")

        pending = await first
        assert pending.status_code == 202
        assert [r["status"] for r in pending.json()["results"]] == ["pending", "pending"]
        assert all(r["retryable"] for r in pending.json()["results"])

        await asyncio.to_thread(own_stack.start_worker)
        final = await sync_until_final(client, ops)  # runs again (202 is never stored), as often as it takes
        assert final.status_code == 200
        assert "idempotent-replayed" not in final.headers
        assert sorted(r["status"] for r in final.json()["results"]) in (
            ["applied", "applied"],
            ["duplicate", "duplicate"],
        )
        replay = await client.post("/api/sync", json={"operations": ops})
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.content == final.content
    assert await applied_rows(admin, tenant_id, [o["operationId"] for o in ops]) == 2

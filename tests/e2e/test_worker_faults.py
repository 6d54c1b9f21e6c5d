"""The worker under transient faults and bad messages: retried, dead-lettered, never doubled or lost."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aio_pika
import asyncpg
import dramatiq
import httpx
import pytest

from stockzen_contracts import APPLY_SYNC_BATCH_ACTOR
from tests.support.db import applied_rows, movement_rows, stock_level
from tests.support.ops import create_product, movement
from tests.support.proxy import CuttableProxy
from tests.support.raw_batches import apply_raw_batch
from tests.support.retry import eventually, sync_until_final
from tests.support.services import ServiceUrls
from tests.support.stack import Stack, gateway_client, queue_counts

pytestmark = pytest.mark.slow


async def test_a_poison_message_is_dead_lettered_and_does_not_block_the_queue(
    own_stack: Stack, database: ServiceUrls, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    await asyncio.to_thread(own_stack.start_worker)
    await asyncio.to_thread(own_stack.start_gateway)
    poison: dramatiq.Message[None] = dramatiq.Message(
        queue_name=own_stack.queue, actor_name=APPLY_SYNC_BATCH_ACTOR, args=({"not": "a batch"},), kwargs={}, options={}
    )
    connection = await aio_pika.connect(database.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(aio_pika.Message(poison.encode()), routing_key=own_stack.queue)

    product = uuid.uuid4()
    ops = [create_product(tenant_id, product), movement(tenant_id, product, "entry", 3)]
    async with gateway_client(own_stack, tenant_id) as client:
        behind = await client.post("/api/sync", json={"operations": ops})
    assert behind.status_code == 200
    assert [r["status"] for r in behind.json()["results"]] == ["applied", "applied"]

    async def dead_lettered() -> bool:
        messages, _ = await asyncio.to_thread(queue_counts, database.amqp_url, f"{own_stack.queue}.XQ")
        return messages == 1

    await eventually(dead_lettered)
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(own_stack.worker_metrics_url)).text
    assert f'stockzen_worker_dead_lettered_total{{actor_name="{APPLY_SYNC_BATCH_ACTOR}"}} 1.0' in metrics
    # The message is kept whole for an operator to inspect or replay.
    connection = await aio_pika.connect(database.amqp_url)
    async with connection:
        channel = await connection.channel()
        dead_queue = await channel.declare_queue(f"{own_stack.queue}.XQ", passive=True)
        dead = await dead_queue.get(no_ack=False)
        assert dead is not None
        body = json.loads(dead.body)
        await dead.nack(requeue=True)
    assert (body["message_id"], body["args"]) == (poison.message_id, [{"not": "a batch"}])


async def test_with_postgres_out_of_reach_the_batch_waits_and_is_applied_once_it_is_back(
    own_stack: Stack, database: ServiceUrls, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    async with CuttableProxy.in_front_of(database.app_url) as proxy:
        via_proxy = proxy.url(database.app_url)
        await asyncio.to_thread(own_stack.start_worker, DATABASE_URL=via_proxy, SYNC_MAX_RETRIES="20")
        await asyncio.to_thread(own_stack.start_gateway, SYNC_RESULT_TIMEOUT_SECONDS="2")
        product = uuid.uuid4()
        ops = [create_product(tenant_id, product), movement(tenant_id, product, "entry", 8)]
        async with gateway_client(own_stack, tenant_id) as client:
            await proxy.cut()
            pending = await client.post("/api/sync", json={"operations": ops})
            assert pending.status_code == 202
            assert {r["status"] for r in pending.json()["results"]} == {"pending"}
            assert await applied_rows(admin, tenant_id, [o["operationId"] for o in ops]) == 0

            await proxy.restore()
            await eventually(lambda: _applied(admin, tenant_id, ops))  # the queued batch, retried
            final = await sync_until_final(client, ops)
        assert [r["status"] for r in final.json()["results"]] == ["duplicate", "duplicate"]
        assert await movement_rows(admin, tenant_id, [ops[1]["operationId"]]) == 1
        assert await stock_level(admin, tenant_id, product) == 8
        failures = await _counter_total(own_stack, "stockzen_worker_database_errors_total")
        assert failures >= 1  # counted as what it was: Postgres


async def test_with_redis_out_of_reach_the_worker_still_applies_once(
    own_stack: Stack, database: ServiceUrls, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    async with CuttableProxy.in_front_of(database.redis_url) as proxy:
        via_proxy = proxy.url(database.redis_url)
        await asyncio.to_thread(own_stack.start_worker, REDIS_URL=via_proxy, SYNC_MAX_RETRIES="20")
        await asyncio.to_thread(own_stack.start_gateway, SYNC_RESULT_TIMEOUT_SECONDS="2")
        product = uuid.uuid4()
        ops = [create_product(tenant_id, product), movement(tenant_id, product, "exit", 2)]
        async with gateway_client(own_stack, tenant_id) as client:
            await proxy.cut()
            # The worker applies in Postgres but cannot answer through Redis: the client hears "pending".
            pending = await client.post("/api/sync", json={"operations": ops})
            assert pending.status_code == 202
            await eventually(lambda: _applied(admin, tenant_id, ops))
            again = await client.post("/api/sync", json={"operations": ops})
            assert again.status_code == 202  # still no way back from the worker

            await proxy.restore()
            final = await sync_until_final(client, ops)
        assert final.status_code == 200
        assert {r["status"] for r in final.json()["results"]} <= {"applied", "duplicate"}
        assert await movement_rows(admin, tenant_id, [ops[1]["operationId"]]) == 1
        assert await stock_level(admin, tenant_id, product) == -2
        assert await _counter_total(own_stack, "stockzen_worker_batch_failures_total") >= 1
        assert await _counter_total(own_stack, "stockzen_worker_database_errors_total") == 0  # Redis, not Postgres


async def test_an_outage_longer_than_the_retry_budget_is_waited_out_not_dead_lettered(
    own_stack: Stack, database: ServiceUrls, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    async with CuttableProxy.in_front_of(database.app_url) as proxy:
        # One retry allowed for failures that can never pass; an outage is not one of them.
        await asyncio.to_thread(own_stack.start_worker, DATABASE_URL=proxy.url(database.app_url), SYNC_MAX_RETRIES="1")
        await asyncio.to_thread(own_stack.start_gateway, SYNC_RESULT_TIMEOUT_SECONDS="1")
        product = uuid.uuid4()
        ops = [create_product(tenant_id, product), movement(tenant_id, product, "entry", 5)]
        async with gateway_client(own_stack, tenant_id) as client:
            await proxy.cut()
            pending = await client.post("/api/sync", json={"operations": ops})
            assert pending.status_code == 202

            async def failed_often() -> bool:
                return await _counter_total(own_stack, "stockzen_worker_database_errors_total") >= 4

            await eventually(failed_often, seconds=40)  # well past SYNC_MAX_RETRIES
            dead, _ = await asyncio.to_thread(queue_counts, database.amqp_url, f"{own_stack.queue}.XQ")
            assert dead == 0
            await proxy.restore()
            await eventually(lambda: _applied(admin, tenant_id, ops), seconds=30)
            final = await sync_until_final(client, ops)
    assert {r["status"] for r in final.json()["results"]} <= {"applied", "duplicate"}
    assert await stock_level(admin, tenant_id, product) == 5
    dead, _ = await asyncio.to_thread(queue_counts, database.amqp_url, f"{own_stack.queue}.XQ")
    assert dead == 0


async def test_an_operation_the_worker_cannot_read_is_refused_alone_and_its_batch_applied(
    own_stack: Stack, database: ServiceUrls, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    await asyncio.to_thread(own_stack.start_worker)
    product = uuid.uuid4()
    unreadable = movement(tenant_id, product, "entry", 9)
    unreadable["modifiedAt"] = "999-01-01T00:00:00.000000Z"  # an unpadded year, as an older gateway wrote it
    good = [create_product(tenant_id, product), movement(tenant_id, product, "entry", 2)]
    reply = await apply_raw_batch(database, own_stack.queue, tenant_id, [good[0], unreadable, good[1]], "r-unreadable")
    assert [r["status"] for r in reply["results"]] == ["applied", "rejected", "applied"]
    assert reply["results"][1]["operationId"] == unreadable["operationId"]
    assert reply["results"][1]["code"] == "VALIDATION_ERROR"
    assert await stock_level(admin, tenant_id, product) == 2
    assert await applied_rows(admin, tenant_id, [unreadable["operationId"]]) == 0
    dead, _ = await asyncio.to_thread(queue_counts, database.amqp_url, f"{own_stack.queue}.XQ")
    assert dead == 0


async def _applied(admin: asyncpg.Connection, tenant_id: uuid.UUID, ops: list[dict[str, Any]]) -> bool:
    return await applied_rows(admin, tenant_id, [o["operationId"] for o in ops]) == len(ops)


async def _counter_total(stack: Stack, name: str) -> float:
    """The sum of a counter's samples on the worker's metrics endpoint."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(stack.worker_metrics_url)).text
    samples = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")]
    assert samples, f"the worker exports no {name}"  # a renamed series must not read as zero
    return sum(samples)

"""Faults on the push path: a worker killed mid-batch, a broker out of reach. Nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from tests.support.db import applied_rows, movement_rows, stock_level
from tests.support.ops import create_product, movement
from tests.support.proxy import CuttableProxy
from tests.support.retry import eventually, sync_until_final
from tests.support.services import ServiceUrls
from tests.support.stack import Stack, gateway_client

pytestmark = pytest.mark.slow


async def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(
    own_stack: Stack, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    await asyncio.to_thread(own_stack.start_worker)
    await asyncio.to_thread(own_stack.start_gateway, SYNC_RESULT_TIMEOUT_SECONDS="2")
    product = uuid.uuid4()
    async with gateway_client(own_stack, tenant_id) as client:
        assert (
            await client.post("/api/sync", json={"operations": [create_product(tenant_id, product)]})
        ).status_code == 200
        ops = [movement(tenant_id, product, "entry", n) for n in (1, 2, 3, 4)]

        # Hold the tenant's counter row so the worker's batch is stuck inside its transaction.
        holder = admin
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE", tenant_id)
        stuck = await client.post("/api/sync", json={"operations": ops})
        assert stuck.status_code == 202
        assert {r["status"] for r in stuck.json()["results"]} == {"pending"}

        async def worker_waits_inside_its_transaction() -> bool:
            waiting: int = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'stockzen_app' "
                "AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO tenants%' AND pid <> pg_backend_pid()"
            )
            return waiting == 1

        await eventually(worker_waits_inside_its_transaction)
        await asyncio.to_thread(own_stack.processes["worker"].kill)  # SIGKILL, mid-transaction
        await transaction.rollback()
        assert await movement_rows(admin, tenant_id, [o["operationId"] for o in ops]) == 0

        await asyncio.to_thread(own_stack.start_worker)  # the broker redelivers the unacknowledged batch
        final = await sync_until_final(client, ops, seconds=30)
    assert final.status_code == 200, final.text
    assert {r["status"] for r in final.json()["results"]} <= {"applied", "duplicate"}
    assert await movement_rows(admin, tenant_id, [o["operationId"] for o in ops]) == 4
    assert await applied_rows(admin, tenant_id, [o["operationId"] for o in ops]) == 4
    assert await stock_level(admin, tenant_id, product) == 10


async def test_with_rabbitmq_out_of_reach_the_gateway_answers_503_and_applies_nothing(
    own_stack: Stack, database: ServiceUrls, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    async with CuttableProxy.in_front_of(database.amqp_url) as proxy:
        await asyncio.to_thread(own_stack.start_worker)  # the worker keeps its own, direct connection
        await asyncio.to_thread(own_stack.start_gateway, AMQP_URL=proxy.url(database.amqp_url))
        product = uuid.uuid4()
        ops = [create_product(tenant_id, product), movement(tenant_id, product, "entry", 6)]
        async with gateway_client(own_stack, tenant_id) as client:
            # A first batch opens the gateway's connection, so the cut below breaks a live one.
            warm = [create_product(tenant_id, uuid.uuid4())]
            assert (await client.post("/api/sync", json={"operations": warm})).status_code == 200

            await proxy.cut()
            refused = await client.post("/api/sync", json={"operations": ops})
            assert refused.status_code == 503, refused.text
            assert refused.json()["code"] == "UNAVAILABLE"
            # The broker may have taken the batch before the link broke: the answer must not promise otherwise.
            assert "may or may not" in refused.json()["message"]
            assert "same ids" in refused.json()["message"]
            assert int(refused.headers["retry-after"]) >= 1
            assert await applied_rows(admin, tenant_id, [o["operationId"] for o in ops]) == 0

            await proxy.restore()
            final = await sync_until_final(client, ops, seconds=30)
        assert final.status_code == 200, final.text
        # A retry while the link comes back may itself time out after the broker took it, and the
        # next retry then sees "duplicate": both answers are right, as long as each applies once.
        assert {r["status"] for r in final.json()["results"]} <= {"applied", "duplicate"}
        assert await applied_rows(admin, tenant_id, [o["operationId"] for o in ops]) == 2
        assert await movement_rows(admin, tenant_id, [ops[1]["operationId"]]) == 1
        assert await stock_level(admin, tenant_id, product) == 6


async def test_a_broker_link_lost_before_the_first_publish_answers_503_not_500(
    own_stack: Stack, database: ServiceUrls, tenant_id: uuid.UUID
) -> None:
    async with CuttableProxy.in_front_of(database.amqp_url) as proxy:
        await asyncio.to_thread(own_stack.start_worker)
        await asyncio.to_thread(own_stack.start_gateway, AMQP_URL=proxy.url(database.amqp_url))

        async def monitor_connected() -> bool:  # the queue monitor opens the connection; no channel yet
            return len(proxy.sent) > 0

        await eventually(monitor_connected)
        await proxy.cut()
        async with gateway_client(own_stack, tenant_id) as client:
            # While the robust connection waits to reconnect, opening the first channel must be
            # reported as the broker being away, never as a server error.
            for _ in range(6):
                answer = await client.post("/api/sync", json={"operations": [create_product(tenant_id, uuid.uuid4())]})
                assert answer.status_code == 503, answer.text
                assert answer.json()["code"] == "UNAVAILABLE"
                await asyncio.sleep(0.3)


async def test_with_redis_out_of_the_gateways_reach_keyed_requests_are_unavailable_and_others_pend(
    own_stack: Stack, database: ServiceUrls, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    async with CuttableProxy.in_front_of(database.redis_url) as proxy:
        via_proxy = proxy.url(database.redis_url)
        await asyncio.to_thread(own_stack.start_worker)  # the worker keeps its own, direct Redis
        await asyncio.to_thread(own_stack.start_gateway, REDIS_URL=via_proxy, SYNC_RESULT_TIMEOUT_SECONDS="2")
        product = uuid.uuid4()
        ops = [create_product(tenant_id, product), movement(tenant_id, product, "entry", 4)]
        async with gateway_client(own_stack, tenant_id) as client:
            await proxy.cut()
            keyed = await client.post("/api/sync", json={"operations": ops}, headers={"Idempotency-Key": "k-1"})
            assert keyed.status_code == 503, keyed.text
            assert keyed.json()["code"] == "UNAVAILABLE"
            assert int(keyed.headers["retry-after"]) >= 1
            assert await applied_rows(admin, tenant_id, [o["operationId"] for o in ops]) == 0

            # Without a key the rate limiter fails open and the batch is queued; its results cannot come back.
            plain = await client.post("/api/sync", json={"operations": ops})
            assert plain.status_code == 202
            assert {r["status"] for r in plain.json()["results"]} == {"pending"}

            await proxy.restore()
            final = await sync_until_final(client, ops)
        # The queued batch and the retry race for the worker: whichever applies first answers
        # "applied", the other "duplicate". Either way each operation is applied exactly once.
        assert final.status_code == 200, final.text
        assert {r["status"] for r in final.json()["results"]} <= {"applied", "duplicate"}
        assert await applied_rows(admin, tenant_id, [o["operationId"] for o in ops]) == 2
        assert await movement_rows(admin, tenant_id, [ops[1]["operationId"]]) == 1
        assert await stock_level(admin, tenant_id, product) == 4

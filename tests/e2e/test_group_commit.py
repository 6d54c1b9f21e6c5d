"""Group commit in the real worker: killed mid-group it applies nothing twice, and under concurrent
messages of one tenant checkpoints stay in commit order.

Batches are published straight to the worker's queue (as the gateway publishes them) and the
replies read from Redis, so that many messages of one tenant are in flight in the worker at once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import dramatiq
import httpx
import pytest
import redis.asyncio as aioredis

from stockzen_contracts import APPLY_SYNC_BATCH_ACTOR
from tests.support.db import applied_rows, movement_rows, stock_level
from tests.support.ops import create_product, movement
from tests.support.retry import eventually
from tests.support.services import ServiceUrls
from tests.support.stack import Stack

pytestmark = pytest.mark.slow


async def publish(
    urls: ServiceUrls, queue: str, tenant_id: uuid.UUID, batches: list[list[dict[str, Any]]]
) -> list[str]:
    """Publish each list of operations as one batch message, in order; the Redis keys their replies go to."""
    keys = []
    connection = await aio_pika.connect(urls.amqp_url)
    async with connection:
        channel = await connection.channel()
        for operations in batches:
            key = f"{urls.redis_prefix}reply:{uuid.uuid4().hex}"
            body = {
                "requestId": uuid.uuid4().hex,
                "tenantId": str(tenant_id),
                "userId": "u1",
                "receivedAt": datetime.now(UTC).isoformat(),
                "replyTo": key,
                "operations": operations,
            }
            message: dramatiq.Message[None] = dramatiq.Message(
                queue_name=queue, actor_name=APPLY_SYNC_BATCH_ACTOR, args=(body,), kwargs={}, options={}
            )
            await channel.default_exchange.publish(aio_pika.Message(message.encode()), routing_key=queue)
            keys.append(key)
    return keys


async def replies(urls: ServiceUrls, keys: list[str], seconds: float = 60) -> list[dict[str, Any]]:
    """The first reply on each key (waiting up to ``seconds`` in all)."""
    client = aioredis.Redis.from_url(urls.redis_url)
    deadline = time.monotonic() + seconds
    found: list[dict[str, Any]] = []
    try:
        for key in keys:
            left = max(1, int(deadline - time.monotonic()))
            popped = await client.blpop([key], timeout=left)
            assert popped is not None, f"no reply on {key} within {seconds} s"
            found.append(json.loads(popped[1]))
    finally:
        await client.aclose()
    return found


async def group_sizes(stack: Stack) -> tuple[float, float]:
    """How many groups the worker started and how many messages they held, from its metrics."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(stack.worker_metrics_url)).text
    values = {}
    for line in text.splitlines():
        for name in ("stockzen_worker_group_commit_messages_count", "stockzen_worker_group_commit_messages_sum"):
            if line.startswith(name + " "):
                values[name] = float(line.rsplit(" ", 1)[1])
    return (
        values.get("stockzen_worker_group_commit_messages_count", 0.0),
        values.get("stockzen_worker_group_commit_messages_sum", 0.0),
    )


async def setup_products(urls: ServiceUrls, stack: Stack, tenant_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    """``count`` products, each with one movement of 1 (so each has its stock level row)."""
    products = [uuid.uuid4() for _ in range(count)]
    ops = [create_product(tenant_id, p) for p in products] + [movement(tenant_id, p, "entry", 1) for p in products]
    [reply] = await replies(urls, await publish(urls, stack.queue, tenant_id, [ops]))
    assert {r["status"] for r in reply["results"]} == {"applied"}
    return products


async def test_a_worker_killed_with_a_group_in_its_transaction_applies_nothing_twice(
    own_stack: Stack, database: ServiceUrls, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    # Six messages make one group (each waits up to 1 s for the others).
    group = {"GROUP_COMMIT_MAX_MESSAGES": "6", "GROUP_COMMIT_MAX_WAIT_MS": "1000"}
    await asyncio.to_thread(own_stack.start_worker, **group)
    free, held = await setup_products(database, own_stack, tenant_id, 2)
    # Five messages move a free product, one a product whose stock level row this test holds: the
    # group applies the messages before that one in its transaction, then waits there.
    ops = [movement(tenant_id, free, "entry", n) for n in (1, 2, 3, 4, 5)]
    ops.insert(3, movement(tenant_id, held, "entry", 10))
    ids = [o["operationId"] for o in ops]
    transaction = admin.transaction()
    await transaction.start()
    await admin.execute(
        "SELECT 1 FROM stock_levels WHERE tenant_id = $1 AND product_id = $2 FOR UPDATE", tenant_id, held
    )
    keys = await publish(database, own_stack.queue, tenant_id, [[o] for o in ops])

    async def a_group_of_six_waits_inside_its_transaction() -> bool:
        waiting: int = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'stockzen_app' "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return waiting == 1 and await group_sizes(own_stack) == (2.0, 7.0)  # the setup's, then the six

    await eventually(a_group_of_six_waits_inside_its_transaction)
    await asyncio.to_thread(own_stack.processes["worker"].kill)  # SIGKILL, mid-group
    await transaction.rollback()
    assert await movement_rows(admin, tenant_id, ids) == 0  # nothing of the group committed
    assert await applied_rows(admin, tenant_id, ids) == 0

    await asyncio.to_thread(own_stack.start_worker, **group)  # the broker redelivers all six
    answered = await replies(database, keys)
    assert [[r["status"] for r in reply["results"]] for reply in answered] == [["applied"]] * 6
    assert await movement_rows(admin, tenant_id, ids) == 6
    assert await applied_rows(admin, tenant_id, ids) == 6
    assert await stock_level(admin, tenant_id, free) == 1 + 15
    assert await stock_level(admin, tenant_id, held) == 1 + 10


async def test_a_worker_killed_while_groups_are_in_flight_applies_each_operation_once(
    own_stack: Stack, database: ServiceUrls, admin: asyncpg.Connection
) -> None:
    await asyncio.to_thread(own_stack.start_worker)  # the defaults: natural batching
    tenants = [uuid.uuid4(), uuid.uuid4()]
    products = {tenant: (await setup_products(database, own_stack, tenant, 1))[0] for tenant in tenants}
    sent: dict[uuid.UUID, list[dict[str, Any]]] = {
        tenant: [movement(tenant, products[tenant], "entry", 1) for _ in range(150)] for tenant in tenants
    }
    keys = {
        tenant: await publish(database, own_stack.queue, tenant, [[o] for o in ops]) for tenant, ops in sent.items()
    }

    async def some_applied() -> bool:
        return any([await movement_rows(admin, t, [o["operationId"] for o in ops]) >= 20 for t, ops in sent.items()])

    await eventually(some_applied)
    await asyncio.to_thread(own_stack.processes["worker"].kill)  # SIGKILL with groups in flight
    await asyncio.to_thread(own_stack.start_worker)

    for tenant, ops in sent.items():
        answered = await replies(database, keys[tenant], seconds=120)
        assert {r["results"][0]["status"] for r in answered} <= {"applied", "duplicate"}
        ids = [o["operationId"] for o in ops]
        assert await movement_rows(admin, tenant, ids) == 150  # each once
        assert await applied_rows(admin, tenant, ids) == 150
        assert await stock_level(admin, tenant, products[tenant]) == 1 + 150


async def test_checkpoints_stay_in_commit_order_under_group_commit(
    own_stack: Stack, database: ServiceUrls, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    await asyncio.to_thread(own_stack.start_worker)  # the defaults: natural batching
    [product] = await setup_products(database, own_stack, tenant_id, 1)
    start = await admin.fetchval("SELECT last_checkpoint FROM tenants WHERE tenant_id = $1", tenant_id)
    ops = [movement(tenant_id, product, "entry", 1) for _ in range(200)]
    pulled: list[int] = []
    done = asyncio.Event()

    async def pull_the_feed() -> None:
        # A device pulling the feed since its last checkpoint, over and over: if a checkpoint ever
        # committed after a higher one, this would step past it and never see it.
        since = start
        while True:
            finished = done.is_set()
            rows = await admin.fetch(
                "SELECT checkpoint FROM stock_movements WHERE tenant_id = $1 AND checkpoint > $2 ORDER BY checkpoint",
                tenant_id,
                since,
            )
            pulled.extend(r["checkpoint"] for r in rows)
            since = pulled[-1] if pulled else since
            if finished:
                return
            await asyncio.sleep(0.002)

    puller = asyncio.create_task(pull_the_feed())
    keys = await publish(database, own_stack.queue, tenant_id, [[o] for o in ops])
    answered = await replies(database, keys)
    done.set()
    await puller

    feed = [
        r["checkpoint"]
        for r in await admin.fetch(
            "SELECT checkpoint FROM stock_movements WHERE tenant_id = $1 AND checkpoint > $2 ORDER BY checkpoint",
            tenant_id,
            start,
        )
    ]
    assert len(feed) == 200
    assert feed == list(range(start + 1, start + 201))  # strictly increasing, no gaps
    assert pulled == feed  # pulled as they committed: nothing missed, nothing out of order
    # Each reply's checkpoint covers its own movement.
    own = {
        str(r["operation_id"]): r["checkpoint"]
        for r in await admin.fetch(
            "SELECT operation_id, checkpoint FROM stock_movements WHERE tenant_id = $1 AND checkpoint > $2",
            tenant_id,
            start,
        )
    }
    for op, reply in zip(ops, answered, strict=True):
        assert int(reply["checkpoint"]) >= own[op["operationId"]]
    groups, messages = await group_sizes(own_stack)
    assert messages > groups  # some groups held more than one message

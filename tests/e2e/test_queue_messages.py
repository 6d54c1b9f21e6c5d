"""Queue messages of the two layouts in one running stack: published by a gateway from before
fingerprints were carried, and by today's, which hashes each operation once as it publishes."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis

from stockzen_contracts import operation_fingerprint, parse_operation
from stockzen_sync_worker.adapters.result_cache import result_key
from tests.support.db import stock_level
from tests.support.ops import create_product, movement
from tests.support.raw_batches import apply_raw_batch
from tests.support.retry import sync_until_final
from tests.support.services import ServiceUrls
from tests.support.stack import Stack


async def _publish_without_fingerprints(
    stack: Stack, database: ServiceUrls, tenant_id: uuid.UUID, operations: list[dict[str, Any]]
) -> dict[str, Any]:
    """Publish ``operations`` as a gateway wrote them before fingerprints were carried; the reply."""
    return await apply_raw_batch(database, stack.queue, tenant_id, operations, "r-earlier-layout")


async def test_an_operation_applied_from_a_message_without_fingerprints_is_known_to_todays_gateway(
    stack: Stack, database: ServiceUrls, gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    product = uuid.uuid4()
    entry = movement(tenant_id, product, "entry", 3)
    reply = await _publish_without_fingerprints(stack, database, tenant_id, [create_product(tenant_id, product), entry])
    assert [r["status"] for r in reply["results"]] == ["applied", "applied"]
    kept = await admin.fetchval(
        "SELECT fingerprint FROM applied_operations WHERE tenant_id = $1 AND operation_id = $2",
        tenant_id,
        uuid.UUID(entry["operationId"]),
    )
    assert kept == operation_fingerprint(parse_operation(entry))  # what the gateway now carries for it

    again = (await sync_until_final(gateway, [entry])).json()["results"]
    assert [r["status"] for r in again] == ["duplicate"]
    redis = aioredis.Redis.from_url(database.redis_url)
    try:  # forget what Redis remembers, so that Postgres's fingerprint decides
        await redis.delete(result_key(database.redis_prefix, tenant_id, uuid.UUID(entry["operationId"])))
    finally:
        await redis.aclose()
    changed = {**entry, "payload": {**entry["payload"], "quantity": 5}}
    refused = (await sync_until_final(gateway, [changed])).json()["results"]
    assert [(r["status"], r.get("code")) for r in refused] == [("rejected", "OPERATION_ID_REUSED")]
    assert await stock_level(admin, tenant_id, product) == 3

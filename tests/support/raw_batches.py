"""Publishing a batch message by hand, as some gateway wrote it, and waiting for the worker's reply:
for messages today's gateway would never send (an earlier layout, an operation it could not read)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import dramatiq
import redis.asyncio as aioredis

from stockzen_contracts import APPLY_SYNC_BATCH_ACTOR
from tests.support.services import ServiceUrls


async def apply_raw_batch(
    urls: ServiceUrls, queue: str, tenant_id: uuid.UUID, operations: list[dict[str, Any]], request_id: str
) -> dict[str, Any]:
    """Publish ``operations`` on ``queue`` as one batch message without fingerprints; the reply."""
    reply_to = f"{urls.redis_prefix}reply:{uuid.uuid4().hex}"
    batch = {
        "requestId": request_id,
        "tenantId": str(tenant_id),
        "userId": "u1",
        "receivedAt": datetime.now(UTC).isoformat(),
        "replyTo": reply_to,
        "operations": operations,
    }
    message: dramatiq.Message[None] = dramatiq.Message(
        queue_name=queue, actor_name=APPLY_SYNC_BATCH_ACTOR, args=(batch,), kwargs={}, options={}
    )
    connection = await aio_pika.connect(urls.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(aio_pika.Message(message.encode()), routing_key=queue)
    redis = aioredis.Redis.from_url(urls.redis_url)
    try:
        popped = await redis.blpop([reply_to], timeout=30)
    finally:
        await redis.aclose()
    assert popped is not None, "no reply from the worker within 30 s"
    reply: dict[str, Any] = json.loads(popped[1])
    return reply

"""The Redis fast path: recently given results, the tenant's checkpoint, and replies to the gateway."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stockzen_contracts import ItemResult, SyncBatchApplied, checkpoint_channel
from stockzen_sync_worker.domain.outcomes import StoredResult

log = logging.getLogger(__name__)

# Checkpoints only move forward, even when two workers store out of commit order; the tenant's live
# listeners hear of a checkpoint only when it moved it forward. A batch of replays or duplicates
# changes nothing they could pull, and a checkpoint stored after a higher one is covered by it
# (checkpoints follow commit order), so neither wakes every device of the tenant for an empty pull.
_ADVANCE_CHECKPOINT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  redis.call('PUBLISH', ARGV[3], ARGV[1])
  return 1
end
return 0
"""

# Every new result of a batch in one command: the client packs one command instead of one per
# result, which was the worker's largest cost per operation in Redis.
_REMEMBER_RESULTS = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[1])
end
return #KEYS
"""


class RedisResultCache:
    """See :class:`~stockzen_sync_worker.ports.ResultCache`. Keys: ``{prefix}result:{tenant}:{op}``."""

    def __init__(
        self, client: aioredis.Redis, *, prefix: str, result_ttl_seconds: int, reply_ttl_seconds: int = 300
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl = result_ttl_seconds
        self._reply_ttl = reply_ttl_seconds

    def _result_key(self, tenant_id: UUID, operation_id: UUID) -> str:
        return f"{self._prefix}result:{tenant_id}:{operation_id}"

    def _checkpoint_key(self, tenant_id: UUID) -> str:
        return f"{self._prefix}checkpoint:{tenant_id}"

    async def lookup(
        self, tenant_id: UUID, operation_ids: Sequence[UUID]
    ) -> tuple[dict[UUID, StoredResult], int | None]:
        keys = [self._result_key(tenant_id, op) for op in operation_ids] + [self._checkpoint_key(tenant_id)]
        try:
            values = await self._redis.mget(keys)
        except RedisError as exc:
            # Only a fast path: Postgres holds the truth, so carry on without it.
            log.warning("result cache unavailable for lookup", extra={"error": str(exc)})
            return {}, None
        found = {}
        for op, raw in zip(operation_ids, values[:-1], strict=True):
            if raw is not None:
                entry = json.loads(raw)
                found[op] = StoredResult(
                    entry["messageId"], ItemResult.model_validate(entry["result"]), entry.get("fingerprint")
                )
        checkpoint = int(values[-1]) if values[-1] is not None else None
        return found, checkpoint

    async def deliver(
        self,
        tenant_id: UUID,
        results: dict[UUID, StoredResult],
        checkpoint: int,
        reply_to: str,
        applied: SyncBatchApplied,
    ) -> None:
        # Each result is encoded once, for the reply and for its own entry (a new result is the very
        # object the reply holds; one found in Postgres is not, and is encoded on its own).
        encoded = [result.wire_json() for result in applied.results]
        by_object = {id(result): text for result, text in zip(applied.results, encoded, strict=True)}
        keys = [self._result_key(tenant_id, op) for op in results]
        entries = [
            _entry(stored, by_object.get(id(stored.result)) or stored.result.wire_json()) for stored in results.values()
        ]
        # One round trip: remember the new results, advance the checkpoint (announcing it to the
        # tenant's live listeners if it moved: the transaction has committed, so a pull sees the
        # change), and answer the gateway.
        channel = checkpoint_channel(self._prefix, tenant_id)
        # EVAL with the script's text, not a registered script: in a pipeline redis-py checks with an
        # extra SCRIPT EXISTS round trip on every execute, which costs more than the text.
        async with self._redis.pipeline(transaction=False) as pipe:
            if keys:
                pipe.eval(_REMEMBER_RESULTS, len(keys), *keys, self._ttl, *entries)
            pipe.eval(_ADVANCE_CHECKPOINT, 1, self._checkpoint_key(tenant_id), checkpoint, self._ttl, channel)
            pipe.rpush(reply_to, applied.wire_json(encoded))
            pipe.expire(reply_to, self._reply_ttl)
            await pipe.execute()


def _entry(stored: StoredResult, result_json: str) -> str:
    """A result's cache entry, ``{"messageId", "result", "fingerprint"}``, around its encoded result."""
    message_id, fingerprint = json.dumps(stored.message_id), json.dumps(stored.fingerprint)
    return f'{{"messageId":{message_id},"result":{result_json},"fingerprint":{fingerprint}}}'

"""The gateway's sync state in Redis: request-key records and result waiting.

Nothing here lives in process memory, so any number of gateway replicas share it.
"""

from __future__ import annotations

import logging
import uuid
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stockzen_contracts import SyncBatchApplied
from stockzen_gateway.domain.request_keys import RequestKeyClaim, RequestKeyState, StoredResponse
from stockzen_gateway.metrics import METRICS

log = logging.getLogger(__name__)

# Claim a request key with a fresh token (ARGV[3]), or report who holds it. Returns {state, status, body}.
_CLAIM_KEY = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'state', 'in_flight', 'fingerprint', ARGV[1], 'token', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return {'claimed', '', ''}
end
local held = redis.call('HMGET', KEYS[1], 'state', 'fingerprint', 'status', 'body')
if held[2] ~= ARGV[1] then return {'mismatch', '', ''} end
if held[1] == 'in_flight' then return {'in_flight', '', ''} end
return {'completed', held[3], held[4]}
"""

# Let go of a key this request claimed (its answer must not be replayed), only if still ours.
_RELEASE_KEY = """
local held = redis.call('HMGET', KEYS[1], 'state', 'token')
if held[1] == 'in_flight' and held[2] == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# Keep a finished answer, only if this request's claim (token ARGV[1]) still holds the key: after
# a Redis restart or an expiry another request may hold it, with this body or another one.
_COMPLETE_KEY = """
local held = redis.call('HMGET', KEYS[1], 'state', 'token')
if held[1] ~= 'in_flight' or held[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'completed', 'status', ARGV[2], 'body', ARGV[3])
redis.call('HDEL', KEYS[1], 'token')
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


class RedisGatewayState:
    """request-key records and result replies, on one Redis client."""

    def __init__(self, client: aioredis.Redis, *, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._claim = client.register_script(_CLAIM_KEY)
        self._release = client.register_script(_RELEASE_KEY)
        self._complete = client.register_script(_COMPLETE_KEY)

    def _record_key(self, tenant_id: UUID, key: str) -> str:
        return f"{self._prefix}idem:{tenant_id}:{key}"

    async def claim_request_key(
        self, tenant_id: UUID, key: str, fingerprint: str, *, in_flight_seconds: int
    ) -> RequestKeyClaim:
        """Claim ``key`` for this request, or learn it is running, finished, or used for another body."""
        token = uuid.uuid4().hex
        state, status, body = await self._claim(
            keys=[self._record_key(tenant_id, key)], args=[fingerprint, in_flight_seconds, token]
        )
        claim_state = RequestKeyState(_text(state))
        if claim_state is RequestKeyState.COMPLETED:
            return RequestKeyClaim(claim_state, StoredResponse(int(status), _bytes(body)))
        return RequestKeyClaim(claim_state, token=token if claim_state is RequestKeyState.CLAIMED else None)

    async def complete_request_key(
        self, tenant_id: UUID, key: str, token: str, response: StoredResponse, *, ttl_seconds: int
    ) -> bool:
        """Keep the final response for replays for ``ttl_seconds``, if the claim ``token`` still holds the key."""
        kept = await self._complete(
            keys=[self._record_key(tenant_id, key)],
            args=[token, response.status_code, response.body, ttl_seconds],
        )
        return bool(kept)

    async def release_request_key(self, tenant_id: UUID, key: str, token: str) -> None:
        """Forget a claim whose answer must not be replayed (pending items, unavailable, error)."""
        await self._release(keys=[self._record_key(tenant_id, key)], args=[token])

    def new_reply_key(self) -> str:
        """A fresh reply address. Server-made and unguessable: request ids may come from callers."""
        return f"{self._prefix}reply:{uuid.uuid4().hex}"

    async def wait_for_reply(self, reply_to: str, timeout_seconds: float) -> SyncBatchApplied | None:
        """The worker's results, or ``None`` when they are not back within the deadline (or Redis is away:
        the batch is queued all the same, and the client learns its results on retry)."""
        # Observed whether the results came, timed out or Redis failed: the wait is the client's latency.
        with METRICS.result_wait_seconds.time():
            try:
                popped = await self._redis.blpop([reply_to], timeout=timeout_seconds)
            except RedisError as exc:
                METRICS.redis_errors.labels("wait_for_reply").inc()
                log.warning("could not wait for results", extra={"error": str(exc)})
                return None
        if popped is None:
            return None
        _, payload = popped
        return SyncBatchApplied.model_validate_json(payload)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()

"""The gateway's sync state in Redis: request-key records and result waiting.

Nothing here lives in process memory, so any number of gateway replicas share it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stockzen_gateway.domain.request_keys import RequestKeyClaim, RequestKeyState, StoredResponse
from stockzen_gateway.domain.results import WorkerReply
from stockzen_gateway.metrics import METRICS

from .redis_replies import RedisReplyListener

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
# a Redis restart or an expiry another request may hold it, with this body or another one. And only
# within the tenant's budget (ARGV[5] bytes, ARGV[6] this answer's cost): KEYS[2] counts what the
# tenant kept in the current time bucket, KEYS[3..] in the earlier ones still alive. Past the budget
# the claim is let go instead, as for an answer that must not be replayed.
# A budget below 0 is no budget. Returns 1 kept, 0 the claim was lost, -1 over budget.
_COMPLETE_KEY = """
local held = redis.call('HMGET', KEYS[1], 'state', 'token')
if held[1] ~= 'in_flight' or held[2] ~= ARGV[1] then return 0 end
local spent = 0
for i = 2, #KEYS do spent = spent + (tonumber(redis.call('GET', KEYS[i])) or 0) end
if tonumber(ARGV[5]) >= 0 and spent + tonumber(ARGV[6]) > tonumber(ARGV[5]) then
  redis.call('DEL', KEYS[1])
  return -1
end
redis.call('HSET', KEYS[1], 'state', 'completed', 'status', ARGV[2], 'body', ARGV[3])
redis.call('HDEL', KEYS[1], 'token')
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('INCRBY', KEYS[2], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[7])
return 1
"""

BUDGET_BUCKETS = 24
"""The tenant budget's window is cut into this many time buckets (an hour each for a day's keys)."""

RECORD_OVERHEAD_BYTES = 200
"""What a kept answer costs Redis beyond its body (the hash, its fields and its key), counted against
the budget too, so that many tiny answers are not free."""


class RedisGatewayState:
    """request-key records and result replies, on one Redis client.

    ``tenant_budget_bytes`` bounds what one tenant's kept answers hold in Redis (``None``: no bound).

    Waiting for results: up to ``own_connection_waits`` requests at once each block on their own
    connection from ``client``'s pool (one round trip, the fastest way); past that, they share one
    listener (:class:`~stockzen_gateway.adapters.redis_replies.RedisReplyListener`) and hold no
    connection at all, so that waiting never takes more than that share of the pool.

    It is counted per time bucket and every bucket that may still hold a live answer is summed, so
    the count never falls below what is really kept (it may run above it, when answers are replaced
    by their expiry sooner than the count forgets them).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        tenant_budget_bytes: int | None = None,
        own_connection_waits: int = 0,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._budget = tenant_budget_bytes
        self._claim = client.register_script(_CLAIM_KEY)
        self._release = client.register_script(_RELEASE_KEY)
        self._complete = client.register_script(_COMPLETE_KEY)
        self._replies = RedisReplyListener(client, prefix=prefix)
        self._own_connections = asyncio.Semaphore(own_connection_waits)

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
        """Keep the final response for replays for ``ttl_seconds``, if the claim ``token`` still holds the
        key and the tenant's budget has room (else the claim is let go)."""
        cost = len(response.body) + len(key) + RECORD_OVERHEAD_BYTES
        bucket_seconds = math.ceil(ttl_seconds / BUDGET_BUCKETS)
        now = int(time.time()) // bucket_seconds
        # An answer kept in bucket b lives until b's end + ttl: BUDGET_BUCKETS + 1 buckets cover them all.
        buckets = [f"{self._prefix}idem-bytes:{tenant_id}:{n}" for n in range(now, now - BUDGET_BUCKETS - 1, -1)]
        budget = self._budget if self._budget is not None else -1
        kept = await self._complete(
            keys=[self._record_key(tenant_id, key), *buckets],
            args=[token, response.status_code, response.body, ttl_seconds, budget, cost, ttl_seconds + bucket_seconds],
        )
        if int(kept) < 0:
            METRICS.request_keys.labels("over_budget").inc()
            log.warning(
                "a tenant's kept answers are over budget: not keeping this one", extra={"tenant": str(tenant_id)}
            )
        return int(kept) > 0

    async def release_request_key(self, tenant_id: UUID, key: str, token: str) -> None:
        """Forget a claim whose answer must not be replayed (pending items, unavailable, error)."""
        await self._release(keys=[self._record_key(tenant_id, key)], args=[token])

    def new_reply_key(self) -> str:
        """A fresh reply address. Server-made and unguessable: request ids may come from callers."""
        return f"{self._prefix}reply:{uuid.uuid4().hex}"

    async def wait_for_reply(self, reply_to: str, timeout_seconds: float) -> WorkerReply | None:
        """The worker's results as it wrote them (read by the service layer, not here), or ``None`` when
        they are not back within the deadline (or Redis is away: the batch is queued all the same, and the
        client learns its results on retry)."""
        # Observed whether the results came, timed out or Redis failed: the wait is the client's latency.
        with METRICS.result_wait_seconds.time():
            if self._own_connections.locked():
                payload = await self._replies.wait(reply_to, timeout_seconds)
            else:
                async with self._own_connections:  # free: taken without waiting
                    payload = await self._wait_alone(reply_to, timeout_seconds)
        return None if payload is None else WorkerReply(payload)

    async def _wait_alone(self, reply_to: str, timeout_seconds: float) -> bytes | None:
        try:
            popped = await self._redis.blpop([reply_to], timeout=timeout_seconds)
        except RedisError as exc:
            METRICS.redis_errors.labels("wait_for_reply").inc()
            log.warning("could not wait for results", extra={"error": str(exc)})
            return None
        return None if popped is None else _bytes(popped[1])

    async def aclose(self) -> None:
        """Stop waiting for results (the client itself is closed by its owner)."""
        await self._replies.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()

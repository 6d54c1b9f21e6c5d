"""The rate limiter's buckets in Redis: one Lua script, atomic, timed by the Redis server's clock.

The rule itself (which buckets, what a refusal answers, failing open) is in
:mod:`stockzen_gateway.domain.rate_limits`; this only spends tokens.
"""

from __future__ import annotations

import math
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stockzen_gateway.domain.rate_limits import RateDecision, RateLimit
from stockzen_gateway.ports import RateLimiterUnavailable

# A token bucket per key, atomic in one script, timed by the Redis server's clock so that
# gateways with drifting clocks agree. Returns {allowed, retry_after_ms}.
_RATE_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1]) / 60000.0
local burst = tonumber(ARGV[2])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local retry_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_ms = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {allowed, retry_ms}
"""


class RedisRateLimiter:
    """Token buckets per (scope, tenant, user) in Redis, shared by every gateway replica."""

    def __init__(self, client: aioredis.Redis, *, prefix: str) -> None:
        self._prefix = prefix
        self._bucket = client.register_script(_RATE_BUCKET_SCRIPT)

    async def take_token(self, limit: RateLimit, tenant_id: UUID, user_id: str) -> RateDecision:
        """Spend one request from the (scope, tenant, user) bucket; raise :class:`RateLimiterUnavailable`
        when Redis cannot answer."""
        key = f"{self._prefix}rate:{limit.scope}:{tenant_id}:{user_id}"
        try:
            allowed, retry_ms = await self._bucket(keys=[key], args=[limit.per_minute, limit.burst])
        except RedisError as exc:
            raise RateLimiterUnavailable(str(exc)) from exc
        return RateDecision(bool(allowed), max(1, math.ceil(int(retry_ms) / 1000)) if not allowed else 0)

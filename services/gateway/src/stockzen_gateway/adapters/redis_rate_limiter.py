"""The rate limiter's buckets in Redis: one Lua script, atomic, timed by the Redis server's clock.

The rule itself (which buckets, what a refusal answers, when to fail open) is in
:mod:`stockzen_gateway.domain.rate_limits`; this only spends tokens.
"""

from __future__ import annotations

import asyncio
import math
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stockzen_gateway.domain.rate_limits import RateDecision, RateLimit
from stockzen_gateway.ports import RateLimiterOverloaded, RateLimiterUnavailable

# Token buckets, one per key (the caller's, then its tenant's ceiling), atomic in one script and timed
# by the Redis server's clock so that gateways with drifting clocks agree. ARGV holds (per_minute,
# burst) for each key. A request spends from every bucket or from none: a refused request costs the
# caller nothing, and one user's refusals never eat into the rest of the tenant.
# Returns {allowed, retry_after_ms, index of the bucket that refused (1-based, 0 when allowed)}.
_RATE_BUCKETS_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local tokens, rates = {}, {}
local allowed, retry_ms, refused_by = 1, 0, 0
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2 * i - 1]) / 60000.0
  local burst = tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local held = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  tokens[i] = math.min(burst, held + math.max(0, now - at) * rate)
  rates[i] = rate
  if tokens[i] < 1 then
    allowed = 0
    local wait = math.ceil((1 - tokens[i]) / rate)
    if wait > retry_ms then retry_ms, refused_by = wait, i end
  end
end
for i = 1, #KEYS do
  if allowed == 1 then tokens[i] = tokens[i] - 1 end
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i]), 'at', now)
  redis.call('PEXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2 * i]) / rates[i]) + 1000)
end
return {allowed, retry_ms, refused_by}
"""

OVERLOAD_WAIT_SECONDS = 1.0
"""How long a request waits for one of the limiter's connections before it is refused (a round trip
takes well under a millisecond: a second of waiting means Redis is far behind)."""


class RedisRateLimiter:
    """Token buckets per (scope, tenant, user) and per (scope, tenant) in Redis, shared by every
    gateway replica.

    ``max_concurrent`` is the number of connections of the limiter's own pool: at most that many
    requests spend tokens at once, and one that waits longer than :data:`OVERLOAD_WAIT_SECONDS` for
    its turn gets :class:`RateLimiterOverloaded` rather than a connection error (which would read as
    Redis being away, and let it through).
    """

    def __init__(self, client: aioredis.Redis, *, prefix: str, max_concurrent: int | None = None) -> None:
        self._prefix = prefix
        self._buckets = client.register_script(_RATE_BUCKETS_SCRIPT)
        self._turns = asyncio.Semaphore(max_concurrent) if max_concurrent else None

    async def take_token(self, limit: RateLimit, tenant_id: UUID, user_id: str) -> RateDecision:
        """Spend one request from the caller's bucket for ``limit`` and from its tenant's ceiling;
        raise :class:`RateLimiterUnavailable` when Redis cannot answer, :class:`RateLimiterOverloaded`
        when the limiter's connections stay busy."""
        keys = [f"{self._prefix}rate:{limit.scope}:{tenant_id}:{user_id}"]
        args = [limit.per_minute, limit.burst]
        if limit.tenant is not None:
            keys.append(f"{self._prefix}rate-tenant:{limit.scope}:{tenant_id}")
            args += [limit.tenant.per_minute, limit.tenant.burst]
        allowed, retry_ms, refused_by = await self._spend(keys, args)
        if allowed:
            return RateDecision(True, 0)
        return RateDecision(False, max(1, math.ceil(int(retry_ms) / 1000)), by_tenant=int(refused_by) == 2)

    async def _spend(self, keys: list[str], args: list[int]) -> list[int]:
        if self._turns is None:
            return await self._run(keys, args)
        try:
            async with asyncio.timeout(OVERLOAD_WAIT_SECONDS):
                await self._turns.acquire()
        except TimeoutError:
            raise RateLimiterOverloaded("every rate-limiter connection stayed busy") from None
        try:
            return await self._run(keys, args)
        finally:
            self._turns.release()

    async def _run(self, keys: list[str], args: list[int]) -> list[int]:
        try:
            answer: list[int] = await self._buckets(keys=keys, args=args)
        except RedisError as exc:
            raise RateLimiterUnavailable(str(exc)) from exc
        return answer

"""Rate limiting, the rule: per (tenant, user) token buckets, a stricter one for pushes than for reads.

Where each part lives: the buckets' sizes come from the settings (:meth:`GatewaySettings.rate_limits`);
spending a token is the :class:`~stockzen_gateway.ports.RateLimiter` port's job (a Lua script in
Redis, :mod:`stockzen_gateway.adapters.redis_rate_limiter`); what the gateway does with the answer,
including when the limiter cannot answer at all, is decided here by :func:`judge`.
"""

from __future__ import annotations

from dataclasses import dataclass

from stockzen_contracts import Code

FAIL_OPEN = True
"""When the limiter cannot answer (Redis away), requests go on: the limit protects capacity, it is
not a correctness rule, and the sync path itself answers 503 while Redis is away."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``burst`` requests at once, refilled at ``per_minute``."""

    scope: str
    per_minute: int
    burst: int


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The gateway's two buckets per caller: pushes (``POST /api/sync``) and reads (everything else)."""

    sync: RateLimit
    read: RateLimit


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a request may go on, and if not, in how many whole seconds to retry."""

    allowed: bool
    retry_after_seconds: int


@dataclass(frozen=True, slots=True)
class RateRefusal:
    """What a refused request answers: ``429 RATE_LIMITED`` with a ``Retry-After`` header."""

    message: str
    retry_after_seconds: int
    status_code: int = 429
    code: Code = Code.RATE_LIMITED

    @property
    def headers(self) -> dict[str, str]:
        """The response headers: when to come back."""
        return {"Retry-After": str(self.retry_after_seconds)}


def judge(limit: RateLimit, decision: RateDecision | None) -> RateRefusal | None:
    """``None`` when the request may go on; the refusal to answer otherwise.

    ``decision`` is ``None`` when the limiter could not answer: then :data:`FAIL_OPEN` decides.
    """
    if decision is None:
        return None if FAIL_OPEN else RateRefusal("the rate limiter is unavailable; retry later", 5, status_code=503)
    if decision.allowed:
        return None
    return RateRefusal(
        f"too many requests: at most {limit.per_minute} per minute (bursts of {limit.burst})",
        decision.retry_after_seconds,
    )

"""Rate limiting, the rule: a token bucket per (tenant, user) and a ceiling per tenant beside it, a
stricter pair for pushes than for reads.

Where each part lives: the buckets' sizes come from the settings (:meth:`GatewaySettings.rate_limits`);
spending a token is the :class:`~stockzen_gateway.ports.RateLimiter` port's job (a Lua script in
Redis, :mod:`stockzen_gateway.adapters.redis_rate_limiter`); what the gateway does with the answer,
including when the limiter cannot answer at all, is decided here by :func:`judge`.

Why a tenant ceiling: per-user buckets alone give a tenant with N users N times the budget, and one
tenant's flood then fills the one queue every tenant's pushes wait in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from stockzen_contracts import Code

FAIL_OPEN = True
"""When the limiter's store is away or erroring (Redis down), requests go on: the limit protects
capacity, it is not a correctness rule, and the sync path itself answers 503 for keyed requests while
Redis is away. This is the only case that goes on: a limiter too busy to answer (its own connections
all taken, :attr:`LimiterFailure.OVERLOADED`) refuses, so load can never switch the limit off."""

TENANT_CEILING_FACTOR = 25
"""A tenant ceiling left unset is this many users' worth of the per-user bucket: generous enough for
a busy tenant, and it follows the per-user setting wherever that is raised (the bench, chaos runs)."""


@dataclass(frozen=True, slots=True)
class TenantCeiling:
    """The bucket every user of one tenant draws from as well: ``burst`` at once, refilled at ``per_minute``."""

    per_minute: int
    burst: int


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket per (tenant, user): ``burst`` requests at once, refilled at ``per_minute``; and,
    when ``tenant`` is set, a request also spends from its tenant's ceiling (both or neither)."""

    scope: str
    per_minute: int
    burst: int
    tenant: TenantCeiling | None = None


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The gateway's two limits: pushes (``POST /api/sync``) and reads (everything else)."""

    sync: RateLimit
    read: RateLimit


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a request may go on, and if not, in how many whole seconds to retry and whether the
    tenant's ceiling (rather than the caller's own bucket) held it back."""

    allowed: bool
    retry_after_seconds: int
    by_tenant: bool = False


class LimiterFailure(Enum):
    """Why the limiter gave no decision."""

    UNREACHABLE = "unreachable"  # its store is away or erroring: FAIL_OPEN decides
    OVERLOADED = "overloaded"  # its own connections were all busy for too long: always refused


@dataclass(frozen=True, slots=True)
class RateRefusal:
    """What a refused request answers: ``429 RATE_LIMITED`` with a ``Retry-After`` header (or 503 when
    the limiter could not decide)."""

    message: str
    retry_after_seconds: int
    status_code: int = 429
    code: Code = Code.RATE_LIMITED

    @property
    def headers(self) -> dict[str, str]:
        """The response headers: when to come back."""
        return {"Retry-After": str(self.retry_after_seconds)}


def with_tenant_ceiling(limit: RateLimit, per_minute: int | None, burst: int | None) -> RateLimit:
    """``limit`` with its tenant ceiling: each value given, or :data:`TENANT_CEILING_FACTOR` users' worth."""
    factor = TENANT_CEILING_FACTOR
    ceiling = TenantCeiling(
        per_minute if per_minute is not None else limit.per_minute * factor,
        burst if burst is not None else limit.burst * factor,
    )
    return replace(limit, tenant=ceiling)


def judge(limit: RateLimit, decision: RateDecision | LimiterFailure | None) -> RateRefusal | None:
    """``None`` when the request may go on; the refusal to answer otherwise.

    ``decision`` is a :class:`LimiterFailure` when the limiter could not answer (``None`` reads as
    ``UNREACHABLE``): an unreachable store goes by :data:`FAIL_OPEN`, an overloaded limiter refuses.
    """
    if decision is None or decision is LimiterFailure.UNREACHABLE:
        return None if FAIL_OPEN else _cannot_decide()
    if decision is LimiterFailure.OVERLOADED:
        return _cannot_decide()
    assert isinstance(decision, RateDecision)
    if decision.allowed:
        return None
    if decision.by_tenant and limit.tenant is not None:
        return RateRefusal(
            f"too many requests from your organisation: at most {limit.tenant.per_minute} per minute "
            f"(bursts of {limit.tenant.burst}) for all its users together",
            decision.retry_after_seconds,
        )
    return RateRefusal(
        f"too many requests: at most {limit.per_minute} per minute (bursts of {limit.burst})",
        decision.retry_after_seconds,
    )


def _cannot_decide() -> RateRefusal:
    return RateRefusal("the rate limiter cannot answer now; retry later", 2, status_code=503, code=Code.UNAVAILABLE)

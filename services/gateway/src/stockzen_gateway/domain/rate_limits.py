"""Rate limits: per (tenant, user), a stricter one for pushes than for reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``burst`` requests at once, refilled at ``per_minute``."""

    scope: str
    per_minute: int
    burst: int


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a request may go on, and if not, in how many whole seconds to retry."""

    allowed: bool
    retry_after_seconds: int

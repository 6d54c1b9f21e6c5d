"""Live streams, the rule: how many one caller, one tenant and one gateway process may hold open, and
how long one may last.

Counted in this process's memory, not in Redis: what a stream costs (a socket, a task, a listener) is
a cost of the process that holds it, a count in memory cannot leak when a process dies, and it needs
no round trip. So with N gateway processes behind a balancer a user may hold up to N times
``per_user``; the per-process cap is what protects each process. (A cluster-wide count would need
leases in Redis that expire unless refreshed; not worth it while the per-process caps hold.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

from stockzen_contracts import Code

RETRY_AFTER_SECONDS = 10
"""What a refused stream is told: a slot frees when another stream ends, and clients back off anyway."""


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """The most streams open at once per (tenant, user), per tenant, and in this process."""

    per_user: int
    per_tenant: int
    per_process: int


@dataclass(frozen=True, slots=True)
class StreamRefusal:
    """Why a stream may not open: ``429 RATE_LIMITED`` for a caller or tenant over its share,
    ``503 UNAVAILABLE`` for a full process (another process behind the balancer may take it)."""

    scope: str
    status_code: int
    code: Code
    message: str

    @property
    def headers(self) -> dict[str, str]:
        """The response headers: when to come back."""
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}


class StreamRefused(Exception):
    """Raised by :meth:`LiveStreamSlots.take` with the :class:`StreamRefusal` to answer."""

    def __init__(self, refusal: StreamRefusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class StreamSlot:
    """One open stream's place in the counts; :meth:`release` gives it back (once, however often called)."""

    def __init__(self, give_back: Callable[[], None]) -> None:
        self._give_back: Callable[[], None] | None = give_back

    def release(self) -> None:
        """Give the place back."""
        give_back, self._give_back = self._give_back, None
        if give_back is not None:
            give_back()


class LiveStreamSlots:
    """The counts of open streams in this process (one event loop: no lock needed)."""

    def __init__(self, limits: StreamLimits) -> None:
        self._limits = limits
        self._per_user: Counter[tuple[UUID, str]] = Counter()
        self._per_tenant: Counter[UUID] = Counter()
        self._total = 0

    @property
    def open(self) -> int:
        """Streams open in this process."""
        return self._total

    def take(self, tenant_id: UUID, user_id: str) -> StreamSlot:
        """A place for one more stream of ``user_id`` in ``tenant_id``, or :class:`StreamRefused`."""
        refusal = self._judge(tenant_id, user_id)
        if refusal is not None:
            raise StreamRefused(refusal)
        self._per_user[(tenant_id, user_id)] += 1
        self._per_tenant[tenant_id] += 1
        self._total += 1
        return StreamSlot(lambda: self._give_back(tenant_id, user_id))

    def _judge(self, tenant_id: UUID, user_id: str) -> StreamRefusal | None:
        limits = self._limits
        if self._per_user[(tenant_id, user_id)] >= limits.per_user:
            return StreamRefusal(
                "user", 429, Code.RATE_LIMITED, f"this user already has {limits.per_user} live streams open"
            )
        if self._per_tenant[tenant_id] >= limits.per_tenant:
            return StreamRefusal(
                "tenant", 429, Code.RATE_LIMITED, f"this tenant already has {limits.per_tenant} live streams open"
            )
        if self._total >= limits.per_process:
            return StreamRefusal("process", 503, Code.UNAVAILABLE, "this gateway holds all the live streams it can")
        return None

    def _give_back(self, tenant_id: UUID, user_id: str) -> None:
        _decrement(self._per_user, (tenant_id, user_id))
        _decrement(self._per_tenant, tenant_id)
        self._total -= 1


_K = TypeVar("_K", bound=Hashable)


def _decrement(counts: Counter[_K], key: _K) -> None:
    # Drop keys at zero: the counters must not grow with every caller ever seen.
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]


def stream_lifetime(expires_at: float | None, *, now: float, max_seconds: float) -> float:
    """How long a stream opened ``now`` may last: until its token expires, and never past ``max_seconds``
    (the client then reconnects with its current token). Zero or less: the token has already expired."""
    if expires_at is None:
        return max_seconds
    return min(max_seconds, expires_at - now)

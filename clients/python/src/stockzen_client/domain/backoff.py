"""When a queued change is tried again: exponential, full jitter, capped; a server's ``Retry-After``
honoured up to a cap."""

from __future__ import annotations

from dataclasses import dataclass

import tenacity

RETRY_AFTER_CAP = 300.0
"""The longest ``Retry-After`` honoured (seconds): a broken or hostile server cannot stall a device for long."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """The retry schedule of one outbox item, from its attempt count.

    tenacity's ``wait_random_exponential`` computes it: "full jitter", drawn between 0 and
    ``min(cap, base * 2**(attempt-1))``. The attempt count and the next attempt time are kept in the
    outbox, so the schedule survives restarts.
    """

    base: float = 1.0
    cap: float = 60.0
    retry_after_cap: float = RETRY_AFTER_CAP

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``attempt``-th failed try (1 for the first); at least the server's
        ``retry_after``, capped at ``retry_after_cap``."""
        wait = tenacity.wait_random_exponential(multiplier=self.base, max=self.cap)
        state = tenacity.RetryCallState(_RETRYING, fn=None, args=(), kwargs={})
        state.attempt_number = max(1, attempt)
        drawn = float(wait(state))
        if retry_after:
            drawn = max(drawn, min(retry_after, self.retry_after_cap))
        return drawn


_RETRYING = tenacity.Retrying()

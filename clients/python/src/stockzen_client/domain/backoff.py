"""When a queued change is tried again: exponential, jittered, capped."""

from __future__ import annotations

from dataclasses import dataclass

import tenacity


@dataclass(frozen=True, slots=True)
class Backoff:
    """The retry schedule of one outbox item, from its attempt count.

    tenacity's ``wait_random_exponential`` ("full jitter", drawn between ``floor`` and
    ``base * 2**(attempt-1)``, capped at ``cap``) computes it; the attempt count and the next attempt
    time are kept in the outbox, so the schedule survives restarts.
    """

    base: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th failed try (1 for the first)."""
        wait = tenacity.wait_random_exponential(multiplier=self.base, max=self.cap, min=self.base / 2)
        state = tenacity.RetryCallState(_RETRYING, fn=None, args=(), kwargs={})
        state.attempt_number = max(1, attempt)
        return float(wait(state))


_RETRYING = tenacity.Retrying()

"""How long a read may take: the service's own limit, cut short when its caller will give up sooner.

The gateway says in a header how many milliseconds it will wait for an answer. A read that would
run past that point runs for nobody, so its time limit is the earlier of the two. The header can only
shorten a read, never lengthen it, so a malformed or absent one is simply ignored.
"""

from __future__ import annotations

import math

CALLER_BUDGET_MAX_MS = 3_600_000
"""A caller's budget above this (an hour) is not a deadline anyone means: it is ignored."""


def caller_deadline(budget_ms: str | None, now: float) -> float | None:
    """When the caller gives up (on the clock ``now`` is read from), from the budget in milliseconds
    it sent with the request; ``None`` when it sent none that makes sense."""
    if budget_ms is None or not budget_ms.isascii() or not budget_ms.isdigit():
        return None
    budget = int(budget_ms)
    if not 0 < budget <= CALLER_BUDGET_MAX_MS:
        return None
    return now + budget / 1000


def read_budget_ms(limit_ms: int | None, deadline: float | None, now: float) -> int | None:
    """The milliseconds a read starting at ``now`` may take: ``limit_ms``, or what is left until the
    caller's ``deadline`` if that is sooner (``None``: neither bounds it). Zero or less means the
    caller has already given up."""
    left = None if deadline is None else math.floor((deadline - now) * 1000)
    if left is None or limit_ms is None:
        return limit_ms if left is None else left
    return min(limit_ms, left)

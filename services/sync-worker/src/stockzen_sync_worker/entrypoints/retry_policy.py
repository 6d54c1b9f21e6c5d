"""Which failed batches are retried, and for how long: transient failures without end, others a few times.

A batch that failed because Postgres or Redis was away must not be dead-lettered after a few minutes
of outage: it would never be applied nor reported. Only a message that cannot succeed goes to the
dead-letter queue: one that is not a batch at all (refused at once) or one that keeps failing for
a reason the outside world will not fix (most likely a bug), after ``SYNC_MAX_RETRIES`` attempts.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from dramatiq.middleware import TimeLimitExceeded
from redis.exceptions import RedisError

# Failures that end when the outside world recovers: a database or Redis away, restarting or
# overloaded, a lock conflict, a batch cut off by the time limit while they hang.
_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # includes a connection closed under the batch
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, "cannot connect now"
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.TransactionRollbackError,  # deadlock, serialization failure
    RedisError,
    OSError,  # connection refused or reset before a client library could wrap it
    TimeoutError,
    TimeLimitExceeded,
)


def is_transient(exc: BaseException) -> bool:
    """Whether a batch failed for a reason that passes by itself (then it is retried without end)."""
    return isinstance(exc, _TRANSIENT)


def retry_when(max_retries: int) -> Callable[[int, BaseException], bool]:
    """dramatiq's ``retry_when`` predicate: transient failures always (the backoff between attempts is
    capped by ``max_backoff``), anything else while fewer than ``max_retries`` attempts were retried."""

    def should_retry(retries: int, exc: BaseException) -> bool:
        return is_transient(exc) or retries < max_retries

    return should_retry

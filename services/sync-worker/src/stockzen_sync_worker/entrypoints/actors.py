"""The dramatiq actor: parse the message, call the service layer, answer the gateway.

dramatiq needs its broker set before an actor is defined, so this module configures it on import
(reading settings only; connections open on first use). Run it with ``stockzen-sync-worker``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg
import dramatiq
import uvloop
from dramatiq.middleware import CurrentMessage
from pydantic import ValidationError
from redis.exceptions import RedisError

from stockzen_contracts import APPLY_SYNC_BATCH_ACTOR, Code, ItemStatus, RawSyncBatch
from stockzen_platform.logging import configure_logging, log_context
from stockzen_sync_worker.bootstrap import configure
from stockzen_sync_worker.entrypoints.retry_policy import is_transient, retry_when
from stockzen_sync_worker.metrics import METRICS
from stockzen_sync_worker.services import BatchOutcome, ReadBatch, apply_sync_batch, read_batch

# dramatiq's AsyncIO middleware makes its event loop with asyncio.new_event_loop(): under this
# policy that is a uvloop loop (cheaper socket writes; see docs/benchmarks.md). Set here, in the
# module only the dramatiq worker imports, so that no test process changes its loop.
asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
runtime = configure()
settings = runtime.settings
configure_logging("sync-worker", settings.log_level)
log = logging.getLogger(__name__)


class PoisonMessage(Exception):
    """A message that can never be applied (not a valid batch): dead-lettered at once, not retried."""


@dramatiq.actor(
    actor_name=APPLY_SYNC_BATCH_ACTOR,
    queue_name=settings.sync_queue,
    retry_when=retry_when(settings.max_retries),
    min_backoff=settings.min_backoff_ms,
    max_backoff=settings.max_backoff_ms,
    time_limit=settings.time_limit_ms,
    throws=(PoisonMessage,),
)
async def apply_sync_batch_actor(message: dict[str, Any]) -> None:
    """Apply one sync batch; its results go back to the waiting gateway through Redis."""
    try:
        raw = RawSyncBatch.model_validate(message)
    except ValidationError as exc:
        log.error("refusing a message that is not a valid sync batch", extra={"error": str(exc)[:500]})
        raise PoisonMessage("not a valid sync batch") from exc
    read = read_batch(raw)
    command = read.command
    current = CurrentMessage.get_current_message()
    assert current is not None  # the CurrentMessage middleware is installed by configure()
    with log_context(request_id=command.request_id, tenant_id=str(command.tenant_id), message_id=current.message_id):
        if read.unreadable:
            log.warning("refusing operations the worker cannot read", extra={"positions": sorted(read.unreadable)})
        started = time.perf_counter()
        try:
            ledger, cache = await runtime.adapters()
            outcome = await apply_sync_batch(command, current.message_id, ledger, cache, unreadable=read.unreadable)
        except Exception as exc:
            METRICS.batch_failures.labels(type(exc).__name__).inc()
            if _is_database_error(exc):
                METRICS.database_errors.labels(type(exc).__name__).inc()
            log.warning(
                "batch failed",
                extra={"error": repr(exc)[:500], "transient": is_transient(exc)},
            )
            raise
        METRICS.batch_seconds.observe(time.perf_counter() - started)
        _count(read, outcome)
        log.info(
            "batch applied",
            extra={
                "operations": len(command.operations),
                "operation_ids": [str(op.operation_id) for op in command.operations][:50],
                "checkpoint": outcome.applied.checkpoint,
            },
        )


def _is_database_error(exc: Exception) -> bool:
    # asyncpg raises its own classes, and plain OSErrors when it cannot connect; Redis never
    # raises a plain OSError (its errors are RedisError).
    return isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError) or (
        isinstance(exc, OSError) and not isinstance(exc, RedisError)
    )


def _count(read: ReadBatch, outcome: BatchOutcome) -> None:
    METRICS.dedupe_hits.labels("redis").inc(outcome.cache_hits)
    METRICS.dedupe_hits.labels("postgres").inc(outcome.ledger_hits)
    results = [r for i, r in enumerate(outcome.applied.results) if i not in read.unreadable]
    METRICS.operations.labels("invalid", "invalid", ItemStatus.REJECTED.value, Code.VALIDATION_ERROR.value).inc(
        len(read.unreadable)
    )
    for op, result in zip(read.command.operations, results, strict=True):
        code = result.code.value if result.code else ""
        METRICS.operations.labels(op.entity_type.value, op.operation_type.value, result.status.value, code).inc()
        if result.status is ItemStatus.CONFLICT and result.code is Code.CONFLICT_RESOLVED:
            METRICS.conflicts.inc()

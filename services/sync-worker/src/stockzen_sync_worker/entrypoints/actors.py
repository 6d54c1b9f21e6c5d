"""The dramatiq actor: parse the message, call the service layer, answer the gateway.

Importing this declares nothing: :func:`declare_actors` puts the actor on the broker it is given
(the composition root's, or a test's ``StubBroker``), with the adapters it is to use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg
import dramatiq
from dramatiq.middleware import CurrentMessage
from pydantic import ValidationError
from redis.exceptions import RedisError

from stockzen_contracts import APPLY_SYNC_BATCH_ACTOR, Code, ItemStatus, RawSyncBatch
from stockzen_platform.logging import log_context
from stockzen_sync_worker.config import WorkerSettings
from stockzen_sync_worker.entrypoints.retry_policy import is_transient, retry_when
from stockzen_sync_worker.grouping import GroupCommitter
from stockzen_sync_worker.metrics import WorkerMetrics
from stockzen_sync_worker.ports import InventoryDatabase, ResultCache
from stockzen_sync_worker.services import (
    BatchOutcome,
    LookedUp,
    ReadBatch,
    Settled,
    answer,
    look_up,
    read_batch,
    settle_alone,
    settle_group,
)

log = logging.getLogger(__name__)

OpenAdapters = Callable[[], Awaitable[tuple[InventoryDatabase, ResultCache]]]
"""Returns the inventory database and the result cache, opening them on first use (on dramatiq's event loop)."""

SyncBatchActor = dramatiq.Actor[[dict[str, Any]], None]

BatchCommitter = GroupCommitter[UUID, tuple[LookedUp, InventoryDatabase], tuple[Settled, int]]
"""Groups the batches of one tenant in flight in this process into one transaction (see
:mod:`~stockzen_sync_worker.grouping`); each batch comes with the database to settle it on."""


class PoisonMessage(Exception):
    """A message that can never be applied (not a valid batch): dead-lettered at once, not retried."""


class SyncBatchHandler:
    """Applies one message's batch with the adapters it is given, and counts what happened."""

    def __init__(self, adapters: OpenAdapters, metrics: WorkerMetrics, committer: BatchCommitter | None = None) -> None:
        self._adapters = adapters
        self._metrics = metrics
        self._committer = committer

    async def handle(self, message: dict[str, Any]) -> None:
        """Apply one sync batch; its results go back to the waiting gateway through Redis."""
        try:
            raw = RawSyncBatch.model_validate(message)
        except ValidationError as exc:
            log.error("refusing a message that is not a valid sync batch", extra={"error": str(exc)[:500]})
            raise PoisonMessage("not a valid sync batch") from exc
        read = read_batch(raw)
        command = read.command
        current = CurrentMessage.get_current_message()
        assert current is not None  # the CurrentMessage middleware is installed with the actor's broker
        with log_context(
            request_id=command.request_id, tenant_id=str(command.tenant_id), message_id=current.message_id
        ):
            if read.unreadable:
                log.warning("refusing operations the worker cannot read", extra={"positions": sorted(read.unreadable)})
            started = time.perf_counter()
            try:
                outcome = await self.apply(read, current.message_id)
            except Exception as exc:
                self._count_failure(exc)
                raise
            self._metrics.batch_seconds.observe(time.perf_counter() - started)
            self._count(read, outcome)
            log.info(
                "batch applied",
                extra={
                    "operations": len(command.operations),
                    "operation_ids": [str(op.operation_id) for op in command.operations][:50],
                    "checkpoint": outcome.applied.checkpoint,
                },
            )

    async def apply(self, read: ReadBatch, message_id: str) -> BatchOutcome:
        """Apply a batch read from message ``message_id`` and answer the gateway; with group commit on,
        in one transaction with the batches of its tenant in flight beside it. Returns only once its
        work is committed (the message is acknowledged after)."""
        database, cache = await self._adapters()
        batch = await look_up(read.command, message_id, cache, unreadable=read.unreadable)
        if batch.todo and self._committer is not None:
            # Once the group holding this batch committed, or, if the group failed, once this
            # batch was applied alone (raising what it raised alone).
            settled, checkpoint = await self._committer.submit(read.command.tenant_id, (batch, database))
        else:
            settled, checkpoint = await settle_alone(batch, database)
        return await answer(batch, settled, checkpoint, cache)

    def _count_failure(self, exc: Exception) -> None:
        self._metrics.batch_failures.labels(type(exc).__name__).inc()
        if _is_database_error(exc):
            self._metrics.database_errors.labels(type(exc).__name__).inc()
        log.warning("batch failed", extra={"error": repr(exc)[:500], "transient": is_transient(exc)})

    def _count(self, read: ReadBatch, outcome: BatchOutcome) -> None:
        metrics = self._metrics
        metrics.dedupe_hits.labels("redis").inc(outcome.cache_hits)
        metrics.dedupe_hits.labels("postgres").inc(outcome.database_hits)
        results = [r for i, r in enumerate(outcome.applied.results) if i not in read.unreadable]
        metrics.operations.labels("invalid", "invalid", ItemStatus.REJECTED.value, Code.VALIDATION_ERROR.value).inc(
            len(read.unreadable)
        )
        for op, result in zip(read.command.operations, results, strict=True):
            code = result.code.value if result.code else ""
            metrics.operations.labels(op.entity_type.value, op.operation_type.value, result.status.value, code).inc()
            if result.status is ItemStatus.CONFLICT and result.code is Code.CONFLICT_RESOLVED:
                metrics.conflicts.inc()


def _is_database_error(exc: Exception) -> bool:
    # asyncpg raises its own classes, and plain OSErrors when it cannot connect; Redis never
    # raises a plain OSError (its errors are RedisError).
    return isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError) or (
        isinstance(exc, OSError) and not isinstance(exc, RedisError)
    )


def group_committer(settings: WorkerSettings, metrics: WorkerMetrics) -> BatchCommitter | None:
    """The group committer the settings ask for (``None``: group commit off, each batch its own transaction)."""
    if not settings.group_commit:
        return None

    async def apply_group(
        tenant_id: UUID, batches: list[tuple[LookedUp, InventoryDatabase]]
    ) -> list[tuple[Settled, int]]:
        return await settle_group([batch for batch, _ in batches], batches[0][1])

    async def apply_alone(tenant_id: UUID, submitted: tuple[LookedUp, InventoryDatabase]) -> tuple[Settled, int]:
        return await settle_alone(*submitted)

    return GroupCommitter(
        apply_group,
        apply_alone,
        max_messages=settings.group_commit_max_messages,
        max_wait_seconds=settings.group_commit_max_wait_ms / 1000,
        observer=metrics,
    )


def declare_actors(
    broker: dramatiq.Broker, settings: WorkerSettings, adapters: OpenAdapters, metrics: WorkerMetrics
) -> SyncBatchActor:
    """Declare the sync actor on ``broker``, whose middleware must include AsyncIO and CurrentMessage."""
    handler = SyncBatchHandler(adapters, metrics, group_committer(settings, metrics))

    async def apply_sync_batch_actor(message: dict[str, Any]) -> None:
        await handler.handle(message)

    declare = dramatiq.actor(
        broker=broker,
        actor_name=APPLY_SYNC_BATCH_ACTOR,
        queue_name=settings.sync_queue,
        retry_when=retry_when(settings.max_retries),
        min_backoff=settings.min_backoff_ms,
        max_backoff=settings.max_backoff_ms,
        time_limit=settings.time_limit_ms,
        throws=(PoisonMessage,),
    )
    return declare(apply_sync_batch_actor)

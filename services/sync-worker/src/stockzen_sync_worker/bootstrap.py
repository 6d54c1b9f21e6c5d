"""The composition root of the sync worker.

Importing this sets up nothing. dramatiq calls :func:`configure_worker_process` in each worker
process (``dramatiq stockzen_sync_worker.bootstrap:configure_worker_process``, which
``stockzen-sync-worker`` runs): it configures logging and the event loop policy, builds the
RabbitMQ broker (which connects on first use), its middleware, the metrics and the
:class:`WorkerRuntime`, declares the actor and makes the broker dramatiq's. The runtime's Postgres
pool and Redis client are created on dramatiq's event loop the first time the actor needs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq
import redis.asyncio as aioredis
import uvloop
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import AsyncIO, CurrentMessage, Middleware, Retries

from stockzen_platform.logging import configure_logging
from stockzen_platform.postgres import assert_role_is_restricted, create_pool

from .adapters.broker import SyncQueueBroker
from .adapters.inventory_database import PostgresInventoryDatabase
from .adapters.result_cache import RedisResultCache
from .config import WorkerSettings
from .entrypoints.actors import declare_actors
from .metrics import WorkerMetrics

log = logging.getLogger(__name__)


class WorkerRuntime:
    """The adapters the actors use, opened lazily on the event loop and closed at shutdown."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._adapters: tuple[PostgresInventoryDatabase, RedisResultCache] | None = None
        self._lock: asyncio.Lock | None = None
        self._closers: list[Any] = []

    async def adapters(self) -> tuple[PostgresInventoryDatabase, RedisResultCache]:
        """The inventory database and the result cache (opened on first call; a failure is retried next time)."""
        if self._adapters is not None:
            return self._adapters
        if self._lock is None:
            self._lock = asyncio.Lock()  # made here so that it belongs to dramatiq's loop
        async with self._lock:
            if self._adapters is None:
                self._adapters = await self._open()
        return self._adapters

    async def _open(self) -> tuple[PostgresInventoryDatabase, RedisResultCache]:
        settings = self.settings
        # The worker's settings are all transaction-local (the tenant with set_config(..., true)).
        pool = await create_pool(
            settings.database_url,
            max_size=settings.database_pool_size,
            statement_seconds=settings.database_statement_seconds,
            session_state_free=True,
        )
        try:
            await assert_role_is_restricted(pool)
        except BaseException:
            await pool.close()
            raise
        client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
        database = PostgresInventoryDatabase(pool, tombstone_retention=settings.tombstone_retention)
        # applied_operations kept for the tombstone window: its partitions made ahead and dropped past it.
        maintenance = asyncio.create_task(database.keep_records_bounded())
        self._closers = [_cancelled(maintenance), pool.close, client.aclose]
        log.info("worker connected to Postgres and Redis")
        return (
            database,
            RedisResultCache(client, prefix=settings.redis_key_prefix, result_ttl_seconds=settings.result_ttl_seconds),
        )

    async def close(self) -> None:
        """Close whatever :meth:`adapters` opened."""
        for close in self._closers:
            await close()
        self._closers, self._adapters = [], None


def _cancelled(task: asyncio.Task[None]) -> Callable[[], Awaitable[None]]:
    """A closer that cancels ``task`` and waits for it to end."""

    async def cancel() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return cancel


class RuntimeShutdown(Middleware):
    """Closes the runtime's connections while dramatiq's event loop still runs."""

    def __init__(self, runtime: WorkerRuntime) -> None:
        self._runtime = runtime

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop_thread = get_event_loop_thread()
        if loop_thread is not None:
            loop_thread.run_coroutine(self._runtime.close())


class DeadLetterMetrics(Middleware):
    """Counts messages that end in the dead-letter queue (retries exhausted, or never retryable)."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: Any = None,
    ) -> None:
        if exception is not None and message.failed:
            self._metrics.dead_lettered.labels(message.actor_name).inc()

    after_skip_message = after_process_message


def add_worker_middleware(broker: dramatiq.Broker, metrics: WorkerMetrics, *extra: Middleware) -> None:
    """What the actor needs on any broker: dramatiq's event loop, the current message, dead letters counted."""
    for middleware in (AsyncIO(), CurrentMessage(), *extra):
        broker.add_middleware(middleware)
    # "after" hooks run in reverse order: placed before Retries, this one sees Retries' verdict.
    broker.add_middleware(DeadLetterMetrics(metrics), before=Retries)


def build_broker(settings: WorkerSettings) -> SyncQueueBroker:
    """The RabbitMQ broker with the worker's middleware and the actor declared on it (nothing connects yet):
    on every address of AMQP_URL, its queues of SYNC_QUEUE_TYPE."""
    # Imported here: importing dramatiq's exporter creates its directory (dramatiq_prom_db).
    from dramatiq.middleware.prometheus import Prometheus

    runtime = WorkerRuntime(settings)
    metrics = WorkerMetrics()  # once per process: the default registry refuses a second set
    broker = SyncQueueBroker(urls=settings.amqp_urls, queue_type=settings.sync_queue_type, confirm_delivery=True)
    add_worker_middleware(broker, metrics, Prometheus(), RuntimeShutdown(runtime))
    declare_actors(broker, settings, runtime.adapters, metrics)
    return broker


def configure_worker_process() -> None:
    """dramatiq's entry in each worker process: logging, the loop policy, then the broker made dramatiq's."""
    settings = WorkerSettings()
    configure_logging("sync-worker", settings.log_level)
    # dramatiq's AsyncIO middleware makes its event loop with asyncio.new_event_loop(): under this
    # policy that is a uvloop loop (cheaper socket writes; see docs/benchmarks.md). Set only here,
    # in the dramatiq worker process, so that no test process changes its loop.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    dramatiq.set_broker(build_broker(settings))

"""The composition root of the sync worker.

Importing this opens nothing. :func:`configure` builds the dramatiq broker (which connects on
first use) and the :class:`WorkerRuntime`, whose Postgres pool and Redis client are created on
dramatiq's event loop the first time an actor needs them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import dramatiq
import redis.asyncio as aioredis
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import AsyncIO, CurrentMessage, Middleware, Retries
from dramatiq.middleware.prometheus import Prometheus

from stockzen_platform.postgres import assert_role_is_restricted, create_pool

from .adapters.ledger import PostgresLedger
from .adapters.result_cache import RedisResultCache
from .config import WorkerSettings
from .metrics import METRICS

log = logging.getLogger(__name__)


class WorkerRuntime:
    """The adapters the actors use, opened lazily on the event loop and closed at shutdown."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._adapters: tuple[PostgresLedger, RedisResultCache] | None = None
        self._lock: asyncio.Lock | None = None
        self._closers: list[Any] = []

    async def adapters(self) -> tuple[PostgresLedger, RedisResultCache]:
        """The ledger and the result cache (opened on first call; a failure is retried next time)."""
        if self._adapters is not None:
            return self._adapters
        if self._lock is None:
            self._lock = asyncio.Lock()  # made here so that it belongs to dramatiq's loop
        async with self._lock:
            if self._adapters is None:
                self._adapters = await self._open()
        return self._adapters

    async def _open(self) -> tuple[PostgresLedger, RedisResultCache]:
        settings = self.settings
        pool = await create_pool(settings.database_url, max_size=settings.database_pool_size)
        try:
            await assert_role_is_restricted(pool)
        except BaseException:
            await pool.close()
            raise
        client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
        self._closers = [pool.close, client.aclose]
        log.info("worker connected to Postgres and Redis")
        return (
            PostgresLedger(pool, tombstone_retention=settings.tombstone_retention),
            RedisResultCache(client, prefix=settings.redis_key_prefix, result_ttl_seconds=settings.result_ttl_seconds),
        )

    async def close(self) -> None:
        """Close whatever :meth:`adapters` opened."""
        for close in self._closers:
            await close()
        self._closers, self._adapters = [], None


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

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: Any = None,
    ) -> None:
        if exception is not None and message.failed:
            METRICS.dead_lettered.labels(message.actor_name).inc()

    after_skip_message = after_process_message


def configure(settings: WorkerSettings | None = None) -> WorkerRuntime:
    """Build the broker and the runtime, and make the broker dramatiq's (before any actor exists)."""
    settings = settings or WorkerSettings()
    runtime = WorkerRuntime(settings)
    broker = RabbitmqBroker(url=settings.amqp_url, confirm_delivery=True)
    for middleware in (AsyncIO(), CurrentMessage(), Prometheus(), RuntimeShutdown(runtime)):
        broker.add_middleware(middleware)
    # "after" hooks run in reverse order: placed before Retries, this one sees Retries' verdict.
    broker.add_middleware(DeadLetterMetrics(), before=Retries)
    dramatiq.set_broker(broker)
    return runtime

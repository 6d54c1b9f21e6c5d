"""The composition root of the gateway: settings in, a ready FastAPI app out.

No connection opens at import or in :func:`build_app`; they open in the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as aioredis
from fastapi import FastAPI

from stockzen_platform.http import RequestContextMiddleware, install_error_handlers
from stockzen_platform.identity import TokenVerifier, internal_token_issuer

from .adapters.checkpoint_announcements import RedisCheckpointAnnouncements
from .adapters.inventory_client import InventoryClient
from .adapters.publisher import AmqpBatchPublisher
from .adapters.redis_state import RedisGatewayState
from .config import GatewaySettings
from .domain.rate_limits import RateLimit
from .metrics import METRICS
from .ports import CheckpointAnnouncements
from .services import SyncPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayRuntime:
    """Everything a request handler needs, built once per process."""

    settings: GatewaySettings
    verifier: TokenVerifier
    state: RedisGatewayState
    publisher: AmqpBatchPublisher
    sync_policy: SyncPolicy
    sync_limit: RateLimit
    read_limit: RateLimit
    inventory: InventoryClient
    announcements: CheckpointAnnouncements


def _redis(settings: GatewaySettings) -> aioredis.Redis:
    # One pool: every request waiting for results holds a connection, so size it for them, and
    # let blocking reads outlive their own server-side timeout (redis-py's default is 5 s).
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=5,
        socket_timeout=settings.result_timeout_seconds + 5,
        socket_connect_timeout=2,
    )
    return aioredis.Redis.from_pool(pool)


def build_runtime(settings: GatewaySettings) -> tuple[GatewayRuntime, aioredis.Redis]:
    """The runtime and the Redis client it uses (no connection opens until first use)."""
    client = _redis(settings)
    # Its own client: the subscription holds a connection for the process's lifetime.
    announcements = RedisCheckpointAnnouncements(
        aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, health_check_interval=30),
        prefix=settings.redis_key_prefix,
    )
    runtime = GatewayRuntime(
        settings=settings,
        verifier=TokenVerifier(
            algorithm=settings.jwt_algorithm,
            key=settings.jwt_verification_key,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        ),
        state=RedisGatewayState(client, prefix=settings.redis_key_prefix),
        publisher=AmqpBatchPublisher(
            settings.amqp_url, settings.sync_queue, timeout_seconds=settings.publish_timeout_seconds
        ),
        sync_policy=SyncPolicy(
            result_timeout_seconds=settings.result_timeout_seconds,
            idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
        ),
        sync_limit=RateLimit("sync", settings.sync_rate_per_minute, settings.sync_rate_burst),
        read_limit=RateLimit("read", settings.read_rate_per_minute, settings.read_rate_burst),
        inventory=InventoryClient(
            settings.inventory_url,
            token_issuer=internal_token_issuer(settings.internal_token_secret.get_secret_value()),
            timeout_seconds=settings.inventory_timeout_seconds,
        ),
        announcements=announcements,
    )
    return runtime, client


async def _monitor_queues(publisher: AmqpBatchPublisher, interval: float, stop: asyncio.Event) -> None:
    """Export queue depth and consumer counts (no RabbitMQ plugin needed) until ``stop`` is set."""
    while not stop.is_set():
        depths = await publisher.queue_depths()
        for queue, (messages, consumers) in depths.items():
            METRICS.queue_messages.labels(queue).set(messages)
            METRICS.queue_consumers.labels(queue).set(consumers)
        if depths:
            METRICS.queue_polled_at.set_to_current_time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


def build_app(settings: GatewaySettings) -> FastAPI:
    """Wire the gateway app."""
    from .entrypoints import http, read_routes, stream_routes, sync_routes
    from .entrypoints.openapi import document_sync_request
    from .entrypoints.web_app import mount_web_app

    runtime, client = build_runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        monitor = asyncio.create_task(_monitor_queues(runtime.publisher, settings.queue_monitor_interval_seconds, stop))
        try:
            yield
        finally:
            # Let a poll in progress finish (it is bounded by its own timeouts): cancelling aiormq
            # mid-connect can swallow the cancellation and leave its reader behind.
            stop.set()
            await runtime.announcements.aclose()
            finished, _ = await asyncio.wait({monitor}, timeout=settings.publish_timeout_seconds + 1)
            if not finished:
                monitor.cancel()
            await runtime.publisher.close()
            await runtime.inventory.aclose()
            await client.aclose()

    app = FastAPI(title="StockZen Sync gateway", version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    install_error_handlers(app)
    http.answer_redis_outages(app)
    app.add_middleware(RequestContextMiddleware, metrics=METRICS.http)
    app.include_router(http.router)
    app.include_router(sync_routes.router)
    document_sync_request(app)
    app.include_router(read_routes.router)
    app.include_router(stream_routes.router)
    mount_web_app(app, settings.web_app_dir)
    return app

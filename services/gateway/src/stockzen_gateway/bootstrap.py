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

from stockzen_platform.api_docs import serve_api_docs
from stockzen_platform.http import RequestContextMiddleware, install_error_handlers
from stockzen_platform.identity import TokenVerifier, internal_token_issuer

from .adapters.checkpoint_announcements import RedisCheckpointAnnouncements
from .adapters.inventory_client import InventoryClient
from .adapters.publisher import AmqpBatchPublisher
from .adapters.redis_rate_limiter import RedisRateLimiter
from .adapters.redis_state import RedisGatewayState
from .config import GatewaySettings
from .domain.live_streams import LiveStreamSlots
from .entrypoints import http, read_routes, stream_routes, sync_routes
from .entrypoints.openapi import document_sync_request
from .entrypoints.web_app import mount_web_app
from .metrics import METRICS
from .runtime import GatewayRuntime
from .services import SyncPolicy, SyncService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayAdapters:
    """The gateway's connections to the outside world; tests build their own and pass them to
    :func:`build_app` (an in-process inventory, say). Nothing connects until first use."""

    redis: aioredis.Redis
    limiter_redis: aioredis.Redis
    state: RedisGatewayState
    rate_limiter: RedisRateLimiter
    publisher: AmqpBatchPublisher
    inventory: InventoryClient
    announcements: RedisCheckpointAnnouncements

    async def aclose(self) -> None:
        """Release the connections (the announcements are closed earlier: they end the live streams)."""
        await self.state.aclose()
        await self.publisher.close()
        await self.inventory.aclose()
        await self.redis.aclose()
        await self.limiter_redis.aclose()


def _redis(settings: GatewaySettings) -> aioredis.Redis:
    # Short commands and blocking reads for results (at most half the pool: adapters/redis_state.py):
    # let those reads outlive their own server-side timeout (redis-py's default is 5 s).
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=5,
        socket_timeout=settings.result_timeout_seconds + 5,
        socket_connect_timeout=2,
    )
    return aioredis.Redis.from_pool(pool)


def _limiter_redis(settings: GatewaySettings) -> aioredis.Redis:
    # The rate limiter's own pool: no other use can take its connections, so its own load is all
    # that can keep it waiting, and then it refuses (RateLimiterOverloaded) rather than let requests
    # through. Its script is one short round trip: a hung Redis is noticed in seconds, not at the
    # result deadline.
    pool = aioredis.ConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_limiter_connections,
        socket_timeout=2,
        socket_connect_timeout=2,
    )
    return aioredis.Redis.from_pool(pool)


def build_adapters(settings: GatewaySettings) -> GatewayAdapters:
    """The production adapters for ``settings`` (no connection opens until first use)."""
    client, limiter_client = _redis(settings), _limiter_redis(settings)
    return GatewayAdapters(
        redis=client,
        limiter_redis=limiter_client,
        state=RedisGatewayState(
            client,
            prefix=settings.redis_key_prefix,
            tenant_budget_bytes=settings.request_key_tenant_budget_bytes,
            # Half the pool for requests waiting on a connection each; the rest wait on one between them.
            own_connection_waits=settings.redis_max_connections // 2,
        ),
        rate_limiter=RedisRateLimiter(
            limiter_client, prefix=settings.redis_key_prefix, max_concurrent=settings.redis_limiter_connections
        ),
        publisher=AmqpBatchPublisher(
            settings.amqp_urls,
            settings.sync_queue,
            timeout_seconds=settings.publish_timeout_seconds,
            queue_type=settings.sync_queue_type,
        ),
        inventory=InventoryClient(
            settings.inventory_url,
            token_issuer=internal_token_issuer(settings.internal_token_secret.get_secret_value()),
            timeout_seconds=settings.inventory_timeout_seconds,
        ),
        # Its own client: the subscription holds a connection for the process's lifetime.
        announcements=RedisCheckpointAnnouncements(
            aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, health_check_interval=30),
            prefix=settings.redis_key_prefix,
        ),
    )


def build_runtime(settings: GatewaySettings, adapters: GatewayAdapters) -> GatewayRuntime:
    """What request handlers see: the settings, and the adapters behind their ports."""
    return GatewayRuntime(
        settings=settings,
        verifier=TokenVerifier(
            algorithm=settings.jwt_algorithm,
            key=settings.jwt_verification_key,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        ),
        sync=SyncService(
            adapters.publisher,
            adapters.state,
            SyncPolicy(
                result_timeout_seconds=settings.result_timeout_seconds,
                request_key_ttl_seconds=settings.request_key_ttl_seconds,
            ),
        ),
        rate_limiter=adapters.rate_limiter,
        rate_limits=settings.rate_limits,
        inventory=adapters.inventory,
        announcements=adapters.announcements,
        streams=LiveStreamSlots(settings.stream_limits),
    )


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


def build_app(settings: GatewaySettings, adapters: GatewayAdapters | None = None) -> FastAPI:
    """Wire the gateway app around ``adapters`` (the production ones for ``settings`` when omitted);
    the app's lifespan closes them."""
    adapters = adapters or build_adapters(settings)
    runtime = build_runtime(settings, adapters)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        monitor = asyncio.create_task(
            _monitor_queues(adapters.publisher, settings.queue_monitor_interval_seconds, stop)
        )
        try:
            yield
        finally:
            # Let a poll in progress finish (it is bounded by its own timeouts): cancelling aiormq
            # mid-connect can swallow the cancellation and leave its reader behind.
            stop.set()
            await adapters.announcements.aclose()
            finished, _ = await asyncio.wait({monitor}, timeout=settings.publish_timeout_seconds + 1)
            if not finished:
                monitor.cancel()
            await adapters.aclose()

    # docs_url/redoc_url None: FastAPI's pages load their scripts from a CDN; serve_api_docs does not.
    app = FastAPI(title="StockZen Sync gateway", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.runtime = runtime
    install_error_handlers(app)
    http.answer_redis_outages(app)
    app.add_middleware(RequestContextMiddleware, metrics=METRICS.http)
    app.add_middleware(http.AnswerHeaders)
    app.include_router(http.router)
    app.include_router(sync_routes.router)
    document_sync_request(app)
    app.include_router(read_routes.router)
    app.include_router(stream_routes.router)
    mount_web_app(app, settings.web_app_dir)
    serve_api_docs(app)
    return app

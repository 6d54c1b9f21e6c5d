"""The StockZen services started as real processes against this run's Postgres, Redis and RabbitMQ."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aio_pika
import httpx
import pika
import pika.exceptions
import redis.asyncio as aioredis

from stockzen_platform.identity import Identity, TokenIssuer
from tests.support.processes import ServiceProcess, free_port, start_service
from tests.support.services import ServiceUrls

WEB_APP_DIR = Path(__file__).resolve().parents[2] / "clients" / "web" / "dist"
"""The built browser app (``make web``), which the gateway serves at ``/app/``."""

JWT_SECRET = "stockzen-test-only-jwt-secret-0123456789abcdef-0123456789abcdef-0123456789"
INTERNAL_SECRET = "stockzen-test-only-internal-secret-0123456789abcdef"


def user_token(tenant_id: uuid.UUID, user_id: str = "user-1", *, ttl_seconds: int = 600) -> str:
    """A user token the test gateway accepts."""
    issuer = TokenIssuer(algorithm="HS256", key=JWT_SECRET)
    return issuer.issue(Identity(user_id=user_id, tenant_id=tenant_id), ttl_seconds=ttl_seconds)


class Stack:
    """Gateway, inventory and sync worker for one test (or one session), on a queue of its own."""

    def __init__(self, services: ServiceUrls, log_dir: Path, *, name: str, amqp_url: str | None = None) -> None:
        self.services = services
        self.log_dir = log_dir
        self.amqp_url = amqp_url or services.amqp_url  # one broker address, or a cluster's, comma-separated
        self.queue = f"{services.queue_name}.{name}"
        self.gateway_port = free_port()
        self.gateway_metrics_port = free_port()
        self.inventory_port = free_port()
        self.worker_metrics_port = free_port()
        self.processes: dict[str, ServiceProcess] = {}
        self.env = {
            "STOCKZEN_ENV": "test",
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",  # the tests read the lines back
            "JWT_SECRET": JWT_SECRET,
            "INTERNAL_TOKEN_SECRET": INTERNAL_SECRET,
            "DATABASE_URL": services.app_url,
            "DATABASE_ADMIN_URL": services.admin_server_url,
            "REDIS_URL": services.redis_url,
            "REDIS_KEY_PREFIX": services.redis_prefix,
            "AMQP_URL": self.amqp_url,
            "SYNC_QUEUE": self.queue,
            "GATEWAY_PORT": str(self.gateway_port),
            "GATEWAY_METRICS_PORT": str(self.gateway_metrics_port),
            "INVENTORY_PORT": str(self.inventory_port),
            "INVENTORY_URL": f"http://127.0.0.1:{self.inventory_port}",
            "WORKER_METRICS_PORT": str(self.worker_metrics_port),
            "WORKER_METRICS_DIR": str(log_dir / f"worker-metrics-{name}"),
            # Long enough that a busy machine still answers a first request with final results, so
            # a test never races its own retry against the queued batch; tests that want a 202 set
            # their own, shorter deadline. (Below the test clients' 30 s timeout.)
            "SYNC_RESULT_TIMEOUT_SECONDS": "20",
            "SYNC_MIN_BACKOFF_MS": "200",
            "SYNC_MAX_BACKOFF_MS": "1000",
            "QUEUE_MONITOR_INTERVAL_SECONDS": "1",
            "WEB_APP_DIR": str(WEB_APP_DIR),
            "STREAM_HEARTBEAT_SECONDS": "2",
        }
        self._name = name

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def inventory_url(self) -> str:
        return f"http://127.0.0.1:{self.inventory_port}"

    @property
    def gateway_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_metrics_port}/metrics"

    @property
    def worker_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.worker_metrics_port}/metrics"

    def _start(self, name: str, args: list[str], health_url: str, overrides: dict[str, str]) -> ServiceProcess:
        if name in self.processes:
            self.processes[name].stop()
        process = start_service(f"{self._name}-{name}", args, {**self.env, **overrides}, self.log_dir, health_url)
        self.processes[name] = process
        process.wait_healthy()
        return process

    def start_gateway(self, **overrides: str) -> ServiceProcess:
        """Start (or restart) the gateway and wait for ``/healthz``."""
        return self._start("gateway", ["stockzen_gateway"], f"{self.gateway_url}/healthz", overrides)

    def start_inventory(self, **overrides: str) -> ServiceProcess:
        """Start (or restart) the inventory service and wait for ``/healthz``."""
        return self._start("inventory", ["stockzen_inventory", "serve"], f"{self.inventory_url}/healthz", overrides)

    def start_worker(self, **overrides: str) -> ServiceProcess:
        """Start (or restart) the sync worker; wait for its metrics endpoint and its consumer."""
        process = self._start("worker", ["stockzen_sync_worker"], self.worker_metrics_url, overrides)
        deadline = time.monotonic() + 20
        first_node = self.amqp_url.split(",")[0]
        while queue_counts(first_node, self.queue)[1] < 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker never consumed {self.queue}:\n{process.log_tail()}")
            time.sleep(0.2)
        return process

    def start_all(self) -> Stack:
        self.start_inventory()
        self.start_worker()
        self.start_gateway()
        return self

    def stop_all(self) -> None:
        """Stop every process this stack started, and check none is left behind."""
        errors = []
        for process in reversed(list(self.processes.values())):
            try:
                process.stop()
            except AssertionError as exc:
                errors.append(str(exc))
        self.processes.clear()
        assert not errors, errors

    async def delete_queues(self) -> None:
        """Remove this stack's queues from the broker."""
        connection = await aio_pika.connect(self.services.amqp_url)
        async with connection:
            for name in (self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"):
                channel = await connection.channel()
                try:
                    await channel.queue_delete(name)
                finally:
                    await channel.close()


async def delete_redis_keys(redis_url: str, prefix: str) -> None:
    """Remove every key of this run."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        async for key in client.scan_iter(match=f"{prefix}*", count=500):
            await client.delete(key)
    finally:
        await client.aclose()


def queue_counts(amqp_url: str, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue, by a passive declare; (0, 0) when it does not exist yet.

    Blocking (pika): call it through ``asyncio.to_thread`` from async code.
    """
    with contextlib.suppress(pika.exceptions.AMQPError):
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        try:
            declared = connection.channel().queue_declare(queue, passive=True)
            return declared.method.message_count, declared.method.consumer_count
        finally:
            connection.close()
    return 0, 0


@asynccontextmanager
async def gateway_client(
    stack: Stack, tenant_id: uuid.UUID, user_id: str = "user-1"
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``stack``'s gateway, signed in as ``user_id`` of ``tenant_id``."""
    headers = {"Authorization": f"Bearer {user_token(tenant_id, user_id)}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=30) as client:
        yield client

"""Fixtures every test tier shares: the services for this run, a migrated test database, and the
services as real processes (one shared stack, or a test's own) for the end-to-end and security tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from stockzen_inventory.adapters.migrations import migrate, prepare_database
from stockzen_platform.postgres import create_pool
from tests.support.services import ServiceUrls, service_urls
from tests.support.stack import Stack, delete_redis_keys, gateway_client


@pytest.fixture(scope="session")
def services() -> Iterator[ServiceUrls]:
    """The Postgres, Redis and RabbitMQ this run talks to."""
    with service_urls() as urls:
        yield urls


@pytest.fixture(scope="session")
async def database(services: ServiceUrls) -> ServiceUrls:
    """The test database, created and migrated once per run (migrations are idempotent)."""
    await prepare_database(services.admin_server_url, services.app_url)
    await migrate(services.admin_server_url, services.app_url)
    return services


@pytest.fixture(scope="session")
async def app_pool(database: ServiceUrls) -> AsyncIterator[asyncpg.Pool]:
    """A pool connected as the application role, the way the services connect."""
    pool = await create_pool(database.app_url, max_size=12)
    yield pool
    await pool.close()


@pytest.fixture
async def admin(database: ServiceUrls) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the test database (for checks the application may not make)."""
    connection = await asyncpg.connect(database.admin_url)
    yield connection
    await connection.close()


@pytest.fixture
def tenant_id() -> uuid.UUID:
    """A fresh tenant per test: tests never share rows."""
    return uuid.uuid4()


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="session")
async def stack(database: ServiceUrls, log_dir: Path) -> AsyncIterator[Stack]:
    """One gateway, inventory and worker shared by the tests that do not break things."""
    shared = Stack(database, log_dir, name="shared")
    try:
        shared.start_all()
        yield shared
    finally:
        shared.stop_all()
        await shared.delete_queues()
        await delete_redis_keys(database.redis_url, database.redis_prefix)


@pytest.fixture
async def own_stack(database: ServiceUrls, log_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """A stack (not yet started) for a test that kills or cuts off its services."""
    private = Stack(database, log_dir, name=f"t{uuid.uuid4().hex[:8]}")
    try:
        yield private
    finally:
        private.stop_all()
        await private.delete_queues()


@pytest.fixture
async def gateway(stack: Stack, tenant_id: uuid.UUID) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the shared gateway, authenticated as a user of this test's tenant."""
    async with gateway_client(stack, tenant_id) as client:
        yield client

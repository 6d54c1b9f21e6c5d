"""Fixtures every test tier shares: the services for this run and a migrated test database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from stockzen_inventory.adapters.migrations import migrate, prepare_database
from stockzen_platform.postgres import create_pool
from tests.support.services import ServiceUrls, service_urls


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

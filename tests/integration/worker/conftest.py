"""The two kinds of harness the worker's scenarios run on (``tests/support/harness.py``), and the one
``harness`` fixture parametrised over both: a scenario that takes it runs in memory and on Postgres.

Modules that must run on one kind only override ``harness`` locally.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.support.harness import Harness, MemoryHarness, PostgresHarness
from tests.support.scratch_db import Scratch, scratch_database
from tests.support.services import ServiceUrls
from tests.support.stack import delete_redis_keys


@pytest.fixture
def memory_harness() -> MemoryHarness:
    """The in-memory ledger and result cache: no service needed."""
    return MemoryHarness()


@pytest.fixture
async def postgres_harness(
    app_pool: asyncpg.Pool, admin: asyncpg.Connection, database: ServiceUrls
) -> AsyncIterator[PostgresHarness]:
    """The worker's adapters on the test database and Redis, under a Redis key prefix of this test's own."""
    prefix = f"{database.redis_prefix}{uuid.uuid4().hex[:6]}:"
    client = aioredis.Redis.from_url(database.redis_url)
    yield PostgresHarness(app_pool, admin, client, database.redis_url, prefix)
    await client.aclose()
    await delete_redis_keys(database.redis_url, prefix)


@pytest.fixture(params=["memory", "postgres"])
def harness(request: pytest.FixtureRequest) -> Harness:
    """The in-memory fakes, then the worker's adapters on Postgres and Redis."""
    chosen: Harness = request.getfixturevalue(f"{request.param}_harness")
    return chosen


@pytest.fixture(scope="module")
async def admin_connection(database: ServiceUrls) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection shared by a module's property tests (one per example would be slow)."""
    connection = await asyncpg.connect(database.admin_url)
    yield connection
    await connection.close()


@pytest.fixture
async def scratch(database: ServiceUrls) -> AsyncIterator[Scratch]:
    """A database of this test's own, migrated, dropped afterwards (``tests/support/scratch_db.py``)."""
    async with scratch_database(database) as made:
        yield made

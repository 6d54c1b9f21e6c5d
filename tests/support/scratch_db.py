"""A database of a test's own: created, migrated (or migrated up to a version), and dropped after.

For tests that change what other tests share: drop partitions, move records back in time, run a
migration again while the shared stack's services write to the shared test database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from stockzen_inventory.adapters.migrations import Migration, bundled_migrations, migrate, prepare_database
from stockzen_platform.postgres import create_pool
from stockzen_sync_worker.adapters.inventory_database import PostgresInventoryDatabase
from stockzen_sync_worker.services import BatchOutcome, apply_sync_batch
from tests.support.harness import command
from tests.support.memory_inventory import MemoryResultCache
from tests.support.services import ServiceUrls

WINDOW = timedelta(days=30)  # TOMBSTONE_RETENTION_DAYS's default


@dataclass
class Scratch:
    """A freshly migrated database: the application role's pool, a superuser connection, and the
    worker's adapter on them with a cache that remembers nothing between batches."""

    pool: asyncpg.Pool
    admin: asyncpg.Connection
    admin_url: str
    database: PostgresInventoryDatabase
    cache: MemoryResultCache = field(default_factory=MemoryResultCache)


async def apply_on(scratch: Scratch, tenant: uuid.UUID, ops: list[dict[str, Any]]) -> BatchOutcome:
    """Apply ``ops`` as one new message; the cache is emptied first, so that Postgres answers."""
    scratch.cache.flush()
    return await apply_sync_batch(command(tenant, ops), uuid.uuid4().hex, scratch.database, scratch.cache)


def _on(url: str, name: str) -> str:
    """``url`` with its database name replaced by ``name``."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@asynccontextmanager
async def scratch_database(database: ServiceUrls, *, before: str | None = None) -> AsyncIterator[Scratch]:
    """A new database, migrated (only up to the migration ``before``, if given), dropped afterwards."""
    name = f"stockzen_scratch_{uuid.uuid4().hex[:10]}"
    app_url = _on(database.app_url, name)
    await prepare_database(database.admin_server_url, app_url)
    server = await asyncpg.connect(database.admin_server_url)
    try:
        if before is None:
            await migrate(database.admin_server_url, app_url)
        else:
            await run_migrations(_on(database.admin_url, name), [m for m in bundled_migrations() if m.version < before])
        pool = await create_pool(app_url, max_size=4)
        admin = await asyncpg.connect(_on(database.admin_url, name))
        try:
            yield Scratch(
                pool, admin, _on(database.admin_url, name), PostgresInventoryDatabase(pool, tombstone_retention=WINDOW)
            )
        finally:
            await admin.close()
            await pool.close()
    finally:
        await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await server.close()


async def run_migrations(admin_url: str, migrations: list[Migration]) -> None:
    """Run ``migrations`` as the owner role, each in its own transaction (as ``migrate`` does)."""
    connection = await asyncpg.connect(admin_url)
    try:
        for migration in migrations:
            async with connection.transaction():
                await connection.execute("SET LOCAL ROLE stockzen_owner")
                await connection.execute(migration.sql)
    finally:
        await connection.close()

"""What the worker's service-layer scenarios run against: a ledger and a result cache, in memory or real.

``tests/integration/worker/test_apply_batch.py`` runs every scenario on both kinds of harness (its
``harness`` fixture is parametrised over ``memory`` and ``postgres``); tests that only make sense for
one kind use :class:`MemoryHarness` or :class:`PostgresHarness` directly.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg
import redis.asyncio as aioredis

from stockzen_contracts import ApplySyncBatch, parse_operation
from stockzen_sync_worker.adapters.inventory_database import PostgresInventoryDatabase
from stockzen_sync_worker.adapters.result_cache import RedisResultCache
from stockzen_sync_worker.ports import InventoryDatabase, ResultCache
from stockzen_sync_worker.services import BatchOutcome, apply_sync_batch
from tests.support.db import stock_level
from tests.support.memory_inventory import MemoryInventoryDatabase, MemoryResultCache
from tests.support.stack import delete_redis_keys

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TOMBSTONE_RETENTION = timedelta(days=30)


class Harness(Protocol):
    """A ledger and a cache, and a way to look at what they hold."""

    @property
    def database(self) -> InventoryDatabase: ...

    @property
    def cache(self) -> ResultCache: ...

    async def product(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> dict[str, Any] | None: ...

    async def level(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> int | None: ...

    async def flush_cache(self) -> None: ...

    async def age_tombstone(self, tenant_id: uuid.UUID, product_id: uuid.UUID, age: timedelta) -> None:
        """Make a product's tombstone ``age`` old: past ``TOMBSTONE_RETENTION``, the tenant's next delete purges it."""
        ...


class MemoryHarness:
    """The in-memory ledger and result cache (``tests/support/memory_inventory.py``)."""

    def __init__(self) -> None:
        self.database = MemoryInventoryDatabase(TOMBSTONE_RETENTION)
        self.cache = MemoryResultCache()

    async def product(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> dict[str, Any] | None:
        data = self.database.tenants.get(tenant_id)
        return data.products.get(product_id) if data else None

    async def level(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> int | None:
        data = self.database.tenants.get(tenant_id)
        return data.levels.get(product_id) if data else None

    async def flush_cache(self) -> None:
        self.cache.flush()

    async def age_tombstone(self, tenant_id: uuid.UUID, product_id: uuid.UUID, age: timedelta) -> None:
        self.database.age_tombstone(tenant_id, product_id, age)


class PostgresHarness:
    """The worker's own adapters on the test database (as the application role) and Redis."""

    def __init__(
        self, pool: asyncpg.Pool, admin: asyncpg.Connection, client: aioredis.Redis, redis_url: str, prefix: str
    ) -> None:
        self.database = PostgresInventoryDatabase(pool, tombstone_retention=TOMBSTONE_RETENTION)
        self.cache = RedisResultCache(client, prefix=prefix, result_ttl_seconds=600)
        self.redis = client
        self._admin = admin
        self._redis_url = redis_url
        self.prefix = prefix

    async def product(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> dict[str, Any] | None:
        row = await self._admin.fetchrow(
            "SELECT *, deleted_at IS NOT NULL AS deleted FROM products WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            product_id,
        )
        return dict(row) if row else None

    async def level(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> int | None:
        return await stock_level(self._admin, tenant_id, product_id)

    async def flush_cache(self) -> None:
        await delete_redis_keys(self._redis_url, self.prefix)

    async def age_tombstone(self, tenant_id: uuid.UUID, product_id: uuid.UUID, age: timedelta) -> None:
        aged = await self._admin.execute(
            "UPDATE products SET deleted_at = now() - $3::interval "
            "WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NOT NULL",
            tenant_id,
            product_id,
            age,
        )
        assert aged == "UPDATE 1", "only a tombstone ages"


def command(tenant_id: uuid.UUID, ops: list[dict[str, Any]], *, received_at: datetime | None = None) -> ApplySyncBatch:
    """The batch the gateway would publish for ``ops``."""
    return ApplySyncBatch(
        request_id=uuid.uuid4().hex,
        tenant_id=tenant_id,
        user_id="u1",
        received_at=received_at or datetime.now(UTC),
        reply_to="reply:test",
        operations=[parse_operation(o) for o in ops],
    )


async def apply(
    harness: Harness,
    tenant_id: uuid.UUID,
    ops: list[dict[str, Any]],
    *,
    message_id: str | None = None,
    received_at: datetime | None = None,
) -> BatchOutcome:
    """Apply ``ops`` as one batch of the gateway's (a fresh message id unless given)."""
    batch = command(tenant_id, ops, received_at=received_at)
    return await apply_sync_batch(batch, message_id or uuid.uuid4().hex, harness.database, harness.cache)


def statuses(outcome: BatchOutcome) -> list[str]:
    """The status of each result, in order."""
    return [r.status.value for r in outcome.applied.results]

"""Writing one tenant's ledger with the sync worker's own adapter, for tests of the read side.

Each call is one worker transaction (holding the tenant's checkpoint counter until it commits),
so the rows, checkpoints and stock levels are exactly what the worker would leave.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from stockzen_contracts import ProductCreate, RecordStockMovement, parse_operation
from stockzen_sync_worker.adapters.inventory_database import PostgresInventoryDatabase
from stockzen_sync_worker.domain.lww import Version
from tests.support.ops import movement


def _version() -> Version:
    return Version(datetime.now(UTC), uuid.uuid4())


class TenantWriter:
    """Creates, edits and deletes products and records movements for one tenant."""

    def __init__(self, pool: asyncpg.Pool, tenant_id: uuid.UUID, *, retention: timedelta = timedelta(days=30)) -> None:
        self.tenant_id = tenant_id
        self._database = PostgresInventoryDatabase(pool, tombstone_retention=retention)

    async def create_product(self, name: str = "Mug", product_id: uuid.UUID | None = None, **fields: Any) -> uuid.UUID:
        """A new live product; returns its id."""
        product_id = product_id or uuid.uuid4()
        async with self._database.for_tenant(self.tenant_id) as tenant:
            changes = ProductCreate(name=name, **fields).changes()  # every field, as the worker creates
            await tenant.merge_product(product_id, changes, _version(), create=True)
        return product_id

    async def update_product(self, product_id: uuid.UUID, **fields: Any) -> None:
        """Change some fields (a later version: it wins)."""
        async with self._database.for_tenant(self.tenant_id) as tenant:
            await tenant.merge_product(product_id, fields, _version(), create=False)

    async def delete_product(self, product_id: uuid.UUID) -> None:
        """Leave a tombstone."""
        async with self._database.for_tenant(self.tenant_id) as tenant:
            await tenant.delete_product(product_id, _version())

    async def purge_expired_tombstones(self) -> None:
        """What the worker does after a batch with a delete."""
        async with self._database.for_tenant(self.tenant_id) as tenant:
            await tenant.purge_expired_tombstones()

    async def record_movement(
        self, product_id: uuid.UUID, kind: str = "entry", quantity: int = 1, occurred_at: datetime | None = None
    ) -> uuid.UUID:
        """Append a movement; returns its id."""
        raw = movement(self.tenant_id, product_id, kind, quantity)
        operation = parse_operation(raw)
        assert isinstance(operation, RecordStockMovement)
        async with self._database.for_tenant(self.tenant_id) as tenant:
            await tenant.record_movement(operation, occurred_at or datetime.now(UTC))
        return operation.entity_id

    async def checkpoint(self) -> int:
        """The tenant's last checkpoint."""
        return await self._database.read_checkpoint(self.tenant_id)

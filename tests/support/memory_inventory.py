"""In-memory stand-ins for the worker's ledger and result cache, following the same rules.

They let the service layer run without I/O; ``tests/integration/worker/test_apply_batch.py`` runs
each scenario on them and on Postgres and Redis, which keeps the two honest.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from stockzen_contracts import ItemResult, Operation, ProductState, RecordStockMovement, SyncBatchApplied
from stockzen_contracts.payloads import PRODUCT_FIELDS, StockMovementState
from stockzen_sync_worker.domain.lww import Version, winning_fields
from stockzen_sync_worker.domain.outcomes import (
    Effect,
    MissingEntity,
    MovementRecorded,
    ProductDeleted,
    ProductMerged,
    ProductWasDeleted,
    RefusedByRule,
    StoredResult,
    UnknownProduct,
)
from stockzen_sync_worker.ports import MovementToRecord, ProductDecision, ProductWrite, WriteRefused

MAX_NAME = 200  # the database's CHECK constraints, which a real ledger enforces
MAX_REASON = 500
TOMBSTONE_RETENTION = timedelta(days=30)  # the worker's default (TOMBSTONE_RETENTION_DAYS)


@dataclass(frozen=True)
class PurgedProduct:
    """A product whose tombstone was purged (``purged_products``): the tombstone's time and checkpoint."""

    modified_at: datetime
    checkpoint: int


@dataclass
class TenantData:
    checkpoint: int = 0
    products: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    movements: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    levels: dict[UUID, int] = field(default_factory=dict)
    applied: dict[UUID, StoredResult] = field(default_factory=dict)
    purged: dict[UUID, PurgedProduct] = field(default_factory=dict)
    feed_horizon: int = 0


class MemoryTenantTransaction:
    """One tenant's 'transaction' over a copy of its data, swapped in on commit."""

    def __init__(self, data: TenantData, purges: list[int], retention: timedelta = TOMBSTONE_RETENTION) -> None:
        self.data = data
        self._purges = purges
        self._retention = retention

    async def stored_results(self, operation_ids: Sequence[UUID]) -> dict[UUID, StoredResult]:
        return {op: self.data.applied[op] for op in operation_ids if op in self.data.applied}

    @asynccontextmanager
    async def refusals(self) -> AsyncIterator[None]:
        yield  # its writes refuse with WriteRefused already

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        saved = copy.deepcopy(self.data)
        try:
            yield
        except BaseException:  # like a savepoint, whatever leaves the block undoes its work
            self.data.__dict__.update(saved.__dict__)
            raise

    def _next(self) -> int:
        self.data.checkpoint += 1
        return self.data.checkpoint

    def _state(self, row: dict[str, Any]) -> ProductState:
        fields = {f: row.get(f) for f in PRODUCT_FIELDS}
        fields["archived"] = bool(fields["archived"])
        return ProductState.model_validate(
            {
                **fields,
                "id": row["id"],
                "deleted": row["deleted"],
                "modified_at": row["modified_at"],
                "checkpoint": str(row["checkpoint"]),
            }
        )

    def _purged_state(self, product_id: UUID) -> ProductState:
        """A purged product as a late create's answer shows it: a tombstone with no fields."""
        purged = self.data.purged[product_id]
        row = {"id": product_id, "deleted": True, "modified_at": purged.modified_at, "checkpoint": purged.checkpoint}
        return self._state(row)

    async def merge_product(
        self, product_id: UUID, changes: dict[str, Any], version: Version, *, create: bool
    ) -> Effect:
        if len(changes.get("name") or "") > MAX_NAME:
            raise WriteRefused("value too long for name")
        row = self.data.products.get(product_id)
        if row is None and product_id in self.data.purged:
            # Its tombstone was purged: a late create meets it as a tombstone, an edit is refused for good.
            if create:
                return ProductWasDeleted(self._purged_state(product_id))
            return MissingEntity(f"product {product_id} was deleted")
        if row is None:
            if not create:
                return UnknownProduct(product_id)
            row = {
                "id": product_id,
                "deleted": False,
                "versions": {},
                "modified_at": version.modified_at,
                "archived": False,
            }
            self.data.products[product_id] = row
        elif row["deleted"]:
            return ProductWasDeleted(self._state(row))
        won = winning_fields(version, list(changes), row["versions"])
        if won:
            for name in won:
                row[name] = changes[name]
                row["versions"][name] = version.encode()
            row["modified_at"] = max(row["modified_at"], version.modified_at)
            row["checkpoint"] = self._next()
        return ProductMerged(self._state(row), tuple(changes), tuple(won))

    async def write_products(self, writes: Sequence[ProductWrite]) -> list[Effect]:
        effects: list[Effect] = []
        for write in writes:
            if write.kind == "delete":
                effects.append(await self.delete_product(write.product_id, write.version))
            else:
                create = write.kind == "create"
                effects.append(await self.merge_product(write.product_id, write.changes, write.version, create=create))
        return effects

    async def delete_product(self, product_id: UUID, version: Version) -> Effect:
        if product_id not in self.data.products and product_id in self.data.purged:
            return ProductDeleted(self._purged_state(product_id))  # deleted long ago: nothing changes
        row = self.data.products.setdefault(
            product_id,
            {"id": product_id, "deleted": False, "versions": {}, "modified_at": version.modified_at, "archived": False},
        )
        if not row["deleted"]:
            row.update(
                deleted=True,
                deleted_at=now(),
                checkpoint=self._next(),
                modified_at=max(row["modified_at"], version.modified_at),
            )
        return ProductDeleted(self._state(row))

    async def record_movement(self, operation: RecordStockMovement, occurred_at: datetime) -> Effect:
        payload = operation.payload
        if len(payload.reason or "") > MAX_REASON:
            raise WriteRefused("value too long for reason")
        product = self.data.products.get(payload.product_id)
        if operation.entity_id in self.data.movements:
            return RefusedByRule(f"stock movement {operation.entity_id} was already recorded by another operation")
        if product is None and payload.product_id in self.data.purged:
            return MissingEntity(f"product {payload.product_id} was deleted")
        if product is None:
            return UnknownProduct(payload.product_id)
        if product["deleted"]:
            return MissingEntity(f"product {payload.product_id} was deleted")
        checkpoint = self._next()
        state = StockMovementState(
            id=operation.entity_id,
            product_id=payload.product_id,
            kind=payload.kind,
            quantity=payload.quantity,
            reason=payload.reason,
            occurred_at=occurred_at,
            checkpoint=str(checkpoint),
        )
        self.data.movements[operation.entity_id] = {"operation_id": operation.operation_id, "state": state}
        sign = 1 if payload.kind.value == "entry" else -1
        self.data.levels[payload.product_id] = self.data.levels.get(payload.product_id, 0) + sign * payload.quantity
        return MovementRecorded(checkpoint)

    async def record_movements(self, movements: Sequence[MovementToRecord]) -> list[Effect]:
        effects: list[Effect] = []
        for m in movements:
            with self._product_as_left_by(m.operation.payload.product_id, m.after):
                effects.append(await self.record_movement(m.operation, m.occurred_at))
        return effects

    @contextmanager
    def _product_as_left_by(self, product_id: UUID, after: ProductDecision | None) -> Iterator[None]:
        """While recording a movement, its product as the creates and deletes before it in its batch
        left it (see MovementToRecord: the batch's product writes come after its movements)."""
        row = self.data.products.get(product_id)
        if after is None or (after == "create" and (row is not None or product_id in self.data.purged)):
            yield  # a create keeps a row (or a purged tombstone) as it is
            return
        self.data.products[product_id] = {"deleted": after == "delete"}  # stands in for that row
        try:
            yield
        finally:
            if row is None:
                del self.data.products[product_id]
            else:
                self.data.products[product_id] = row

    async def remember(self, operation: Operation, message_id: str, result: ItemResult, fingerprint: str) -> None:
        assert operation.operation_id not in self.data.applied, "applied_operations is unique per tenant"
        self.data.applied[operation.operation_id] = StoredResult(message_id, result, fingerprint)

    async def remember_all(self, entries: Sequence[tuple[Operation, ItemResult, str]], message_id: str) -> None:
        for operation, result, fingerprint in entries:
            await self.remember(operation, message_id, result, fingerprint)

    async def purge_expired_tombstones(self) -> None:
        """Tombstones older than the retention window go; their ids are kept in ``purged``, and the
        feed horizon moves past them (as ``_PURGE_TOMBSTONES`` does in Postgres)."""
        self._purges.append(self.data.checkpoint)
        expired = [
            product_id
            for product_id, row in self.data.products.items()
            if row["deleted"] and row.get("deleted_at", now()) < now() - self._retention
        ]
        for product_id in expired:
            row = self.data.products.pop(product_id)
            self.data.purged.setdefault(product_id, PurgedProduct(row["modified_at"], row["checkpoint"]))
            self.data.feed_horizon = max(self.data.feed_horizon, row["checkpoint"])

    async def product_states(self, product_ids: Sequence[UUID]) -> dict[UUID, ProductState]:
        states = {}
        for product_id in product_ids:
            row = self.data.products.get(product_id)
            if row is not None:
                states[product_id] = self._state(row)
            elif product_id in self.data.purged:
                states[product_id] = self._purged_state(product_id)
        return states

    async def checkpoint(self) -> int:
        return self.data.checkpoint


class MemoryInventoryDatabase:
    """Tenants' data in dicts; a transaction works on a copy and commits by swapping it in."""

    def __init__(self, tombstone_retention: timedelta = TOMBSTONE_RETENTION) -> None:
        self.tenants: dict[UUID, TenantData] = {}
        self.transactions = 0
        self.purges: list[int] = []
        self.retention = tombstone_retention

    @asynccontextmanager
    async def for_tenant(self, tenant_id: UUID) -> AsyncIterator[MemoryTenantTransaction]:
        self.transactions += 1
        working = copy.deepcopy(self.tenants.get(tenant_id, TenantData()))
        yield MemoryTenantTransaction(working, self.purges, self.retention)
        self.tenants[tenant_id] = working

    def age_tombstone(self, tenant_id: UUID, product_id: UUID, age: timedelta) -> None:
        """Make a product's tombstone ``age`` old (a test's way to let time pass; the next delete purges it
        once it is past the retention window)."""
        row = self.tenants[tenant_id].products[product_id]
        assert row["deleted"], "only a tombstone ages"
        row["deleted_at"] = now() - age

    async def read_checkpoint(self, tenant_id: UUID) -> int:
        return self.tenants.get(tenant_id, TenantData()).checkpoint

    async def product_states(self, tenant_id: UUID, product_ids: Sequence[UUID]) -> dict[UUID, ProductState]:
        reader = MemoryTenantTransaction(self.tenants.get(tenant_id, TenantData()), [], self.retention)
        return await reader.product_states(product_ids)


class MemoryResultCache:
    """A dict instead of Redis."""

    def __init__(self) -> None:
        self.results: dict[tuple[UUID, UUID], StoredResult] = {}
        self.checkpoints: dict[UUID, int] = {}
        self.replies: dict[str, list[SyncBatchApplied]] = {}

    async def lookup(
        self, tenant_id: UUID, operation_ids: Sequence[UUID]
    ) -> tuple[dict[UUID, StoredResult], int | None]:
        found = {op: self.results[(tenant_id, op)] for op in operation_ids if (tenant_id, op) in self.results}
        return found, self.checkpoints.get(tenant_id)

    async def deliver(
        self,
        tenant_id: UUID,
        results: dict[UUID, StoredResult],
        checkpoint: int,
        reply_to: str,
        applied: SyncBatchApplied,
    ) -> None:
        for op, stored in results.items():
            self.results[(tenant_id, op)] = stored
        self.checkpoints[tenant_id] = max(checkpoint, self.checkpoints.get(tenant_id, 0))
        self.replies.setdefault(reply_to, []).append(applied)

    def flush(self) -> None:
        self.results.clear()
        self.checkpoints.clear()


def now() -> datetime:
    return datetime.now(UTC)

"""The inventory database in Postgres, as the worker writes it (products, the stock ledger, applied operations).

Every statement runs in a tenant-scoped transaction under row-level security. The transaction
first takes the tenant's row in ``tenants`` (creating the tenant on first use): that lock orders
all writers of one tenant, which is what makes checkpoints follow commit order and makes a
concurrent second delivery of an operation see the first one's ``applied_operations`` row. Its
start, the tenant setting and that lock go to Postgres in one round trip (:data:`_TAKE_TENANT`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from stockzen_contracts import ItemResult, Operation, ProductState, RecordStockMovement
from stockzen_platform.postgres import PooledConnection, tenant_transaction, tenant_transaction_in_one_round_trip
from stockzen_sync_worker.domain.lww import WRITE_PRODUCTS_SQL, Version
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
from stockzen_sync_worker.ports import (
    MovementToRecord,
    ProductDecision,
    ProductWrite,
    ProductWriteKind,
    WriteRefused,
)

log = logging.getLogger(__name__)

# Provision the tenant on first use and take its counter row until commit. Sent with the transaction's
# start, so it names the tenant by the setting just made rather than by a parameter.
_TAKE_TENANT = """
    INSERT INTO tenants (tenant_id) VALUES (app_current_tenant())
    ON CONFLICT (tenant_id) DO UPDATE SET last_checkpoint = tenants.last_checkpoint
"""

_RECORD_MOVEMENT = """
    INSERT INTO stock_movements
        (tenant_id, id, operation_id, product_id, kind, quantity, reason, occurred_at, checkpoint)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, next_checkpoint()
    WHERE EXISTS (SELECT 1 FROM products WHERE tenant_id = $1 AND id = $4 AND deleted_at IS NULL)
      -- a taken id is left out before it takes a checkpoint (the conflict clause would come after)
      AND NOT EXISTS (SELECT 1 FROM stock_movements WHERE tenant_id = $1 AND id = $2)
    ON CONFLICT (tenant_id, id) DO NOTHING
    RETURNING checkpoint
"""
# Movements in one statement: those whose product is live (as the batch found it, changed by
# what the creates and deletes before each movement in its request decided, see MovementToRecord) and whose id is new are inserted with
# checkpoints reserved once, contiguous and in request order (the tenant's row is held by this
# transaction); the second of two movements with one id, and the others, are left out and
# explained one by one.
_RECORD_MOVEMENTS = """
    WITH input AS (
        SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::bigint[], $7::text[],
                             $8::timestamptz[], $9::text[])
            WITH ORDINALITY AS i (id, operation_id, product_id, kind, quantity, reason, occurred_at, after,
                                  position)),
    live AS (
        SELECT input.*, row_number() OVER (PARTITION BY input.id ORDER BY position) AS nth FROM input
        WHERE CASE input.after
                WHEN 'delete' THEN false
                WHEN 'create' THEN NOT EXISTS (
                    SELECT 1 FROM products p
                    WHERE p.tenant_id = $1 AND p.id = input.product_id AND p.deleted_at IS NOT NULL)
                  AND NOT EXISTS (
                    SELECT 1 FROM purged_products g WHERE g.tenant_id = $1 AND g.product_id = input.product_id)
                ELSE EXISTS (
                    SELECT 1 FROM products p
                    WHERE p.tenant_id = $1 AND p.id = input.product_id AND p.deleted_at IS NULL)
              END
          AND NOT EXISTS (SELECT 1 FROM stock_movements m WHERE m.tenant_id = $1 AND m.id = input.id)),
    accepted AS (
        SELECT live.*, row_number() OVER (ORDER BY position) AS n FROM live WHERE nth = 1),
    reserved AS (
        UPDATE tenants SET last_checkpoint = last_checkpoint + (SELECT count(*) FROM accepted)
        WHERE tenant_id = $1
        RETURNING last_checkpoint - (SELECT count(*) FROM accepted) AS base)
    INSERT INTO stock_movements
        (tenant_id, id, operation_id, product_id, kind, quantity, reason, occurred_at, checkpoint)
    SELECT $1, a.id, a.operation_id, a.product_id, a.kind, a.quantity, a.reason, a.occurred_at, reserved.base + a.n
    FROM accepted AS a, reserved
    RETURNING operation_id, checkpoint
"""
# One primary-key lookup per operation id. The plain ``tenant_id = $1 AND operation_id = ANY($2)``
# let the planner, which estimates a tenant newer than its statistics at a handful of rows, scan all
# of the tenant's records and filter them: a cost that grew with every batch the tenant had sent.
# ``LIMIT 1`` keeps the lateral lookup from being flattened into a join it could plan the same way.
STORED_RESULTS_SQL = """
    SELECT a.operation_id, a.message_id, a.result, a.fingerprint
    FROM unnest($2::uuid[]) AS wanted (operation_id)
    CROSS JOIN LATERAL (
        SELECT operation_id, message_id, result, fingerprint FROM applied_operations
        WHERE tenant_id = $1 AND operation_id = wanted.operation_id
        LIMIT 1
    ) AS a
"""
_REMEMBER_ALL = """
    INSERT INTO applied_operations (tenant_id, operation_id, message_id, entity_type, entity_id, result, fingerprint)
    SELECT $1, operation_id, $2, entity_type, entity_id, result::jsonb, fingerprint
    FROM unnest($3::uuid[], $4::text[], $5::uuid[], $6::text[], $7::text[])
        AS r (operation_id, entity_type, entity_id, result, fingerprint)
"""
# Expired tombstones leave products and their ids go to purged_products, in one statement: a late
# change for one of them still gets a final answer (see WRITE_PRODUCTS_SQL and _not_recorded).
_PURGE_TOMBSTONES = """
    WITH purged AS (
        DELETE FROM products
        WHERE tenant_id = $1 AND deleted_at IS NOT NULL AND deleted_at < now() - $2::interval
        RETURNING id, modified_at, checkpoint),
    remembered AS (
        INSERT INTO purged_products (tenant_id, product_id, modified_at, checkpoint)
        SELECT $1, id, modified_at, checkpoint FROM purged
        ON CONFLICT (tenant_id, product_id) DO NOTHING)
    UPDATE tenants SET feed_horizon = GREATEST(feed_horizon, (SELECT max(checkpoint) FROM purged))
    WHERE tenant_id = $1 AND EXISTS (SELECT 1 FROM purged)
"""
# Weekly partitions of applied_operations made ahead and those past the window dropped, in its own
# short transaction (never a tenant's: dropping takes the table's lock for a moment). Runs as the
# table's owner inside the function; see migration 0007.
_MAINTAIN_RECORDS = "SELECT applied_operations_maintain($1::interval)"
RECORDS_MAINTENANCE_SECONDS = 3600.0
# The products as they stand now; one whose tombstone was purged as a tombstone with no fields.
_PRODUCT_STATES = """
    SELECT id, name, sku, barcode, unit, price_cents, low_stock_threshold, archived,
           deleted_at IS NOT NULL AS deleted, modified_at, checkpoint
    FROM products WHERE tenant_id = $1 AND id = ANY($2::uuid[])
    UNION ALL
    SELECT g.product_id, NULL, NULL, NULL, NULL, NULL, NULL, false, true, g.modified_at, g.checkpoint
    FROM purged_products AS g
    WHERE g.tenant_id = $1 AND g.product_id = ANY($2::uuid[])
      AND NOT EXISTS (SELECT 1 FROM products AS p WHERE p.tenant_id = $1 AND p.id = g.product_id)
"""
_PRODUCT_EVER_SEEN = """
    SELECT EXISTS (SELECT 1 FROM products WHERE tenant_id = $1 AND id = $2)
        OR EXISTS (SELECT 1 FROM purged_products WHERE tenant_id = $1 AND product_id = $2)
"""


def _product_effect(write: ProductWrite, row: asyncpg.Record) -> Effect:
    """What one write did, from its row of :data:`WRITE_PRODUCTS_SQL`."""
    requested = tuple(write.changes)
    match row["outcome"]:
        case "unknown":
            return UnknownProduct(write.product_id)
        case "was_deleted":
            return ProductWasDeleted(_product_state(row))
        case "deleted":
            return ProductDeleted(_product_state(row))
        case "purged":
            return MissingEntity(f"product {write.product_id} was deleted")
    won = set(row["won"])
    return ProductMerged(_product_state(row), requested, tuple(f for f in requested if f in won))


def _product_state(row: asyncpg.Record) -> ProductState:
    data = dict(row)
    data.pop("won", None)
    data.pop("outcome", None)
    data["checkpoint"] = str(data["checkpoint"])
    return ProductState.model_validate(data)


def _id_taken(operation: RecordStockMovement) -> Effect:
    return RefusedByRule(f"stock movement {operation.entity_id} was already recorded by another operation")


class PostgresTenantTransaction:
    """One tenant's open transaction (see :class:`~stockzen_sync_worker.ports.TenantTransaction`)."""

    def __init__(self, connection: PooledConnection, tenant_id: UUID, tombstone_retention: timedelta) -> None:
        self._db = connection
        self._tenant = tenant_id
        self._retention = tombstone_retention
        self._savepoints = 0

    async def stored_results(self, operation_ids: Sequence[UUID]) -> dict[UUID, StoredResult]:
        rows = await self._db.fetch(
            STORED_RESULTS_SQL,
            self._tenant,
            list(operation_ids),
        )
        return {
            r["operation_id"]: StoredResult(r["message_id"], ItemResult.model_validate(r["result"]), r["fingerprint"])
            for r in rows
        }

    @asynccontextmanager
    async def refusals(self) -> AsyncIterator[None]:
        try:
            yield
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            raise WriteRefused(exc.args[0] if exc.args else type(exc).__name__) from exc

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        # Named by hand: asyncpg makes savepoints only in transactions it started itself.
        self._savepoints += 1
        name = f"item_{self._savepoints}"
        async with self.refusals():
            await self._db.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                if not self._db.is_closed():
                    await self._db.execute(f"ROLLBACK TO SAVEPOINT {name}")
                raise
            await self._db.execute(f"RELEASE SAVEPOINT {name}")

    async def write_products(self, writes: Sequence[ProductWrite]) -> list[Effect]:
        if not writes:
            return []
        rows = await self._db.fetch(
            WRITE_PRODUCTS_SQL,
            self._tenant,
            [w.kind for w in writes],
            [w.product_id for w in writes],
            [json.dumps(w.changes) for w in writes],
            [w.version.encode() for w in writes],
            [w.version.modified_at for w in writes],
            [w.version.operation_id for w in writes],
        )
        return [_product_effect(write, row) for write, row in zip(writes, rows, strict=True)]

    async def merge_product(
        self, product_id: UUID, changes: dict[str, Any], version: Version, *, create: bool
    ) -> Effect:
        """Create or edit one product (:meth:`write_products` for one write)."""
        kind: ProductWriteKind = "create" if create else "update"
        return (await self.write_products([ProductWrite(kind, product_id, changes, version)]))[0]

    async def delete_product(self, product_id: UUID, version: Version) -> Effect:
        """Delete one product (:meth:`write_products` for one write)."""
        return (await self.write_products([ProductWrite("delete", product_id, {}, version)]))[0]

    async def record_movement(self, operation: RecordStockMovement, occurred_at: datetime) -> Effect:
        movement = operation.payload
        checkpoint = await self._db.fetchval(
            _RECORD_MOVEMENT,
            self._tenant,
            operation.entity_id,
            operation.operation_id,
            movement.product_id,
            movement.kind.value,
            movement.quantity,
            movement.reason,
            occurred_at,
        )
        if checkpoint is not None:
            return MovementRecorded(checkpoint)
        return await self._not_recorded(operation)

    async def _not_recorded(
        self, operation: RecordStockMovement, after: ProductDecision | None = None, *, id_was_free: bool = False
    ) -> Effect:
        """Why a movement was not recorded: its id taken, its product deleted (before the batch or
        earlier in it, its tombstone kept or purged since), or never seen. ``id_was_free``: its id
        was free at its place in the request (only a later movement of the same statement took it)."""
        movement = operation.payload
        if not id_was_free:
            holder = await self._db.fetchrow(
                "SELECT operation_id, checkpoint FROM stock_movements WHERE tenant_id = $1 AND id = $2",
                self._tenant,
                operation.entity_id,
            )
            if holder is not None and holder["operation_id"] == operation.operation_id:
                # This very operation, recorded before its applied_operations record was dropped
                # (past the window, see migration 0007): the ledger remembers it for good.
                return MovementRecorded(holder["checkpoint"])
            if holder is not None:
                return _id_taken(operation)
        if after is not None or await self._db.fetchval(_PRODUCT_EVER_SEEN, self._tenant, movement.product_id):
            return MissingEntity(f"product {movement.product_id} was deleted")
        return UnknownProduct(movement.product_id)

    async def record_movements(self, movements: Sequence[MovementToRecord]) -> list[Effect]:
        if not movements:
            return []
        payloads = [m.operation.payload for m in movements]
        rows = await self._db.fetch(
            _RECORD_MOVEMENTS,
            self._tenant,
            [m.operation.entity_id for m in movements],
            [m.operation.operation_id for m in movements],
            [p.product_id for p in payloads],
            [p.kind.value for p in payloads],
            [p.quantity for p in payloads],
            [p.reason for p in payloads],
            [m.occurred_at for m in movements],
            [m.after for m in movements],
        )
        recorded: dict[UUID, int] = {row["operation_id"]: row["checkpoint"] for row in rows}
        # Where each movement id taken by this statement was taken, to explain the others in order.
        taken_at = {m.operation.entity_id: i for i, m in enumerate(movements) if m.operation.operation_id in recorded}
        effects: list[Effect] = []
        for i, m in enumerate(movements):
            checkpoint = recorded.get(m.operation.operation_id)
            taken = taken_at.get(m.operation.entity_id)
            if checkpoint is not None:
                effects.append(MovementRecorded(checkpoint))
            elif taken is not None and taken < i:
                effects.append(_id_taken(m.operation))
            else:
                effects.append(await self._not_recorded(m.operation, m.after, id_was_free=taken is not None))
        return effects

    async def remember(self, operation: Operation, message_id: str, result: ItemResult, fingerprint: str) -> None:
        await self._db.execute(
            "INSERT INTO applied_operations "
            "(tenant_id, operation_id, message_id, entity_type, entity_id, result, fingerprint) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            self._tenant,
            operation.operation_id,
            message_id,
            operation.entity_type.value,
            operation.entity_id,
            result.to_wire(),
            fingerprint,
        )

    async def remember_all(self, entries: Sequence[tuple[Operation, ItemResult, str]], message_id: str) -> None:
        if not entries:
            return
        await self._db.execute(
            _REMEMBER_ALL,
            self._tenant,
            message_id,
            [op.operation_id for op, _, _ in entries],
            [op.entity_type.value for op, _, _ in entries],
            [op.entity_id for op, _, _ in entries],
            [result.wire_json() for _, result, _ in entries],  # encoded from plain values, no model round trip
            [fingerprint for _, _, fingerprint in entries],
        )

    async def purge_expired_tombstones(self) -> None:
        await self._db.execute(_PURGE_TOMBSTONES, self._tenant, self._retention)

    async def product_states(self, product_ids: Sequence[UUID]) -> dict[UUID, ProductState]:
        return await _product_states(self._db, self._tenant, product_ids)

    async def checkpoint(self) -> int:
        value: int = await self._db.fetchval("SELECT last_checkpoint FROM tenants WHERE tenant_id = $1", self._tenant)
        return value


class PostgresInventoryDatabase:
    """Opens tenant transactions on the pool (see :class:`~stockzen_sync_worker.ports.InventoryDatabase`),
    and keeps ``applied_operations`` bounded (:meth:`keep_records_bounded`)."""

    def __init__(self, pool: asyncpg.Pool, *, tombstone_retention: timedelta) -> None:
        self._pool = pool
        self._retention = tombstone_retention

    @asynccontextmanager
    async def for_tenant(self, tenant_id: UUID) -> AsyncIterator[PostgresTenantTransaction]:
        async with tenant_transaction_in_one_round_trip(self._pool, tenant_id, then=_TAKE_TENANT) as connection:
            yield PostgresTenantTransaction(connection, tenant_id, self._retention)

    async def drop_expired_records(self) -> list[str]:
        """Create the coming weeks' partitions of ``applied_operations`` and drop those whose every
        record is older than the tombstone retention (see migration 0007); returns what it did."""
        rows = await self._pool.fetch(_MAINTAIN_RECORDS, self._retention)
        return [row[0] for row in rows]

    async def keep_records_bounded(self, every_seconds: float = RECORDS_MAINTENANCE_SECONDS) -> None:
        """Run :meth:`drop_expired_records` now and every ``every_seconds`` until cancelled; a failed
        run is logged and tried again next time (partitions are made two weeks ahead)."""
        while True:
            try:
                done = await self.drop_expired_records()
                if done:
                    log.info("applied_operations maintained", extra={"changes": done})
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("applied_operations maintenance failed; trying again later", extra={"error": str(exc)})
            await asyncio.sleep(every_seconds)

    async def read_checkpoint(self, tenant_id: UUID) -> int:
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as connection:
            value = await connection.fetchval("SELECT last_checkpoint FROM tenants WHERE tenant_id = $1", tenant_id)
        return int(value or 0)

    async def product_states(self, tenant_id: UUID, product_ids: Sequence[UUID]) -> dict[UUID, ProductState]:
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as connection:
            return await _product_states(connection, tenant_id, product_ids)


async def _product_states(
    connection: PooledConnection, tenant_id: UUID, product_ids: Sequence[UUID]
) -> dict[UUID, ProductState]:
    rows = await connection.fetch(_PRODUCT_STATES, tenant_id, list(product_ids))
    return {row["id"]: _product_state(row) for row in rows}

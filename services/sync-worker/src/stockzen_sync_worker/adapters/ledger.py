"""The inventory ledger in Postgres, as the worker writes it.

Every statement runs in a tenant-scoped transaction under row-level security. The transaction
first takes the tenant's row in ``tenants`` (creating the tenant on first use): that lock orders
all writers of one tenant, which is what makes checkpoints follow commit order and makes a
concurrent second delivery of an operation see the first one's ``applied_operations`` row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from stockzen_contracts import ItemResult, Operation, ProductState, RecordStockMovement
from stockzen_contracts.payloads import PRODUCT_FIELDS, StockMovementState
from stockzen_platform.postgres import PooledConnection, tenant_transaction
from stockzen_sync_worker.domain.lww import Version
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
from stockzen_sync_worker.ports import LedgerRefused

_COLUMN_TYPES = {
    "name": "text",
    "sku": "text",
    "barcode": "text",
    "unit": "text",
    "price_cents": "bigint",
    "low_stock_threshold": "bigint",
    "archived": "boolean",
}
assert tuple(_COLUMN_TYPES) == PRODUCT_FIELDS

_STATE = (
    "id, name, sku, barcode, unit, price_cents, low_stock_threshold, archived, "
    "deleted_at IS NOT NULL AS deleted, modified_at, checkpoint"
)


def _wins(field_sql: str) -> str:
    # $4 is the incoming version; versions compare as bytes ("C"), i.e. by time, then operation id.
    return f'$4::text COLLATE "C" > COALESCE(products.field_versions ->> {field_sql}, \'\') COLLATE "C"'


def _merge_sql() -> str:
    """One UPDATE in which Postgres settles last-writer-wins field by field."""
    sets = [
        f"{column} = CASE WHEN $3::jsonb ? '{column}' AND {_wins(repr(column))} "
        f"THEN ($3::jsonb ->> '{column}')::{pg_type} ELSE {column} END"
        for column, pg_type in _COLUMN_TYPES.items()
    ]
    any_wins = f"EXISTS (SELECT 1 FROM jsonb_object_keys($3::jsonb) AS k WHERE {_wins('k')})"
    return f"""
        UPDATE products SET
            {", ".join(sets)},
            field_versions = products.field_versions || (
                SELECT COALESCE(jsonb_object_agg(k, $4::text), '{{}}'::jsonb)
                FROM jsonb_object_keys($3::jsonb) AS k WHERE {_wins("k")}),
            modified_at = GREATEST(products.modified_at, $5),
            checkpoint = next_checkpoint()
        WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL AND {any_wins}
        RETURNING {_STATE},
            ARRAY(SELECT k FROM jsonb_object_keys($3::jsonb) AS k
                  WHERE products.field_versions ->> k = $4::text) AS won
    """


# Each write is one statement that does nothing when it does not apply; only then does the
# adapter read the row to say why. No product row lock is needed: the tenant's row is held.
_MERGE = _merge_sql()
_ABSENT = "NOT EXISTS (SELECT 1 FROM products WHERE tenant_id = $1 AND id = $2)"
_CREATE = f"""
    INSERT INTO products (tenant_id, id, {", ".join(PRODUCT_FIELDS)}, field_versions, modified_at, checkpoint)
    SELECT $1, $2, {", ".join(f"${i}::{t}" for i, t in enumerate(_COLUMN_TYPES.values(), start=3))},
           ${3 + len(PRODUCT_FIELDS)}::jsonb, ${4 + len(PRODUCT_FIELDS)}::timestamptz, next_checkpoint()
    WHERE {_ABSENT}
    RETURNING {_STATE}
"""
_CURRENT = f"SELECT {_STATE} FROM products WHERE tenant_id = $1 AND id = $2"
_TOMBSTONE = f"""
    UPDATE products SET deleted_at = now(), deleted_by = $4,
        modified_at = GREATEST(modified_at, $3), checkpoint = next_checkpoint()
    WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
    RETURNING {_STATE}
"""
_TOMBSTONE_NEW = f"""
    INSERT INTO products (tenant_id, id, modified_at, deleted_at, deleted_by, checkpoint)
    SELECT $1, $2, $3::timestamptz, now(), $4::uuid, next_checkpoint()
    WHERE {_ABSENT}
    RETURNING {_STATE}
"""
_RECORD_MOVEMENT = """
    INSERT INTO stock_movements
        (tenant_id, id, operation_id, product_id, kind, quantity, reason, occurred_at, checkpoint)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, next_checkpoint()
    WHERE EXISTS (SELECT 1 FROM products WHERE tenant_id = $1 AND id = $4 AND deleted_at IS NULL)
    ON CONFLICT (tenant_id, id) DO NOTHING
    RETURNING id, product_id, kind, quantity, reason, occurred_at, checkpoint
"""
# A run of movements in one statement: those whose product is live and whose id is new are
# inserted with checkpoints reserved once, contiguous and in request order (the tenant's row is
# held by this transaction); the others are left out and explained one by one.
_RECORD_MOVEMENTS = """
    WITH input AS (
        SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::bigint[], $7::text[],
                             $8::timestamptz[])
            WITH ORDINALITY AS i (id, operation_id, product_id, kind, quantity, reason, occurred_at, position)),
    accepted AS (
        SELECT input.*, row_number() OVER (ORDER BY position) AS n FROM input
        WHERE EXISTS (SELECT 1 FROM products p
                      WHERE p.tenant_id = $1 AND p.id = input.product_id AND p.deleted_at IS NULL)
          AND NOT EXISTS (SELECT 1 FROM stock_movements m WHERE m.tenant_id = $1 AND m.id = input.id)),
    reserved AS (
        UPDATE tenants SET last_checkpoint = last_checkpoint + (SELECT count(*) FROM accepted)
        WHERE tenant_id = $1
        RETURNING last_checkpoint - (SELECT count(*) FROM accepted) AS base)
    INSERT INTO stock_movements
        (tenant_id, id, operation_id, product_id, kind, quantity, reason, occurred_at, checkpoint)
    SELECT $1, a.id, a.operation_id, a.product_id, a.kind, a.quantity, a.reason, a.occurred_at, reserved.base + a.n
    FROM accepted AS a, reserved
    RETURNING id, product_id, kind, quantity, reason, occurred_at, checkpoint
"""
_REMEMBER_ALL = """
    INSERT INTO applied_operations (tenant_id, operation_id, message_id, entity_type, entity_id, result, fingerprint)
    SELECT $1, operation_id, $2, entity_type, entity_id, result::jsonb, fingerprint
    FROM unnest($3::uuid[], $4::text[], $5::uuid[], $6::text[], $7::text[])
        AS r (operation_id, entity_type, entity_id, result, fingerprint)
"""
_PURGE_TOMBSTONES = """
    WITH purged AS (
        DELETE FROM products
        WHERE tenant_id = $1 AND deleted_at IS NOT NULL AND deleted_at < now() - $2::interval
        RETURNING checkpoint)
    UPDATE tenants SET feed_horizon = GREATEST(feed_horizon, (SELECT max(checkpoint) FROM purged))
    WHERE tenant_id = $1 AND EXISTS (SELECT 1 FROM purged)
"""


def _product_state(row: asyncpg.Record | None) -> ProductState:
    if row is None:  # every statement passed here returns its row; none would be a bug
        raise LookupError("expected the product's row")
    data = dict(row)
    data.pop("won", None)
    data["checkpoint"] = str(data["checkpoint"])
    return ProductState.model_validate(data)


def _movement_state(row: asyncpg.Record) -> StockMovementState:
    data = dict(row)
    data["checkpoint"] = str(data["checkpoint"])
    return StockMovementState.model_validate(data)


class PostgresTenantLedger:
    """One tenant's open transaction (see :class:`~stockzen_sync_worker.ports.TenantLedger`)."""

    def __init__(self, connection: PooledConnection, tenant_id: UUID, tombstone_retention: timedelta) -> None:
        self._db = connection
        self._tenant = tenant_id
        self._retention = tombstone_retention

    async def stored_results(self, operation_ids: Sequence[UUID]) -> dict[UUID, StoredResult]:
        rows = await self._db.fetch(
            "SELECT operation_id, message_id, result, fingerprint FROM applied_operations "
            "WHERE tenant_id = $1 AND operation_id = ANY($2::uuid[])",
            self._tenant,
            list(operation_ids),
        )
        return {
            r["operation_id"]: StoredResult(r["message_id"], ItemResult.model_validate(r["result"]), r["fingerprint"])
            for r in rows
        }

    @asynccontextmanager
    async def operation(self) -> AsyncIterator[None]:
        try:
            async with self._db.transaction():  # nested: a savepoint
                yield
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            raise LedgerRefused(exc.args[0] if exc.args else type(exc).__name__) from exc

    async def merge_product(
        self, product_id: UUID, changes: dict[str, Any], version: Version, *, create: bool
    ) -> Effect:
        requested = tuple(changes)
        if create:
            created = await self._db.fetchrow(
                _CREATE,
                self._tenant,
                product_id,
                *(changes.get(f) for f in PRODUCT_FIELDS),
                {f: version.encode() for f in changes},
                version.modified_at,
            )
            if created is not None:
                return ProductMerged(_product_state(created), requested, requested)
        merged = await self._db.fetchrow(
            _MERGE, self._tenant, product_id, changes, version.encode(), version.modified_at
        )
        if merged is not None:
            return ProductMerged(_product_state(merged), requested, tuple(merged["won"]))
        current = await self._db.fetchrow(_CURRENT, self._tenant, product_id)
        if current is None:
            return UnknownProduct(product_id)
        if current["deleted"]:
            return ProductWasDeleted(_product_state(current))
        return ProductMerged(_product_state(current), requested, ())  # every field holds a newer write

    async def delete_product(self, product_id: UUID, version: Version) -> Effect:
        args = (self._tenant, product_id, version.modified_at, version.operation_id)
        # A delete may overtake its product's create: it still leaves a tombstone, which wins.
        row = await self._db.fetchrow(_TOMBSTONE, *args) or await self._db.fetchrow(_TOMBSTONE_NEW, *args)
        if row is None:  # already a tombstone
            row = await self._db.fetchrow(_CURRENT, self._tenant, product_id)
        return ProductDeleted(_product_state(row))

    async def record_movement(self, operation: RecordStockMovement, occurred_at: datetime) -> Effect:
        movement = operation.payload
        row = await self._db.fetchrow(
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
        if row is not None:
            return MovementRecorded(_movement_state(row))
        return await self._not_recorded(operation)

    async def _not_recorded(self, operation: RecordStockMovement) -> Effect:
        """Why a movement was not recorded: its id taken, its product deleted, or never seen."""
        movement = operation.payload
        if await self._db.fetchval(
            "SELECT 1 FROM stock_movements WHERE tenant_id = $1 AND id = $2",
            self._tenant,
            operation.entity_id,
        ):
            return RefusedByRule(f"stock movement {operation.entity_id} was already recorded by another operation")
        if await self._db.fetchval(
            "SELECT 1 FROM products WHERE tenant_id = $1 AND id = $2", self._tenant, movement.product_id
        ):
            return MissingEntity(f"product {movement.product_id} was deleted")
        return UnknownProduct(movement.product_id)

    async def record_movements(self, movements: Sequence[tuple[RecordStockMovement, datetime]]) -> list[Effect]:
        if not movements:
            return []
        payloads = [op.payload for op, _ in movements]
        rows = await self._db.fetch(
            _RECORD_MOVEMENTS,
            self._tenant,
            [op.entity_id for op, _ in movements],
            [op.operation_id for op, _ in movements],
            [p.product_id for p in payloads],
            [p.kind.value for p in payloads],
            [p.quantity for p in payloads],
            [p.reason for p in payloads],
            [occurred_at for _, occurred_at in movements],
        )
        recorded = {row["id"]: _movement_state(row) for row in rows}
        effects: list[Effect] = []
        for op, _ in movements:
            state = recorded.pop(op.entity_id, None)
            effects.append(MovementRecorded(state) if state is not None else await self._not_recorded(op))
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

    async def checkpoint(self) -> int:
        value: int = await self._db.fetchval("SELECT last_checkpoint FROM tenants WHERE tenant_id = $1", self._tenant)
        return value


class PostgresLedger:
    """Opens tenant transactions on the pool (see :class:`~stockzen_sync_worker.ports.Ledger`)."""

    def __init__(self, pool: asyncpg.Pool, *, tombstone_retention: timedelta) -> None:
        self._pool = pool
        self._retention = tombstone_retention

    @asynccontextmanager
    async def for_tenant(self, tenant_id: UUID) -> AsyncIterator[PostgresTenantLedger]:
        async with tenant_transaction(self._pool, tenant_id) as connection:
            # Provision the tenant on first use and take its counter row until commit.
            await connection.execute(
                "INSERT INTO tenants (tenant_id) VALUES ($1) "
                "ON CONFLICT (tenant_id) DO UPDATE SET last_checkpoint = tenants.last_checkpoint",
                tenant_id,
            )
            yield PostgresTenantLedger(connection, tenant_id, self._retention)

    async def read_checkpoint(self, tenant_id: UUID) -> int:
        async with tenant_transaction(self._pool, tenant_id, readonly=True) as connection:
            value = await connection.fetchval("SELECT last_checkpoint FROM tenants WHERE tenant_id = $1", tenant_id)
        return int(value or 0)

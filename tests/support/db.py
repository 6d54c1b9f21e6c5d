"""Reading what the services wrote, as a superuser (tests only: it sees every tenant)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

import asyncpg


async def movement_rows(admin: asyncpg.Connection, tenant_id: uuid.UUID, operation_ids: list[str]) -> int:
    """How many ledger rows these operations produced."""
    count: int = await admin.fetchval(
        "SELECT count(*) FROM stock_movements WHERE tenant_id = $1 AND operation_id = ANY($2::uuid[])",
        tenant_id,
        operation_ids,
    )
    return count


async def applied_rows(admin: asyncpg.Connection, tenant_id: uuid.UUID, operation_ids: list[str]) -> int:
    """How many durable dedupe records these operations have."""
    count: int = await admin.fetchval(
        "SELECT count(*) FROM applied_operations WHERE tenant_id = $1 AND operation_id = ANY($2::uuid[])",
        tenant_id,
        operation_ids,
    )
    return count


async def product_row(admin: asyncpg.Connection, tenant_id: uuid.UUID, product_id: uuid.UUID) -> dict[str, Any] | None:
    row = await admin.fetchrow("SELECT * FROM products WHERE tenant_id = $1 AND id = $2", tenant_id, product_id)
    return dict(row) if row else None


async def stock_level(admin: asyncpg.Connection, tenant_id: uuid.UUID, product_id: uuid.UUID) -> int | None:
    value: int | None = await admin.fetchval(
        "SELECT quantity FROM stock_levels WHERE tenant_id = $1 AND product_id = $2", tenant_id, product_id
    )
    return value


async def operation_ids(
    admin: asyncpg.Connection, table: Literal["applied_operations", "stock_movements"], tenants: Sequence[uuid.UUID]
) -> Counter[str]:
    """How many rows of ``table`` (dedupe records, or the ledger) each operation id has in these tenants."""
    rows = await admin.fetch(f"SELECT operation_id FROM {table} WHERE tenant_id = ANY($1::uuid[])", list(tenants))
    return Counter(str(row["operation_id"]) for row in rows)


async def levels_off_ledger(admin: asyncpg.Connection, tenants: Sequence[uuid.UUID]) -> int:
    """How many stock levels of these tenants differ from the sum of their ledger's movements."""
    count: int = await admin.fetchval(
        """
        SELECT count(*) FROM stock_levels AS level
        WHERE level.tenant_id = ANY($1::uuid[])
          AND level.quantity <> (
              SELECT coalesce(sum(CASE m.kind WHEN 'entry' THEN m.quantity ELSE -m.quantity END), 0)
              FROM stock_movements AS m
              WHERE m.tenant_id = level.tenant_id AND m.product_id = level.product_id)
        """,
        list(tenants),
    )
    return count

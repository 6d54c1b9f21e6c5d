"""Reading what the services wrote, as a superuser (tests only: it sees every tenant)."""

from __future__ import annotations

import uuid
from typing import Any

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

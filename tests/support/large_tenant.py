"""A tenant with a year of history, made fast: products and a ledger of stock movements written in a
few set-based statements, for the tests and the benchmark that need a real tenant's size.

The rows are what the worker would have written (per-tenant checkpoints in commit order, the stock
level projection equal to the ledger's sums), so every read, the feed and the snapshot see a tenant
indistinguishable from one that synced for a year; only the applied-operation records are left out,
since nothing here replays those operations.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class LargeTenant:
    """What was seeded: the tenant, how many products and movements, and its last checkpoint."""

    tenant_id: uuid.UUID
    products: int
    movements: int

    @property
    def last_checkpoint(self) -> int:
        return self.products + self.movements


def product_name(n: int) -> str:
    """The name of the ``n``-th seeded product (1-based), sortable and searchable."""
    return f"Product {n:05d}"


async def seed_large_tenant(admin_url: str, tenant_id: uuid.UUID, *, products: int, movements: int) -> LargeTenant:
    """Give the new tenant ``tenant_id`` ``products`` products (checkpoints 1..products) and then
    ``movements`` movements spread over them (two entries for each exit), as the superuser with row
    triggers off for this transaction only; the stock levels are written from the ledger."""
    connection = await asyncpg.connect(admin_url)
    try:
        async with connection.transaction():
            await connection.execute("SET LOCAL session_replication_role = replica")
            await connection.execute(
                "INSERT INTO tenants (tenant_id, last_checkpoint) VALUES ($1, $2)", tenant_id, products + movements
            )
            await connection.execute(
                "INSERT INTO products (tenant_id, id, name, sku, unit, price_cents, low_stock_threshold,"
                " modified_at, checkpoint) "
                "SELECT $1, gen_random_uuid(), 'Product ' || lpad(g::text, 5, '0'), 'SKU-' || g, 'pc', 100 + g, 5,"
                " now() - interval '1 year', g FROM generate_series(1, $2) AS g",
                tenant_id,
                products,
            )
            await connection.execute(
                """
                INSERT INTO stock_movements
                    (tenant_id, id, operation_id, product_id, kind, quantity, reason, occurred_at, checkpoint)
                SELECT $1, gen_random_uuid(), gen_random_uuid(), p.id,
                       CASE WHEN g % 3 = 0 THEN 'exit' ELSE 'entry' END, 1 + g % 5, NULL,
                       now() - interval '1 year' + g * interval '1 second', $2 + g
                FROM generate_series(1, $3) AS g
                JOIN (SELECT id, checkpoint AS n FROM products WHERE tenant_id = $1) AS p
                  ON p.n = 1 + (g * 7919) % $2
                """,
                tenant_id,
                products,
                movements,
            )
            await connection.execute(
                "INSERT INTO stock_levels (tenant_id, product_id, quantity, movement_count, updated_checkpoint) "
                "SELECT tenant_id, product_id, sum(CASE kind WHEN 'entry' THEN quantity ELSE -quantity END),"
                " count(*), max(checkpoint) FROM stock_movements WHERE tenant_id = $1 GROUP BY tenant_id, product_id",
                tenant_id,
            )
        await connection.execute("ANALYZE products, stock_movements, stock_levels")
    finally:
        await connection.close()
    return LargeTenant(tenant_id, products, movements)


async def server_levels(admin_url: str, tenant_id: uuid.UUID) -> dict[str, tuple[str, int]]:
    """Every live product's id -> (name, stock level) as the server holds them."""
    connection = await asyncpg.connect(admin_url)
    try:
        rows = await connection.fetch(
            "SELECT p.id, p.name, COALESCE(l.quantity, 0) AS level FROM products p "
            "LEFT JOIN stock_levels l ON l.tenant_id = p.tenant_id AND l.product_id = p.id "
            "WHERE p.tenant_id = $1 AND p.deleted_at IS NULL",
            tenant_id,
        )
    finally:
        await connection.close()
    return {str(row["id"]): (row["name"], int(row["level"])) for row in rows}

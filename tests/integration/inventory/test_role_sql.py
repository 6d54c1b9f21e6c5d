"""Direct SQL as the application role, across tenants: what RLS and the grants must refuse beyond the
reads and writes ``test_schema.py`` covers — deleting or rewriting another tenant's rows, switching
the policy off, becoming another role."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import pytest

from stockzen_platform.postgres import tenant_transaction
from stockzen_sync_worker.adapters.inventory_database import PostgresInventoryDatabase
from stockzen_sync_worker.services import apply_sync_batch
from tests.support.harness import command
from tests.support.memory_inventory import MemoryResultCache
from tests.support.ops import create_product, movement


async def _tenant_with_stock(pool: asyncpg.Pool) -> tuple[uuid.UUID, uuid.UUID]:
    """A tenant with a product holding 5 in stock, written by the worker's own apply code."""
    tenant, product = uuid.uuid4(), uuid.uuid4()
    ops = [create_product(tenant, product), movement(tenant, product, "entry", 5)]
    database = PostgresInventoryDatabase(pool, tombstone_retention=timedelta(days=30))
    outcome = await apply_sync_batch(command(tenant, ops), uuid.uuid4().hex, database, MemoryResultCache())
    assert [r.status.value for r in outcome.applied.results] == ["applied", "applied"]
    return tenant, product


async def test_another_tenants_rows_can_be_neither_deleted_nor_rewritten(
    app_pool: asyncpg.Pool, admin: asyncpg.Connection
) -> None:
    victim, product = await _tenant_with_stock(app_pool)
    attacker, _ = await _tenant_with_stock(app_pool)
    async with tenant_transaction(app_pool, attacker) as db:
        assert await db.execute("DELETE FROM products WHERE id = $1", product) == "DELETE 0"
        assert await db.execute("UPDATE stock_levels SET quantity = 0 WHERE product_id = $1", product) == "UPDATE 0"
        assert await db.execute("UPDATE tenants SET last_checkpoint = 0 WHERE tenant_id = $1", victim) == "UPDATE 0"
    for table, values in (
        ("applied_operations", "($1, gen_random_uuid(), 'm', 'product', gen_random_uuid(), '{}'::jsonb)"),
        ("stock_levels", "($1, gen_random_uuid())"),
    ):
        columns = (
            "(tenant_id, operation_id, message_id, entity_type, entity_id, result)"
            if table == "applied_operations"
            else "(tenant_id, product_id)"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with tenant_transaction(app_pool, attacker) as db:
                await db.execute(f"INSERT INTO {table} {columns} VALUES {values}", victim)
    level = await admin.fetchval(
        "SELECT quantity FROM stock_levels WHERE tenant_id = $1 AND product_id = $2", victim, product
    )
    assert level == 5


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE products DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE products NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY IF EXISTS tenant_isolation ON products",
        "CREATE POLICY everything ON products USING (true)",
        "SET ROLE postgres",
        "ALTER ROLE stockzen_app BYPASSRLS",
    ],
)
async def test_the_application_role_cannot_switch_isolation_off(app_pool: asyncpg.Pool, statement: str) -> None:
    async with app_pool.acquire() as db:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await db.execute(statement)


async def test_turning_row_security_off_in_a_session_is_refused_not_obeyed(app_pool: asyncpg.Pool) -> None:
    victim, _ = await _tenant_with_stock(app_pool)
    attacker, _ = await _tenant_with_stock(app_pool)
    async with app_pool.acquire() as db, db.transaction():
        await db.execute("SELECT set_config('app.tenant_id', $1, true)", str(attacker))
        await db.execute("SET LOCAL row_security = off")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await db.fetchval("SELECT count(*) FROM products WHERE tenant_id = $1", victim)

"""The inventory schema against real Postgres: isolation, the ledger's rules, migrations, checkpoints."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import uuid
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import pytest

from stockzen_inventory.adapters.migrations import bundled_migrations, migrate, prepare_database, scram_sha256_verifier
from stockzen_platform.postgres import tenant_transaction
from tests.support.proxy import CuttableProxy
from tests.support.services import ServiceUrls

TENANT_TABLES = ("tenants", "products", "stock_movements", "stock_levels", "applied_operations", "purged_products")


async def _seed_tenant(pool: asyncpg.Pool, tenant: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """One tenant with a product, a movement, an applied operation and a purged product id; returns (product,
    movement)."""
    product, movement, op = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with tenant_transaction(pool, tenant) as db:
        await db.execute("INSERT INTO tenants (tenant_id) VALUES ($1)", tenant)
        await db.execute(
            "INSERT INTO products (tenant_id, id, name, modified_at, checkpoint) "
            "VALUES ($1, $2, 'Mug', now(), next_checkpoint())",
            tenant,
            product,
        )
        await db.execute(
            "INSERT INTO stock_movements (tenant_id, id, operation_id, product_id, kind, quantity, "
            "occurred_at, checkpoint) VALUES ($1, $2, $3, $4, 'entry', 5, now(), next_checkpoint())",
            tenant,
            movement,
            op,
            product,
        )
        await db.execute(
            "INSERT INTO applied_operations (tenant_id, operation_id, message_id, entity_type, entity_id, result) "
            "VALUES ($1, $2, 'm', 'stockMovement', $3, $4)",
            tenant,
            op,
            movement,
            {"status": "applied"},
        )
        await db.execute(
            "INSERT INTO purged_products (tenant_id, product_id, modified_at, checkpoint) VALUES ($1, $2, now(), 1)",
            tenant,
            uuid.uuid4(),
        )
    return product, movement


async def test_the_services_role_is_neither_superuser_nor_bypassrls(app_pool: asyncpg.Pool) -> None:
    row = await app_pool.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    assert row is not None
    assert (row["rolsuper"], row["rolbypassrls"]) == (False, False)


async def test_every_tenant_table_has_forced_row_level_security(admin: asyncpg.Connection) -> None:
    rows = await admin.fetch(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
        "WHERE relname = ANY($1::text[]) AND relkind IN ('r', 'p')",
        list(TENANT_TABLES),
    )
    assert {r["relname"]: (r["relrowsecurity"], r["relforcerowsecurity"]) for r in rows} == dict.fromkeys(
        TENANT_TABLES, (True, True)
    )


async def test_a_tenant_sees_only_its_own_rows(app_pool: asyncpg.Pool) -> None:
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    await _seed_tenant(app_pool, tenant_a)
    product_b, _ = await _seed_tenant(app_pool, tenant_b)
    async with tenant_transaction(app_pool, tenant_a) as db:
        for table in TENANT_TABLES:
            seen = await db.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", tenant_b)
            assert seen == 0, table
            own = await db.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", tenant_a)
            assert own >= 1, table
        assert await db.fetchval("SELECT count(*) FROM products WHERE id = $1", product_b) == 0


async def test_a_tenant_cannot_write_another_tenants_rows(app_pool: asyncpg.Pool) -> None:
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    product_a, _ = await _seed_tenant(app_pool, tenant_a)
    await _seed_tenant(app_pool, tenant_b)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with tenant_transaction(app_pool, tenant_a) as db:
            await db.execute(
                "INSERT INTO products (tenant_id, id, name, modified_at, checkpoint) "
                "VALUES ($1, $2, 'Stolen', now(), 1)",
                tenant_b,
                uuid.uuid4(),
            )
    async with tenant_transaction(app_pool, tenant_b) as db:
        # An UPDATE of another tenant's row matches nothing rather than changing it.
        assert await db.execute("UPDATE products SET name = 'hijacked' WHERE id = $1", product_a) == "UPDATE 0"


async def test_with_no_tenant_set_nothing_is_visible(app_pool: asyncpg.Pool) -> None:
    await _seed_tenant(app_pool, uuid.uuid4())
    async with app_pool.acquire() as db:
        for table in TENANT_TABLES:
            assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await db.execute("INSERT INTO tenants (tenant_id) VALUES ($1)", uuid.uuid4())


async def test_the_tenant_setting_ends_with_its_transaction(app_pool: asyncpg.Pool) -> None:
    async with app_pool.acquire() as db:
        async with db.transaction():
            await db.execute("SELECT set_config('app.tenant_id', $1, true)", str(uuid.uuid4()))
        assert await db.fetchval("SELECT app_current_tenant()") is None


@pytest.mark.parametrize("statement", ["UPDATE stock_movements SET quantity = 99", "DELETE FROM stock_movements"])
async def test_the_ledger_refuses_rewrites_from_the_application(app_pool: asyncpg.Pool, statement: str) -> None:
    tenant = uuid.uuid4()
    await _seed_tenant(app_pool, tenant)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        async with tenant_transaction(app_pool, tenant) as db:
            await db.execute(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE stock_movements SET quantity = 99 WHERE tenant_id = $1",
        "DELETE FROM stock_movements WHERE tenant_id = $1",
    ],
)
async def test_the_ledger_refuses_rewrites_from_its_owner(
    app_pool: asyncpg.Pool, admin: asyncpg.Connection, statement: str
) -> None:
    tenant = uuid.uuid4()
    await _seed_tenant(app_pool, tenant)
    async with admin.transaction():
        await admin.execute("SET LOCAL ROLE stockzen_owner")
        await admin.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant))
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
            await admin.execute(statement, tenant)
    assert await admin.fetchval("SELECT sum(quantity) FROM stock_movements WHERE tenant_id = $1", tenant) == 5


async def test_the_ledger_refuses_truncate_even_from_a_superuser(admin: asyncpg.Connection) -> None:
    async with admin.transaction():
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
            await admin.execute("TRUNCATE stock_movements")


async def test_an_operation_is_recorded_once_per_tenant(app_pool: asyncpg.Pool) -> None:
    tenant = uuid.uuid4()
    product, _ = await _seed_tenant(app_pool, tenant)
    async with tenant_transaction(app_pool, tenant) as db:
        op = await db.fetchval("SELECT operation_id FROM stock_movements WHERE tenant_id = $1", tenant)
    with pytest.raises(asyncpg.UniqueViolationError, match="stock_movements_tenant_id_operation_id_key"):
        async with tenant_transaction(app_pool, tenant) as db:
            await db.execute(
                "INSERT INTO stock_movements (tenant_id, id, operation_id, product_id, kind, quantity, "
                "occurred_at, checkpoint) VALUES ($1, $2, $3, $4, 'exit', 1, now(), next_checkpoint())",
                tenant,
                uuid.uuid4(),
                op,
                product,
            )
    with pytest.raises(asyncpg.UniqueViolationError, match=r"applied_operations_\w+_pkey"):
        async with tenant_transaction(app_pool, tenant) as db:
            await db.execute(
                "INSERT INTO applied_operations (tenant_id, operation_id, message_id, entity_type, entity_id, "
                "result) VALUES ($1, $2, 'other', 'stockMovement', $3, '{}')",
                tenant,
                op,
                uuid.uuid4(),
            )


async def test_stock_levels_follow_the_ledger_in_the_same_transaction(app_pool: asyncpg.Pool) -> None:
    tenant = uuid.uuid4()
    product, _ = await _seed_tenant(app_pool, tenant)
    async with tenant_transaction(app_pool, tenant) as db:
        for kind, quantity in (("exit", 2), ("entry", 10), ("exit", 20)):
            await db.execute(
                "INSERT INTO stock_movements (tenant_id, id, operation_id, product_id, kind, quantity, "
                "occurred_at, checkpoint) VALUES ($1, $2, $3, $4, $5, $6, now(), next_checkpoint())",
                tenant,
                uuid.uuid4(),
                uuid.uuid4(),
                product,
                kind,
                quantity,
            )
        level = await db.fetchrow("SELECT quantity, movement_count FROM stock_levels WHERE product_id = $1", product)
    assert level is not None
    assert (level["quantity"], level["movement_count"]) == (5 - 2 + 10 - 20, 4)


async def _schema_snapshot(admin: asyncpg.Connection) -> list[tuple[object, ...]]:
    rows = await admin.fetch(
        """
        SELECT 'column', table_name || '.' || column_name || ':' || data_type || ':' || is_nullable
          FROM information_schema.columns WHERE table_schema = 'public'
        UNION ALL SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = 'public'
        UNION ALL SELECT 'policy', tablename || ':' || policyname || ':' || coalesce(qual, '')
          FROM pg_policies WHERE schemaname = 'public'
        UNION ALL SELECT 'trigger', tgname || ':' || tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal
        UNION ALL SELECT 'function', p.proname || ':' || md5(p.prosrc)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
        UNION ALL SELECT 'grant', table_name || ':' || grantee || ':' || privilege_type
          FROM information_schema.role_table_grants WHERE table_schema = 'public'
        UNION ALL SELECT 'migration', version || ':' || checksum FROM schema_migrations
        ORDER BY 1, 2
        """
    )
    return [tuple(r) for r in rows]


async def test_running_migrations_again_changes_nothing(database: ServiceUrls, admin: asyncpg.Connection) -> None:
    before = await _schema_snapshot(admin)
    assert await migrate(database.admin_server_url, database.app_url) == []
    assert await migrate(database.admin_server_url, database.app_url) == []
    assert await _schema_snapshot(admin) == before
    assert await migrate(database.admin_server_url, database.app_url, check_only=True) == []


async def test_checkpoints_increase_strictly_in_commit_order(app_pool: asyncpg.Pool) -> None:
    tenant = uuid.uuid4()
    async with tenant_transaction(app_pool, tenant) as db:
        await db.execute("INSERT INTO tenants (tenant_id) VALUES ($1)", tenant)
    commits: list[int] = []

    async def writer() -> None:
        async with app_pool.acquire() as db:
            transaction = db.transaction()
            await transaction.start()
            await db.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant))
            await asyncio.sleep(random.uniform(0, 0.02))  # interleave the transactions' starts
            value = await db.fetchval("SELECT next_checkpoint()")
            await asyncio.sleep(random.uniform(0, 0.02))  # hold the counter a while before committing
            await transaction.commit()
            commits.append(value)  # appended in the order commits returned

    await asyncio.gather(*(writer() for _ in range(40)))
    assert commits == sorted(commits)
    assert commits == list(range(1, 41))


async def test_different_tenants_do_not_wait_for_each_others_checkpoints(app_pool: asyncpg.Pool) -> None:
    tenant_a, tenant_b = uuid.uuid4(), uuid.uuid4()
    for tenant in (tenant_a, tenant_b):
        async with tenant_transaction(app_pool, tenant) as db:
            await db.execute("INSERT INTO tenants (tenant_id) VALUES ($1)", tenant)
    async with tenant_transaction(app_pool, tenant_a) as holder:
        assert await holder.fetchval("SELECT next_checkpoint()") == 1
        # Tenant A's counter is locked until this block ends; tenant B must not wait for it.
        async with tenant_transaction(app_pool, tenant_b) as other:
            await other.execute("SET LOCAL lock_timeout = '2s'")
            assert await other.fetchval("SELECT next_checkpoint()") == 1


async def test_migration_0002_gives_old_versions_a_sequence_and_can_run_again(
    admin: asyncpg.Connection, app_pool: asyncpg.Pool
) -> None:
    tenant, product, writer = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    old = f"2026-01-02T03:04:05.000006Z|{writer}"
    new = f"2026-01-02T03:04:05.000007Z|0003|{writer}"
    await admin.execute("INSERT INTO tenants (tenant_id, last_checkpoint) VALUES ($1, 1)", tenant)
    await admin.execute(
        "INSERT INTO products (tenant_id, id, name, field_versions, modified_at, checkpoint) "
        "VALUES ($1, $2, 'Mug', $3::jsonb, now(), 1)",
        tenant,
        product,
        json.dumps({"name": old, "sku": new}),
    )
    (migration,) = [m for m in bundled_migrations() if m.version == "0002"]
    for _ in range(2):
        async with admin.transaction():
            await admin.execute("SET LOCAL ROLE stockzen_owner")
            await admin.execute(migration.sql)
        versions = await admin.fetchval(
            "SELECT field_versions::text FROM products WHERE tenant_id = $1 AND id = $2", tenant, product
        )
        assert json.loads(versions) == {"name": f"2026-01-02T03:04:05.000006Z|0000|{writer}", "sku": new}
    forced = await admin.fetchval("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'products'")
    assert forced
    async with tenant_transaction(app_pool, uuid.uuid4(), readonly=True) as db:  # still isolated
        assert await db.fetchval("SELECT count(*) FROM products WHERE tenant_id = $1", tenant) == 0


async def test_the_app_roles_password_reaches_the_server_only_as_a_scram_verifier(
    database: ServiceUrls, admin: asyncpg.Connection
) -> None:
    parts = urlsplit(database.app_url)
    password = unquote(parts.password) if parts.password else f"test-only-{uuid.uuid4().hex}"
    with_password = urlunsplit(parts._replace(netloc=f"stockzen_app:{password}@{parts.hostname}:{parts.port}"))
    admin_parts = urlsplit(database.admin_server_url)
    proxy = CuttableProxy(admin_parts.hostname or "127.0.0.1", admin_parts.port or 5432)
    await proxy.start()
    try:
        await prepare_database(proxy.url(database.admin_server_url), with_password)
        stored = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = 'stockzen_app'")
    finally:
        await proxy.cut()
        if not parts.password:  # leave the role as this run found it
            await admin.execute("ALTER ROLE stockzen_app PASSWORD NULL")
    assert b"ALTER ROLE stockzen_app PASSWORD 'SCRAM-SHA-256$4096:" in proxy.sent
    assert password.encode() not in proxy.sent
    # Postgres kept the verifier as sent: it read it as a SCRAM secret, not as a password to hash.
    assert stored.encode() in proxy.sent
    iterations, salt = stored.removeprefix("SCRAM-SHA-256$").split("$")[0].split(":")
    assert stored == scram_sha256_verifier(password, salt=base64.b64decode(salt), iterations=int(iterations))

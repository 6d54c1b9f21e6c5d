"""Applied-operation records are kept for the tombstone window, in weekly partitions dropped whole
(migration 0007), and exactly-once holds on both sides of the window.

These tests move records back in time and drop partitions, so each runs on a database of its own,
migrated from scratch, never on the shared test database.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from stockzen_inventory.adapters.migrations import bundled_migrations
from stockzen_platform.postgres import tenant_transaction
from stockzen_sync_worker.adapters.inventory_database import STORED_RESULTS_SQL
from tests.support.db import stock_level
from tests.support.harness import statuses
from tests.support.ops import create_product, movement, update_product
from tests.support.scratch_db import Scratch, apply_on, run_migrations, scratch_database
from tests.support.services import ServiceUrls


async def _partitions(admin: asyncpg.Connection) -> dict[str, int]:
    """Each partition of applied_operations and how many records it holds."""
    rows = await admin.fetch(
        "SELECT c.relname, (SELECT count(*) FROM applied_operations a WHERE a.tableoid = c.oid) AS records "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'applied_operations'::regclass"
    )
    return {r["relname"]: r["records"] for r in rows}


async def _weeks_of_partitions(admin: asyncpg.Connection) -> None:
    """The partitions nine weeks of maintenance would have left: one per week from nine weeks back
    to two weeks ahead (the migration made only those from this week on)."""
    for name in await _partitions(admin):
        await admin.execute(f'DROP TABLE "{name}"')
    async with admin.transaction():
        await admin.execute("SET LOCAL ROLE stockzen_owner")
        await admin.fetch(
            "SELECT applied_operations_maintain_at('3650 days', now() - interval '63 days', interval '77 days')"
        )


async def _age_records(admin: asyncpg.Connection, tenant: uuid.UUID, ops: list[dict[str, Any]], age: timedelta) -> str:
    """Move the records of ``ops`` back by ``age`` (as if applied then); returns their partition."""
    ids = [uuid.UUID(o["operationId"]) for o in ops]
    await admin.execute(
        "UPDATE applied_operations SET applied_at = applied_at - $3::interval "
        "WHERE tenant_id = $1 AND operation_id = ANY($2::uuid[])",
        tenant,
        ids,
        age,
    )
    (partition,) = {
        r["p"]
        for r in await admin.fetch(
            "SELECT tableoid::regclass::text AS p FROM applied_operations "
            "WHERE tenant_id = $1 AND operation_id = ANY($2::uuid[])",
            tenant,
            ids,
        )
    }
    return str(partition)


async def test_a_retry_is_a_duplicate_within_the_window_and_applies_nothing_twice_after_it(scratch: Scratch) -> None:
    await _weeks_of_partitions(scratch.admin)
    tenant, product = uuid.uuid4(), uuid.uuid4()
    old_entry = movement(tenant, product, "entry", 5)
    created = create_product(tenant, product, modified_at=datetime.now(UTC) - timedelta(minutes=2), priceCents=100)
    old_edit = update_product(tenant, product, datetime.now(UTC) - timedelta(minutes=1), priceCents=300)
    recent = movement(tenant, product, "entry", 2)
    first = await apply_on(scratch, tenant, [created, old_entry, old_edit])
    assert statuses(first) == ["applied", "applied", "applied"]
    assert statuses(await apply_on(scratch, tenant, [recent])) == ["applied"]
    # The first batch applied 45 days ago, the recent movement 20 days ago: different partitions.
    old_partition = await _age_records(scratch.admin, tenant, [old_entry, old_edit], timedelta(days=45))
    recent_partition = await _age_records(scratch.admin, tenant, [recent], timedelta(days=20))
    assert old_partition != recent_partition

    # Within the window, wherever the record lies: a duplicate (the cache remembers nothing).
    assert statuses(await apply_on(scratch, tenant, [old_entry, recent])) == ["duplicate", "duplicate"]

    before = await _partitions(scratch.admin)
    done = await scratch.database.drop_expired_records()  # as the worker runs it, as the application role
    after = await _partitions(scratch.admin)
    assert f"dropped {old_partition}" in done
    assert old_partition not in after
    assert after[recent_partition] == before[recent_partition]  # the recent records are untouched
    dropped = [name for name in before if name not in after]
    assert all(before[name] == 0 for name in dropped if name != old_partition)  # older, empty weeks
    assert all(f"dropped {name}" in done for name in dropped)

    # The recent operation is still a duplicate; the old ones were forgotten, and a late retry is
    # decided again from the data: the movement is found in the ledger (applied, recorded once),
    # the edit is merged again with its own version and takes nothing.
    product_row = await scratch.admin.fetchrow(
        "SELECT price_cents, checkpoint FROM products WHERE tenant_id = $1 AND id = $2", tenant, product
    )
    late = await apply_on(scratch, tenant, [recent, old_entry, old_edit])
    assert statuses(late) == ["duplicate", "applied", "conflict"]
    assert late.applied.results[2].server_state is not None
    assert late.applied.results[2].server_state.price_cents == 300
    assert await stock_level(scratch.admin, tenant, product) == 7
    ledger = await scratch.admin.fetchval(
        "SELECT count(*) FROM stock_movements WHERE tenant_id = $1 AND operation_id = $2",
        tenant,
        uuid.UUID(old_entry["operationId"]),
    )
    assert ledger == 1
    assert (
        await scratch.admin.fetchrow(
            "SELECT price_cents, checkpoint FROM products WHERE tenant_id = $1 AND id = $2", tenant, product
        )
        == product_row
    )
    # Their answers are recorded again, in this week's partition: from now on, duplicates.
    assert statuses(await apply_on(scratch, tenant, [old_entry, old_edit])) == ["duplicate", "duplicate"]


async def test_the_partitions_keep_tenants_apart_and_the_services_role_cannot_reach_around(scratch: Scratch) -> None:
    await _weeks_of_partitions(scratch.admin)
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    for tenant in (mine, theirs):
        product = uuid.uuid4()
        await apply_on(scratch, tenant, [create_product(tenant, product), movement(tenant, product, "entry", 1)])
    their_ops = [
        r["operation_id"]
        for r in await scratch.admin.fetch("SELECT operation_id FROM applied_operations WHERE tenant_id = $1", theirs)
    ]
    await scratch.admin.execute(
        "UPDATE applied_operations SET applied_at = applied_at - interval '10 days' WHERE tenant_id = $1", theirs
    )
    partitions = list(await _partitions(scratch.admin))

    async with tenant_transaction(scratch.pool, mine) as db:
        assert await db.fetchval("SELECT count(*) FROM applied_operations WHERE tenant_id = $1", theirs) == 0
        assert await db.fetchval("SELECT count(*) FROM applied_operations") == 2
        assert await db.fetch("SELECT 1 FROM applied_operations WHERE operation_id = ANY($1::uuid[])", their_ops) == []
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with tenant_transaction(scratch.pool, mine) as db:
            await db.execute(
                "INSERT INTO applied_operations (tenant_id, operation_id, message_id, entity_type, entity_id, result) "
                "VALUES ($1, gen_random_uuid(), 'm', 'product', gen_random_uuid(), '{}')",
                theirs,
            )
    for name in partitions:  # only through the parent, under its policy
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with tenant_transaction(scratch.pool, theirs) as db:
                await db.fetch(f'SELECT * FROM "{name}"')
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await scratch.pool.fetch("SELECT applied_operations_maintain_at('0 days', now() + interval '1 year')")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await scratch.pool.execute(f'DROP TABLE "{partitions[0]}"')
    # The services' entry never drops a record younger than a day, whatever window it is given.
    await scratch.pool.fetch("SELECT applied_operations_maintain('0 seconds')")
    assert await scratch.admin.fetchval("SELECT count(*) FROM applied_operations WHERE tenant_id = $1", mine) == 2
    role = await scratch.pool.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    assert role is not None
    assert tuple(role) == (False, False)


async def test_the_migration_keeps_the_records_it_finds_and_their_isolation(database: ServiceUrls) -> None:
    (migration,) = [m for m in bundled_migrations() if m.name == "bounded_dedupe"]
    async with scratch_database(database, before=migration.version) as old:
        tenants = [uuid.uuid4(), uuid.uuid4()]
        sent: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for tenant in tenants:  # records as the worker wrote them before, some of them long ago
            product = uuid.uuid4()
            ops = [create_product(tenant, product), *(movement(tenant, product, "entry", 1) for _ in range(3))]
            assert statuses(await apply_on(old, tenant, ops)) == ["applied"] * 4
            sent[tenant] = ops
        kept = {tenant: [uuid.UUID(o["operationId"]) for o in ops] for tenant, ops in sent.items()}
        await old.admin.execute("UPDATE applied_operations SET applied_at = applied_at - interval '400 days'")
        before = await old.admin.fetch("SELECT * FROM applied_operations ORDER BY tenant_id, operation_id")

        for _ in range(2):  # and a second time, which changes nothing
            await run_migrations(old.admin_url, [migration])
            assert (
                await old.admin.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'applied_operations'")
                == "p"
            )
            after = await old.admin.fetch("SELECT * FROM applied_operations ORDER BY tenant_id, operation_id")
            assert [dict(r) for r in after] == [dict(r) for r in before]
        partitions = await _partitions(old.admin)
        assert partitions["applied_operations_unpartitioned"] == len(before)  # in place, not copied
        assert len(partitions) >= 3  # and the weeks ahead

        for tenant in tenants:
            other = next(t for t in tenants if t != tenant)
            async with tenant_transaction(old.pool, tenant) as db:
                found = await db.fetch(STORED_RESULTS_SQL, tenant, kept[tenant] + kept[other])
                assert {r["operation_id"] for r in found} == set(kept[tenant])
                assert await db.fetchval("SELECT count(*) FROM applied_operations") == 4
            # A retry after the migration is still a duplicate; a new operation is recorded and found again.
            assert statuses(await apply_on(old, tenant, sent[tenant][1:])) == ["duplicate"] * 3
            fresh = [movement(tenant, uuid.UUID(sent[tenant][0]["entityId"]), "entry", 1)]
            assert statuses(await apply_on(old, tenant, fresh)) == ["applied"]
            assert statuses(await apply_on(old, tenant, fresh)) == ["duplicate"]
        forced = await old.admin.fetchrow(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'applied_operations'"
        )
        assert forced is not None
        assert tuple(forced) == (True, True)

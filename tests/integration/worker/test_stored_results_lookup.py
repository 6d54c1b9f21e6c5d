"""Looking up a batch's already-applied operations costs one primary-key probe per id, whatever the
tenant has sent before and whatever the planner's statistics know of it."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from stockzen_platform.postgres import tenant_transaction
from stockzen_sync_worker.adapters.inventory_database import STORED_RESULTS_SQL

RECORDS = 5000
WANTED = 50


async def _seed_records(admin: asyncpg.Connection, tenant: uuid.UUID, count: int) -> list[uuid.UUID]:
    await admin.execute("INSERT INTO tenants (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING", tenant)
    rows = await admin.fetch(
        "INSERT INTO applied_operations (tenant_id, operation_id, message_id, entity_type, entity_id, result) "
        "SELECT $1, gen_random_uuid(), 'seeded', 'stockMovement', gen_random_uuid(), '{}'::jsonb "
        "FROM generate_series(1, $2) RETURNING operation_id",
        tenant,
        count,
    )
    return [row["operation_id"] for row in rows]


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


async def test_known_operations_are_found_by_key_not_by_scanning_the_tenants_records(
    admin: asyncpg.Connection, app_pool: asyncpg.Pool
) -> None:
    # Statistics gathered before the tenant existed: the planner takes it for a tenant of a few rows.
    await _seed_records(admin, uuid.uuid4(), RECORDS)
    await admin.execute("ANALYZE applied_operations")
    tenant = uuid.uuid4()
    known = await _seed_records(admin, tenant, RECORDS)
    wanted = known[:WANTED] + [uuid.uuid4() for _ in range(WANTED)]

    async with tenant_transaction(app_pool, tenant) as connection:
        found = await connection.fetch(STORED_RESULTS_SQL, tenant, wanted)
        explained = await connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {STORED_RESULTS_SQL}", tenant, wanted)

    assert {row["operation_id"] for row in found} == set(known[:WANTED])
    nodes = _nodes(explained[0]["Plan"])  # the pool decodes json
    scans = [n for n in nodes if n.get("Relation Name", "").startswith("applied_operations")]  # its partitions
    assert scans, "the plan reads applied_operations"
    # Every record read is one asked for: none of the tenant's other records is scanned and dropped.
    assert sum(n.get("Rows Removed by Filter", 0) for n in nodes) == 0
    assert all(n["Actual Rows"] <= 1 for n in scans)

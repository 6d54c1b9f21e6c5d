"""The set-based apply gives what applying the same batch item by item gives, as a property.

Random batches of product creates, edits and deletes and stock movements on three products
(times that tie, clocks ahead of the server, operations sent twice, a movement id reused) go to
two tenants after the same history: one applies them set-based, the other item by item (the slow
path, which a movement the ledger refuses forces). Every answer, every product row, every stock
level and the checkpoint count must be the same; only the order of checkpoints inside the batch
may differ.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockzen_contracts import ItemResult, Operation, parse_operation
from stockzen_contracts.payloads import PRODUCT_FIELDS
from stockzen_sync_worker.adapters.inventory_database import PostgresInventoryDatabase
from stockzen_sync_worker.adapters.result_cache import RedisResultCache
from stockzen_sync_worker.services import apply_sync_batch
from tests.support.harness import T0, command
from tests.support.ops import op
from tests.support.services import ServiceUrls
from tests.support.stack import delete_redis_keys

RECEIVED = T0 + timedelta(seconds=10)


@dataclass(frozen=True)
class Step:
    """One operation of the plan, the same for both tenants."""

    kind: str  # create | update | delete | movement
    product: int
    fields: dict[str, Any]
    offset_seconds: int  # after T0; past RECEIVED means a clock ahead of the server (clamped)
    operation_id: uuid.UUID
    movement_id: uuid.UUID


@st.composite
def steps(draw: st.DrawFn) -> Step:
    kind = draw(st.sampled_from(["create", "update", "update", "delete", "movement", "movement", "movement"]))
    fields: dict[str, Any] = {}
    if kind in {"create", "update"}:
        names = draw(st.sets(st.sampled_from(["name", "sku", "priceCents"]), min_size=1 if kind == "update" else 0))
        fields = {
            n: draw(
                st.sampled_from(["Mug", "Cup"])
                if n == "name"
                else st.sampled_from([None, 1, 2])
                if n == "priceCents"
                else st.sampled_from([None, "A-1"])
            )
            for n in sorted(names)
        }
        if kind == "create":
            fields["name"] = draw(st.sampled_from(["Mug", "Cup"]))
    elif kind == "movement":
        fields = {"kind": draw(st.sampled_from(["entry", "exit"])), "quantity": draw(st.integers(1, 3))}
    return Step(
        kind,
        draw(st.integers(0, 2)),
        fields,
        draw(st.sampled_from([0, 1, 2, 20])),
        draw(st.uuids(version=4)),
        draw(st.uuids(version=4)),
    )


@st.composite
def plans(draw: st.DrawFn) -> tuple[list[Step], list[Step]]:
    """A history both tenants get first, and the batch under test (some of whose steps repeat an
    earlier one, or reuse an earlier movement's id)."""
    history = draw(st.lists(steps(), max_size=4))
    batch = draw(st.lists(steps(), min_size=1, max_size=12))
    for _ in range(draw(st.integers(0, 3))):
        earlier = draw(st.sampled_from(history + batch))
        if earlier.kind == "movement" and draw(st.booleans()):
            batch.append(Step(**{**earlier.__dict__, "operation_id": draw(st.uuids(version=4))}))  # its id reused
        else:
            batch.insert(draw(st.integers(0, len(batch))), earlier)
    return history, batch


def wire(tenant: uuid.UUID, products: list[uuid.UUID], step: Step) -> dict[str, Any]:
    product, when = products[step.product], T0 + timedelta(seconds=step.offset_seconds)
    if step.kind == "movement":
        payload = {"productId": str(product), **step.fields}
        return op(
            tenant,
            "stockMovement",
            "create",
            payload,
            entity_id=step.movement_id,
            operation_id=step.operation_id,
            modified_at=when,
        )
    payload = {} if step.kind == "delete" else step.fields
    return op(
        tenant, "product", step.kind, payload, entity_id=product, modified_at=when, operation_id=step.operation_id
    )


def refused_movement(tenant: uuid.UUID, product: uuid.UUID) -> Operation:
    """A movement the contract would never let through, which the ledger refuses: its batch then
    goes item by item."""
    refused = parse_operation(
        op(
            tenant,
            "stockMovement",
            "create",
            {"productId": str(product), "kind": "entry", "quantity": 1, "reason": "fine"},
        )
    )
    refused.payload.__dict__["reason"] = "x" * 600
    return refused


def answer(result: ItemResult) -> dict[str, Any]:
    """What a client sees of a result, but the checkpoint (ordered otherwise inside the batch)."""
    return result.model_dump(exclude={"server_state": {"checkpoint"}})


async def ledger_state(admin: asyncpg.Connection, tenant: uuid.UUID) -> dict[str, Any]:
    products = await admin.fetch(
        f"SELECT id, {', '.join(PRODUCT_FIELDS)}, deleted_at IS NOT NULL AS deleted, field_versions, modified_at "
        "FROM products WHERE tenant_id = $1 ORDER BY id",
        tenant,
    )
    levels = await admin.fetch(
        "SELECT product_id, quantity FROM stock_levels WHERE tenant_id = $1 ORDER BY product_id", tenant
    )
    checkpoint = await admin.fetchval("SELECT last_checkpoint FROM tenants WHERE tenant_id = $1", tenant)
    return {
        "products": [{**dict(r), "field_versions": json.loads(r["field_versions"])} for r in products],
        "levels": [dict(r) for r in levels],
        "checkpoint": checkpoint,
    }


@pytest.fixture(scope="module")
async def redis_client(database: ServiceUrls) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(database.redis_url)
    yield client
    await client.aclose()
    await delete_redis_keys(database.redis_url, f"{database.redis_prefix}set-based:")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans())
async def test_a_batch_applied_set_based_matches_it_applied_item_by_item(
    plan: tuple[list[Step], list[Step]],
    app_pool: asyncpg.Pool,
    admin_connection: asyncpg.Connection,
    redis_client: aioredis.Redis,
    database: ServiceUrls,
) -> None:
    history, batch = plan
    products = [uuid.uuid4() for _ in range(3)]
    inventory = PostgresInventoryDatabase(app_pool, tombstone_retention=timedelta(days=30))
    answers, states = [], []
    for one_by_one in (False, True):
        tenant = uuid.uuid4()
        cache = RedisResultCache(
            redis_client, prefix=f"{database.redis_prefix}set-based:{tenant.hex[:8]}:", result_ttl_seconds=60
        )
        if history:
            await apply_sync_batch(
                command(tenant, [wire(tenant, products, s) for s in history], received_at=RECEIVED),
                "history",
                inventory,
                cache,
            )
        applied = command(tenant, [wire(tenant, products, s) for s in batch], received_at=RECEIVED)
        if one_by_one:
            applied = applied.model_copy(
                update={"operations": [*applied.operations, refused_movement(tenant, products[0])]}
            )
        outcome = await apply_sync_batch(applied, "batch", inventory, cache)
        answers.append([answer(r) for r in outcome.applied.results[: len(batch)]])
        states.append(await ledger_state(admin_connection, tenant))
        states[-1]["answered checkpoint"] = outcome.applied.checkpoint
        if one_by_one:
            assert outcome.applied.results[-1].code is not None  # the refused movement, rejected alone

    assert answers[0] == answers[1]
    for state in states:
        for product in state["products"]:
            product["id"] = products.index(product["id"])
        for level in state["levels"]:
            level["product_id"] = products.index(level["product_id"])
    assert states[0] == states[1]

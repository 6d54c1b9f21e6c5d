"""POST /api/sync end to end: gateway, RabbitMQ, the dramatiq worker and Postgres, as real processes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from tests.support.db import applied_rows, movement_rows, product_row, stock_level
from tests.support.ops import create_product, earlier, movement, op, update_product
from tests.support.services import ServiceUrls
from tests.support.stack import Stack, delete_redis_keys, gateway_client, queue_counts


def _statuses(body: dict[str, Any]) -> list[str]:
    return [r["status"] for r in body["results"]]


async def test_a_mixed_batch_gets_one_result_per_operation_and_only_good_ones_land(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    product = uuid.uuid4()
    invalid = movement(tenant_id, product, "entry", 0)
    other_tenant = movement(uuid.uuid4(), product, "entry", 7)
    ops = [
        create_product(tenant_id, product, "Blue mug", sku="MUG-1", priceCents=1200),
        update_product(tenant_id, product, priceCents=1350, lowStockThreshold=4),
        movement(tenant_id, product, "entry", 10, reason="delivery"),
        invalid,
        movement(tenant_id, product, "exit", 3),
        other_tenant,
        movement(tenant_id, product, "exit", 2),
    ]
    response = await gateway.post("/api/sync", json={"checkpoint": None, "operations": ops})

    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["operationId"] for r in body["results"]] == [o["operationId"] for o in ops]
    assert _statuses(body) == ["applied", "applied", "applied", "rejected", "applied", "rejected", "applied"]
    assert body["results"][3]["code"] == "VALIDATION_ERROR"
    assert "payload.quantity" in body["results"][3]["message"]
    assert body["results"][5]["code"] == "TENANT_MISMATCH"
    assert all(r["retryable"] is False for r in body["results"] if r["status"] == "rejected")
    assert body["checkpoint"] == "5"  # a new tenant: one checkpoint per change (create, update, three movements)
    assert datetime.fromisoformat(body["serverTime"]) <= datetime.now(UTC)

    row = await product_row(admin, tenant_id, product)
    assert row is not None
    assert (row["name"], row["sku"], row["price_cents"], row["low_stock_threshold"]) == ("Blue mug", "MUG-1", 1350, 4)
    assert await stock_level(admin, tenant_id, product) == 10 - 3 - 2
    good = [o["operationId"] for i, o in enumerate(ops) if i not in (3, 5)]
    assert await applied_rows(admin, tenant_id, good) == len(good)
    assert await applied_rows(admin, tenant_id, [invalid["operationId"], other_tenant["operationId"]]) == 0
    assert await movement_rows(admin, tenant_id, [invalid["operationId"]]) == 0
    assert (
        await admin.fetchval(
            "SELECT count(*) FROM stock_movements WHERE operation_id = $1", uuid.UUID(other_tenant["operationId"])
        )
        == 0
    )


async def test_the_same_batch_three_times_is_applied_once(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    product = uuid.uuid4()
    ops = [
        create_product(tenant_id, product),
        movement(tenant_id, product, "entry", 5),
        movement(tenant_id, product, "exit", 1),
        update_product(tenant_id, product, modified_at=earlier(3600), name="Older name"),
    ]
    first = (await gateway.post("/api/sync", json={"operations": ops})).json()
    # The edit is older than the create on the server, so it loses: its outcome is a conflict.
    assert _statuses(first) == ["applied", "applied", "applied", "conflict"]
    movement_ids = [ops[1]["operationId"], ops[2]["operationId"]]
    assert await movement_rows(admin, tenant_id, movement_ids) == 2

    for _ in range(2):
        again = await gateway.post("/api/sync", json={"operations": ops})
        assert again.status_code == 200
        assert _statuses(again.json()) == ["duplicate"] * 4
        assert again.json()["results"][3]["code"] == "CONFLICT_RESOLVED"
        assert await movement_rows(admin, tenant_id, movement_ids) == 2
    assert await stock_level(admin, tenant_id, product) == 4


async def test_a_duplicate_carries_the_original_outcome(gateway: httpx.AsyncClient, tenant_id: uuid.UUID) -> None:
    product = uuid.uuid4()
    await gateway.post(
        "/api/sync", json={"operations": [create_product(tenant_id, product, modified_at=earlier(3600))]}
    )
    newer = update_product(tenant_id, product, name="Newer")
    older = update_product(tenant_id, product, modified_at=earlier(600), name="Older")
    await gateway.post("/api/sync", json={"operations": [newer]})
    lost = (await gateway.post("/api/sync", json={"operations": [older]})).json()["results"][0]
    assert (lost["status"], lost["code"]) == ("conflict", "CONFLICT_RESOLVED")

    replay = (await gateway.post("/api/sync", json={"operations": [older]})).json()["results"][0]
    assert (replay["status"], replay["code"]) == ("duplicate", "CONFLICT_RESOLVED")
    assert replay["serverState"]["name"] == "Newer"


async def test_the_same_operations_sent_concurrently_are_applied_once(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    product = uuid.uuid4()
    await gateway.post("/api/sync", json={"operations": [create_product(tenant_id, product)]})
    ops = [movement(tenant_id, product, "entry", n) for n in range(1, 21)]
    responses = await asyncio.gather(*(gateway.post("/api/sync", json={"operations": ops}) for _ in range(4)))

    assert {r.status_code for r in responses} == {200}
    per_operation = list(zip(*(_statuses(r.json()) for r in responses), strict=True))
    for outcomes in per_operation:
        # Each operation was applied by exactly one of the requests; the others saw it done.
        assert sorted(outcomes) == ["applied", "duplicate", "duplicate", "duplicate"], outcomes
    assert await movement_rows(admin, tenant_id, [o["operationId"] for o in ops]) == 20
    assert await stock_level(admin, tenant_id, product) == sum(range(1, 21))


async def test_the_older_edit_arriving_last_loses_and_learns_the_newer_state(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    product = uuid.uuid4()
    await gateway.post("/api/sync", json={"operations": [create_product(tenant_id, product, "Mug", earlier(3600))]})
    phone = update_product(tenant_id, product, modified_at=earlier(120), name="Mug (phone)")
    tablet = update_product(tenant_id, product, modified_at=earlier(60), name="Mug (tablet)")

    assert _statuses((await gateway.post("/api/sync", json={"operations": [tablet]})).json()) == ["applied"]
    late = (await gateway.post("/api/sync", json={"operations": [phone]})).json()["results"][0]

    assert late["status"] == "conflict"
    assert late["code"] == "CONFLICT_RESOLVED"
    assert late["serverState"]["name"] == "Mug (tablet)"
    assert late["serverState"]["id"] == str(product)
    row = await product_row(admin, tenant_id, product)
    assert row is not None
    assert row["name"] == "Mug (tablet)"


async def test_edits_of_different_fields_by_two_devices_both_survive(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    product = uuid.uuid4()
    await gateway.post("/api/sync", json={"operations": [create_product(tenant_id, product, "Mug", earlier(3600))]})
    newer_price = update_product(tenant_id, product, modified_at=earlier(30), priceCents=999)
    older_name = update_product(tenant_id, product, modified_at=earlier(90), name="Big mug")
    results = (await gateway.post("/api/sync", json={"operations": [newer_price, older_name]})).json()
    assert _statuses(results) == ["applied", "applied"]
    row = await product_row(admin, tenant_id, product)
    assert row is not None
    assert (row["name"], row["price_cents"]) == ("Big mug", 999)


async def test_a_clock_in_the_future_does_not_win_over_a_later_real_edit(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    product = uuid.uuid4()
    await gateway.post("/api/sync", json={"operations": [create_product(tenant_id, product, "Mug", earlier(3600))]})
    far_future = update_product(tenant_id, product, modified_at=datetime(2099, 1, 1, tzinfo=UTC), name="From 2099")
    assert _statuses((await gateway.post("/api/sync", json={"operations": [far_future]})).json()) == ["applied"]

    await asyncio.sleep(0.05)
    real = update_product(tenant_id, product, modified_at=datetime.now(UTC), name="Real edit")
    assert _statuses((await gateway.post("/api/sync", json={"operations": [real]})).json()) == ["applied"]
    row = await product_row(admin, tenant_id, product)
    assert row is not None
    assert row["name"] == "Real edit"
    assert row["modified_at"] < datetime.now(UTC) + timedelta(seconds=1)


async def test_deletes_win_and_unknown_products_are_not_found(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    product, ghost = uuid.uuid4(), uuid.uuid4()
    delete = op(tenant_id, "product", "delete", {}, entity_id=product, modified_at=earlier(300))
    later_edit = update_product(tenant_id, product, name="Edited after delete")
    ops = [
        create_product(tenant_id, product, modified_at=earlier(3600)),
        delete,
        later_edit,
        movement(tenant_id, product, "entry", 1),
        update_product(tenant_id, ghost, name="Nobody"),
        op(tenant_id, "stockMovement", "delete", {}),
    ]
    body = (await gateway.post("/api/sync", json={"operations": ops})).json()
    results = body["results"]
    assert _statuses(body) == ["applied", "applied", "conflict", "rejected", "rejected", "rejected"]
    assert results[2]["serverState"]["deleted"] is True
    assert [results[3]["code"], results[4]["code"], results[5]["code"]] == [
        "NOT_FOUND",
        "NOT_FOUND",
        "VALIDATION_ERROR",
    ]
    assert "append-only" in results[5]["message"]
    row = await product_row(admin, tenant_id, product)
    assert row is not None
    assert row["deleted_at"] is not None


async def test_a_redis_flush_between_deliveries_does_not_apply_twice(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID, database: ServiceUrls
) -> None:
    product = uuid.uuid4()
    ops = [create_product(tenant_id, product), movement(tenant_id, product, "entry", 9)]
    assert _statuses((await gateway.post("/api/sync", json={"operations": ops})).json()) == ["applied", "applied"]

    await delete_redis_keys(database.redis_url, database.redis_prefix)  # everything this run keeps in Redis

    again = (await gateway.post("/api/sync", json={"operations": ops})).json()
    assert _statuses(again) == ["duplicate", "duplicate"]
    assert await movement_rows(admin, tenant_id, [ops[1]["operationId"]]) == 1
    assert await stock_level(admin, tenant_id, product) == 9


async def test_the_checkpoint_moves_forward_with_each_change(gateway: httpx.AsyncClient, tenant_id: uuid.UUID) -> None:
    product = uuid.uuid4()
    first = (await gateway.post("/api/sync", json={"operations": [create_product(tenant_id, product)]})).json()
    second = (await gateway.post("/api/sync", json={"operations": [movement(tenant_id, product)]})).json()
    replay = (await gateway.post("/api/sync", json={"operations": [movement(tenant_id, product, "exit")]})).json()
    assert int(first["checkpoint"]) < int(second["checkpoint"]) < int(replay["checkpoint"])


async def test_a_request_with_nothing_valid_publishes_nothing(
    own_stack: Stack, database: ServiceUrls, tenant_id: uuid.UUID
) -> None:
    await asyncio.to_thread(own_stack.start_worker)  # declares the queue
    await asyncio.to_thread(own_stack.processes["worker"].stop)  # then nobody consumes it
    await asyncio.to_thread(own_stack.start_gateway)
    async with gateway_client(own_stack, tenant_id) as client:
        response = await client.post(
            "/api/sync",
            json={"checkpoint": "17", "operations": [movement(uuid.uuid4(), uuid.uuid4()), {"operationId": 1}]},
        )
    body = response.json()
    assert response.status_code == 200
    assert [r["code"] for r in body["results"]] == ["TENANT_MISMATCH", "VALIDATION_ERROR"]
    assert body["results"][1]["operationId"] is None
    assert body["checkpoint"] == "17"  # nothing changed on the caller's behalf
    assert await asyncio.to_thread(queue_counts, database.amqp_url, own_stack.queue) == (0, 0)

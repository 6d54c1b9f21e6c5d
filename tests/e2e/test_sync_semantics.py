"""Sync semantics through the real gateway, queue and worker: a late create, a reused operationId."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from tests.support.db import applied_rows, product_row, stock_level
from tests.support.ops import create_product, earlier, movement, update_product
from tests.support.retry import sync_until_final


async def test_an_edit_and_a_sale_sent_before_their_create_apply_once_it_lands(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    product = uuid.uuid4()
    early = [update_product(tenant_id, product, priceCents=990), movement(tenant_id, product, "exit", 3)]
    key = {"Idempotency-Key": f"outbox-{uuid.uuid4()}"}
    first = await gateway.post("/api/sync", json={"operations": early}, headers=key)
    assert first.status_code == 200, first.text
    for result in first.json()["results"]:
        assert (result["status"], result["code"], result["retryable"]) == ("rejected", "NOT_FOUND", True)
    assert await applied_rows(admin, tenant_id, [o["operationId"] for o in early]) == 0

    create = create_product(tenant_id, product, modified_at=earlier(60))  # made on the device before the edit
    assert (await sync_until_final(gateway, [create])).status_code == 200
    # The same request again, same key: the first answer was not kept, so it runs and applies.
    again = await gateway.post("/api/sync", json={"operations": early}, headers=key)
    assert again.status_code == 200, again.text
    assert "idempotent-replayed" not in again.headers
    assert [r["status"] for r in again.json()["results"]] == ["applied", "applied"]
    row = await product_row(admin, tenant_id, product)
    assert row is not None
    assert row["price_cents"] == 990
    assert await stock_level(admin, tenant_id, product) == -3


async def test_an_operation_id_reused_for_another_change_is_refused_not_dropped_as_a_duplicate(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    product, other = uuid.uuid4(), uuid.uuid4()
    original = create_product(tenant_id, product, "Mug")
    assert [r["status"] for r in (await sync_until_final(gateway, [original])).json()["results"]] == ["applied"]
    reused = {
        **create_product(tenant_id, other, "Cup"),
        "operationId": original["operationId"],
        "idempotencyKey": original["operationId"],
    }
    response = await sync_until_final(gateway, [original, reused])
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["duplicate", "rejected"]
    assert (results[1]["code"], results[1]["retryable"]) == ("OPERATION_ID_REUSED", False)
    assert await product_row(admin, tenant_id, other) is None
    fingerprint = await admin.fetchval(
        "SELECT fingerprint FROM applied_operations WHERE tenant_id = $1 AND operation_id = $2",
        tenant_id,
        uuid.UUID(original["operationId"]),
    )
    assert isinstance(fingerprint, str)
    assert len(fingerprint) == 64

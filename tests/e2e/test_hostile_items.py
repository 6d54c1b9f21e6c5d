"""Input at the edges, through the real gateway, queue and worker: one bad item never holds the others,
and hostile input gets a 4xx ``{code, message}`` or a per-item ``rejected``, never a 5xx."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.db import applied_rows, movement_rows, stock_level
from tests.support.ops import create_product, movement, op
from tests.support.retry import sync_until_final


def _statuses(body: dict[str, Any]) -> list[str]:
    return [r["status"] for r in body["results"]]


async def test_a_movement_from_before_year_1000_is_applied_beside_the_others(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    product = uuid.uuid4()
    ancient = movement(tenant_id, product, "entry", 4, occurredAt="0999-06-01T12:00:00Z")
    ancient["modifiedAt"] = "0500-01-01T00:00:00Z"
    ops = [create_product(tenant_id, product), ancient, movement(tenant_id, product, "exit", 1)]

    response = await sync_until_final(gateway, ops, seconds=20)

    assert response.status_code == 200, response.text
    assert _statuses(response.json()) == ["applied", "applied", "applied"]
    assert await stock_level(admin, tenant_id, product) == 3
    occurred = await admin.fetchval(
        "SELECT occurred_at FROM stock_movements WHERE tenant_id = $1 AND operation_id = $2",
        tenant_id,
        uuid.UUID(ancient["operationId"]),
    )
    assert occurred.year == 999


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
async def test_a_time_pushed_out_of_range_by_its_offset_is_rejected_alone(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID, stamp: str
) -> None:
    product = uuid.uuid4()
    bad_time = create_product(tenant_id, uuid.uuid4())
    bad_time["modifiedAt"] = stamp
    bad_occurred = movement(tenant_id, product, "entry", 2, occurredAt=stamp)
    ops = [create_product(tenant_id, product), bad_time, bad_occurred, movement(tenant_id, product, "entry", 5)]

    response = await sync_until_final(gateway, ops, seconds=20)

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert _statuses(response.json()) == ["applied", "rejected", "rejected", "applied"]
    assert [results[1]["code"], results[2]["code"]] == ["VALIDATION_ERROR", "VALIDATION_ERROR"]
    assert "modifiedAt" in results[1]["message"]
    assert "payload.occurredAt" in results[2]["message"]
    assert await applied_rows(admin, tenant_id, [bad_time["operationId"], bad_occurred["operationId"]]) == 0
    assert await stock_level(admin, tenant_id, product) == 5


async def test_json_nested_thousands_deep_is_a_validation_error(gateway: httpx.AsyncClient) -> None:
    for depth in (100, 5000, 100_000):
        nested = '{"checkpoint": null, "operations": [' + "[" * depth + "]" * depth + "]}"
        response = await gateway.post("/api/sync", content=nested, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (depth, response.text)
        assert response.json()["code"] == "VALIDATION_ERROR"
        assert "nested" in response.json()["message"]


async def test_a_lone_surrogate_is_rejected_per_item_with_or_without_an_idempotency_key(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    for key in (None, f"batch-{uuid.uuid4()}"):
        good = create_product(tenant_id, uuid.uuid4())
        bad = create_product(tenant_id, uuid.uuid4(), name="mug \ud800")
        odd_field = op(tenant_id, "product", "create", {"name": "x", "\udfff": 1}, entity_id=uuid.uuid4())
        # ensure_ascii writes the surrogates as JSON escapes, exactly as a hostile client may send them.
        content = json.dumps({"operations": [good, bad, odd_field]})
        headers = {"Content-Type": "application/json", **({"Idempotency-Key": key} if key else {})}
        response = await gateway.post("/api/sync", content=content, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert _statuses(body) == ["applied", "rejected", "rejected"]
        assert body["results"][1]["code"] == "VALIDATION_ERROR"
        assert "payload.name" in body["results"][1]["message"]
        assert await applied_rows(admin, tenant_id, [good["operationId"]]) == 1
        assert await applied_rows(admin, tenant_id, [bad["operationId"], odd_field["operationId"]]) == 0
        if key:
            replay = await gateway.post("/api/sync", content=content, headers=headers)
            assert replay.status_code == 200
            assert replay.headers.get("idempotent-replayed") == "true"


async def test_a_nul_byte_in_a_product_or_a_movement_is_rejected_alone(
    gateway: httpx.AsyncClient, admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> None:
    product = uuid.uuid4()
    bad = movement(tenant_id, product, "entry", 2, reason="a\x00b")
    ops = [create_product(tenant_id, product, sku="A\x00B"), create_product(tenant_id, product), bad]
    response = await sync_until_final(gateway, ops, seconds=20)
    assert _statuses(response.json()) == ["rejected", "applied", "rejected"]
    assert await movement_rows(admin, tenant_id, [bad["operationId"]]) == 0


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/products", {"q": "mug\x00"}),
        (
            "/api/products",
            {
                "cursor": "eyJrIjoicHJvZHVjdCIsIm4iOiJhXHUwMDAwYiIsImkiOiIwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDAifQ"
            },
        ),
    ],
)
async def test_a_nul_byte_in_a_read_query_is_a_validation_error(
    gateway: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    response = await gateway.get(path, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "VALIDATION_ERROR"


async def test_a_lone_surrogate_in_the_envelope_is_a_validation_error(
    gateway: httpx.AsyncClient, tenant_id: uuid.UUID
) -> None:
    content = json.dumps({"operations": [create_product(tenant_id, uuid.uuid4())], "\ud800": 1, "checkpoint": "\udfff"})
    response = await gateway.post("/api/sync", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert response.json()["message"]

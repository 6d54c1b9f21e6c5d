from __future__ import annotations

import uuid

import httpx

from tests.support.ops import create_product, movement


async def test_a_batch_goes_through(gateway: httpx.AsyncClient, tenant_id: uuid.UUID) -> None:
    product = uuid.uuid4()
    ops = [create_product(tenant_id, product), movement(tenant_id, product, "entry", 5)]
    response = await gateway.post("/api/sync", json={"operations": ops})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["applied", "applied"], body

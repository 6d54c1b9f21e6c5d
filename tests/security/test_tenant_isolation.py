"""Security at the edges, through the running gateway: bad tokens on every route, one tenant's keys,
cursors and checkpoints in another tenant's hands, and bodies and headers too big to take.

Covered elsewhere and not repeated here: every bad token on ``POST /api/sync`` and a body over the
limit with its ``Content-Length`` (``test_gateway_rules.py``), items for another tenant
(``test_push_path.py``), every read route's tenant isolation (``test_reads.py``), and the
application role's SQL (``tests/integration/inventory/test_schema.py`` and ``test_role_sql.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx

from tests.support.db import applied_rows
from tests.support.ops import create_product, movement
from tests.support.retry import get_within_limits, sync_until_final
from tests.support.stack import Stack, gateway_client, user_token
from tests.support.tokens import bad_tokens, expect_error

READ_ROUTES = (
    "/api/products",
    "/api/products/{id}",
    "/api/products/{id}/movements",
    "/api/sync/changes",
    "/api/sync/snapshot",
)


def _routes(product: uuid.UUID) -> list[str]:
    return [route.replace("{id}", str(product)) for route in READ_ROUTES]


async def test_every_kind_of_bad_token_gets_401_on_every_read_route(stack: Stack, tenant_id: uuid.UUID) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway_url) as client:
        for name, header in bad_tokens(tenant_id).items():
            for path in _routes(uuid.uuid4()):
                response = await client.get(path, headers={"Authorization": header} if header is not None else {})
                expect_error(response, 401, "UNAUTHORIZED")
                assert response.headers["www-authenticate"] == "Bearer", (name, path)


async def test_a_token_in_the_url_is_not_a_credential(stack: Stack, tenant_id: uuid.UUID) -> None:
    token = user_token(tenant_id)
    async with httpx.AsyncClient(base_url=stack.gateway_url) as client:
        for path in _routes(uuid.uuid4()):
            for name in ("access_token", "token", "jwt"):
                expect_error(await client.get(path, params={name: token}), 401, "UNAUTHORIZED")
        body = {"operations": [movement(tenant_id, uuid.uuid4())]}
        expect_error(await client.post("/api/sync", params={"access_token": token}, json=body), 401, "UNAUTHORIZED")


async def test_another_tenant_replaying_a_key_with_the_same_body_gets_nothing_of_the_first(
    stack: Stack, admin: asyncpg.Connection
) -> None:
    tenant_a, tenant_b, product = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ops = [create_product(tenant_a, product, "Secret mug"), movement(tenant_a, product, "entry", 4)]
    key = f"stolen-{uuid.uuid4()}"
    async with gateway_client(stack, tenant_a, "alice") as alice, gateway_client(stack, tenant_b, "mallory") as mallory:
        first = await alice.post("/api/sync", json={"operations": ops}, headers={"Idempotency-Key": key})
        assert first.status_code == 200, first.text
        assert [r["status"] for r in first.json()["results"]] == ["applied", "applied"]

        replayed = await mallory.post("/api/sync", json={"operations": ops}, headers={"Idempotency-Key": key})

    assert replayed.status_code == 200, replayed.text
    assert "idempotent-replayed" not in replayed.headers
    assert replayed.content != first.content
    assert [(r["status"], r["code"]) for r in replayed.json()["results"]] == [("rejected", "TENANT_MISMATCH")] * 2
    assert "Secret mug" not in replayed.text
    ids = [o["operationId"] for o in ops]
    assert await applied_rows(admin, tenant_b, ids) == 0
    assert await applied_rows(admin, tenant_a, ids) == 2


async def _seeded(stack: Stack, tenant: uuid.UUID, user: str, tag: str) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """Three products named after ``tag``, the first with three movements; returns (first, all)."""
    products = [uuid.uuid4() for _ in range(3)]
    ops = [create_product(tenant, p, f"{tag} {i}") for i, p in enumerate(products)]
    ops += [movement(tenant, products[0], "entry", n) for n in (1, 2, 3)]
    async with gateway_client(stack, tenant, user) as client:
        response = await sync_until_final(client, ops)
    assert response.status_code == 200, response.text
    assert {r["status"] for r in response.json()["results"]} == {"applied"}
    return products[0], products


async def _page(client: httpx.AsyncClient, path: str, params: dict[str, str]) -> dict[str, Any]:
    response = await get_within_limits(client, path, params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def test_another_tenants_cursors_and_checkpoints_show_nothing_of_theirs(stack: Stack) -> None:
    tenant_a, tenant_b, tag = uuid.uuid4(), uuid.uuid4(), uuid.uuid4().hex[:10]
    first_a, products_a = await _seeded(stack, tenant_a, "alice", f"A{tag}")
    first_b, products_b = await _seeded(stack, tenant_b, "mallory", f"B{tag}")
    async with gateway_client(stack, tenant_a, "alice") as alice:
        product_cursor = (await _page(alice, "/api/products", {"limit": "1"}))["nextCursor"]
        movement_cursor = (await _page(alice, f"/api/products/{first_a}/movements", {"limit": "1"}))["nextCursor"]
        checkpoint = (await _page(alice, "/api/sync/changes", {"limit": "1"}))["checkpoint"]
    assert product_cursor
    assert movement_cursor
    assert checkpoint

    secrets = {str(p) for p in products_a} | {f"A{tag}"}

    async def shows_nothing_of_a(response: httpx.Response) -> None:
        assert response.status_code < 500, response.text
        assert not any(secret in response.text for secret in secrets), response.text
        if response.status_code >= 400:
            expect_error(response, response.status_code, response.json()["code"])

    async with gateway_client(stack, tenant_b, "mallory") as mallory:
        listed = await get_within_limits(mallory, "/api/products", {"cursor": product_cursor, "limit": "50"})
        await shows_nothing_of_a(listed)
        own_history = await get_within_limits(
            mallory, f"/api/products/{first_b}/movements", {"cursor": movement_cursor}
        )
        await shows_nothing_of_a(own_history)
        their_history = await get_within_limits(
            mallory, f"/api/products/{first_a}/movements", {"cursor": movement_cursor}
        )
        expect_error(their_history, 404, "NOT_FOUND")
        feed = await get_within_limits(mallory, "/api/sync/changes", {"checkpoint": checkpoint, "limit": "500"})
        await shows_nothing_of_a(feed)
        # And the checkpoint of A never makes B's own feed lose B's changes: pulled from the start, all are there.
        whole = await _page(mallory, "/api/sync/changes", {"limit": "500"})
        assert {str(p) for p in products_b} <= {c["entityId"] for c in whole["changes"]}


async def test_a_body_over_the_limit_without_a_content_length_is_refused(gateway: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"operations": [{"pad": "'
        for _ in range(40):
            yield b"x" * 65536  # 2.6 MB in all, streamed: the gateway cannot know the size up front
        yield b'"}]}'

    response = await gateway.post("/api/sync", content=chunks(), headers={"Content-Type": "application/json"})
    expect_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert "content-length" not in response.request.headers


async def test_oversized_keys_and_query_values_are_refused_with_the_error_shape(
    gateway: httpx.AsyncClient, tenant_id: uuid.UUID
) -> None:
    ops = [movement(tenant_id, uuid.uuid4()), movement(tenant_id, uuid.uuid4())]
    long_key = await gateway.post("/api/sync", json={"operations": ops}, headers={"Idempotency-Key": "k" * 4000})
    expect_error(long_key, 400, "VALIDATION_ERROR")
    for path, params in (
        ("/api/products", {"q": "q" * 5000}),
        ("/api/products", {"cursor": "c" * 5000}),
        (f"/api/products/{uuid.uuid4()}/movements", {"cursor": "c" * 5000}),
        ("/api/sync/changes", {"checkpoint": "9" * 5000}),
        ("/api/products", {"limit": "9" * 400}),
    ):
        response = await get_within_limits(gateway, path, params)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        expect_error(response, response.status_code, response.json()["code"])

"""The inventory app in process, against real Postgres: who may call it, and how it answers."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from stockzen_inventory.bootstrap import build_app
from stockzen_inventory.config import InventorySettings
from stockzen_inventory.domain.pagination import SnapshotCursor, encode_snapshot_cursor
from stockzen_platform.identity import Identity, TokenIssuer, internal_token_issuer
from tests.support.services import ServiceUrls
from tests.support.stack import INTERNAL_SECRET, user_token
from tests.support.tenant_writer import TenantWriter

_SNAPSHOT_AHEAD_CURSOR = encode_snapshot_cursor(SnapshotCursor(checkpoint=5, product_id=uuid.uuid4()))
READ_ROUTES = (
    "/api/products",
    "/api/products/{product_id}",
    "/api/products/{product_id}/movements",
    "/api/sync/changes",
    "/api/sync/snapshot",
)


@pytest.fixture
async def inventory(database: ServiceUrls) -> AsyncIterator[httpx.AsyncClient]:
    """A client for an inventory app running in this process (its lifespan opens the pool)."""
    settings = InventorySettings.model_validate(
        {"STOCKZEN_ENV": "test", "DATABASE_URL": database.app_url, "INTERNAL_TOKEN_SECRET": INTERNAL_SECRET}
    )
    app = build_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://inventory") as client,
    ):
        yield client


def _internal(tenant_id: uuid.UUID, secret: str = INTERNAL_SECRET, ttl_seconds: int = 60) -> dict[str, str]:
    token = internal_token_issuer(secret).issue(Identity("user-1", tenant_id), ttl_seconds=ttl_seconds)
    return {"Authorization": f"Bearer {token}"}


def _forged(payload: str) -> str:
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()


# Cursors a client forged: well-formed JSON that names a position Postgres cannot compare against.
_FORGED_NUL_CURSOR = _forged(json.dumps({"k": "product", "n": "a\x00b", "i": str(uuid.uuid4())}))
_FORGED_SURROGATE_CURSOR = _forged(json.dumps({"k": "product", "n": "\ud800", "i": str(uuid.uuid4())}))
_FORGED_FAR_CURSOR = _forged('{"k":"movement","t":"0001-01-01T00:00:00+05:00","c":1}')


@pytest.mark.parametrize("route", ["/api/products", f"/api/products/{uuid.uuid4()}", "/api/sync/changes"])
async def test_calls_without_the_gateways_token_are_refused(
    inventory: httpx.AsyncClient, tenant_id: uuid.UUID, route: str
) -> None:
    wrong_audience = TokenIssuer(algorithm="HS256", key=INTERNAL_SECRET).issue(
        Identity("user-1", tenant_id), ttl_seconds=60
    )
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": f"Bearer {user_token(tenant_id)}"},  # a user's own token is not the gateway's
        {"Authorization": f"Bearer {wrong_audience}"},
        _internal(tenant_id, secret="another-secret-of-the-same-length-0123456789abcdef"),
        _internal(tenant_id, ttl_seconds=-60),
    ):
        response = await inventory.get(route, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["code"] == "UNAUTHORIZED"
        assert response.headers["www-authenticate"] == "Bearer"


async def test_health_and_metrics_stay_open(inventory: httpx.AsyncClient, tenant_id: uuid.UUID) -> None:
    assert (await inventory.get("/healthz")).json() == {"status": "ok"}
    assert (await inventory.get("/api/sync/changes", headers=_internal(tenant_id))).status_code == 200
    metrics = (await inventory.get("/metrics")).text
    assert 'stockzen_inventory_http_requests_total{method="GET",route="/api/sync/changes",status="200"}' in metrics


async def test_the_routes_answer_with_the_api_shapes(
    inventory: httpx.AsyncClient, app_pool: asyncpg.Pool, tenant_id: uuid.UUID
) -> None:
    writer = TenantWriter(app_pool, tenant_id)
    product = await writer.create_product("Mug", sku="MUG-1")
    moved = await writer.record_movement(product, "entry", 4)
    headers = _internal(tenant_id)

    listed = (await inventory.get("/api/products", params={"q": "mug", "limit": 1}, headers=headers)).json()
    assert [(p["id"], p["stockLevel"], p["sku"]) for p in listed["items"]] == [(str(product), 4, "MUG-1")]
    assert listed["nextCursor"] is None
    one = (await inventory.get(f"/api/products/{product}", headers=headers)).json()
    assert one["modifiedAt"].endswith("Z")
    assert one["stockLevel"] == 4
    history = (await inventory.get(f"/api/products/{product}/movements", headers=headers)).json()
    assert [m["id"] for m in history["items"]] == [str(moved)]
    rows_before = await _feed_rows(inventory)
    feed = (await inventory.get("/api/sync/changes", headers=headers)).json()
    assert feed["hasMore"] is False
    assert [(c["entityType"], c["operation"]) for c in feed["changes"]] == [
        ("product", "upsert"),
        ("stockMovement", "upsert"),
    ]
    assert "movement" not in feed["changes"][0]
    assert feed["changes"][1]["movement"]["productId"] == str(product)
    rows_after = await _feed_rows(inventory)
    assert (
        rows_after["product"] - rows_before["product"],
        rows_after["stockMovement"] - rows_before["stockMovement"],
    ) == (1, 1)


async def _feed_rows(inventory: httpx.AsyncClient) -> dict[str, float]:
    """``stockzen_inventory_feed_rows_total`` by entity type, as the metrics endpoint shows it now."""
    text = (await inventory.get("/metrics")).text
    prefix = 'stockzen_inventory_feed_rows_total{entity_type="'
    return {
        line[len(prefix) :].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


@pytest.mark.parametrize(
    ("route", "params", "status", "code"),
    [
        ("/api/products/{missing}", {}, 404, "NOT_FOUND"),
        ("/api/products/{missing}/movements", {}, 404, "NOT_FOUND"),
        ("/api/products/not-a-uuid", {}, 422, "VALIDATION_ERROR"),
        ("/api/products", {"cursor": "bm90IGEgY3Vyc29y"}, 422, "VALIDATION_ERROR"),
        ("/api/products", {"limit": "0"}, 422, "VALIDATION_ERROR"),
        ("/api/products", {"limit": "201"}, 422, "VALIDATION_ERROR"),
        ("/api/products/{missing}/movements", {"cursor": "%%%"}, 422, "VALIDATION_ERROR"),
        ("/api/sync/changes", {"checkpoint": "-1"}, 422, "VALIDATION_ERROR"),
        ("/api/products", {"q": "mug\x00"}, 422, "VALIDATION_ERROR"),
        ("/api/products", {"cursor": _FORGED_NUL_CURSOR}, 422, "VALIDATION_ERROR"),
        ("/api/products", {"cursor": _FORGED_SURROGATE_CURSOR}, 422, "VALIDATION_ERROR"),
        ("/api/products/{missing}/movements", {"cursor": _FORGED_FAR_CURSOR}, 422, "VALIDATION_ERROR"),
        ("/api/sync/changes", {"limit": "1001"}, 422, "VALIDATION_ERROR"),
        ("/api/sync/changes", {"checkpoint": "5"}, 409, "RESET_REQUIRED"),  # ahead of a tenant with no data
        ("/api/sync/snapshot", {"cursor": "e30"}, 422, "VALIDATION_ERROR"),
        ("/api/sync/snapshot", {"limit": "1001"}, 422, "VALIDATION_ERROR"),
        # A snapshot cursor of another tenant's data, ahead of this one's: it must start again.
        ("/api/sync/snapshot", {"cursor": _SNAPSHOT_AHEAD_CURSOR}, 409, "RESET_REQUIRED"),
    ],
)
async def test_refusals_answer_in_the_error_shape(
    inventory: httpx.AsyncClient, tenant_id: uuid.UUID, route: str, params: dict[str, str], status: int, code: str
) -> None:
    response = await inventory.get(route.format(missing=uuid.uuid4()), params=params, headers=_internal(tenant_id))
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.json()["message"]


async def test_openapi_documents_the_read_routes(inventory: httpx.AsyncClient) -> None:
    schema = (await inventory.get("/openapi.json")).json()
    for route in READ_ROUTES:
        ok = schema["paths"][route]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"].startswith("#/components/schemas/"), route
    feed = schema["components"]["schemas"]["ChangeFeedPage"]
    assert set(feed["required"]) == {"checkpoint", "hasMore", "changes"}
    assert "409" in schema["paths"]["/api/sync/changes"]["get"]["responses"]
    assert (await inventory.get("/docs")).status_code == 200

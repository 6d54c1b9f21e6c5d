"""The gateway's read routes in process (real Redis for rate limits), with inventory stood in for.

What inventory receives (path, parameters, the internal token, the request id) and what the client
gets back (inventory's answer as it is, or 503 when inventory cannot answer).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from stockzen_gateway.adapters.inventory_client import InventoryClient
from stockzen_gateway.bootstrap import build_adapters, build_app
from stockzen_gateway.config import GatewaySettings
from stockzen_platform.identity import Identity, internal_token_issuer, internal_token_verifier
from tests.support.services import ServiceUrls
from tests.support.stack import INTERNAL_SECRET, JWT_SECRET, delete_redis_keys, user_token

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeInventory:
    """Records what reached "inventory" and answers with ``respond``."""

    respond: Handler = lambda _: httpx.Response(200, json={"items": [], "nextCursor": None})
    seen: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return self.respond(request)


@dataclass
class Gateway:
    client: httpx.AsyncClient
    inventory: FakeInventory
    tenant_id: uuid.UUID

    async def get(
        self,
        path: str,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        user: str = "reader",
    ) -> httpx.Response:
        """GET as a user of the test's tenant."""
        auth = {"Authorization": f"Bearer {user_token(self.tenant_id, user)}"}
        return await self.client.get(path, params=params, headers={**auth, **(headers or {})})


@pytest.fixture
async def gateway(database: ServiceUrls, tenant_id: uuid.UUID) -> AsyncIterator[Gateway]:
    prefix = f"{database.redis_prefix}reads-{uuid.uuid4().hex[:6]}:"
    settings = GatewaySettings.model_validate(
        {
            "STOCKZEN_ENV": "test",
            "JWT_SECRET": JWT_SECRET,
            "INTERNAL_TOKEN_SECRET": INTERNAL_SECRET,
            "REDIS_URL": database.redis_url,
            "REDIS_KEY_PREFIX": prefix,
            "AMQP_URL": database.amqp_url,
            "READ_RATE_LIMIT_BURST": "5",
            # One token a minute: at the default rate a token comes back every 50 ms, and six requests
            # on a busy machine took longer than that, so the sixth was let through.
            "READ_RATE_LIMIT_PER_MINUTE": "1",
        }
    )
    fake = FakeInventory()
    inventory = InventoryClient(
        "http://inventory.test",
        token_issuer=internal_token_issuer(INTERNAL_SECRET),
        timeout_seconds=1,
        transport=httpx.MockTransport(fake),
    )
    app = build_app(settings, dataclasses.replace(build_adapters(settings), inventory=inventory))
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client,
        ):
            yield Gateway(client, fake, tenant_id)
    finally:
        await delete_redis_keys(database.redis_url, prefix)


async def test_a_read_reaches_inventory_as_the_verified_caller(gateway: Gateway) -> None:
    gateway.inventory.respond = lambda _: httpx.Response(200, json={"items": [], "nextCursor": "from-inventory"})
    response = await gateway.get(
        "/api/products", params={"q": "mug", "archived": "false", "limit": "10"}, headers={"X-Request-Id": "req-42"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "nextCursor": "from-inventory"}
    (forwarded,) = gateway.inventory.seen
    assert forwarded.url.path == "/api/products"
    assert dict(forwarded.url.params) == {"q": "mug", "archived": "false", "limit": "10"}
    scheme, _, token = forwarded.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    assert internal_token_verifier(INTERNAL_SECRET).verify(token) == Identity("reader", gateway.tenant_id)
    assert forwarded.headers["x-request-id"] == response.headers["x-request-id"] == "req-42"


async def test_each_route_forwards_its_own_path_and_parameters(gateway: Gateway) -> None:
    # Five requests at most: the read burst in these tests.
    product = uuid.uuid4()
    for path, params, expected in (
        (f"/api/products/{product}", {}, {}),
        (f"/api/products/{product}/movements", {"cursor": "abc"}, {"cursor": "abc", "limit": "50"}),
        ("/api/sync/changes", {"checkpoint": "12"}, {"checkpoint": "12", "limit": "100"}),
        ("/api/sync/changes", {}, {"limit": "100"}),
        ("/api/sync/snapshot", {"cursor": "abc", "limit": "1000"}, {"cursor": "abc", "limit": "1000"}),
    ):
        assert (await gateway.get(path, params=params)).status_code == 200
        forwarded = gateway.inventory.seen[-1]
        assert (forwarded.url.path, dict(forwarded.url.params)) == (path, expected)


async def test_inventorys_answer_is_passed_on_as_it_is(gateway: Gateway) -> None:
    body = {"code": "RESET_REQUIRED", "message": "checkpoint 3 is older than the tombstone retention window"}
    gateway.inventory.respond = lambda _: httpx.Response(409, json=body)
    response = await gateway.get("/api/sync/changes", params={"checkpoint": "3"})
    assert (response.status_code, response.json()) == (409, body)
    assert response.headers["content-type"] == "application/json"


def _refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _time_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("too slow", request=request)


@pytest.mark.parametrize(
    "respond",
    [
        _refuse_connection,
        _time_out,
        lambda _: httpx.Response(401, json={"code": "UNAUTHORIZED", "message": "bad internal token"}),
    ],
)
async def test_an_inventory_that_cannot_answer_is_503_unavailable(gateway: Gateway, respond: Handler) -> None:
    gateway.inventory.respond = respond
    response = await gateway.get("/api/products")
    assert response.status_code == 503
    assert response.json()["code"] == "UNAVAILABLE"
    assert int(response.headers["retry-after"]) > 0


async def test_the_gateway_refuses_before_asking_inventory(gateway: Gateway) -> None:
    anonymous = await gateway.client.get("/api/sync/changes")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "UNAUTHORIZED")
    for path, params in (
        ("/api/products/not-a-uuid", {}),
        ("/api/products", {"limit": "0"}),
        ("/api/sync/changes", {"limit": "1001"}),
        ("/api/sync/changes", {"checkpoint": "9" * 41}),
        ("/api/sync/snapshot", {"limit": "1001"}),
    ):
        response = await gateway.get(path, params=params)
        assert (response.status_code, response.json()["code"]) == (422, "VALIDATION_ERROR"), path
    assert gateway.inventory.seen == []


async def test_reads_are_rate_limited_per_user(gateway: Gateway) -> None:
    answers = [await gateway.get("/api/products") for _ in range(6)]  # the burst is 5 in this test
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert answers[-1].json()["code"] == "RATE_LIMITED"
    assert int(answers[-1].headers["retry-after"]) >= 1
    assert len(gateway.inventory.seen) == 5
    # Per user: a colleague in the same tenant still reads.
    assert (await gateway.get("/api/products", user="colleague")).status_code == 200


async def test_openapi_documents_the_read_routes(gateway: Gateway) -> None:
    schema = json.loads((await gateway.client.get("/openapi.json")).content)
    for path, model in (
        ("/api/products", "ProductPage"),
        ("/api/products/{product_id}", "ProductView"),
        ("/api/products/{product_id}/movements", "MovementPage"),
        ("/api/sync/changes", "ChangeFeedPage"),
        ("/api/sync/snapshot", "SnapshotPage"),
    ):
        ok = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"] == f"#/components/schemas/{model}"

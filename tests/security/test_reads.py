"""Reads that cannot hold the shared database hostage: a search that matches nothing reads an index,
not every product of its tenant; a read past its time limit is stopped in Postgres and answers 503
in the error shape; and a read whose caller gave up (the gateway's timeout, a hung-up connection)
is cancelled in Postgres instead of running on for nobody.

A read made slow on purpose waits on a lock: the test holds ``products`` locked in a database of its
own (never the shared test database), so the read sits in ``pg_stat_activity`` as long as nothing
stops it, and whether something did is plain to see.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from stockzen_inventory.adapters.migrations import migrate, prepare_database
from stockzen_inventory.adapters.reads import product_list_query
from stockzen_inventory.domain.products import ProductFilter
from stockzen_platform.identity import Identity, internal_token_issuer
from stockzen_platform.postgres import tenant_transaction
from stockzen_platform.read_api import CALLER_BUDGET_HEADER
from tests.support.large_tenant import product_name, seed_large_tenant
from tests.support.retry import eventually, get_within_limits
from tests.support.services import ServiceUrls
from tests.support.stack import INTERNAL_SECRET, Stack, gateway_client
from tests.support.tokens import expect_error

SEARCHED_PRODUCTS = 20_000


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@dataclass(frozen=True)
class PrivateDatabase:
    """A migrated database of this module's own, for reads kept waiting on a lock."""

    name: str
    app_url: str
    admin_url: str

    @asynccontextmanager
    async def products_locked(self) -> AsyncIterator[None]:
        """``products`` locked against every read until the block ends."""
        holder = await asyncpg.connect(self.admin_url)
        try:
            async with holder.transaction():
                await holder.execute("LOCK TABLE products IN ACCESS EXCLUSIVE MODE")
                yield
        finally:
            await holder.close()

    async def waiting_reads(self) -> int:
        """How many of the services' statements are running in Postgres, stuck behind the lock."""
        observer = await asyncpg.connect(self.admin_url)
        try:
            count: int = await observer.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND usename = 'stockzen_app' "
                "AND state = 'active' AND wait_event_type = 'Lock'",
                self.name,
            )
        finally:
            await observer.close()
        return count


@pytest.fixture(scope="module")
async def private_database(database: ServiceUrls) -> AsyncIterator[PrivateDatabase]:
    name = f"stockzen_reads_{uuid.uuid4().hex[:8]}"
    private = PrivateDatabase(
        name, _with_database(database.app_url, name), _with_database(database.admin_server_url, name)
    )
    await prepare_database(database.admin_server_url, private.app_url)
    await migrate(database.admin_server_url, private.app_url)
    try:
        yield private
    finally:
        server = await asyncpg.connect(database.admin_server_url)
        try:
            await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await server.close()


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


async def _search_plan(app_pool: asyncpg.Pool, tenant: uuid.UUID, text: str) -> dict[str, Any]:
    """The executed plan of the service's own list statement for ``text``, run as the application role
    under row-level security, the way the service runs it."""
    sql, params = product_list_query(tenant, ProductFilter.of(text, None), None, 51)
    settings = {"plan_cache_mode": "force_custom_plan"}
    async with tenant_transaction(app_pool, tenant, readonly=True, local_settings=settings) as db:
        explained = await db.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *params)
    plan: dict[str, Any] = explained[0]["Plan"]
    return plan


@pytest.mark.slow
async def test_a_search_that_finds_nothing_reads_an_index_not_the_tenants_products(
    stack: Stack,
    gateway: httpx.AsyncClient,
    database: ServiceUrls,
    app_pool: asyncpg.Pool,
    admin: asyncpg.Connection,
    tenant_id: uuid.UUID,
) -> None:
    await seed_large_tenant(database.admin_url, tenant_id, products=SEARCHED_PRODUCTS, movements=0)
    miss = uuid.uuid4().hex[:10]

    found = await get_within_limits(gateway, "/api/products", {"q": miss})
    assert (found.status_code, found.json()["items"]) == (200, [])
    hit = await get_within_limits(gateway, "/api/products", {"q": product_name(12345).lower()})
    assert [p["name"] for p in hit.json()["items"]] == [product_name(12345)]

    plan = await _search_plan(app_pool, tenant_id, miss)
    nodes = list(_plan_nodes(plan))
    assert any(n.get("Index Name") == "products_search" for n in nodes), plan
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "products"], plan
    tenant_pages = await admin.fetchval(
        "SELECT count(DISTINCT (ctid::text::point)[0]) FROM products WHERE tenant_id = $1", tenant_id
    )
    read = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    assert read < tenant_pages / 2, f"a miss read {read} blocks; the tenant's products fill {tenant_pages} pages"

    # The index holds every tenant's products; row-level security still shows each only its own.
    async with gateway_client(stack, uuid.uuid4(), "stranger") as stranger:
        theirs = await get_within_limits(stranger, "/api/products", {"q": product_name(12345)})
        assert (theirs.status_code, theirs.json()["items"]) == (200, [])


@pytest.mark.slow
async def test_a_read_past_its_time_limit_is_stopped_in_postgres_and_answers_503(
    own_stack: Stack, private_database: PrivateDatabase, tenant_id: uuid.UUID
) -> None:
    await asyncio.to_thread(
        own_stack.start_inventory, DATABASE_URL=private_database.app_url, INVENTORY_READ_STATEMENT_TIMEOUT_MS="500"
    )
    await asyncio.to_thread(own_stack.start_gateway)
    async with private_database.products_locked(), gateway_client(own_stack, tenant_id) as client:
        started = time.monotonic()
        response = await client.get("/api/products", params={"q": "mug"})
        expect_error(response, 503, "UNAVAILABLE")
        assert "time limit" in response.json()["message"]
        assert int(response.headers["retry-after"]) >= 1
        assert time.monotonic() - started < 4, "stopped at the inventory's limit, not the gateway's timeout"
        assert await private_database.waiting_reads() == 0


async def _stopped_soon_after(private_database: PrivateDatabase, gave_up: float) -> None:
    """The read left Postgres within two seconds of its caller giving up, the lock still held."""
    await eventually(lambda: _none_waiting(private_database), seconds=5)
    assert time.monotonic() - gave_up < 2


async def _none_waiting(private_database: PrivateDatabase) -> bool:
    return await private_database.waiting_reads() == 0


async def _waiting_in_postgres(private_database: PrivateDatabase) -> bool:
    return await private_database.waiting_reads() == 1


@pytest.mark.slow
async def test_a_read_the_gateway_gave_up_on_is_cancelled_in_postgres(
    own_stack: Stack, private_database: PrivateDatabase, tenant_id: uuid.UUID
) -> None:
    # Inventory's own limit is far away: only the gateway giving up can end this read.
    await asyncio.to_thread(
        own_stack.start_inventory, DATABASE_URL=private_database.app_url, INVENTORY_READ_STATEMENT_TIMEOUT_MS="600000"
    )
    await asyncio.to_thread(own_stack.start_gateway, INVENTORY_TIMEOUT_SECONDS="1.5")
    async with private_database.products_locked(), gateway_client(own_stack, tenant_id) as client:
        answer = asyncio.create_task(client.get("/api/products", params={"q": "mug"}))
        await eventually(lambda: _waiting_in_postgres(private_database), seconds=5)
        response = await answer
        gave_up = time.monotonic()
        expect_error(response, 503, "UNAVAILABLE")
        await _stopped_soon_after(private_database, gave_up)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["hangs up", "sends its budget"])
async def test_inventory_stops_a_read_its_caller_no_longer_waits_for(
    own_stack: Stack, private_database: PrivateDatabase, tenant_id: uuid.UUID, how: str
) -> None:
    await asyncio.to_thread(
        own_stack.start_inventory, DATABASE_URL=private_database.app_url, INVENTORY_READ_STATEMENT_TIMEOUT_MS="600000"
    )
    token = internal_token_issuer(INTERNAL_SECRET).issue(Identity("user-1", tenant_id), ttl_seconds=60)
    headers = {"Authorization": f"Bearer {token}"}
    if how == "sends its budget":
        headers[CALLER_BUDGET_HEADER] = "1000"
    patience = 1.0 if how == "hangs up" else 30.0
    async with (
        private_database.products_locked(),
        httpx.AsyncClient(base_url=own_stack.inventory_url, headers=headers, timeout=patience) as caller,
    ):
        answer = asyncio.create_task(caller.get("/api/sync/changes"))
        await eventually(lambda: _waiting_in_postgres(private_database), seconds=5)
        if how == "hangs up":
            with pytest.raises(httpx.ReadTimeout):
                await answer
        else:
            expect_error(await answer, 503, "UNAVAILABLE")
        await _stopped_soon_after(private_database, time.monotonic())
    # The connection the stopped read held is usable again (or was replaced): the next read answers.
    async with httpx.AsyncClient(base_url=own_stack.inventory_url, headers=headers, timeout=30) as caller:
        assert (await caller.get("/api/sync/changes")).status_code == 200

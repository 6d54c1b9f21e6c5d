"""The browser app on a new device of a shop with a year of history, in Debian's Chromium against the
real stack: correct stock from a snapshot, products shown as they arrive, and the snapshot's edges (writes
racing it, a delete between it and the feed, a reset with changes queued).

Nothing here is timed (``make bench`` measures speed); at this size an app that replayed the ledger
would not reach "Up to date" within the tests' waits at all."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
from playwright.async_api import Page, Route, expect

from tests.e2e.web.conftest import NewContext, sign_in, status
from tests.support.large_tenant import product_name, seed_large_tenant, server_levels
from tests.support.ops import create_product, delete_product, movement
from tests.support.services import ServiceUrls
from tests.support.stack import Stack, user_token


async def _push(stack: Stack, tenant: uuid.UUID, operations: list[dict[str, object]]) -> None:
    """Another device's changes, applied before this returns."""
    headers = {"Authorization": f"Bearer {user_token(tenant, 'other-device')}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=30) as http:
        answer = await http.post("/api/sync", json={"checkpoint": None, "operations": operations})
    assert answer.status_code == 200, answer.text
    assert {r["status"] for r in answer.json()["results"]} <= {"applied"}, answer.text


async def _shown_rows(page: Page) -> dict[str, tuple[str, int]]:
    """The product rows on screen: id -> (name, stock as the cell shows it)."""
    rows: list[list[str]] = await page.evaluate(
        """() => [...document.querySelectorAll('#product-list tr[data-product-id]')].map((row) =>
             [row.dataset.productId, row.querySelector('a').textContent, row.querySelector('.stock').textContent])"""
    )
    return {product: (name, int(stock)) for product, name, stock in rows}


async def _search(page: Page, text: str) -> dict[str, tuple[str, int]]:
    await page.get_by_label("Search products").fill(text)
    # The list is redrawn for the new text: every row it shows matches it.
    await page.wait_for_function(
        """(text) => {
             const names = [...document.querySelectorAll('#product-list tr[data-product-id] a')].map((a) => a.textContent);
             return names.length > 0 && names.every((name) => name.includes(text));
           }""",
        arg=text,
    )
    return await _shown_rows(page)


async def test_a_new_device_shows_correct_stock_of_a_year_of_history(
    new_context: NewContext, token: str, stack: Stack, database: ServiceUrls, tenant_id: uuid.UUID
) -> None:
    await seed_large_tenant(database.admin_url, tenant_id, products=2_000, movements=100_000)
    server = await server_levels(database.admin_url, tenant_id)
    page = await sign_in(await new_context(), token)

    first_page = await _shown_rows(page)
    assert len(first_page) == 50  # one page of the list, by name
    assert [name for name, _ in first_page.values()] == [product_name(n) for n in range(1, 51)]
    assert first_page == {product: server[product] for product in first_page}
    await expect(page.locator("#product-count")).to_contain_text("of 2,000")
    for n in (77, 1234, 2000):
        found = await _search(page, product_name(n))
        assert found == {product: server[product] for product in found}, n
        assert [name for name, _ in found.values()] == [product_name(n)]


async def test_writes_racing_the_snapshot_are_each_counted_once(
    new_context: NewContext, token: str, stack: Stack, database: ServiceUrls, tenant_id: uuid.UUID
) -> None:
    # 1,200 products: three snapshot pages of 500, with other devices' writes landing between them.
    await seed_large_tenant(database.admin_url, tenant_id, products=1_200, movements=6_000)
    ids = [uuid.UUID(p) for p in await server_levels(database.admin_url, tenant_id)]
    raced = [uuid.uuid4() for _ in range(3)]

    async def write_between_pages(route: Route) -> None:
        response = await route.fetch()
        if raced:
            fresh = raced.pop()
            await _push(
                stack,
                tenant_id,
                [movement(tenant_id, ids[(len(raced) * 401 + n * 37) % len(ids)], "entry", 3) for n in range(10)]
                + [create_product(tenant_id, fresh, name=f"Raced {fresh}"), movement(tenant_id, fresh, "entry", 9)],
            )
        await route.fulfill(response=response)

    context = await new_context()
    await context.route("**/api/sync/snapshot*", write_between_pages)
    page = await sign_in(context, token)
    assert raced == []  # the download raced three writes
    server = await server_levels(database.admin_url, tenant_id)
    for product in [*ids[:1], *(ids[(n * 401 + m * 37) % len(ids)] for n in range(3) for m in (0, 9))]:
        name = server[str(product)][0]
        assert await _search(page, name) == {str(product): server[str(product)]}
    for name, level in server.values():
        if name.startswith("Raced"):
            assert list((await _search(page, name)).values()) == [(name, level)]


async def test_a_product_deleted_between_the_snapshot_and_the_feed_is_gone(
    new_context: NewContext, token: str, stack: Stack, database: ServiceUrls, tenant_id: uuid.UUID
) -> None:
    await seed_large_tenant(database.admin_url, tenant_id, products=300, movements=3_000)
    server = await server_levels(database.admin_url, tenant_id)
    doomed = next(p for p, (name, _) in server.items() if name == product_name(2))
    kept = next(p for p, (name, _) in server.items() if name == product_name(3))
    deleted: list[bool] = []

    async def delete_before_the_feed(route: Route) -> None:
        if not deleted:
            deleted.append(True)
            ops = [delete_product(tenant_id, uuid.UUID(doomed)), movement(tenant_id, uuid.UUID(kept), "exit", 4)]
            await _push(stack, tenant_id, ops)
        await route.continue_()

    context = await new_context()
    await context.route("**/api/sync/changes*", delete_before_the_feed)
    page = await sign_in(context, token)
    assert deleted
    shown = await _shown_rows(page)
    assert doomed not in shown
    assert shown[kept] == (product_name(3), server[kept][1] - 4)


async def test_a_reset_with_queued_changes_keeps_them_and_counts_each_once(
    new_context: NewContext,
    token: str,
    stack: Stack,
    database: ServiceUrls,
    admin: asyncpg.Connection,
    tenant_id: uuid.UUID,
) -> None:
    await seed_large_tenant(database.admin_url, tenant_id, products=200, movements=4_000)
    context = await new_context()
    page = await sign_in(context, token)
    first = page.locator("#product-list tr[data-product-id]").first
    product = await first.get_attribute("data-product-id")
    assert product is not None
    before = int(await first.locator(".stock").inner_text())

    await context.set_offline(True)
    await expect(status(page)).to_contain_text("Offline")
    for _ in range(3):
        await first.get_by_role("button", name=f"Stock entry of 1 for {product_name(1)}").click()
    await expect(first.locator(".stock")).to_have_text(str(before + 3))
    await expect(status(page)).to_contain_text("3 queued")
    # Meanwhile another device records a delivery, and the server purges history this device had.
    await _push(stack, tenant_id, [movement(tenant_id, uuid.UUID(product), "entry", 10)])
    await admin.execute("UPDATE tenants SET feed_horizon = last_checkpoint WHERE tenant_id = $1", tenant_id)

    await context.set_offline(False)  # the app syncs by itself on reconnect
    await expect(status(page)).to_contain_text("Up to date", timeout=30_000)
    await expect(first.locator(".stock")).to_have_text(str(before + 13))
    server = await server_levels(database.admin_url, tenant_id)
    assert server[product][1] == before + 13
    assert await _shown_rows(page) == {p: server[p] for p in await _shown_rows(page)}

"""The browser app against the real stack: a change the server refuses is undone on screen, and the tabs
of one browser sync through one leading tab, each change pushed once, handing over when it closes."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
from playwright.async_api import Locator, Page, Request, Route, expect

from tests.support.retry import eventually, get_within_limits

from .conftest import NewContext, add_product, product_row, sign_in, status


async def _server_product(gateway: httpx.AsyncClient, name: str) -> dict[str, object]:
    listed = await get_within_limits(gateway, "/api/products", {"q": name})
    (product,) = [p for p in listed.json()["items"] if p["name"] == name]
    return dict(product)


def _root(page: Page) -> Locator:
    """The page's root element: its ``data-sync-role`` says whether this tab syncs (``leader``) or not."""
    return page.locator("html")


async def test_an_edit_the_server_refuses_is_undone_on_screen_and_listed_as_failed(
    new_context: NewContext, token: str, gateway: httpx.AsyncClient
) -> None:
    context = await new_context()
    page = await sign_in(context, token)
    await add_product(page, "Pepper")
    await product_row(page, "Pepper").get_by_role("link", name="Pepper").click()
    edit = page.get_by_role("form", name="Edit product")
    await edit.get_by_label("Price (cents)").fill("250")
    await edit.get_by_role("button", name="Save").click()

    async def price_synced() -> bool:
        return (await _server_product(gateway, "Pepper"))["priceCents"] == 250

    await eventually(price_synced)
    await expect(status(page)).to_contain_text("Up to date")
    await expect(status(page)).not_to_contain_text("queued")

    await context.set_offline(True)
    # A price the server refuses for good (its limit is 10**12). Only this edit: the feed then brings
    # nothing of the product, so what the screen shows afterwards is the app's own undo.
    # The form knows the server's limit (its max comes from the OpenAPI); the app of an older build, or
    # a server that lowered it since, would not: take the bound off so the server has the last word.
    price = edit.get_by_label("Price (cents)")
    await price.evaluate("(input) => input.removeAttribute('max')")
    await price.fill(str(10**17))
    await edit.get_by_role("button", name="Save").click()
    await expect(status(page)).to_contain_text("1 queued")
    await expect(edit.get_by_label("Price (cents)")).to_have_value(str(10**17))  # shown at once, offline

    await context.set_offline(False)
    await expect(status(page)).to_contain_text("1 failed")
    await expect(status(page)).to_contain_text("Up to date")
    await expect(edit.get_by_label("Price (cents)")).to_have_value("250")  # undone: the server's price
    await expect(page.locator("#stock-level")).to_have_text("0")
    await expect(page.locator(".notice[data-kind=rejected]")).to_contain_text("refused")
    assert (await _server_product(gateway, "Pepper"))["priceCents"] == 250

    await status(page).get_by_role("link", name="See failed").click()
    failed = page.locator(".failed-list li")
    await expect(failed).to_have_count(1)
    await expect(failed).to_contain_text("Product update")
    await expect(failed.locator(".reason")).to_contain_text("VALIDATION_ERROR")
    await failed.get_by_role("button", name="Dismiss").click()
    await expect(page.locator(".failed-list")).to_have_text("Nothing failed.")
    await expect(status(page)).not_to_contain_text("failed")
    await page.get_by_role("link", name="All products").click()
    await product_row(page, "Pepper").get_by_role("link", name="Pepper").click()
    await expect(edit.get_by_label("Price (cents)")).to_have_value("250")


async def test_two_tabs_sync_through_one_leader_push_each_change_once_and_hand_over(
    new_context: NewContext, token: str, gateway: httpx.AsyncClient
) -> None:
    # Service workers off: each page's own requests reach its route handler.
    context = await new_context(service_workers="block")
    pushed: Counter[str] = Counter()
    senders: Counter[str] = Counter()

    def counting(tab: str) -> Callable[[Route, Request], Awaitable[None]]:
        async def count(route: Route, request: Request) -> None:
            body: dict[str, list[dict[str, str]]] = request.post_data_json or {}
            for operation in body.get("operations", []):
                pushed[operation["operationId"]] += 1
            senders[tab] += 1
            await route.continue_()

        return count

    first = await sign_in(context, token)
    await first.route("**/api/sync", counting("first"))
    second = await context.new_page()
    await second.route("**/api/sync", counting("second"))
    await second.goto("/app/")
    await expect(status(second)).to_contain_text("Up to date")
    await expect(_root(first)).to_have_attribute("data-sync-role", "leader")
    await expect(_root(second)).to_have_attribute("data-sync-role", "follower")

    await context.set_offline(True)
    for page in (first, second):
        await expect(status(page)).to_contain_text("Offline")
    await add_product(first, "Cumin")
    await add_product(second, "Clove")
    # Each tab sees the other's product (one IndexedDB), and records stock on it.
    await product_row(first, "Clove").get_by_role("button", name=re.compile("Stock entry of 1")).click()
    await product_row(second, "Cumin").get_by_role("button", name=re.compile("Stock entry of 1")).click()
    for page in (first, second):
        await expect(status(page)).to_contain_text("4 queued")  # the same status in every tab

    await context.set_offline(False)
    for page in (first, second):
        await expect(status(page)).to_contain_text("Up to date")
        await expect(status(page)).not_to_contain_text("queued")
    assert len(pushed) == 4, pushed
    assert set(pushed.values()) == {1}, f"an operation was pushed twice: {pushed}"
    assert senders["second"] == 0, "only the leading tab pushes"
    for name in ("Cumin", "Clove"):
        assert (await _server_product(gateway, name))["stockLevel"] == 1

    # The follower queues a change offline; the leader closes; the follower takes over and sends it.
    await context.set_offline(True)
    await add_product(second, "Anise")
    await expect(status(second)).to_contain_text("1 queued")
    await first.close()
    await expect(_root(second)).to_have_attribute("data-sync-role", "leader")
    await context.set_offline(False)
    await expect(status(second)).to_contain_text("Up to date")
    await expect(status(second)).not_to_contain_text("queued")
    assert len(pushed) == 5, pushed
    assert set(pushed.values()) == {1}, f"an operation was pushed twice: {pushed}"
    await _server_product(gateway, "Anise")

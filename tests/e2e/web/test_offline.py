"""Working offline in the browser: everything queues locally, and syncs by itself on reconnect."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import expect

from tests.support.retry import get_within_limits

from .conftest import NewContext, add_product, product_row, sign_in, status


async def test_offline_changes_queue_and_sync_by_themselves_on_reconnect(
    new_context: NewContext, token: str, gateway: httpx.AsyncClient
) -> None:
    context = await new_context()
    page = await sign_in(context, token)
    await add_product(page, "Black tea")
    await expect(status(page)).to_contain_text("Up to date")
    await expect(status(page)).not_to_contain_text("queued")
    assert [p["name"] for p in (await get_within_limits(gateway, "/api/products")).json()["items"]] == ["Black tea"]

    await context.set_offline(True)
    await expect(status(page)).to_contain_text("Offline")
    await add_product(page, "Green tea", threshold=5)
    row = product_row(page, "Green tea")
    await row.get_by_role("button", name=re.compile("Stock entry of 1")).click()
    await row.get_by_role("button", name=re.compile("Stock entry of 1")).click()
    await row.get_by_role("button", name=re.compile("Stock exit of 1")).click()
    await expect(row.locator(".stock")).to_have_text("1")
    await expect(row).to_contain_text("Low stock")

    await row.get_by_role("link", name="Green tea").click()
    record = page.get_by_role("form", name="Record stock")
    await record.get_by_label("Quantity").fill("10")
    await record.get_by_role("button", name="Stock entry").click()
    await expect(page.locator("#stock-level")).to_have_text("11")
    edit = page.get_by_role("form", name="Edit product")
    await edit.get_by_label("SKU").fill("TEA-GREEN")
    await edit.get_by_role("button", name="Save").click()
    await page.get_by_role("link", name="All products").click()
    await product_row(page, "Black tea").get_by_role("link", name="Black tea").click()
    await page.get_by_role("button", name="Delete product").click()
    await page.get_by_role("button", name="Confirm delete").click()
    await expect(product_row(page, "Black tea")).to_have_count(0)
    await expect(status(page)).to_contain_text("Offline")
    await expect(status(page)).to_contain_text("7 queued")
    listed = await get_within_limits(gateway, "/api/products")
    assert [p for p in listed.json()["items"] if p["name"] == "Green tea"] == [], "nothing may reach the server offline"

    await context.set_offline(False)  # no click, no reload: the app syncs by itself
    await expect(status(page)).to_contain_text("Up to date")
    await expect(status(page)).not_to_contain_text("queued")
    listed = await get_within_limits(gateway, "/api/products")
    (product,) = listed.json()["items"]  # Black tea was deleted
    assert product["name"] == "Green tea"
    assert (product["sku"], product["stockLevel"], product["lowStockThreshold"]) == ("TEA-GREEN", 11, 5)
    history = await get_within_limits(gateway, f"/api/products/{product['id']}/movements")
    assert [(m["kind"], m["quantity"]) for m in history.json()["items"]] == [
        ("entry", 10),
        ("exit", 1),
        ("entry", 1),
        ("entry", 1),
    ]

"""The browser app against the real stack: failures, conflicts, offline reloads, live updates, history."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from playwright.async_api import Route, expect

from tests.support.retry import get_within_limits, sync_until_final

from .conftest import NewContext, add_product, product_row, sign_in, status


async def _product_id(gateway: httpx.AsyncClient, name: str) -> str:
    listed = await get_within_limits(gateway, "/api/products", {"q": name})
    (product,) = [p for p in listed.json()["items"] if p["name"] == name]
    return str(product["id"])


async def test_a_failing_server_shows_error_the_user_keeps_working_and_it_syncs_once_it_recovers(
    new_context: NewContext, token: str, gateway: httpx.AsyncClient
) -> None:
    # Service workers off: requests then reach the route handler from the page itself.
    context = await new_context(service_workers="block")
    page = await sign_in(context, token)
    refused = 0

    async def unavailable(route: Route) -> None:
        nonlocal refused
        refused += 1
        body = {"code": "UNAVAILABLE", "message": "a dependency is unavailable; retry later"}
        await route.fulfill(status=503, json=body, headers={"Retry-After": "1"})

    await context.route("**/api/sync", unavailable)
    await add_product(page, "Flour")
    await expect(status(page)).to_contain_text("Sync problem")
    await expect(status(page)).to_contain_text("1 queued")
    await add_product(page, "Sugar")  # the user keeps working
    await expect(status(page)).to_contain_text("2 queued")
    assert refused >= 1

    await context.unroute("**/api/sync")
    await expect(status(page)).to_contain_text("Up to date", timeout=45_000)
    for name in ("Flour", "Sugar"):
        await _product_id(gateway, name)


async def test_a_conflict_shows_a_brief_notice_and_the_servers_state(
    new_context: NewContext, token: str, gateway: httpx.AsyncClient, tenant_id: uuid.UUID
) -> None:
    context = await new_context()
    page = await sign_in(context, token)
    await add_product(page, "Rice")
    await expect(status(page)).to_contain_text("Up to date")
    product_id = await _product_id(gateway, "Rice")

    await context.set_offline(True)
    await product_row(page, "Rice").get_by_role("link", name="Rice").click()
    edit = page.get_by_role("form", name="Edit product")
    await edit.get_by_label("Name").fill("Rice (this tablet)")
    await edit.get_by_role("button", name="Save").click()
    # The click returns before the app has stamped its edit: wait until the edit is queued, so the
    # other device's rename below is really the later one.
    await expect(status(page)).to_contain_text("1 queued")
    # Another device renames it later than this tablet did: last writer wins on the server.
    later = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    operation_id = str(uuid.uuid4())
    other = {
        "operationId": operation_id,
        "idempotencyKey": operation_id,
        "entityType": "product",
        "entityId": product_id,
        "operationType": "update",
        "tenantId": str(tenant_id),
        "modifiedAt": later,
        "payload": {"name": "Rice (other device)"},
    }
    answer = await sync_until_final(gateway, [other])
    assert answer.json()["results"][0]["status"] == "applied"

    await context.set_offline(False)
    notice = page.locator(".notice[data-kind=conflict]")
    await expect(notice).to_have_text("Updated from another device")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Rice (other device)")
    await expect(page.get_by_role("dialog")).to_have_count(0)
    await expect(notice).to_have_count(0, timeout=15_000)  # brief: it goes away by itself


async def test_a_reload_while_offline_opens_the_app_and_its_data(new_context: NewContext, token: str) -> None:
    context = await new_context()
    page = await sign_in(context, token)
    await add_product(page, "Oats")
    await expect(status(page)).to_contain_text("Up to date")
    # The service worker must control the page before the connection goes.
    await page.wait_for_function("navigator.serviceWorker.controller !== null")

    await context.set_offline(True)
    await page.reload()
    await expect(product_row(page, "Oats")).to_be_visible()
    await expect(status(page)).to_contain_text("Offline")
    await add_product(page, "Barley")
    await expect(status(page)).to_contain_text("1 queued")
    await context.set_offline(False)
    await expect(status(page)).to_contain_text("Up to date")


async def test_a_second_device_sees_the_change_live(new_context: NewContext, token: str) -> None:
    first = await sign_in(await new_context(), token)
    second = await sign_in(await new_context(), token)

    started = time.monotonic()
    await add_product(first, "Lentils")
    # The periodic pull runs every 30 s: seeing it well before proves the live stream told it.
    await expect(product_row(second, "Lentils")).to_be_visible(timeout=8_000)
    assert time.monotonic() - started < 8


async def test_movement_history_scrolls_newest_first_without_repeats_or_gaps(
    new_context: NewContext, token: str, gateway: httpx.AsyncClient, tenant_id: uuid.UUID
) -> None:
    page = await sign_in(await new_context(), token)
    await add_product(page, "Beans")
    await expect(status(page)).to_contain_text("Up to date")
    product_id = await _product_id(gateway, "Beans")
    start = datetime.now(UTC) - timedelta(days=1)

    def movement(quantity: int, at: datetime) -> dict[str, object]:
        op = str(uuid.uuid4())
        return {
            "operationId": op,
            "idempotencyKey": op,
            "entityType": "stockMovement",
            "entityId": str(uuid.uuid4()),
            "operationType": "create",
            "tenantId": str(tenant_id),
            "modifiedAt": at.isoformat(),
            "payload": {"productId": product_id, "kind": "entry", "quantity": quantity, "occurredAt": at.isoformat()},
        }

    older = [movement(q, start + timedelta(minutes=q)) for q in range(1, 71)]  # three pages of 30
    assert (await sync_until_final(gateway, older)).status_code == 200

    await product_row(page, "Beans").get_by_role("link", name="Beans").click()
    items = page.locator(".history li[data-movement-id]")
    await expect(items.first).to_contain_text("70")
    # New movements arrive while scrolling: they appear on top, and paging goes on from its cursor.
    newer = [movement(q, datetime.now(UTC) - timedelta(seconds=q)) for q in (101, 102)]
    assert (await sync_until_final(gateway, newer)).status_code == 200
    await expect(items.first).to_contain_text("101", timeout=5_000)  # live, without a reload
    for _ in range(10):  # three pages of older movements at most; bounded in any case
        loaded = await items.count()
        if loaded >= 72:
            break
        await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        await expect(items).not_to_have_count(loaded)  # the next page came in
    ids = await items.evaluate_all("(els) => els.map((e) => e.dataset.movementId)")
    assert len(ids) == len(set(ids)) == 72
    quantities = await items.locator("strong").all_inner_texts()
    assert quantities == ["101", "102", *[str(q) for q in range(70, 0, -1)]]

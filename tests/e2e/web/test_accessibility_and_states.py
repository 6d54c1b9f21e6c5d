"""Every status state as a person sees it (screenshots for the README), and axe-core on every screen."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from playwright.async_api import Page, Route, expect

from .conftest import NewContext, add_product, axe_violations, product_row, sign_in, status

README_IMAGES = Path(__file__).resolve().parents[3] / "docs" / "images"


async def _no_violations(page: Page, where: str) -> None:
    violations = await axe_violations(page)
    assert violations == [], f"{where}: " + "; ".join(f"{v['id']}: {v['help']}" for v in violations)


async def _shot(page: Page, state: str, out: Path) -> None:
    path = out / f"status-{state}.png"
    await page.screenshot(path=str(path))
    assert path.stat().st_size > 0


async def test_each_status_state_is_announced_with_icon_and_text_and_every_screen_passes_axe(
    new_context: NewContext, token: str, tmp_path: Path
) -> None:
    # UPDATE_SCREENSHOTS=1 writes the README's pictures; otherwise they go to a temporary folder.
    out = README_IMAGES if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    # bypass_csp: axe is injected as an inline script, which the app's policy rightly refuses.
    context = await new_context(service_workers="block", viewport={"width": 900, "height": 520}, bypass_csp=True)

    signed_out = await context.new_page()
    await signed_out.goto("/app/")
    await expect(signed_out.get_by_role("button", name="Sign in")).to_be_visible()
    # Before sign-in there is nothing to sync: the indicator must not claim "Up to date".
    await expect(status(signed_out)).to_have_text("")
    await expect(status(signed_out)).not_to_have_attribute("data-state", "upToDate")
    await _no_violations(signed_out, "sign-in")
    await signed_out.close()

    page = await sign_in(context, token)
    indicator = status(page)
    await expect(indicator).to_have_attribute("role", "status")
    await expect(indicator).to_have_attribute("aria-live", "polite")
    await add_product(page, "Coffee beans", threshold=3)
    await expect(indicator).to_have_attribute("data-state", "upToDate")
    await expect(indicator.locator(".icon")).to_have_text("✓")
    await _shot(page, "upToDate", out)
    await _no_violations(page, "products, up to date")

    pushed = asyncio.Event()

    async def slow(route: Route) -> None:
        # Held until the test has seen "syncing"; then it goes on to the real gateway.
        await expect(indicator).to_have_attribute("data-state", "syncing")
        await _shot(page, "syncing", out)
        await route.continue_()
        pushed.set()

    await context.route("**/api/sync", slow)
    await product_row(page, "Coffee beans").get_by_role("button", name="Stock entry of 1 for Coffee beans").click()
    # The click returns before the change is queued (the indicator still says "Up to date" then): wait
    # for its push, then for the sync to end.
    await asyncio.wait_for(pushed.wait(), timeout=15)
    await expect(indicator).to_have_attribute("data-state", "upToDate")
    await expect(indicator).not_to_contain_text("queued")
    await context.unroute("**/api/sync")

    await context.set_offline(True)
    await product_row(page, "Coffee beans").get_by_role("button", name="Stock exit of 1 for Coffee beans").click()
    await expect(indicator).to_have_attribute("data-state", "offline")
    await expect(indicator).to_contain_text("1 queued")
    await _shot(page, "offline", out)
    await _no_violations(page, "products, offline")

    async def unavailable(route: Route) -> None:
        await route.fulfill(status=503, json={"code": "UNAVAILABLE", "message": "a dependency is unavailable"})

    await context.route("**/api/sync", unavailable)
    await context.set_offline(False)
    await expect(indicator).to_have_attribute("data-state", "error")
    await expect(indicator).to_contain_text("Sync problem")
    await _shot(page, "error", out)
    await _no_violations(page, "products, error")

    await product_row(page, "Coffee beans").get_by_role("link", name="Coffee beans").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Coffee beans")
    await _no_violations(page, "product page")
    await context.unroute("**/api/sync")
    await expect(indicator).to_have_attribute("data-state", "upToDate", timeout=45_000)

    await page.goto("/app/#/failed")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Changes the server refused")
    await _no_violations(page, "failed changes")

"""The browser app against what others control, in Debian's Chromium on the real stack: the data a
signed-out user leaves on a device (the next user of a shared device could read it), and a hostile or
broken server that asks it to wait for years. (The Python client's side: ``test_clients.py``.)"""

from __future__ import annotations

import uuid

import httpx
from playwright.async_api import BrowserContext, Page, Route, expect

from tests.e2e.web.conftest import (  # also skips this module when there is no Chromium
    NewContext,
    add_product,
    axe_violations,
    browser,  # noqa: F401 (a fixture)
    new_context,  # noqa: F401 (a fixture)
    playwright,  # noqa: F401 (a fixture)
    product_row,
    sign_in,
    status,
)
from tests.support.retry import eventually, get_within_limits
from tests.support.stack import user_token

USER = "web-user"


def database_name(tenant_id: uuid.UUID) -> str:
    """The app's IndexedDB database for the tenant and user (one per tenant and user)."""
    return f"stockzen-{tenant_id}-{USER}"


async def databases(page: Page) -> list[str]:
    names: list[str] = await page.evaluate("async () => (await indexedDB.databases()).map((info) => info.name)")
    return names


async def open_sign_out(page: Page) -> None:
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign out")).to_be_visible()


async def test_signing_out_can_clear_the_devices_data_from_every_tab(
    new_context: NewContext,  # noqa: F811 (the fixture imported above)
    tenant_id: uuid.UUID,
) -> None:
    context = await new_context()
    page = await sign_in(context, user_token(tenant_id, USER))
    await add_product(page, "Ledger book")
    await expect(status(page)).to_contain_text("Up to date")
    other_tab = await context.new_page()
    await other_tab.goto("/app/")
    await expect(product_row(other_tab, "Ledger book")).to_be_visible()
    assert database_name(tenant_id) in await databases(page)

    await open_sign_out(page)
    await expect(page.locator("#sign-out-warning")).to_be_hidden()  # nothing queued: nothing to warn about
    await page.get_by_role("button", name="Clear this device's data and sign out").click()

    for tab in (page, other_tab):  # the other tab let go of the database and signed out too
        await expect(tab.get_by_role("button", name="Sign in")).to_be_visible()
    assert database_name(tenant_id) not in await databases(page)
    assert database_name(tenant_id) not in await databases(other_tab)
    assert await page.evaluate("() => localStorage.getItem('stockzen.session')") is None


async def test_signing_out_with_queued_changes_warns_and_keeping_the_data_keeps_them(
    new_context: NewContext,  # noqa: F811 (the fixture imported above)
    tenant_id: uuid.UUID,
    gateway: httpx.AsyncClient,
) -> None:
    context = await new_context(bypass_csp=True)  # for axe, injected inline
    token = user_token(tenant_id, USER)
    page = await sign_in(context, token)
    await _unreachable(context)
    await add_product(page, "Unsent mug")
    await expect(status(page)).to_contain_text("1 queued")

    await open_sign_out(page)
    warning = page.locator("#sign-out-warning")
    await expect(warning).to_have_text(
        "1 change made on this device is not synced yet. "
        "Keeping the data sends them when you sign in here again; clearing it loses them."
    )
    clear = page.get_by_role("button", name="Clear this device's data and sign out")
    await clear.click()  # the first click only asks again
    await expect(page.get_by_role("button", name="Confirm: clear and lose 1 change")).to_be_visible()
    violations = await axe_violations(page)
    assert violations == [], "; ".join(f"{v['id']}: {v['help']}" for v in violations)
    await page.get_by_role("button", name="Keep data and sign out").click()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert database_name(tenant_id) in await databases(page)

    await context.unroute("**/api/sync")
    await page.get_by_label("Access token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(product_row(page, "Unsent mug")).to_be_visible()
    await expect(status(page)).to_contain_text("Up to date")

    async def on_server() -> bool:
        response = await get_within_limits(gateway, "/api/products")
        return any(item["name"] == "Unsent mug" for item in response.json()["items"])

    await eventually(on_server)


async def _unreachable(context: BrowserContext) -> None:
    """Pushes get no answer (the connection drops): the changes stay queued."""

    async def drop(route: Route) -> None:
        await route.abort("connectionfailed")

    await context.route("**/api/sync", drop)


async def test_a_huge_retry_after_is_honoured_for_five_minutes_at_most_in_the_browser(
    new_context: NewContext,  # noqa: F811 (the fixture imported above)
    tenant_id: uuid.UUID,
) -> None:
    context = await new_context()
    page = await context.new_page()
    await page.clock.install()  # the page's timers, moved on by the test
    await page.goto("/app/")
    await page.get_by_label("Access token").fill(user_token(tenant_id, USER))
    await page.get_by_role("button", name="Sign in").click()
    await expect(status(page)).to_contain_text("Up to date")

    pushes: list[str] = []

    async def rate_limited(route: Route) -> None:
        pushes.append(route.request.method)
        await route.fulfill(
            status=429,
            headers={"Retry-After": "1000000000"},  # about 31 years
            json={"code": "RATE_LIMITED", "message": "slow down"},
        )

    await context.route("**/api/sync", rate_limited)
    await page.get_by_role("form", name="Add a product").get_by_label("Name").fill("Patient mug")
    await page.get_by_role("form", name="Add a product").get_by_role("button", name="Add product").click()
    await _pushed(pushes, 1)
    await page.clock.fast_forward("04:50")  # honoured: no push within the five minutes...
    await page.wait_for_timeout(500)
    assert len(pushes) == 1
    await page.clock.fast_forward("00:15")  # ...and not one second longer than them
    await _pushed(pushes, 2)


async def _pushed(pushes: list[str], count: int) -> None:
    async def done() -> bool:
        return len(pushes) >= count

    await eventually(done, seconds=15)

"""Browser fixtures: Debian's Chromium driven by Playwright against the real stack's gateway at /app/."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, Playwright, async_playwright, expect

from tests.support.stack import WEB_APP_DIR, Stack, user_token

CHROMIUM = Path("/usr/bin/chromium")
# Chromium as packaged by Debian, headless, as root in a container: no sandbox, no GPU, and no
# traffic of its own (updates, safe browsing) since the network is closed.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
WEB_DIR = WEB_APP_DIR.parent
AXE = WEB_DIR / "node_modules" / "axe-core" / "axe.min.js"

if not CHROMIUM.exists():
    pytest.skip(
        "Debian's chromium is not installed and `make test` could not install it (scripts/ensure_tools.sh)",
        allow_module_level=True,
    )

expect.set_options(timeout=15_000)


def _build_web_app() -> None:
    """Build the app once if it is missing (``make test`` builds it before pytest)."""
    if (WEB_APP_DIR / "index.html").exists() and AXE.exists():
        return
    if not (WEB_DIR / "node_modules").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=WEB_DIR, check=True)
    subprocess.run(["npm", "run", "build"], cwd=WEB_DIR, check=True)


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    _build_web_app()
    launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
    yield launched
    await launched.close()


NewContext = Callable[..., Awaitable[BrowserContext]]


@pytest.fixture
async def new_context(browser: Browser, stack: Stack) -> AsyncIterator[NewContext]:
    """Open browser contexts (each like a separate device) on the shared stack's gateway."""
    opened: list[BrowserContext] = []

    async def open_context(**options: object) -> BrowserContext:
        context = await browser.new_context(base_url=stack.gateway_url, **options)  # type: ignore[arg-type]
        opened.append(context)
        return context

    yield open_context
    for context in opened:
        await context.close()


@pytest.fixture
def token(tenant_id: uuid.UUID) -> str:
    """A token of this test's tenant, as `make token` prints one."""
    return user_token(tenant_id, "web-user")


async def sign_in(context: BrowserContext, token: str) -> Page:
    """Open /app/ in a new page, paste the token, and wait until the first sync is done."""
    page = await context.new_page()
    await page.goto("/app/")
    await page.get_by_label("Access token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(status(page)).to_contain_text("Up to date")
    return page


def status(page: Page) -> Locator:
    """The status indicator (the one ``role="status"`` region)."""
    return page.locator("#status")


async def add_product(page: Page, name: str, *, threshold: int | None = None) -> None:
    form = page.get_by_role("form", name="Add a product")
    await form.get_by_label("Name").fill(name)
    if threshold is not None:
        await form.get_by_label("Low stock at").fill(str(threshold))
    await form.get_by_role("button", name="Add product").click()
    await expect(product_row(page, name)).to_be_visible()


def product_row(page: Page, name: str) -> Locator:
    return page.locator("#product-list tr", has=page.get_by_role("link", name=name, exact=True))


async def axe_violations(page: Page) -> list[dict[str, object]]:
    """axe-core's violations on the page as it is now (axe injected from node_modules)."""
    await page.add_script_tag(path=str(AXE))
    result: list[dict[str, object]] = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return result

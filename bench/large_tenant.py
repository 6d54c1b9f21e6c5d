"""A shop with a year of history: how fast each client becomes usable, held against plain HTTP pulls.

For each ledger size (100,000 and 1,000,000 stock movements over 2,000 products by default) it
starts its own gateway, inventory and worker (own queue, own Redis prefix, the bench's database),
seeds one tenant **through the API** (batches of 500 from several devices; its rate is a figure),
then measures, in one run:

- the floors: a plain HTTP pull of the whole change feed, and of the snapshot then the feed from its
  checkpoint (what a new device needs now), page by page, nothing stored;
- the Python client: ``stockzen sync`` on a new profile (first sync), ``stockzen product ls``,
  ``stockzen status`` and ``stockzen --help`` against a bare ``python -c pass``, and the local store;
- the browser app in Debian's Chromium (Playwright): sign-in to "Up to date" and to the first product
  shown, ``+1`` click to the stock cell changing on screen (the next frame after the change), a
  product screen opening, a search keystroke to the list redrawn, the JS heap after a garbage
  collection, and what the origin stores.

Times inside the page are taken by the page itself (``performance.now()`` from the click to the
``requestAnimationFrame`` after the DOM changed), so Playwright's own round trips are not in them.
``--profile DIR`` also writes a Chromium CPU profile of the first sync and of the clicks, with the
functions that took the most time printed. Targets are in ``docs/benchmarks.md``; nothing here
asserts them.

    make bench                                              # throughput, then this (minutes)
    .venv/bin/python -m bench.large_tenant --sizes 100000   # this part alone
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, CDPSession, Page, async_playwright

from stockzen_inventory.adapters.migrations import migrate, prepare_database
from tests.support.large_tenant import product_name
from tests.support.ops import create_product, movement
from tests.support.services import ServiceUrls, service_urls
from tests.support.stack import WEB_APP_DIR, Stack, delete_redis_keys, user_token

BENCH_DATABASE = "stockzen_bench"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
BATCH = 500


@dataclass(frozen=True)
class LargePlan:
    """Which tenants, and how much of each part to run."""

    sizes: tuple[int, ...] = (100_000, 1_000_000)
    products: int = 2_000
    devices: int = 4  # concurrent seeding devices (users of the tenant)
    clicks: int = 20
    browser: bool = True
    python: bool = True
    first_sync_timeout: float = 1800.0
    profile_dir: Path | None = None


def _percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


@contextmanager
def _stack(urls: ServiceUrls, logs: Path) -> Iterator[Stack]:
    stack = Stack(urls, logs, name="large")
    stack.env.update(
        SYNC_RATE_LIMIT_BURST="1000000",
        SYNC_RATE_LIMIT_PER_MINUTE="100000000",
        READ_RATE_LIMIT_BURST="1000000",
        READ_RATE_LIMIT_PER_MINUTE="100000000",
        LOG_LEVEL="WARNING",
    )
    try:
        yield stack.start_all()
    finally:
        stack.stop_all()


async def seed_through_api(gateway: str, tenant: uuid.UUID, products: int, movements: int, devices: int) -> float:
    """Products, then ``movements`` spread over them, pushed as a shop's devices would; seconds taken."""
    ids = [uuid.uuid4() for _ in range(products)]
    creates = [create_product(tenant, pid, name=product_name(n + 1)) for n, pid in enumerate(ids)]
    for n, operation in enumerate(creates):
        operation["payload"].update(sku=f"SKU-{n + 1}", lowStockThreshold=5)
    moves = [
        movement(tenant, ids[(g * 7919) % products], "exit" if g % 3 == 0 else "entry", 1 + g % 5)
        for g in range(movements)
    ]
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as client:
        # Products first, all of them: a movement for a product not created yet would wait for it.
        await _push_all(client, gateway, tenant, [creates[i : i + BATCH] for i in range(0, products, BATCH)], devices)
        await _push_all(client, gateway, tenant, [moves[i : i + BATCH] for i in range(0, movements, BATCH)], devices)
    return time.perf_counter() - started


async def _push_all(
    client: httpx.AsyncClient, gateway: str, tenant: uuid.UUID, batches: list[list[dict[str, Any]]], devices: int
) -> None:
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def device(index: int) -> None:
        headers = {"Authorization": f"Bearer {user_token(tenant, f'seeder-{index}', ttl_seconds=7200)}"}
        while not queue.empty():
            batch = queue.get_nowait()
            while True:  # retry with the same ids until every item is final
                answer = await client.post(
                    f"{gateway}/api/sync", json={"checkpoint": None, "operations": batch}, headers=headers
                )
                answer.raise_for_status()
                waiting = {
                    r["operationId"] for r in answer.json()["results"] if r.get("retryable") or r["status"] == "pending"
                }
                if not waiting:
                    break
                batch = [op for op in batch if op["operationId"] in waiting]
                await asyncio.sleep(0.2)

    await asyncio.gather(*(device(i) for i in range(devices)))


async def plain_pull(gateway: str, token: str, *, snapshot: bool) -> tuple[float, int]:
    """Seconds and rows for a page-by-page pull that stores nothing: the whole feed, or the snapshot
    then the feed from its checkpoint."""
    headers = {"Authorization": f"Bearer {token}"}
    rows = 0
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60, headers=headers) as client:
        checkpoint: str | None = None
        if snapshot:
            cursor: str | None = None
            while True:
                params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
                page = (await client.get(f"{gateway}/api/sync/snapshot", params=params)).raise_for_status().json()
                rows += len(page["items"])
                checkpoint, cursor = page["checkpoint"], page["nextCursor"]
                if cursor is None:
                    break
        while True:
            params = {"limit": "1000", **({"checkpoint": checkpoint} if checkpoint else {})}
            page = (await client.get(f"{gateway}/api/sync/changes", params=params)).raise_for_status().json()
            rows += len(page["changes"])
            checkpoint = page["checkpoint"]
            if not page["hasMore"]:
                break
    return time.perf_counter() - started, rows


def _stockzen(home: Path, *args: str) -> float:
    env = {**os.environ, "STOCKZEN_HOME": str(home), "NO_COLOR": "1"}
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "stockzen"), *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def _median_of(runs: int, command: list[str], env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return _median(times)


def python_client(gateway: str, token: str, home: Path) -> dict[str, float]:
    """The CLI on a new profile: first sync, then the everyday commands, each a process of its own."""
    _stockzen(home, "login", "--server", gateway, "--token", token)
    figures = {"first_sync": _stockzen(home, "sync", "--json")}
    figures["store_bytes"] = float(sum(f.stat().st_size for f in home.rglob("*") if f.is_file()))
    env = {**os.environ, "STOCKZEN_HOME": str(home), "NO_COLOR": "1"}
    cli = str(Path(sys.executable).parent / "stockzen")
    figures["bare"] = _median_of(5, [sys.executable, "-c", "pass"])
    figures["help"] = _median_of(5, [cli, "--help"], env)
    figures["status"] = _median_of(5, [cli, "status"], env)
    figures["product_ls"] = _median_of(3, [cli, "product", "ls"], env)
    return figures


# The page measures itself: from the action to the frame after the DOM shows its effect.
_CLICK_TO_SHOWN = """
async (productId) => {
  const cell = () => document.querySelector(`#product-list tr[data-product-id="${productId}"] .stock`);
  const before = cell()?.textContent;
  const button = document.querySelector(`#product-list tr[data-product-id="${productId}"] button`);
  return await new Promise((resolve, reject) => {
    const started = performance.now();
    const observer = new MutationObserver(() => {
      if (cell()?.textContent === before) return;
      observer.disconnect();
      requestAnimationFrame(() => resolve(performance.now() - started));
    });
    observer.observe(document.getElementById('main'), {subtree: true, childList: true, characterData: true});
    setTimeout(() => { observer.disconnect(); reject(new Error('the stock never changed')); }, 30000);
    button.click();
  });
}
"""
_OPEN_PRODUCT = """
async ([productId, name]) => {
  return await new Promise((resolve, reject) => {
    const started = performance.now();
    const shown = () => document.querySelector('#stock-level') && document.querySelector('h1')?.textContent === name;
    const observer = new MutationObserver(() => {
      if (!shown()) return;
      observer.disconnect();
      requestAnimationFrame(() => resolve(performance.now() - started));
    });
    observer.observe(document.getElementById('main'), {subtree: true, childList: true, characterData: true});
    setTimeout(() => { observer.disconnect(); reject(new Error('the product never opened')); }, 30000);
    location.hash = `#/products/${productId}`;
  });
}
"""
_SEARCH = """
async (text) => {
  const search = document.getElementById('search');
  return await new Promise((resolve, reject) => {
    const started = performance.now();
    const found = () => [...document.querySelectorAll('#product-list tr[data-product-id] a')]
      .some((a) => a.textContent.toLowerCase().includes(text.toLowerCase()));
    const observer = new MutationObserver(() => {
      if (!found()) return;
      observer.disconnect();
      requestAnimationFrame(() => resolve(performance.now() - started));
    });
    observer.observe(document.getElementById('product-list'), {subtree: true, childList: true, characterData: true});
    setTimeout(() => { observer.disconnect(); reject(new Error('the search never showed ' + text)); }, 30000);
    search.value = text;
    search.dispatchEvent(new Event('input', {bubbles: true}));
  });
}
"""


async def _heap_mb(cdp: CDPSession) -> float:
    await cdp.send("HeapProfiler.collectGarbage")
    usage = await cdp.send("Runtime.getHeapUsage")
    return float(usage["usedSize"]) / 2**20


async def _profiled(cdp: CDPSession | None, name: str, profile_dir: Path | None) -> None:
    """Stop the CPU profile running on ``cdp``, write it, and print where the time went."""
    if cdp is None or profile_dir is None:
        return
    profile = (await cdp.send("Profiler.stop"))["profile"]
    _write_profile(profile_dir / f"{name}.cpuprofile", profile)
    print(f"  profile {name} (self time, top 10; {profile_dir / name}.cpuprofile):")
    for line in cpu_profile_summary(profile):
        print(f"    {line}")


def _write_profile(path: Path, profile: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile))


def cpu_profile_summary(profile: dict[str, Any], top: int = 10) -> list[str]:
    """The functions with the most self time in a Chromium ``.cpuprofile``."""
    frames = {node["id"]: node["callFrame"] for node in profile["nodes"]}
    spent: Counter[str] = Counter()
    for node_id, delta in zip(profile.get("samples", []), profile.get("timeDeltas", []), strict=False):
        frame = frames[node_id]
        where = frame.get("url", "").rsplit("/", 1)[-1]
        spent[f"{frame.get('functionName') or '(anonymous)'} {where}:{frame.get('lineNumber', 0)}".strip()] += delta
    total = sum(spent.values()) or 1
    return [f"{us / 1000:8.0f} ms {us / total:6.1%}  {name}" for name, us in spent.most_common(top)]


async def browser_client(browser: Browser, gateway: str, token: str, plan: LargePlan, label: str) -> dict[str, Any]:
    """A new browser profile of the tenant: first sync, then clicks, screens and searches as a person would."""
    context = await browser.new_context(base_url=gateway)
    try:
        page = await context.new_page()
        cdp = await context.new_cdp_session(page)
        profiling = plan.profile_dir is not None
        await page.goto("/app/")
        await page.get_by_label("Access token").fill(token)
        if profiling:
            await cdp.send("Profiler.enable")
            await cdp.send("Profiler.start")
        started = time.perf_counter()
        await page.get_by_role("button", name="Sign in").click()
        timeout = plan.first_sync_timeout * 1000
        await page.wait_for_selector("#product-list tr[data-product-id]", timeout=timeout)
        first_shown = time.perf_counter() - started
        await page.wait_for_function(
            "() => document.querySelector('#status')?.dataset.state === 'upToDate'", timeout=timeout
        )
        figures: dict[str, Any] = {"first_sync": time.perf_counter() - started, "first_shown": first_shown}
        await _profiled(cdp if profiling else None, f"{label}-first-sync", plan.profile_dir)
        figures["heap_mb"] = await _heap_mb(cdp)
        figures["stored_mb"] = await page.evaluate("navigator.storage.estimate().then((e) => e.usage / 2 ** 20)")
        await _interactions(page, cdp, plan, label, figures)
        return figures
    finally:
        await context.close()


async def _interactions(page: Page, cdp: CDPSession, plan: LargePlan, label: str, figures: dict[str, Any]) -> None:
    rows = page.locator("#product-list tr[data-product-id]")
    product_ids = [await rows.nth(i).get_attribute("data-product-id") for i in range(min(10, await rows.count()))]
    names = [await rows.nth(i).locator("a").first.text_content() for i in range(len(product_ids))]
    if plan.profile_dir is not None:
        await cdp.send("Profiler.start")
    clicks = []
    for n in range(plan.clicks):
        clicks.append(await page.evaluate(_CLICK_TO_SHOWN, product_ids[n % len(product_ids)]))
        await page.wait_for_timeout(150)  # a person's pace; the sync of each click runs meanwhile
    await _profiled(cdp if plan.profile_dir else None, f"{label}-clicks", plan.profile_dir)
    opens, searches = [], []
    for product_id, name in zip(product_ids, names, strict=True):
        opens.append(await page.evaluate(_OPEN_PRODUCT, [product_id, name]))
        await page.evaluate("location.hash = '#/'")
        await page.wait_for_selector("#search")
    for n in range(10):
        searches.append(await page.evaluate(_SEARCH, product_name(1 + (n * 197) % plan.products)))
    figures.update(clicks=clicks, opens=opens, searches=searches)


async def run_size(urls: ServiceUrls, logs: Path, plan: LargePlan, movements: int, browser: Browser | None) -> None:
    """Seed one tenant of this size and measure every part against it."""
    tenant = uuid.uuid4()
    token = user_token(tenant, "bench-reader", ttl_seconds=7200)
    label = f"{movements // 1000}k" if movements >= 1000 else str(movements)
    with _stack(urls, logs) as stack:
        seeded = await seed_through_api(stack.gateway_url, tenant, plan.products, movements, plan.devices)
        total = plan.products + movements
        print(f"large tenant {label}: {plan.products:,} products, {movements:,} movements", flush=True)
        print(f"  seeded through the API: {seeded:.1f} s, {total / seeded:,.0f} operations/s", flush=True)
        feed_s, feed_rows = await plain_pull(stack.gateway_url, token, snapshot=False)
        snap_s, snap_rows = await plain_pull(stack.gateway_url, token, snapshot=True)
        print(f"  plain pull, whole feed: {feed_s:.2f} s, {feed_rows:,} rows ({feed_rows / feed_s:,.0f} rows/s)")
        print(f"  plain pull, snapshot + feed: {snap_s:.2f} s, {snap_rows:,} rows = {snap_s / feed_s:.3f} x whole feed")
        if plan.python:
            with tempfile.TemporaryDirectory(prefix="stockzen-large-") as home:
                py = python_client(stack.gateway_url, token, Path(home))
            print(
                f"  python first sync: {py['first_sync']:.2f} s = {py['first_sync'] / feed_s:.2f} x whole feed, "
                f"{py['first_sync'] / snap_s:.2f} x snapshot pull; store {py['store_bytes'] / 2**20:.1f} MB"
            )
            print(
                f"  python cli: --help {py['help'] / py['bare']:.1f} x, status {py['status'] / py['bare']:.1f} x "
                f"a bare `python -c pass` ({py['bare'] * 1000:.0f} ms); product ls {py['product_ls']:.2f} s",
                flush=True,
            )
        if browser is not None:
            web = await browser_client(browser, stack.gateway_url, token, plan, label)
            print(
                f"  browser first sync: {web['first_sync']:.2f} s = {web['first_sync'] / feed_s:.2f} x whole feed, "
                f"{web['first_sync'] / snap_s:.2f} x snapshot pull; first product shown {web['first_shown']:.2f} s"
            )
            for what in ("clicks", "opens", "searches"):
                samples = web[what]
                print(
                    f"  browser {what}: median {_median(samples):.0f} ms, p95 {_percentile(samples, 0.95):.0f} ms "
                    f"({len(samples)})"
                )
            print(f"  browser heap {web['heap_mb']:.1f} MB, stored {web['stored_mb']:.1f} MB", flush=True)
        await delete_redis_keys(urls.redis_url, urls.redis_prefix)
        await stack.delete_queues()


async def run(plan: LargePlan) -> None:
    """Measure every size in ``plan`` (database: ``TEST_DATABASE_NAME``'s)."""
    with service_urls() as urls, tempfile.TemporaryDirectory(prefix="stockzen-bench-") as log_dir:
        await prepare_database(urls.admin_server_url, urls.app_url)
        await migrate(urls.admin_server_url, urls.app_url)
        if plan.browser and not (WEB_APP_DIR / "index.html").exists():
            raise SystemExit("the browser app is not built: run `make web` first")
        async with async_playwright() as driver:
            browser = None
            if plan.browser:
                browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
            try:
                for size in plan.sizes:
                    await run_size(urls, Path(log_dir), plan, size, browser)
            finally:
                if browser is not None:
                    await browser.close()


def parse_plan(argv: Sequence[str] | None = None) -> LargePlan:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = LargePlan()
    parser.add_argument("--sizes", type=int, nargs="+", default=list(default.sizes), help="movements per tenant")
    parser.add_argument("--products", type=int, default=default.products)
    parser.add_argument("--clicks", type=int, default=default.clicks)
    parser.add_argument("--no-browser", action="store_true", help="leave the browser app out")
    parser.add_argument("--no-python", action="store_true", help="leave the Python client out")
    parser.add_argument("--profile", type=Path, help="write Chromium CPU profiles here")
    args = parser.parse_args(argv)
    return LargePlan(
        sizes=tuple(args.sizes),
        products=args.products,
        clicks=args.clicks,
        browser=not args.no_browser,
        python=not args.no_python,
        profile_dir=args.profile,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``make bench``'s large-tenant part, on the bench's own database."""
    plan = parse_plan(argv)
    if not os.environ.get("TEST_DATABASE_NAME", "").startswith(BENCH_DATABASE):
        os.environ["TEST_DATABASE_NAME"] = BENCH_DATABASE
    asyncio.run(run(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())

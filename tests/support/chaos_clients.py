"""Real clients under chaos: Python ``StockzenClient`` devices running their engine loops, and tabs of the
browser app in Debian's Chromium, all of one tenant, all through the faulty link
(``tests/support/faulty_link.py``) in front of the gateway, while the chaos run's server-side faults go on.

Each device makes random changes through its public face only: a Python device calls
``add_product``/``edit_product``/``remove_product``/``stock_in``/``stock_out`` on what ``client.products()``
shows; a browser tab signs in with the "Access token" form, adds products with the "Add a product" form,
clicks the stock entry and exit buttons of its rows (``#product-list`` rows carry ``data-product-id``) and edits
its products on their page. Every change a device makes is written down (:class:`Made`), and every one
it is seen to send is recorded by the link, with every answer the server gave, the ones the link threw
away included. Who may touch what keeps the bookkeeping exact: browser tabs move and re-SKU only their
own products (so each click is confirmed by the level its row shows), Python devices move and delete only
Python devices' products, and edit names and prices of any product (so edits of browsers' and Python
devices' products meet under last-writer-wins).

At the end the link heals, every device is brought to rest (``upToDate``, nothing queued; a browser is
nudged with an offline/online flip, which the contract says syncs at once with the backoff reset; a
Python device with ``sync()``), and then:

- every device's local view (Python: ``client.products()``; browser: the rendered list and the app's
  IndexedDB) must equal the server's products and stock levels, read by admin SQL (``diverged devices``);
- every outbox must be empty or hold only refused changes, each with its reason (Python: ``stockzen
  status --json``; browser: the app's outbox in IndexedDB), and every change the server refused for good
  must be listed so;
- every change a device made must be in ``applied_operations`` (and a movement in the ledger) exactly
  once, compared by ids: nothing a device made is missing (``lost``), nothing is there twice or under
  an id no device sent (``doubled``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import re
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from playwright.async_api import Browser, BrowserContext, Locator, Page, Playwright, async_playwright, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout

from stockzen_client import Backoff, EngineSettings, InvalidChange, Profile, StockzenClient, SyncState
from tests.support.faulty_link import Exchange, FaultyLink, LinkRates
from tests.support.stack import WEB_APP_DIR, user_token

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
STOCKZEN_CLI = Path(sys.executable).parent / "stockzen"
FINAL = {"applied", "duplicate", "conflict", "rejected"}
LIST_PAGE = 50  # the browser list's page (clients/web/src/sync/queries.ts): the run keeps fewer products
NUDGE_EVERY = 8.0  # seconds between two offline/online flips of a browser at the end


def chromium_installed() -> bool:
    """Whether Debian's chromium is there (``make test`` installs it)."""
    return CHROMIUM.exists()


@dataclass(frozen=True)
class ClientChaosConfig:
    """How many real clients, how busy, and how bad their link is."""

    python_devices: int = 3
    browser_tabs: tuple[int, ...] = (1, 1)  # one browser device (context, user) per entry, with that many tabs
    products_per_device: int = 2  # each device (each tab) first adds these, and sometimes one more
    min_actions: int = 5  # per Python device and per tab, then until the server-side faults are done
    max_actions: int = 40
    pause_seconds: float = 0.4  # between a device's actions, drawn from 0.5x to 1.5x
    rates: LinkRates = field(default_factory=lambda: LinkRates(0.04, 0.04, 0.04, 0.04))
    link_outage_seconds: float = 2.0
    backoff_cap: float = 2.0  # the Python devices' per-change backoff cap (the contract's 60 s would only slow the run)
    settle_seconds: float = 90.0  # bound on bringing every device to rest, and on their catching up

    @property
    def tabs(self) -> int:
        return sum(self.browser_tabs)


@dataclass
class Made:
    """One change a device made: ``entity`` is the movement's id when the device knows it (Python);
    ``attempts`` how many times a browser tab pressed Save for this one edit."""

    device: str
    kind: str  # create | update | delete | movement
    product: str
    entity: str | None = None
    movement_kind: str | None = None
    attempts: int = 1


@dataclass
class Seen:
    """One operation the link saw a device send: its first body, who sent it, how often, every answer."""

    body: dict[str, Any]
    user: str | None
    sends: int = 0
    answers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finals(self) -> list[dict[str, Any]]:
        return [a for a in self.answers if a.get("status") in FINAL and not a.get("retryable")]


@dataclass
class Outbox:
    """What a device still holds: how many changes wait to be sent, and the refused ones with their reasons."""

    queued: int
    failed: list[tuple[str, str]]  # (operation id, reason)


@dataclass
class ClientReport:
    """What the real clients did and what the checks found."""

    python_devices: int = 0
    browser_devices: int = 0
    tabs: int = 0
    operations: int = 0
    movements: int = 0
    requests: int = 0
    link_faults: Counter[str] = field(default_factory=Counter)
    refused: int = 0  # changes the server refused for good, each held by its device as failed
    refusals: Counter[str] = field(default_factory=Counter)  # their reasons, ids left out
    queued_left: int = 0
    refused_without_reason: int = 0
    refused_not_listed: int = 0
    lost: int = 0
    doubled: int = 0
    misreported: int = 0
    compared: int = 0  # live products on the server, each compared with every device's view
    diverged: list[str] = field(default_factory=list)
    diverged_details: list[str] = field(default_factory=list)  # what the server holds of what they show wrongly
    not_at_rest: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    unsteady_clicks: int = 0  # browser clicks the page kept from landing for 5 s, dispatched to their element

    @property
    def held(self) -> bool:
        return not (
            self.queued_left
            or self.refused_without_reason
            or self.refused_not_listed
            or self.lost
            or self.doubled
            or self.misreported
            or self.diverged
            or self.not_at_rest
            or self.errors
        )


ServerState = tuple[dict[str, tuple[Any, ...]], dict[str, int]]


class Device(Protocol):
    """A real client as the run drives and checks it."""

    name: str
    kind: str
    made: list[Made]

    async def start(self) -> None: ...

    async def act(self, fleet: ClientFleet) -> None: ...

    async def nudge(self) -> None: ...

    async def at_rest(self) -> bool: ...

    async def view(self) -> ServerState: ...

    async def outbox(self) -> Outbox: ...

    async def stop(self) -> None: ...


class ClientFleet:
    """The real clients of one chaos run, their faulty link, and the checks of what they did."""

    def __init__(self, config: ClientChaosConfig, tenant: uuid.UUID, home: Path, seed: int | None) -> None:
        self.config = config
        self.tenant = tenant
        self.home = home
        self.random = random.Random(seed)
        self.link: FaultyLink | None = None
        self.devices: list[Device] = []
        self.owners: dict[str, str] = {}  # product id -> the device (Python) or tab (browser) that added it
        self.python_products: set[str] = set()
        self.report = ClientReport(
            python_devices=config.python_devices, browser_devices=len(config.browser_tabs), tabs=config.tabs
        )
        self.faults_done = asyncio.Event()
        self.deadline = 0.0
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._seed = seed

    # -- start and run ---------------------------------------------------------------------------

    async def start_browser(self) -> None:
        """Launch Chromium (before the stack is up, to save time); builds the app if it is missing."""
        if not self.config.browser_tabs:
            return
        if not chromium_installed():
            raise RuntimeError("the chaos run's browser tabs need Debian's chromium (make test installs it)")
        if not await asyncio.to_thread((WEB_APP_DIR / "index.html").exists):
            await _build_web_app()
        self._playwright = await async_playwright().start()
        self._browser = await self._playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
        )

    async def start(self, gateway_host: str, gateway_port: int, link_port: int) -> None:
        """Put the faulty link in front of the gateway and sign every device in through it."""
        self.link = FaultyLink(
            gateway_host, gateway_port, self.config.rates, port=link_port, seed=self._seed, retry_after_seconds=1
        )
        await self.link.start()
        for index in range(self.config.python_devices):
            self.devices.append(PythonDevice(f"py{index + 1}", self, self.link.url))
        for index, tabs in enumerate(self.config.browser_tabs):
            assert self._browser is not None
            device = BrowserDevice(f"web{index + 1}", self, self._browser, self.link.url, tabs)
            self.devices.append(device)
        await asyncio.gather(*(d.start() for d in self.devices))

    async def run(self, faults_done: asyncio.Event, deadline: float) -> None:
        """Every device (every tab) acts until it made ``min_actions`` changes and the faults are done
        (at most ``max_actions``, and not past ``deadline``)."""
        self.faults_done, self.deadline = faults_done, deadline
        await asyncio.gather(*(self._act(d) for d in self.devices))

    async def _act(self, device: Device) -> None:
        try:
            await device.act(self)
        except Exception as exc:  # a device that broke is a finding, not a crash of the run
            self.report.errors.append(f"{device.name}: {type(exc).__name__}: {exc}")

    def keeps_acting(self, done: int) -> bool:
        """Whether a device (a tab) that made ``done`` changes makes another."""
        if done >= self.config.max_actions or time.monotonic() > self.deadline:
            return False
        return done < self.config.min_actions or not self.faults_done.is_set()

    def pause(self) -> float:
        return self.config.pause_seconds * (0.5 + self.random.random())

    async def link_away(self) -> None:
        assert self.link is not None
        await self.link.go_away(self.config.link_outage_seconds)

    # -- the end ---------------------------------------------------------------------------------

    async def bring_to_rest(self) -> None:
        """Heal the link and sync every device until each is up to date with nothing queued (bounded)."""
        assert self.link is not None
        self.link.heal()
        deadline = time.monotonic() + self.config.settle_seconds
        resting: set[str] = set()
        while time.monotonic() < deadline:
            restless = [d for d in self.devices if d.name not in resting]
            if not restless:
                return
            await asyncio.gather(*(d.nudge() for d in restless))
            await asyncio.sleep(1.0)
            for device in restless:
                if await device.at_rest():
                    resting.add(device.name)
        self.report.not_at_rest = [d.name for d in self.devices if d.name not in resting]

    async def check(self, admin: asyncpg.Connection) -> None:
        """Compare every device with the server (waiting, bounded, for each to pull the others' last
        changes), then account for every change by id."""
        server = await server_state(admin, self.tenant)
        self.report.compared = len(server[0])
        deadline = time.monotonic() + self.config.settle_seconds
        views: dict[str, ServerState] = {}
        pending = list(self.devices)
        while pending:
            for device in pending:
                try:
                    views[device.name] = await device.view()
                except Exception as exc:  # a view that cannot be read is a finding too
                    views[device.name] = ({"(view)": (f"{type(exc).__name__}: {exc}",)}, {})
            pending = [d for d in pending if views[d.name] != server]
            if not pending or time.monotonic() > deadline:
                break
            await asyncio.gather(*(d.nudge() for d in pending))
            await asyncio.sleep(1.0)
        self.report.diverged = [f"{d.name}: {_difference(views[d.name], server)}" for d in pending]
        for device in pending:  # what the server holds of each product the device shows wrongly
            for product in sorted(set(views[device.name][0]) ^ set(server[0]))[:3]:
                with contextlib.suppress(ValueError, asyncpg.PostgresError):
                    row = await admin.fetchrow(
                        "SELECT deleted_at IS NOT NULL AS deleted, checkpoint FROM products WHERE tenant_id = $1 AND id = $2",
                        self.tenant,
                        uuid.UUID(product),
                    )
                    held = "no row" if row is None else f"deleted={row['deleted']} checkpoint={row['checkpoint']}"
                    self.report.diverged_details.append(f"{device.name} / {product}: the server has {held}")
        outboxes: dict[str, Outbox] = {}
        for device in self.devices:
            try:
                outboxes[device.name] = await device.outbox()
            except Exception as exc:
                self.report.errors.append(f"{device.name}: its outbox could not be read: {type(exc).__name__}: {exc}")
                outboxes[device.name] = Outbox(0, [])
        await self._account(admin, outboxes)

    async def _account(self, admin: asyncpg.Connection, outboxes: dict[str, Outbox]) -> None:
        report = self.report
        assert self.link is not None
        report.requests = self.link.requests
        report.link_faults = self.link.faults
        report.unsteady_clicks = sum(d.unsteady_clicks for d in self.devices if isinstance(d, BrowserDevice))
        made = [m for d in self.devices for m in d.made]
        report.operations = len(made)
        report.movements = sum(m.kind == "movement" for m in made)
        seen = seen_operations(self.link.exchanges)
        failed = {op: reason for box in outboxes.values() for op, reason in box.failed}
        report.queued_left = sum(box.queued for box in outboxes.values())
        report.refused = len(failed)
        report.refusals = Counter(_gist(reason) for reason in failed.values())
        report.refused_without_reason = sum(1 for reason in failed.values() if not reason.strip())

        recorded = {
            str(r["operation_id"])
            for r in await admin.fetch("SELECT operation_id FROM applied_operations WHERE tenant_id = $1", self.tenant)
        }
        ledger = Counter(
            str(r["operation_id"])
            for r in await admin.fetch("SELECT operation_id FROM stock_movements WHERE tenant_id = $1", self.tenant)
        )
        # The server's side: every operation with a final answer is recorded, a movement applied is in
        # the ledger once, one refused is not, and the device lists what was refused.
        for op_id, sent in seen.items():
            finals = sent.finals
            is_movement = sent.body.get("entityType") == "stockMovement"
            if not finals:
                report.lost += op_id not in failed  # no final answer, yet not held by its device
                continue
            statuses = {a["status"] for a in finals}
            stored = statuses - {"rejected"} or any(a.get("code") == "NOT_FOUND" for a in finals)
            report.lost += bool(stored) and op_id not in recorded
            if is_movement and statuses & {"applied", "duplicate"}:
                report.lost += ledger[op_id] == 0
            if is_movement and statuses == {"rejected"}:
                report.misreported += ledger[op_id] > 0
            if "rejected" in statuses:
                report.refused_not_listed += op_id not in failed
        # Nothing in the ledger or the records that no device sent, and no movement under two ids.
        report.doubled += sum(1 for op_id in recorded if op_id not in seen)
        report.doubled += sum(
            1 for op_id, n in ledger.items() if (op_id not in seen and op_id not in recorded) or n > 1
        )
        by_movement = Counter(
            s.body.get("entityId") for s in seen.values() if s.body.get("entityType") == "stockMovement"
        )
        report.doubled += sum(n - 1 for n in by_movement.values() if n > 1)
        # The devices' side: each change made went out exactly once, under one id.
        unsent_failures = sum(1 for op in failed if op not in seen)
        lost, doubled = match_intents(made, seen, {d.name: d.kind for d in self.devices})
        report.lost += max(0, lost - unsent_failures)
        report.doubled += doubled

    def write_exchanges(self, path: Path) -> None:
        """Every ``POST /api/sync`` the link carried, one JSON line each (who, what, which fault, the answer)."""
        if self.link is None:
            return
        with path.open("w") as out:
            for exchange in self.link.exchanges:
                out.write(json.dumps(dataclasses.asdict(exchange)) + "\n")

    async def stop(self) -> None:
        for device in self.devices:
            with contextlib.suppress(Exception):
                await device.stop()
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await self._browser.close()
        if self._playwright is not None:
            with contextlib.suppress(Exception):
                await self._playwright.stop()
        if self.link is not None:
            await self.link.close()

    def lines(self) -> list[str]:
        report = self.report
        faults = ", ".join(f"{name} x{report.link_faults[name]}" for name in sorted(report.link_faults))
        lines = [
            f"clients         {report.python_devices} Python devices, {report.browser_devices} browser devices"
            f" ({report.tabs} tabs): {report.operations} changes ({report.movements} movements)"
            f" in {report.requests} requests through the faulty link",
            f"link faults     {sum(report.link_faults.values())}: {faults or 'none'}",
            f"outboxes        {report.queued_left} queued, {report.refused} refused"
            f" ({report.refused_without_reason} without a reason, {report.refused_not_listed} refusals not listed)",
            *(f"  refused x{n}: {reason}" for reason, n in report.refusals.most_common(4)),
            f"client lost     {report.lost}",
            f"client doubled  {report.doubled} (misreported {report.misreported})",
            f"diverged devices {len(report.diverged)} (each device's products and levels against the server's"
            f" {report.compared} products)",
        ]
        if report.unsteady_clicks:
            lines.append(
                f"  {report.unsteady_clicks} browser clicks could not land for 5 s and were dispatched to their element"
            )
        lines += [f"  diverged: {d}" for d in report.diverged]
        lines += [f"    {d}" for d in report.diverged_details]
        lines += [f"  not at rest: {d}" for d in report.not_at_rest]
        lines += [f"  device error: {e}" for e in report.errors]
        lines += [f"  page error: {e}" for e in report.page_errors[:5]]
        return lines


def _gist(reason: str) -> str:
    """A reason without the ids in it, to count refusals by kind."""
    return re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "…", reason)[:90]


def seen_operations(exchanges: list[Exchange]) -> dict[str, Seen]:
    seen: dict[str, Seen] = {}
    for exchange in exchanges:
        answers = {str(r.get("operationId")): r for r in exchange.results}
        for op in exchange.operations:
            op_id = str(op.get("operationId"))
            sent = seen.setdefault(op_id, Seen(op, exchange.user))
            sent.sends += 1
            if op_id in answers:
                sent.answers.append(answers[op_id])
    return seen


def match_intents(made: list[Made], seen: dict[str, Seen], kinds: dict[str, str]) -> tuple[int, int]:
    """How many changes the devices made never went out (lost), and how many went out that no one made
    or went out under more than one id (doubled)."""
    wanted: Counter[tuple[str, ...]] = Counter()
    at_most: Counter[tuple[str, ...]] = Counter()
    for m in made:
        key = _intent_key(m.device, m.kind, m.product, m.entity, m.movement_kind, kinds[m.device])
        wanted[key] += 1
        at_most[key] += m.attempts
    went: Counter[tuple[str, ...]] = Counter()
    for sent in seen.values():
        body = sent.body
        device = sent.user or "?"
        kind = "movement" if body.get("entityType") == "stockMovement" else str(body.get("operationType"))
        payload = body.get("payload") or {}
        product = str(payload.get("productId")) if kind == "movement" else str(body.get("entityId"))
        went[
            _intent_key(
                device, kind, product, str(body.get("entityId")), payload.get("kind"), kinds.get(device, "python")
            )
        ] += 1
    lost = sum(max(0, n - went[key]) for key, n in wanted.items())
    doubled = sum(max(0, n - at_most[key]) for key, n in went.items())
    return lost, doubled


def _intent_key(
    device: str, kind: str, product: str, entity: str | None, movement_kind: str | None, device_kind: str
) -> tuple[str, ...]:
    if kind == "movement" and device_kind == "python":
        return (device, kind, entity or "?")  # a Python device knows each movement's id
    if kind == "movement":
        return (device, kind, product, movement_kind or "?")  # a click is counted, not named
    return (device, kind, product)


async def server_state(admin: asyncpg.Connection, tenant: uuid.UUID) -> ServerState:
    """The tenant's live products and their stock levels, as the server holds them."""
    rows = await admin.fetch(
        "SELECT p.id, p.name, p.sku, p.price_cents, coalesce(l.quantity, 0) AS level FROM products AS p "
        "LEFT JOIN stock_levels AS l ON l.tenant_id = p.tenant_id AND l.product_id = p.id "
        "WHERE p.tenant_id = $1 AND p.deleted_at IS NULL",
        tenant,
    )
    return (
        {str(r["id"]): (r["name"], r["sku"], r["price_cents"]) for r in rows},
        {str(r["id"]): int(r["level"]) for r in rows},
    )


def _difference(view: ServerState, server: ServerState) -> str:
    products, levels = view
    theirs, their_levels = server
    parts = []
    for name, mine, truth in (("products", products, theirs), ("levels", levels, their_levels)):
        missing = sorted(set(truth) - set(mine))
        extra = sorted(set(mine) - set(truth))
        wrong = sorted(k for k in set(mine) & set(truth) if mine[k] != truth[k])
        if missing or extra or wrong:
            detail = [f"{k[:8]}: {mine[k]} != {truth[k]}" for k in wrong[:3]]
            detail += [f"missing {k[:8]}" for k in missing[:3]] + [f"extra {k[:8]}: {mine[k]}" for k in extra[:3]]
            parts.append(f"{name}: {len(missing)} missing, {len(extra)} extra, {len(wrong)} differ {detail}")
    return "; ".join(parts) or "equal"


async def _build_web_app() -> None:
    web = WEB_APP_DIR.parent
    installed = await asyncio.to_thread((web / "node_modules").exists)
    for args in (["npm", "ci", "--no-audit", "--no-fund"], ["npm", "run", "build"]):
        if args[1] == "ci" and installed:
            continue
        process = await asyncio.create_subprocess_exec(*args, cwd=web)
        if await process.wait() != 0:
            raise RuntimeError(f"{' '.join(args)} failed in {web}")


# -- Python devices ------------------------------------------------------------------------------


class PythonDevice:
    """A ``StockzenClient`` of its own profile, with its engine's loop running."""

    kind = "python"

    def __init__(self, name: str, fleet: ClientFleet, link_url: str) -> None:
        self.name = name
        self.made: list[Made] = []
        self.profile = Profile.create(fleet.home / name, link_url, user_token(fleet.tenant, name, ttl_seconds=3600))
        self.client = StockzenClient(
            self.profile,
            settings=EngineSettings(tick=0.2, probe_every=0.5, sync_every=3.0, lock_wait=60.0),
            backoff=Backoff(base=0.3, cap=fleet.config.backoff_cap),
        )
        self._stop = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._fleet = fleet

    async def start(self) -> None:
        self.profile.save()  # for `stockzen status --json` at the end
        self._loop = asyncio.create_task(self.client.run(self._stop))

    async def act(self, fleet: ClientFleet) -> None:
        done = 0
        while fleet.keeps_acting(done):
            if self._act_once(fleet):
                done += 1
            await asyncio.sleep(fleet.pause())

    def _act_once(self, fleet: ClientFleet) -> bool:
        rng, client = fleet.random, self.client
        shown = client.products()
        own = [str(p.id) for p in shown if fleet.owners.get(str(p.id)) == self.name]
        movable = [str(p.id) for p in shown if str(p.id) in fleet.python_products]
        roll = rng.random()
        try:
            if len(own) < fleet.config.products_per_device or (
                roll < 0.05 and len(own) <= fleet.config.products_per_device
            ):
                product = str(
                    client.add_product(
                        f"{self.name} {rng.choice(['mug', 'cup', 'bowl'])}", sku=f"{self.name}-{len(self.made)}"
                    )
                )
                fleet.owners[product] = self.name
                fleet.python_products.add(product)
                self.made.append(Made(self.name, "create", product))
            elif roll < 0.6 and movable:
                product = rng.choice(movable)
                kind = rng.choice(["entry", "entry", "exit"])
                quantity = rng.randint(1, 5)
                moved = (
                    client.stock_in(uuid.UUID(product), quantity)
                    if kind == "entry"
                    else client.stock_out(uuid.UUID(product), quantity)
                )
                self.made.append(Made(self.name, "movement", product, str(moved), kind))
            elif roll < 0.97 and shown:
                product = str(rng.choice(shown).id)
                changes: dict[str, Any] = rng.choice(
                    [{"name": f"{self.name} renamed {rng.randint(1, 99)}"}, {"price_cents": rng.randint(0, 9999)}]
                )
                client.edit_product(uuid.UUID(product), **changes)
                self.made.append(Made(self.name, "update", product))
            elif len(own) > 1:
                product = rng.choice(own)
                client.remove_product(uuid.UUID(product))
                self.made.append(Made(self.name, "delete", product))
            else:
                return False
        except InvalidChange:
            return False  # the product left this device meanwhile (deleted elsewhere): nothing was queued
        return True

    async def nudge(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.sync()

    async def at_rest(self) -> bool:
        status = self.client.status
        return status.state is SyncState.UP_TO_DATE and status.queued == 0

    async def view(self) -> ServerState:
        shown = self.client.products()
        return (
            {str(p.id): (p.name, p.sku, p.price_cents) for p in shown},
            {str(p.id): p.stock_level for p in shown},
        )

    async def outbox(self) -> Outbox:
        """From ``stockzen status --json``: what a user of the device is told."""
        process = await asyncio.create_subprocess_exec(
            str(STOCKZEN_CLI),
            "status",
            "--json",
            "--profile",
            self.name,
            env={**os.environ, "STOCKZEN_HOME": str(self._fleet.home)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"stockzen status failed for {self.name}: {err.decode(errors='replace')}")
        status = json.loads(out)
        failed = [(str(f["operationId"]), str(f.get("reason") or "")) for f in status.get("failedChanges", [])]
        return Outbox(int(status["queued"]), failed)

    async def stop(self) -> None:
        self._stop.set()
        if self._loop is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._loop, 30)
        await self.client.aclose()


# -- browser devices -----------------------------------------------------------------------------


class BrowserDevice:
    """One browser context (one user, one IndexedDB) with one or more tabs of the app."""

    kind = "browser"

    def __init__(self, name: str, fleet: ClientFleet, browser: Browser, link_url: str, tabs: int) -> None:
        self.name = name
        self.made: list[Made] = []
        self._fleet = fleet
        self._browser = browser
        self._link_url = link_url
        self._tab_count = tabs
        self._token = user_token(fleet.tenant, name, ttl_seconds=3600)
        self.context: BrowserContext | None = None
        self.pages: list[Page] = []
        self._nudged = -NUDGE_EVERY
        self.unsteady_clicks = 0  # clicks the page kept from landing, dispatched to their element instead

    async def start(self) -> None:
        self.context = await self._browser.new_context(base_url=self._link_url)
        first = await self._open()
        await first.get_by_label("Access token").fill(self._token)
        await first.get_by_role("button", name="Sign in").click()
        await expect(first.get_by_role("form", name="Add a product")).to_be_visible(timeout=30_000)
        for _ in range(self._tab_count - 1):  # the session is kept: another tab opens signed in
            page = await self._open()
            await expect(page.get_by_role("form", name="Add a product")).to_be_visible(timeout=30_000)

    async def _open(self) -> Page:
        assert self.context is not None
        page = await self.context.new_page()
        page.on("pageerror", lambda error: self._fleet.report.page_errors.append(f"{self.name}: {error}"))
        self.pages.append(page)
        await page.goto("/app/", timeout=30_000)
        return page

    async def act(self, fleet: ClientFleet) -> None:
        """Every tab acts on its own; the first failure of a tab is raised once all of them are done."""
        outcomes = await asyncio.gather(
            *(self._tab(fleet, page, f"{self.name}{chr(ord('a') + i)}") for i, page in enumerate(self.pages)),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _tab(self, fleet: ClientFleet, page: Page, tab: str) -> None:
        config, done = fleet.config, 0
        own: list[str] = []
        levels: dict[str, int] = {}
        skus: dict[str, int] = {}
        while fleet.keeps_acting(done):
            roll = fleet.random.random()
            if len(own) < config.products_per_device or (roll < 0.05 and len(own) <= config.products_per_device):
                product = await self._add(page, f"{tab} item {len(own) + 1}", f"{tab}-{len(own) + 1}")
                fleet.owners[product] = tab
                own.append(product)
                levels[product], skus[product] = 0, 0
            elif roll < 0.8:
                product = fleet.random.choice(own)
                kind = fleet.random.choice(["entry", "entry", "exit"])
                levels[product] += 1 if kind == "entry" else -1
                await self._click(page, product, kind, levels[product])
            else:
                product = fleet.random.choice(own)
                skus[product] += 1
                await self._edit(
                    page, product, f"{tab}-{own.index(product) + 1}-e{skus[product]}", fleet.random.randint(0, 9999)
                )
            done += 1
            await asyncio.sleep(fleet.pause())

    async def _add(self, page: Page, name: str, sku: str) -> str:
        form = page.get_by_role("form", name="Add a product")
        await form.get_by_label("Name").fill(name)
        await form.get_by_label("SKU").fill(sku)
        await self._press(form.get_by_role("button", name="Add product"))
        row = page.locator("#product-list tr[data-product-id]", has=page.get_by_role("link", name=name, exact=True))
        await expect(row).to_have_count(1, timeout=15_000)
        product = await row.get_attribute("data-product-id")
        assert product, f"the row of {name} has no product id"
        self.made.append(Made(self.name, "create", product))
        return product

    async def _press(self, target: Locator) -> None:
        """Click ``target`` as a user would; when the page keeps it from being clicked for a while (its
        list redrawn on every change a busy sync stores, a notice over it), dispatch the click to that
        very element instead. Either way exactly one click reaches its handler."""
        try:
            await target.click(timeout=5_000)
        except PlaywrightTimeout:
            self.unsteady_clicks += 1
            await target.dispatch_event("click", timeout=15_000)

    def _row(self, page: Page, product: str) -> Locator:
        return page.locator(f'#product-list tr[data-product-id="{product}"]')

    async def _click(self, page: Page, product: str, kind: str, expected: int) -> None:
        label = re.compile(f"^Stock {kind} of 1 for ")
        await self._press(self._row(page, product).get_by_role("button", name=label))
        self.made.append(Made(self.name, "movement", product, None, kind))
        # Only this tab moves this product: its row shows every click, and only those.
        await expect(self._row(page, product).locator("span.stock")).to_have_text(str(expected), timeout=15_000)

    async def _edit(self, page: Page, product: str, sku: str, price: int) -> None:
        """Set the product's SKU and price on its page; confirmed by the SKU its row shows (only this tab
        sets this product's SKU). Saving again the same values queues nothing, so a Save lost to a form
        redrawn by a sync is simply pressed again."""
        made = Made(self.name, "update", product, attempts=0)
        self.made.append(made)
        for _ in range(3):
            made.attempts += 1
            await self._press(self._row(page, product).get_by_role("link"))
            form = page.get_by_role("form", name="Edit product")
            await form.get_by_label("SKU").fill(sku)
            await form.get_by_label("Price (cents)").fill(str(price))
            await self._press(form.get_by_role("button", name="Save"))
            await self._press(page.get_by_role("link", name="All products"))
            with contextlib.suppress(AssertionError):
                await expect(self._row(page, product).locator("td").nth(1)).to_have_text(sku, timeout=5_000)
                return
        raise AssertionError(f"the edit of {product} never showed on its row")

    async def nudge(self) -> None:
        """An offline/online flip: coming back online syncs at once, with the backoff reset. Not more
        than every few seconds, so that a sync under way can end."""
        assert self.context is not None
        if time.monotonic() < self._nudged + NUDGE_EVERY:
            return
        self._nudged = time.monotonic()
        with contextlib.suppress(Exception):
            await self.context.set_offline(True)
            await asyncio.sleep(0.1)
            await self.context.set_offline(False)

    async def at_rest(self) -> bool:
        for page in self.pages:
            status = page.locator("#status")
            if await status.get_attribute("data-state") != "upToDate" or "queued" in await status.inner_text():
                return False
        return True

    async def _local_data(self) -> dict[str, Any]:
        page = self.pages[0]
        await page.evaluate(
            "() => { if (!location.hash.startsWith('#/') || location.hash.length > 2) location.hash = '#/'; }"
        )
        data: dict[str, Any] = await page.evaluate(
            """async ([tenant, user]) => {
                const names = (await indexedDB.databases()).map((d) => d.name);
                const name = names.find((n) => n === `stockzen-${tenant}-${user}`)
                    ?? names.find((n) => n && n.includes(tenant) && n.includes(user));
                if (!name) return { error: `no database of ${tenant} and ${user} among ${names}` };
                const db = await new Promise((resolve, reject) => {
                    const request = indexedDB.open(name);
                    request.onsuccess = () => resolve(request.result);
                    request.onerror = () => reject(request.error);
                });
                const all = (store) => new Promise((resolve, reject) => {
                    if (!db.objectStoreNames.contains(store)) { resolve(null); return; }
                    const request = db.transaction(store, "readonly").objectStore(store).getAll();
                    request.onsuccess = () => resolve(request.result);
                    request.onerror = () => reject(request.error);
                });
                const result = { products: await all("products"), outbox: await all("outbox") };
                db.close();
                const rows = [...document.querySelectorAll("#product-list tr[data-product-id]")].map((row) => ({
                    id: row.getAttribute("data-product-id"),
                    name: row.querySelector("a")?.textContent ?? null,
                    sku: row.cells[1]?.textContent ?? "",
                    stock: row.querySelector("span.stock")?.textContent ?? null,
                }));
                return { ...result, rows };
            }""",
            [str(self._fleet.tenant), self.name],
        )
        if "error" in data:
            raise RuntimeError(str(data["error"]))
        return data

    async def view(self) -> ServerState:
        """The list as the user sees it (names, SKUs, stock), with each product's price from the app's store."""
        data = await self._local_data()
        stored = {p["id"]: p for p in data.get("products") or [] if not p.get("deleted")}
        rows = {r["id"]: r for r in data["rows"]}
        if len(stored) > LIST_PAGE:
            raise RuntimeError(f"{len(stored)} products: more than one page of the list")
        products = {
            pid: (row["name"], row["sku"] or None, stored.get(pid, {}).get("priceCents")) for pid, row in rows.items()
        }
        levels = {pid: int(row["stock"]) if row["stock"] is not None else 0 for pid, row in rows.items()}
        return products, levels

    async def outbox(self) -> Outbox:
        data = await self._local_data()
        entries = data.get("outbox") or []
        failed = [
            (str(e["operation"]["operationId"]), str(e.get("reason") or ""))
            for e in entries
            if e.get("status") == "failed"
        ]
        return Outbox(len(entries) - len(failed), failed)

    async def stop(self) -> None:
        if self.context is not None:
            await self.context.close()

"""Chaos: simulated devices push while the worker is killed and its links are cut; then the books are checked.

Used by the short run in ``make test`` (``tests/e2e/test_chaos.py``) and the long one in ``make chaos``
(``chaos/run_chaos.py``). Devices of several tenants push random product creates, edits, deletes and
stock movements (some sent ahead of their product's create, which answers ``retryable`` until the
create lands), retrying with the same ids until every item has a final result; some batches are
raced by a twin device sending the same ids at the same time. Meanwhile a fault injector SIGKILLs the
worker (a supervisor restarts it, as compose's restart policy would), takes the broker away, flushes
this run's Redis keys, takes Postgres away from the worker and inventory, and cuts the gateway's
link to the broker.

Outages are TCP-proxy cuts by default (``tests/support/proxy.py``): the broker, Postgres and Redis are
shared with other runs on the machine, and cutting every link to a service is, for the processes
under test, what its restart is. ``real_restarts`` restarts the real broker (``rabbitmqctl
stop_app``/``start_app``) and the real Postgres cluster (``pg_ctlcluster restart``) instead.

With ``clients`` set, real clients run too, in a tenant of their own (``tests/support/chaos_clients.py``):
Python ``StockzenClient`` devices and tabs of the browser app, through an HTTP-aware faulty link in
front of the gateway (``tests/support/faulty_link.py``) that drops answers after the server applied the
batch, resets connections, answers 503 and 429 itself and, as one more fault of the plan
(``link_away``), goes away for a while.

Then everything drains and Postgres is read directly: every operation with a final result is
recorded exactly once, no movement is in the ledger twice (or missing), every stock level equals the
sum of its movements, and every device, after pulling the change feed to its end, holds exactly the
server's products and levels. The real clients' link heals, each is brought to rest, and each one's own
view, outbox and every change it made are checked against the server (see ``chaos_clients.py``).
Everything runs on 127.0.0.1 and is bounded in time and count.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.support.chaos_clients import ClientChaosConfig, ClientFleet
from tests.support.db import levels_off_ledger, operation_ids
from tests.support.ops import create_product, delete_product, movement, update_product
from tests.support.processes import free_port
from tests.support.proxy import CuttableProxy
from tests.support.services import ServiceUrls
from tests.support.stack import Stack, delete_redis_keys, queue_counts, user_token

FAULTS = ("worker_killed", "broker_restarted", "redis_flushed", "postgres_restarted", "gateway_broker_cut")
CLIENT_FAULTS = ("link_away",)
"""Faults of the plan when real clients run: their link goes away (its other faults come at random)."""
FINAL_STATUSES = {"applied", "duplicate", "conflict", "rejected"}


@dataclass(frozen=True)
class ChaosConfig:
    """How big and how long a run is."""

    tenants: int = 4
    devices: int = 20  # spread over the tenants; each has a twin (another user of its tenant) for races
    min_rounds: int = 3  # batches per device at least (devices keep going until every fault was injected)
    max_rounds: int = 40
    batch_size: int = 6
    race_share: float = 0.25  # of batches also sent, with the same ids, by the twin at the same moment
    fault_rounds: int = 1  # how many times each fault is injected
    outage_seconds: float = 2.0
    gap_seconds: float = 1.0  # between faults
    seconds: float = 150.0  # hard bound on the pushing phase
    real_restarts: bool = False
    seed: int | None = None
    clients: ClientChaosConfig | None = None  # real clients through a faulty link, in a tenant of their own

    @property
    def faults(self) -> tuple[str, ...]:
        return FAULTS + (CLIENT_FAULTS if self.clients else ())


@dataclass
class ChaosReport:
    """What a run did and what the checks found (all zero but ``operations`` and ``faults`` when it held)."""

    operations: int = 0
    movements: int = 0
    requests: int = 0
    raced_batches: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    unfinished: int = 0  # operations with no final result when the time was up
    server_errors: int = 0  # 5xx answers other than 503 (which says: retry)
    outage_reads: list[int] = field(default_factory=list)  # statuses of reads made while Postgres was away
    lost: int = 0
    doubled: int = 0
    misreported: int = 0  # in the ledger although its final result said it was not applied
    level_mismatches: int = 0
    diverged: int = 0  # devices whose pulled state differs from the server's
    seconds: float = 0.0
    client_lines: list[str] = field(default_factory=list)  # what the real clients did and what their checks found
    clients_held: bool = True

    @property
    def held(self) -> bool:
        return self.clients_held and not (
            self.unfinished
            or self.server_errors
            or self.lost
            or self.doubled
            or self.misreported
            or self.level_mismatches
            or self.diverged
        )

    def lines(self) -> list[str]:
        names = FAULTS + tuple(name for name in CLIENT_FAULTS if name in self.faults)
        faults = ", ".join(f"{name} x{self.faults[name]}" for name in names)
        return [
            f"operations      {self.operations} ({self.movements} movements) in {self.requests} requests,"
            f" {self.raced_batches} batches raced",
            f"faults injected {sum(self.faults.values())}: {faults}",
            f"unfinished      {self.unfinished}",
            f"5xx             {self.server_errors} (reads during Postgres outages: {self.outage_reads})",
            f"lost            {self.lost}",
            f"doubled         {self.doubled}",
            f"misreported     {self.misreported}",
            f"level != ledger {self.level_mismatches}",
            f"diverged        {self.diverged}",
            *self.client_lines,
            f"took            {self.seconds:.1f} s",
        ]


@dataclass
class Sent:
    """One operation a device sent, and every final answer it got (the twin's too)."""

    body: dict[str, Any]
    finals: set[str] = field(default_factory=set)


@dataclass
class TenantWorld:
    """What a tenant's devices know exists (products whose create was applied and not deleted since)."""

    tenant: uuid.UUID
    products: list[uuid.UUID] = field(default_factory=list)


@dataclass
class PulledState:
    """A device's copy of its tenant, built only from the change feed."""

    checkpoint: str | None = None
    products: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    movements: dict[str, tuple[str, int]] = field(default_factory=dict)

    def levels(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for product, signed in self.movements.values():
            totals[product] += signed
        return {product: total for product, total in totals.items() if total}


def product_key(state: dict[str, Any]) -> tuple[Any, ...]:
    """What two copies of a product must agree on."""
    if state["deleted"]:
        return ("deleted",)
    return (state["name"], state["sku"], state["priceCents"], state["archived"])


class Chaos:
    """One chaos run against a stack it starts on this run's services and stops at the end."""

    def __init__(self, services: ServiceUrls, stack: Stack, config: ChaosConfig) -> None:
        self.services = services
        self.stack = stack
        self.config = config
        self.random = random.Random(config.seed)
        self.report = ChaosReport()
        self.sent: dict[str, Sent] = {}
        self.worlds = [TenantWorld(uuid.uuid4()) for _ in range(config.tenants)]
        self._faults_done = asyncio.Event()
        self._stopping = False
        self._deadline = 0.0
        self._gateway_broker = CuttableProxy.for_url(services.amqp_url)
        self._worker_broker = CuttableProxy.for_url(services.amqp_url)
        self._worker_postgres = CuttableProxy.for_url(services.app_url)
        self._inventory_postgres = CuttableProxy.for_url(services.app_url)
        self._client_home = Path(tempfile.mkdtemp(prefix="stockzen-chaos-clients-"))
        self.clients = (
            ClientFleet(config.clients, uuid.uuid4(), self._client_home, config.seed) if config.clients else None
        )

    @property
    def _proxies(self) -> tuple[CuttableProxy, ...]:
        return (self._gateway_broker, self._worker_broker, self._worker_postgres, self._inventory_postgres)

    # -- the run ---------------------------------------------------------------------------------

    async def run(self) -> ChaosReport:
        started = time.monotonic()
        self._deadline = started + self.config.seconds
        for proxy in self._proxies:
            await proxy.start()
        supervisor = asyncio.create_task(self._supervise_worker())
        clients = self.clients
        try:
            await asyncio.gather(self._start_stack(), clients.start_browser() if clients else asyncio.sleep(0))
            if clients:
                await clients.start("127.0.0.1", self.stack.gateway_port, free_port())
            async with httpx.AsyncClient(base_url=self.stack.gateway_url, timeout=30) as client:
                injector = asyncio.create_task(self._inject_faults(client))
                devices = [self._device(client, i) for i in range(self.config.devices)]
                if clients:
                    real = asyncio.create_task(clients.run(self._faults_done, self._deadline))
                pulled = await asyncio.gather(*devices)
                await injector
                if clients:
                    await real
                    await clients.bring_to_rest()
                await self._drain()
                await self._check(client, pulled)
                if clients:
                    await self._check_clients(clients)
        finally:
            self._stopping = True
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            if clients:
                await clients.stop()
            await asyncio.to_thread(self.stack.stop_all)
            for proxy in self._proxies:
                await proxy.cut()
            await self.stack.delete_queues()
            await delete_redis_keys(self.services.redis_url, self.services.redis_prefix)
            await asyncio.to_thread(shutil.rmtree, self._client_home, True)
        self.report.seconds = time.monotonic() - started
        return self.report

    async def _check_clients(self, clients: ClientFleet) -> None:
        admin = await asyncpg.connect(self.services.admin_url)
        try:
            await clients.check(admin)
        finally:
            await admin.close()
        # Every sync the link carried, for whoever has to find out what broke a promise (kept with the logs).
        await asyncio.to_thread(clients.write_exchanges, self.stack.log_dir / "faulty-link-exchanges.jsonl")
        self.report.client_lines = clients.lines()
        self.report.clients_held = clients.report.held

    async def _start_stack(self) -> None:
        await asyncio.to_thread(
            self.stack.start_inventory, DATABASE_URL=self._inventory_postgres.url(self.services.app_url)
        )
        await asyncio.to_thread(self._start_worker)
        await asyncio.to_thread(
            self.stack.start_gateway,
            AMQP_URL=self._gateway_broker.url(self.services.amqp_url),
            SYNC_RATE_LIMIT_BURST="1000",
            SYNC_RATE_LIMIT_PER_MINUTE="100000",
            READ_RATE_LIMIT_BURST="1000",
            READ_RATE_LIMIT_PER_MINUTE="100000",
            SYNC_RESULT_TIMEOUT_SECONDS="3",
        )

    def _start_worker(self) -> None:
        self.stack.start_worker(
            AMQP_URL=self._worker_broker.url(self.services.amqp_url),
            DATABASE_URL=self._worker_postgres.url(self.services.app_url),
            SYNC_MAX_RETRIES="50",
        )

    async def _supervise_worker(self) -> None:
        """Restart the worker whenever it has died, as compose's ``restart: unless-stopped`` does."""
        while not self._stopping:
            worker = self.stack.processes.get("worker")
            if worker is not None and worker.popen.poll() is not None:
                with contextlib.suppress(RuntimeError):  # not back yet (a link is cut): try again
                    await asyncio.to_thread(self._start_worker)
            await asyncio.sleep(0.3)

    # -- devices -----------------------------------------------------------------------------------

    async def _device(self, client: httpx.AsyncClient, index: int) -> PulledState:
        world = self.worlds[index % len(self.worlds)]
        own = {"Authorization": f"Bearer {user_token(world.tenant, f'device-{index}')}"}
        twin = {"Authorization": f"Bearer {user_token(world.tenant, f'twin-{index}')}"}
        state = PulledState()
        rounds = 0
        while rounds < self.config.max_rounds and time.monotonic() < self._deadline:
            if rounds >= self.config.min_rounds and self._faults_done.is_set():
                break
            ops = self._batch(world)
            if self.random.random() < self.config.race_share:
                self.report.raced_batches += 1
                await asyncio.gather(self._push(client, own, world, ops), self._push(client, twin, world, ops))
            else:
                await self._push(client, own, world, ops)
            if rounds % 3 == 2:
                await self._pull(client, own, state)
            rounds += 1
        return state

    def _batch(self, world: TenantWorld) -> list[dict[str, Any]]:
        tenant, pick, ops = world.tenant, self.random.random, []
        for _ in range(self.random.randint(1, self.config.batch_size)):
            known = world.products
            roll = pick()
            if not known or roll < 0.25:
                product = uuid.uuid4()
                if pick() < 0.3:  # a first sale sent ahead of its create: retryable until the create lands
                    ops.append(movement(tenant, product, "entry", self.random.randint(1, 9)))
                ops.append(create_product(tenant, product, self.random.choice(["Mug", "Cup", "Bowl"])))
            elif roll < 0.75:
                kind = self.random.choice(["entry", "entry", "exit"])
                ops.append(movement(tenant, self.random.choice(known), kind, self.random.randint(1, 9)))
            elif roll < 0.93:
                fields: dict[str, Any] = self.random.choice(
                    [{"name": "Renamed"}, {"priceCents": self.random.randint(0, 999)}]
                )
                ops.append(update_product(tenant, self.random.choice(known), **fields))
            else:
                ops.append(delete_product(tenant, self.random.choice(known)))
        for op in ops:
            self.sent.setdefault(op["operationId"], Sent(op))
        self.report.operations += len(ops)
        self.report.movements += sum(op["entityType"] == "stockMovement" for op in ops)
        return ops

    async def _push(
        self, client: httpx.AsyncClient, headers: dict[str, str], world: TenantWorld, ops: list[dict[str, Any]]
    ) -> None:
        """Send until every operation has a final result, resending the unsettled ones with the same ids."""
        waiting = list(ops)
        while waiting and time.monotonic() < self._deadline + 30:
            self.report.requests += 1
            try:
                response = await client.post("/api/sync", json={"operations": waiting}, headers=headers)
            except httpx.TransportError:
                await asyncio.sleep(0.5)
                continue
            if response.status_code >= 500 and response.status_code != 503:
                self.report.server_errors += 1
            if response.status_code not in (200, 202):
                await asyncio.sleep(float(response.headers.get("retry-after", "0.5")))
                continue
            unsettled = []
            for op, result in zip(waiting, response.json()["results"], strict=True):
                if result["status"] in FINAL_STATUSES and not result.get("retryable"):
                    self._settled(world, op, result["status"])
                else:
                    unsettled.append(op)
            waiting = unsettled
            if waiting:
                await asyncio.sleep(0.3)

    def _settled(self, world: TenantWorld, op: dict[str, Any], status: str) -> None:
        self.sent[op["operationId"]].finals.add(status)
        if op["entityType"] != "product" or status not in ("applied", "duplicate"):
            return
        product = uuid.UUID(op["entityId"])
        if op["operationType"] == "create" and product not in world.products:
            world.products.append(product)
        elif op["operationType"] == "delete" and product in world.products:
            world.products.remove(product)

    async def _pull(self, client: httpx.AsyncClient, headers: dict[str, str], state: PulledState) -> None:
        """Pull the change feed from the device's checkpoint to its end (retrying through outages)."""
        while time.monotonic() < self._deadline + 60:
            params = {"limit": "200"} | ({"checkpoint": state.checkpoint} if state.checkpoint else {})
            try:
                response = await client.get("/api/sync/changes", params=params, headers=headers)
            except httpx.TransportError:
                await asyncio.sleep(0.5)
                continue
            if response.status_code >= 500 and response.status_code != 503:
                self.report.server_errors += 1
            if response.status_code != 200:
                await asyncio.sleep(float(response.headers.get("retry-after", "0.5")))
                continue
            page = response.json()
            for change in page["changes"]:
                if change["entityType"] == "product":
                    state.products[change["entityId"]] = product_key(change["product"])
                else:
                    moved = change["movement"]
                    sign = 1 if moved["kind"] == "entry" else -1
                    state.movements[change["entityId"]] = (moved["productId"], sign * moved["quantity"])
            state.checkpoint = page["checkpoint"]
            if not page["hasMore"]:
                return
        raise RuntimeError("the change feed could not be pulled to its end in time")

    # -- faults ------------------------------------------------------------------------------------

    async def _inject_faults(self, client: httpx.AsyncClient) -> None:
        plan = [fault for _ in range(self.config.fault_rounds) for fault in self.config.faults]
        self.random.shuffle(plan)
        try:
            for fault in plan:
                if time.monotonic() > self._deadline:
                    break
                await asyncio.sleep(self.config.gap_seconds * (0.5 + self.random.random()))
                if fault == "postgres_restarted":
                    await self._postgres_restarted(client)
                elif fault == "link_away":
                    assert self.clients is not None
                    await self.clients.link_away()
                else:
                    await getattr(self, f"_{fault}")()
                self.report.faults[fault] += 1
        finally:
            self._faults_done.set()

    async def _worker_killed(self) -> None:
        worker = self.stack.processes.get("worker")
        if worker is not None and worker.popen.poll() is None:
            await asyncio.to_thread(worker.kill)
            await self._worker_back()

    async def _worker_back(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            worker = self.stack.processes.get("worker")
            if worker is not None and worker.popen.poll() is None:
                _, consumers = await asyncio.to_thread(queue_counts, self.services.amqp_url, self.stack.queue)
                if consumers:
                    return
            await asyncio.sleep(0.3)
        raise RuntimeError("the supervisor did not bring the worker back")

    async def _broker_restarted(self) -> None:
        if self.config.real_restarts:
            await _command("rabbitmqctl", "stop_app")
            await asyncio.sleep(self.config.outage_seconds)
            await _command("rabbitmqctl", "start_app")
            await _command("rabbitmqctl", "--timeout", "60", "await_startup")
            return
        await self._outage(self._gateway_broker, self._worker_broker)

    async def _redis_flushed(self) -> None:
        await delete_redis_keys(self.services.redis_url, self.services.redis_prefix)

    async def _postgres_restarted(self, client: httpx.AsyncClient) -> None:
        if self.config.real_restarts:
            version = (await _command("pg_lsclusters", "--no-header")).split()[0]
            await _command("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart")
            return
        await self._outage(self._worker_postgres, self._inventory_postgres, probe=self._read_probe(client))

    async def _read_probe(self, client: httpx.AsyncClient) -> None:
        """A read while Postgres is away: it must say 503 (retry), never fail with another 5xx."""
        world = self.worlds[0]
        headers = {"Authorization": f"Bearer {user_token(world.tenant, 'probe')}"}
        with contextlib.suppress(httpx.TransportError):
            response = await client.get("/api/sync/changes", headers=headers)
            self.report.outage_reads.append(response.status_code)
            self.report.server_errors += response.status_code >= 500 and response.status_code != 503

    async def _gateway_broker_cut(self) -> None:
        await self._outage(self._gateway_broker)

    async def _outage(self, *proxies: CuttableProxy, probe: Awaitable[None] | None = None) -> None:
        for proxy in proxies:
            await proxy.cut()
        if probe is not None:
            await probe
        await asyncio.sleep(self.config.outage_seconds)  # the outage itself, not a synchronisation
        for proxy in proxies:
            await proxy.restore()

    # -- drain and check ---------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Wait until nothing is left on the queue (twins' batches may still be there)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _ = await asyncio.to_thread(queue_counts, self.services.amqp_url, self.stack.queue)
            retrying, _ = await asyncio.to_thread(queue_counts, self.services.amqp_url, f"{self.stack.queue}.DQ")
            if ready == 0 and retrying == 0:
                return
            await asyncio.sleep(0.5)
        raise RuntimeError("the queue did not drain")

    async def _check(self, client: httpx.AsyncClient, pulled: list[PulledState]) -> None:
        report = self.report
        report.unfinished = sum(1 for sent in self.sent.values() if not sent.finals)
        tenants = [world.tenant for world in self.worlds]
        admin = await asyncpg.connect(self.services.admin_url)
        try:
            recorded = await operation_ids(admin, "applied_operations", tenants)
            in_ledger = await operation_ids(admin, "stock_movements", tenants)
            for op_id, sent in self.sent.items():
                if not sent.finals:
                    continue
                report.lost += recorded[op_id] == 0
                report.doubled += recorded[op_id] > 1
                if sent.body["entityType"] == "stockMovement":
                    wanted = 1 if sent.finals & {"applied", "duplicate"} else 0
                    report.lost += in_ledger[op_id] < wanted
                    report.doubled += in_ledger[op_id] > 1
                    report.misreported += wanted == 0 and in_ledger[op_id] > 0
            report.level_mismatches = await levels_off_ledger(admin, tenants)
            servers = {tenant: await _server_state(admin, tenant) for tenant in tenants}
        finally:
            await admin.close()
        for index, state in enumerate(pulled):
            world = self.worlds[index % len(self.worlds)]
            await self._pull(client, {"Authorization": f"Bearer {user_token(world.tenant, f'device-{index}')}"}, state)
            report.diverged += (state.products, state.levels()) != servers[world.tenant]


async def _server_state(admin: asyncpg.Connection, tenant: uuid.UUID) -> tuple[dict[str, Any], dict[str, int]]:
    products = {
        str(row["id"]): product_key(
            {
                "deleted": row["deleted"],
                "name": row["name"],
                "sku": row["sku"],
                "priceCents": row["price_cents"],
                "archived": row["archived"],
            }
        )
        for row in await admin.fetch(
            "SELECT *, deleted_at IS NOT NULL AS deleted FROM products WHERE tenant_id = $1", tenant
        )
    }
    levels = {
        str(row["product_id"]): row["quantity"]
        for row in await admin.fetch(
            "SELECT product_id, quantity FROM stock_levels WHERE tenant_id = $1 AND quantity <> 0", tenant
        )
    }
    return products, levels


async def _command(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {output.decode(errors='replace')}")
    return output.decode()

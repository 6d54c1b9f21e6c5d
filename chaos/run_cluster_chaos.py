"""``make chaos-cluster``: devices push through the whole topology while its machines fail, one by one.

Starts the topology of ``make cluster`` (``scripts/cluster.py``: three RabbitMQ nodes with quorum queues,
Postgres under Patroni with a synchronous standby, two each of our services, HAProxy in front), then
simulated devices of several tenants push stock movements and product changes through the front,
resending what has no final answer with the same ids, while the run, one fault after the other:

1. kills (SIGKILL) the RabbitMQ node leading the sync queue, and starts it again later;
2. kills the Postgres primary's postmaster with ``kill -9``: Patroni promotes the synchronous standby,
   and the old primary rejoins as a standby;
3. hangs the Postgres primary (the node that took over): its Patroni and its Postgres are frozen (SIGSTOP), as a paused VM
   would be, until writes are applied again, on the standby Patroni promoted: the services' statements
   on the frozen node end at their client-side limit (``*_DB_COMMAND_TIMEOUT_SECONDS``); then it is reset,
   as a watchdog would reset a hung machine, and rejoins as a standby;
4. cuts one worker off from the broker: it runs in a network namespace of its own, and a kernel rule
   drops every packet between it and the three RabbitMQ nodes, both ways, while Postgres and Redis still
   answer it (``scripts/netns.py``); the broker gives up its connections after two missed heartbeats and
   redelivers what it held to the other worker, the worker notices by its own heartbeat, and the cut is
   healed 25 s later. Just before, it is frozen (SIGSTOP) for a second so that deliveries wait in its
   socket: behind the cut it commits them, their acks are lost, and the other worker must find them
   applied. Where no namespace can be made (not root, no iproute2) it is frozen instead, and the run says so;
5. cuts one gateway (SIGKILL): HAProxy takes it out and the devices' retries go to the other;
6. kills etcd, Patroni's only store, for a while: with ``failsafe_mode`` the primary, which still
   reaches every member, stays the primary and writes go on; then etcd is started again;
7. loses the primary's whole machine at once (SIGKILL): its RabbitMQ node, its Patroni and Postgres,
   and its inventory, worker and gateway; the standby is promoted once the leader key expires, and
   the machine is then started again, its Postgres rejoining as a standby.

For each fault it prints how long until a probe device's write was applied again, and the answers
given meanwhile (``503``, ``202`` and no answer at all). At the end every operation that got a final
result must be recorded exactly once, every movement applied once in the ledger, and every stock level
must equal its ledger; the run exits 1 otherwise.

    make chaos-cluster
    .venv/bin/python -m chaos.run_cluster_chaos --devices 12 --settle-seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.cluster import SYNC_QUEUE, Ports, Topology
from stockzen_platform.identity import Identity, TokenIssuer
from stockzen_platform.settings import DEVELOPMENT_JWT_SECRET
from tests.support.db import levels_off_ledger, operation_ids
from tests.support.ops import create_product, movement, update_product

FINAL = {"applied", "duplicate", "conflict", "rejected"}
# Answers a device retries with the same ids: the rate limit, the gateway's 503, and HAProxy's own 502
# for a request whose gateway died while answering it (as both clients retry a 5xx without the
# contract's body). Anything else is counted as unexpected and fails the run.
RETRIED = (429, 502, 503)
FAULTS = (
    "queue leader killed",
    "postgres primary killed",
    "postgres primary hung",
    "worker cut off",
    "gateway cut",
    "etcd lost",
    "primary's machine lost",
)
#: How long worker-a stays cut off from the broker: more than the broker's heartbeat timeout (two missed
#: beats of WORKER_HEARTBEAT_SECONDS) and the worker's own (pika's: a beat + 5 s), so both notice.
WORKER_CUT_SECONDS = 25.0


@dataclass
class Window:
    """What the devices met during one fault: from its start until the probe's write was applied again."""

    name: str
    started: float
    recovered: float | None = None
    ended: float | None = None  # the fault is over: the node back, or let go
    extra: str = ""
    answers: Counter[str] = field(default_factory=Counter)
    said: dict[str, str] = field(default_factory=dict)  # the first message of each kind of answer
    back: asyncio.Event = field(default_factory=asyncio.Event)

    def close(self) -> None:
        """The probe's write was applied again."""
        self.recovered = time.monotonic()
        self.back.set()

    def line(self) -> str:
        took = f"{self.recovered - self.started:5.1f} s" if self.recovered else "  never"
        lasted = f"{self.ended - self.started:.1f} s" if self.ended else "?"
        seen = ", ".join(f"{k} {v}" for k, v in sorted(self.answers.items())) or "none"
        return (
            f"  {self.name:<24} writes applied again after {took}; answers other than 200 while it lasted"
            f" ({lasted}): {seen}{self.extra}"
        )


@dataclass
class Run:
    """Everything the devices sent and heard, and the windows of the faults."""

    sent: dict[str, dict[str, Any]] = field(default_factory=dict)
    finals: dict[str, str] = field(default_factory=dict)
    windows: list[Window] = field(default_factory=list)
    requests: int = 0
    unexpected: Counter[int] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)  # what went otherwise than hoped, without failing the run

    def heard(self, answer: str, message: str = "") -> None:
        for window in self.windows:
            if window.ended is None:
                window.answers[answer] += 1
                window.said.setdefault(answer, message)


@dataclass
class PartitionSeen:
    """What the logs say of a worker's partition from the broker: when the broker closed its connections
    (missed heartbeats), when the worker noticed, and which batches it committed behind the cut the other
    worker got again (redelivered; the ledger check says whether it found them applied)."""

    broker_closed: list[float]  # seconds after the cut, one per connection of the worker's
    worker_noticed: float | None
    redelivered: list[float]  # seconds after the cut the other worker applied each again

    @classmethod
    def read(cls, logs: Path, rabbit_logs: list[Path], worker: str, cut_at: float, seconds: float) -> PartitionSeen:
        """From the services' logs in ``logs`` and the RabbitMQ nodes' logs; ``worker`` was cut at ``cut_at``
        (seconds since the epoch) for ``seconds``."""
        ours = _worker_log(logs / f"{worker}.log")
        others = [_worker_log(path) for path in logs.glob("worker-*.log") if path.stem != worker]
        noticed = [t for t, line in ours if "Consumer encountered a connection error" in line and t > cut_at]
        behind = {_message_id(line) for t, line in ours if '"batch applied"' in line and cut_at < t < cut_at + seconds}
        again = [
            t - cut_at for log in others for t, line in log if '"batch applied"' in line and _message_id(line) in behind
        ]
        closed = [
            t - cut_at
            for path in rabbit_logs
            for t, line in _rabbit_log(path)
            if cut_at < t < cut_at + seconds and f" - {worker}" in line and "closing AMQP connection" in line
        ]
        return cls(sorted(closed), min(noticed) - cut_at if noticed else None, sorted(again))

    def __str__(self) -> str:
        closed = (
            f"the broker closed its {len(self.broker_closed)} connections by {self.broker_closed[-1]:.1f} s"
            if self.broker_closed
            else "the broker closed none of its connections"
        )
        noticed = f"{self.worker_noticed:.1f} s" if self.worker_noticed is not None else "never"
        again = f", from {self.redelivered[0]:.1f} s" if self.redelivered else ""
        return (
            f"{closed}, the worker noticed after {noticed}; {len(self.redelivered)} batches it committed behind"
            f" the cut were redelivered to the other worker{again}"
        )


def _worker_log(path: Path) -> list[tuple[float, str]]:
    """A service's JSON log lines with their times (seconds since the epoch)."""
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            lines.append((datetime.fromisoformat(json.loads(line)["time"]).timestamp(), line))
    return lines


def _rabbit_log(path: Path) -> list[tuple[float, str]]:
    """A RabbitMQ node's log lines (``2026-12-04 07:13:06.990811+00:00 [error] ...``) with their times."""
    lines = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        with contextlib.suppress(ValueError):
            lines.append((datetime.fromisoformat(line[:32]).timestamp(), line))
    return lines


def _message_id(line: str) -> str:
    return str(json.loads(line).get("message_id", ""))


class ClusterChaos:
    """The devices, the probe and the faults, against one running :class:`Topology`."""

    def __init__(self, topology: Topology, *, tenants: int, devices: int, settle: float, seed: int) -> None:
        self.topology = topology
        self.tenants = [uuid.uuid4() for _ in range(tenants)]
        self.products: dict[uuid.UUID, list[uuid.UUID]] = {tenant: [] for tenant in self.tenants}
        self.devices = devices
        self.settle = settle
        self.random = random.Random(seed)
        self.run = Run()
        self.partition: PartitionSeen | None = None  # what the worker's partition did, if it was one
        self._stop = asyncio.Event()
        self._issuer = TokenIssuer(algorithm="HS256", key=DEVELOPMENT_JWT_SECRET)

    def _headers(self, tenant: uuid.UUID, device: str) -> dict[str, str]:
        token = self._issuer.issue(Identity(device, tenant), ttl_seconds=3600)
        return {"Authorization": f"Bearer {token}"}

    async def go(self) -> bool:
        async with httpx.AsyncClient(base_url=self.topology.front_url, timeout=30) as client:
            for tenant in self.tenants:  # every tenant starts with a few products
                ops = [create_product(tenant, uuid.uuid4(), f"Item {n}") for n in range(5)]
                await self._push(client, self._headers(tenant, "setup"), ops)
                self.products[tenant] = [uuid.UUID(op["entityId"]) for op in ops]
            devices = [asyncio.create_task(self._device(client, n)) for n in range(self.devices)]
            probe = asyncio.create_task(self._probe(client))
            try:
                await self._faults()
            finally:
                self._stop.set()
                await asyncio.gather(*devices, probe)
        return await self._check()

    # -- the devices ----------------------------------------------------------------------------
    async def _device(self, client: httpx.AsyncClient, index: int) -> None:
        tenant = self.tenants[index % len(self.tenants)]
        headers = self._headers(tenant, f"device-{index}")
        while not self._stop.is_set():
            ops: list[dict[str, Any]] = []
            for _ in range(self.random.randint(1, 4)):
                product = self.random.choice(self.products[tenant])
                if self.random.random() < 0.15:
                    ops.append(update_product(tenant, product, priceCents=self.random.randint(0, 999)))
                else:
                    kind = self.random.choice(["entry", "entry", "exit"])
                    ops.append(movement(tenant, product, kind, self.random.randint(1, 9)))
            await self._push(client, headers, ops)
            await asyncio.sleep(self.random.uniform(0.05, 0.3))

    async def _push(self, client: httpx.AsyncClient, headers: dict[str, str], ops: list[dict[str, Any]]) -> bool:
        """Send until each operation has a final result (the unsettled again, same ids); whether all did."""
        for op in ops:
            self.run.sent[op["operationId"]] = op
        waiting = list(ops)
        deadline = time.monotonic() + 240
        while waiting and time.monotonic() < deadline:
            self.run.requests += 1
            try:
                response = await client.post("/api/sync", json={"operations": waiting}, headers=headers)
            except httpx.TransportError as exc:
                self.run.heard("no answer", type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            if response.status_code not in (200, 202):
                self.run.heard(str(response.status_code), response.text[:300])
                if response.status_code not in RETRIED:
                    self.run.unexpected[response.status_code] += 1
                await asyncio.sleep(min(float(response.headers.get("retry-after", "0.5")), 2.0))
                continue
            if response.status_code == 202:
                self.run.heard("202")
            still = []
            for op, result in zip(waiting, response.json()["results"], strict=True):
                if result["status"] in FINAL and not result.get("retryable"):
                    self.run.finals[op["operationId"]] = result["status"]
                else:
                    still.append(op)
            waiting = still
            if waiting:
                await asyncio.sleep(0.3)
        return not waiting

    async def _probe(self, client: httpx.AsyncClient) -> None:
        """One movement alone every 200 ms, sent again (same id) until it has a final result. A fault's
        window ends with the first probe movement applied after the fault began: answered ``applied`` to
        a request sent after it began, or ``duplicate`` when the movement itself was first sent after it
        (a ``duplicate`` for one sent before may have been applied before the fault, its answer lost)."""
        tenant = self.tenants[0]
        headers = self._headers(tenant, "probe")
        op: dict[str, Any] | None = None
        first_sent = 0.0
        while not self._stop.is_set():
            if op is None:
                op = movement(tenant, self.products[tenant][0], "entry", 1)
                self.run.sent[op["operationId"]] = op
                first_sent = time.monotonic()
            sent_at = time.monotonic()
            try:
                response = await client.post("/api/sync", json={"operations": [op]}, headers=headers, timeout=5)
                status = response.json()["results"][0]["status"] if response.status_code == 200 else None
            except (httpx.TransportError, ValueError, KeyError, IndexError):
                status = None
            if status in ("applied", "duplicate"):
                since = sent_at if status == "applied" else first_sent
                for window in self.run.windows:
                    if window.recovered is None and since >= window.started:
                        window.close()
            if status in FINAL:
                self.run.finals[op["operationId"]] = str(status)
                op = None
            await asyncio.sleep(max(0.0, 0.2 - (time.monotonic() - sent_at)))
        if op is not None:
            await self._push(client, headers, [op])

    # -- the faults ------------------------------------------------------------------------------
    async def _faults(self) -> None:
        await asyncio.sleep(self.settle)
        await self._queue_leader_killed()
        await asyncio.sleep(self.settle)
        await self._postgres_primary_killed()
        await asyncio.sleep(self.settle)
        await self._postgres_primary_hung()
        await asyncio.sleep(self.settle)
        await self._worker_cut_off()
        await asyncio.sleep(self.settle)
        await self._gateway_cut()
        await asyncio.sleep(self.settle)
        await self._etcd_lost()
        await asyncio.sleep(self.settle)
        await self._machine_lost()
        await asyncio.sleep(self.settle)

    def _open(self, name: str) -> Window:
        window = Window(name, time.monotonic())
        self.run.windows.append(window)
        return window

    async def _recovered(self, window: Window, seconds: float = 120) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(window.back.wait(), seconds)

    async def _queue_leader_killed(self) -> None:
        rabbit = self.topology.rabbit
        leader = await asyncio.to_thread(rabbit.leader, SYNC_QUEUE)
        window = self._open(FAULTS[0])
        await asyncio.to_thread(rabbit.kill, leader)
        await self._recovered(window)
        await asyncio.to_thread(rabbit.restart, leader)
        window.ended = time.monotonic()
        window.extra = f" ({leader.name} killed, started again)"

    async def _postgres_primary_killed(self) -> None:
        postgres = self.topology.postgres
        primary = await asyncio.to_thread(postgres.leader)
        window = self._open(FAULTS[1])
        await asyncio.to_thread(postgres.crash_postgres, primary)
        await self._recovered(window)
        rejoined = await asyncio.to_thread(postgres.await_role, primary, {"replica", "sync_standby"}, seconds=120)
        window.ended = time.monotonic()
        window.extra = f" ({primary.name} killed; back as a standby after {rejoined:.1f} s)"

    async def _postgres_primary_hung(self) -> None:
        postgres = self.topology.postgres
        primary = await asyncio.to_thread(postgres.leader)
        standby = next(node for node in postgres.nodes if node != primary)
        # Patroni promotes only a synchronous standby: the node back from the last fault must be one.
        await asyncio.to_thread(postgres.await_role, standby, {"sync_standby"}, seconds=120)
        window = self._open(FAULTS[2])
        postgres.freeze(primary)
        await self._recovered(window)  # still frozen: only the services' statement limit lets them go on
        await asyncio.to_thread(postgres.reset, primary)  # as a watchdog would (PgCluster.thaw is not safe)
        rejoined = await asyncio.to_thread(postgres.await_role, primary, {"replica", "sync_standby"}, seconds=120)
        window.ended = time.monotonic()
        window.extra = f" ({primary.name} frozen until then, then reset; back as a standby {rejoined:.1f} s later)"

    async def _worker_cut_off(self) -> None:
        window = self._open(FAULTS[3])
        seconds = max(WORKER_CUT_SECONDS, self.settle)
        # Frozen a moment first, so that deliveries wait unread in its socket: let go behind the cut, it
        # commits them and their acks are lost, the case a partition of a busy worker makes.
        self.topology.freeze("worker-a")
        await asyncio.sleep(1.0)
        cut = await asyncio.to_thread(self.topology.cut_from_broker, "worker-a")
        cut_at = time.time()
        if cut:  # without a network namespace here, the worker stays frozen: the nearest thing
            self.topology.thaw("worker-a")
        await asyncio.sleep(seconds)
        await asyncio.to_thread(self.topology.heal if cut else self.topology.thaw, "worker-a")
        await self._recovered(window)
        window.ended = time.monotonic()
        if not cut:
            window.extra = f" (worker-a frozen {seconds + 1:.0f} s, then let go: {self.topology.no_namespaces})"
            return
        logs = self.topology.root / "logs", self.topology.broker_logs
        self.partition = await asyncio.to_thread(PartitionSeen.read, *logs, "worker-a", cut_at, seconds)
        window.extra = (
            f" (worker-a cut from the {len(self.topology.rabbit.nodes)} RabbitMQ nodes by a drop rule for"
            f" {seconds:.0f} s, then healed; {self.partition})"
        )

    async def _gateway_cut(self) -> None:
        window = self._open(FAULTS[4])
        await asyncio.to_thread(self.topology.kill_service, "gateway-a")
        await self._recovered(window)
        await asyncio.to_thread(self.topology.start_service, "gateway-a")
        window.ended = time.monotonic()
        window.extra = " (gateway-a killed, started again)"

    async def _etcd_lost(self) -> None:
        postgres = self.topology.postgres
        primary = await asyncio.to_thread(postgres.leader)
        window = self._open(FAULTS[5])
        await asyncio.to_thread(postgres.kill_etcd)
        await self._recovered(window)
        await asyncio.sleep(max(10.0, self.settle))  # a whole ttl without etcd, writes going on meanwhile
        await asyncio.to_thread(postgres.start_etcd)
        still = await asyncio.to_thread(postgres.await_role, primary, {"leader"}, seconds=60)
        window.ended = time.monotonic()
        window.extra = f" (etcd killed for {max(10.0, self.settle):.0f} s, started again; {primary.name} led again after {still:.1f} s)"

    async def _machine_lost(self) -> None:
        topology = self.topology
        primary = await asyncio.to_thread(topology.postgres.leader)
        letter = primary.name.rsplit("-", 1)[1]
        window = self._open(FAULTS[6])
        await asyncio.to_thread(topology.lose_machine, letter)
        await self._recovered(window)
        await asyncio.to_thread(topology.restore_machine, letter)
        lost = ", ".join(topology.machine(letter))
        try:
            await asyncio.to_thread(topology.postgres.await_role, primary, {"replica", "sync_standby"}, seconds=120)
        except TimeoutError:
            # Reported, not fatal: what this fault proves is that the survivors carry on with nothing lost;
            # the dead node's return is Patroni's, and in one run of about eight it had not come back
            # within 120 s (docs/scaling.md). The old primary killed alone (fault 2) must rejoin, and is awaited.
            window.ended = time.monotonic()
            window.extra = (
                f" ({lost} killed at once, then started again; {primary.name} NOT back as a standby in 120 s)"
            )
            self.run.notes.append(f"{primary.name} did not rejoin as a standby within 120 s of its machine's restart")
            return
        window.ended = time.monotonic()
        back = window.ended - window.started
        window.extra = (
            f" ({lost} killed at once, then started again: all back, {primary.name} a standby, {back:.1f} s after)"
        )

    # -- the verdict -----------------------------------------------------------------------------
    async def _check(self) -> bool:
        postgres = self.topology.postgres
        admin = await asyncpg.connect(postgres.admin_url(postgres.leader(), "stockzen"))
        try:
            recorded = await operation_ids(admin, "applied_operations", self.tenants)
            in_ledger = await operation_ids(admin, "stock_movements", self.tenants)
            level_mismatches = await levels_off_ledger(admin, self.tenants)
        finally:
            await admin.close()
        lost = doubled = 0
        for op_id, status in self.run.finals.items():
            lost += recorded[op_id] == 0
            doubled += recorded[op_id] > 1
            if self.run.sent[op_id]["entityType"] == "stockMovement":
                lost += status in ("applied", "duplicate") and in_ledger[op_id] == 0
                doubled += in_ledger[op_id] > 1
        unfinished = len(self.run.sent) - len(self.run.finals)
        print("failovers, as the devices saw them:")
        for window in self.run.windows:
            print(window.line())
            for answer, message in window.said.items():
                print(f"      first {answer}: {message}")
        print(
            f"operations sent {len(self.run.sent)}, with a final result {len(self.run.finals)}, "
            f"requests {self.run.requests}"
        )
        for note in self.run.notes:
            print(f"note: {note}")
        print(
            f"unfinished {unfinished}, lost {lost}, doubled {doubled}, level != ledger {level_mismatches}, "
            f"unexpected answers {dict(self.run.unexpected) or 0}"
        )
        return unfinished == lost == doubled == level_mismatches == 0 and not self.run.unexpected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--settle-seconds", type=float, default=8.0, help="pushing between two faults")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--front-port", type=int, default=Ports.front)
    parser.add_argument("--keep", type=Path, default=None, help="run in this (new) folder and keep its logs")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"seed {seed}; starting the topology", flush=True)
    # Each line as it comes: a run takes minutes.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if args.keep is not None:
        args.keep.mkdir(parents=True)
    with Topology(ports=Ports(front=args.front_port), root=args.keep, isolate=("worker-a",)) as topology:
        chaos = ClusterChaos(
            topology, tenants=args.tenants, devices=args.devices, settle=args.settle_seconds, seed=seed
        )
        held = asyncio.run(chaos.go())
    print("held" if held else "FAILED")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())

"""Sync throughput through the real stack, held against what Postgres alone does, in one run.

Starts its own gateway and worker processes (own queue, own Redis prefix, own database
``stockzen_bench``) against the local Postgres, Redis and RabbitMQ on 127.0.0.1, drives them with
simulated devices of several tenants, and prints, for each batch size and for 1 and 2 worker (and
gateway) processes: applied operations/s, request p50/p95/p99, the share of ``pending`` answers and
the ratios to two baselines measured in the same run (the worker's apply code in-process, and raw
asyncpg inserts of movement rows); then throughput with an empty ledger against one holding
``--ledger-rows`` movements, Redis memory per deduped operation, one operation per request
through the gateway against a direct FastAPI -> Postgres write, and single-operation requests from wrk
at 16 and 64 connections with the CPU each process spends per request (:mod:`bench.single_ops`).
Stops every process it started.

    make bench                                  # about four minutes
    .venv/bin/python -m bench.throughput --seconds 3 --sizes 1 50   # a quicker look
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import asyncpg
import httpx
import redis.asyncio as aioredis
import uvloop

from bench import baselines, profiling, single_ops
from bench.workload import Device
from stockzen_inventory.adapters.migrations import migrate, prepare_database
from tests.support.ops import create_product, movement
from tests.support.processes import ServiceProcess, free_port, start_service
from tests.support.services import ServiceUrls, service_urls
from tests.support.stack import Stack, delete_redis_keys, user_token

BENCH_DATABASE = "stockzen_bench"
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plan:
    """How much load, for how long."""

    sizes: tuple[int, ...] = (1, 10, 50, 200)
    seconds: float = 6.0
    devices: int = 16
    tenants: int = 4
    baseline_concurrency: int = 4
    ledger_rows: int = 1_000_000
    single_requests: int = 150
    profile_dir: Path | None = None  # when set: py-spy profiles of a batch-50 run on 1 worker + 1 gateway
    wrk_connections: tuple[int, ...] = (16, 64)  # single-operation requests from wrk, at each count
    wrk_tenants: int = 16


@dataclass
class LoadResult:
    """What the devices saw during one timed run."""

    size: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    http: Counter[int] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds each service used during the run

    @property
    def settled(self) -> int:
        """Operations answered with a final result."""
        return sum(self.statuses.values()) - self.statuses["pending"]

    @property
    def settled_per_second(self) -> float:
        """Operations answered with a final result (applied, duplicate, conflict, rejected) per second."""
        return (sum(self.statuses.values()) - self.statuses["pending"]) / self.seconds

    @property
    def pending_share(self) -> float:
        total = sum(self.statuses.values())
        return self.statuses["pending"] / total if total else 0.0

    def percentile(self, q: float) -> float:
        return _percentile(self.latencies, q) * 1000 if self.latencies else float("nan")


def _used_since(before: dict[str, float | None], pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds each service's process tree used since ``before`` (empty without ``/proc``)."""
    used = {}
    for name, pid in pids.items():
        start, now = before[name], profiling.cpu_seconds(pid)
        if start is not None and now is not None:
            used[name] = now - start
    return used


def _percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Fleet:
    """The simulated devices of several tenants, each tenant's products created through the gateway."""

    def __init__(self, devices: list[Device]) -> None:
        self.devices = devices

    @classmethod
    async def create(cls, gateway_url: str, devices: int, tenants: int, products_per_tenant: int = 20) -> Fleet:
        tenant_ids = [uuid.uuid4() for _ in range(tenants)]
        catalogue = {t: [uuid.uuid4() for _ in range(products_per_tenant)] for t in tenant_ids}
        async with httpx.AsyncClient(base_url=gateway_url, timeout=60) as client:
            for tenant, products in catalogue.items():
                body = {"operations": [create_product(tenant, p, name=f"bench {p.hex[:6]}") for p in products]}
                response = await client.post("/api/sync", json=body, headers=_auth(tenant, "bench-setup"))
                response.raise_for_status()
        return cls(
            [
                Device(tenant_ids[i % tenants], f"device-{i}", catalogue[tenant_ids[i % tenants]], random.Random(i))
                for i in range(devices)
            ]
        )


def _auth(tenant: uuid.UUID, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token(tenant, user, ttl_seconds=3600)}"}


async def drive(gateway_urls: Sequence[str], fleet: Fleet, size: int, seconds: float) -> LoadResult:
    """Every device sends batches of ``size`` back to back for ``seconds``, spread over the gateways."""
    limits = httpx.Limits(max_connections=len(fleet.devices) * 2)
    clients = [httpx.AsyncClient(base_url=url, timeout=60, limits=limits) for url in gateway_urls]
    result = LoadResult(size, seconds)

    async def one_device(index: int, device: Device) -> None:
        client = clients[index % len(clients)]
        headers = _auth(device.tenant_id, device.user_id)
        while time.perf_counter() < deadline:
            body = {"operations": device.next_batch(size)}
            started = time.perf_counter()
            response = await client.post("/api/sync", json=body, headers=headers)
            result.latencies.append(time.perf_counter() - started)
            result.http[response.status_code] += 1
            if response.status_code in (200, 202):
                result.statuses.update(item["status"] for item in response.json()["results"])

    try:
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(one_device(i, d) for i, d in enumerate(fleet.devices)))
        result.seconds = time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()
    return result


async def single_operation_latency(
    url: str, path: str, tenant: uuid.UUID, product: uuid.UUID, requests: int
) -> list[float]:
    """Sequential one-movement requests; seconds each."""
    timings = []
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=_auth(tenant, "bench-single")) as client:
        for index in range(requests + 10):
            started = time.perf_counter()
            response = await client.post(path, json={"operations": [movement(tenant, product, "entry", 1)]})
            if response.status_code != 200:
                raise RuntimeError(f"{url}{path} answered {response.status_code}: {response.text[:300]}")
            if index >= 10:  # the first ten warm connections and caches
                timings.append(time.perf_counter() - started)
    return timings


async def redis_bytes_per_result(redis_url: str, prefix: str, sample: int = 400) -> tuple[float, int]:
    """Mean ``MEMORY USAGE`` of a cached operation result, and how many results are cached."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}r:*", count=1000)]
        sizes = [await client.memory_usage(key, samples=0) for key in keys[:sample]]
        found = [s for s in sizes if s]
        return (statistics.fmean(found) if found else float("nan")), len(keys)
    finally:
        await client.aclose()


async def worker_groups(stacks: Sequence[Stack]) -> tuple[float, float, float]:
    """Group commits so far in these stacks' workers: groups, messages in them, seconds they waited to be grouped."""
    names = (
        "stockzen_worker_group_commit_messages_count",
        "stockzen_worker_group_commit_messages_sum",
        "stockzen_worker_group_commit_wait_seconds_sum",
    )
    totals = dict.fromkeys(names, 0.0)
    async with httpx.AsyncClient() as client:
        for stack in stacks:
            for line in (await client.get(stack.worker_metrics_url)).text.splitlines():
                name, _, value = line.partition(" ")
                if name in totals:
                    totals[name] += float(value)
    groups, messages, waited = (totals[name] for name in names)
    return groups, messages, waited


@contextmanager
def stacks(
    urls: ServiceUrls, logs: Path, replicas: int, *, amqp_url: str | None = None, queue_type: str = "classic"
) -> Iterator[list[Stack]]:
    """``replicas`` gateway + worker pairs, all on one queue; stopped (children included) on exit.

    ``amqp_url`` (one address or several, comma-separated) and ``queue_type`` (``classic`` or ``quorum``)
    choose the broker; the machine's RabbitMQ and classic queues by default."""
    started: list[Stack] = []
    try:
        for index in range(replicas):
            stack = Stack(urls, logs, name="bench" if index == 0 else f"bench-{index}", amqp_url=amqp_url)
            stack.env["SYNC_QUEUE_TYPE"] = queue_type
            if started:  # every replica consumes the first one's queue
                stack.queue = started[0].queue
                stack.env["SYNC_QUEUE"] = started[0].queue
            stack.env["SYNC_RATE_LIMIT_BURST"] = "1000000"
            stack.env["SYNC_RATE_LIMIT_PER_MINUTE"] = "100000000"
            stack.env["LOG_LEVEL"] = "WARNING"
            started.append(stack)
            stack.start_worker()
            stack.start_gateway()
        yield started
    finally:
        for stack in reversed(started):
            stack.stop_all()


@contextmanager
def direct_app(urls: ServiceUrls, logs: Path) -> Iterator[str]:
    """The tiny FastAPI -> Postgres app, as a uvicorn process of its own."""
    port = free_port()
    env = {"BENCH_DATABASE_URL": urls.app_url, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    args = ["uvicorn", "bench.direct_app:app", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    process: ServiceProcess = start_service("bench-direct", args, env, logs, f"http://127.0.0.1:{port}/healthz")
    try:
        process.wait_healthy()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def _row(label: str, load: LoadResult, inproc: float, raw: float) -> str:
    ops = load.settled_per_second
    errors = sum(n for code, n in load.http.items() if code >= 500)
    return (
        f"{label:<10} {load.size:>5} {ops:>9.0f} {load.percentile(0.5):>8.1f} {load.percentile(0.95):>8.1f} "
        f"{load.percentile(0.99):>8.1f} {load.pending_share:>8.1%} {errors:>4} {ops / inproc:>9.2f} {ops / raw:>8.3f}"
    )


async def run(plan: Plan) -> None:
    """Measure everything in ``plan`` and print the figures (database: ``TEST_DATABASE_NAME``'s)."""
    with service_urls() as urls, tempfile.TemporaryDirectory(prefix="stockzen-bench-") as log_dir:
        database = urls.app_url.rsplit("/", 1)[1]
        if database.startswith(BENCH_DATABASE):  # a bench database starts empty every run
            await _drop_database(urls.admin_server_url, database)
        await prepare_database(urls.admin_server_url, urls.app_url)
        await migrate(urls.admin_server_url, urls.app_url)
        logs = Path(log_dir)
        print(
            f"bench: database {urls.app_url.rsplit('/', 1)[1]}, {os.cpu_count()} CPUs, {plan.seconds:.0f} s a run",
            flush=True,
        )
        # A first run on a new database is slower for reasons of its own (cold caches, no statistics):
        # warm up before the empty-ledger figure, so it is held against the full one fairly.
        await baselines.in_process_apply(urls.app_url, 50, plan.baseline_concurrency, min(2.0, plan.seconds))
        empty = await baselines.in_process_apply(urls.app_url, 50, plan.baseline_concurrency, plan.seconds)
        empty_inproc = empty.per_second
        raw: dict[int, float] = {}
        inproc: dict[int, float] = {}
        cpu: dict[int, float] = {}
        for size in plan.sizes:
            raw[size] = await baselines.raw_inserts(urls.admin_url, size, plan.baseline_concurrency, plan.seconds)
            applied = await baselines.in_process_apply(urls.app_url, size, plan.baseline_concurrency, plan.seconds)
            inproc[size], cpu[size] = applied.per_second, applied.cpu_per_unit
            print(
                f"  baselines, batch {size}: raw {raw[size]:.0f} rows/s, in-process apply {inproc[size]:.0f} ops/s",
                flush=True,
            )

        loads: dict[tuple[int, int], LoadResult] = {}
        grouped: dict[tuple[int, int], tuple[float, float, float]] = {}  # group commits during each run
        queue: str | None = None
        try:
            for replicas in (1, 2):
                with stacks(urls, logs, replicas) as running:
                    gateways = [s.gateway_url for s in running]
                    queue = running[0].queue
                    fleet = await Fleet.create(gateways[0], plan.devices, plan.tenants)
                    await drive(gateways, fleet, 1, min(2.0, plan.seconds))  # warm up
                    pids = {name: running[0].processes[name].pid for name in ("worker", "gateway")}
                    for size in plan.sizes:
                        before = {name: profiling.cpu_seconds(pid) for name, pid in pids.items()}
                        groups_before = await worker_groups(running)
                        loads[replicas, size] = await drive(gateways, fleet, size, plan.seconds)
                        grouped[replicas, size] = tuple(  # type: ignore[assignment]
                            b - a for a, b in zip(groups_before, await worker_groups(running), strict=True)
                        )
                        if replicas == 1:  # the one replica does all the work: its CPU per operation
                            loads[replicas, size].cpu = _used_since(before, pids)
                        print(f"  {replicas} worker + {replicas} gateway, batch {size}: done", flush=True)
                    if replicas == 1 and plan.profile_dir is not None:
                        with profiling.sampled(pids, plan.profile_dir, plan.seconds):
                            await drive(gateways, fleet, 50, plan.seconds)
                    if replicas == 1:
                        per_result, cached = await redis_bytes_per_result(urls.redis_url, urls.redis_prefix)
                        tenant, product = fleet.devices[0].tenant_id, fleet.devices[0].products[0]
                        through_gateway = await single_operation_latency(
                            gateways[0], "/api/sync", tenant, product, plan.single_requests
                        )
                        with direct_app(urls, logs) as direct_url:
                            direct = await single_operation_latency(
                                direct_url, "/direct", tenant, product, plan.single_requests
                            )
                        wrk_runs = await single_ops.measure(
                            gateways[0], pids, urls, plan.wrk_connections, plan.seconds, plan.wrk_tenants
                        )
        finally:
            await _forget(urls, queue)

        print(f"  seeding {plan.ledger_rows} movements ...", flush=True)
        started = time.perf_counter()
        # The history belongs to the tenants then written to, as it would in service.
        seeded = [uuid.uuid4() for _ in range(plan.baseline_concurrency)]
        await baselines.seed_ledger(urls.admin_url, plan.ledger_rows, seeded)
        seeded_in = time.perf_counter() - started
        held = await baselines.ledger_size(urls.admin_url)
        full_inproc = (
            await baselines.in_process_apply(urls.app_url, 50, plan.baseline_concurrency, plan.seconds, tenants=seeded)
        ).per_second

    print()
    print(
        f"{plan.devices} devices of {plan.tenants} tenants, {plan.seconds:.0f} s per run; baselines on {plan.baseline_concurrency} connections"
    )
    print("processes   batch     ops/s  p50 ms   p95 ms   p99 ms  pending  5xx  /inproc     /raw")
    for (replicas, size), load in sorted(loads.items()):
        print(_row(f"{replicas}w+{replicas}g", load, inproc[size], raw[size]))
    print()
    print("batch   raw rows/s   in-process ops/s   inproc/raw   in-process CPU us/op")
    for size in plan.sizes:
        print(
            f"{size:>5} {raw[size]:>12.0f} {inproc[size]:>18.0f} {inproc[size] / raw[size]:>12.2f}"
            f" {cpu[size] * 1e6:>22.0f}"
        )
    for size in plan.sizes:
        load = loads[1, size]
        if load.cpu and load.settled:
            per_op = ", ".join(f"{name} {seconds / load.settled * 1e6:.0f}" for name, seconds in load.cpu.items())
            print(f"CPU us per settled operation, 1w+1g, batch {size}: {per_op}")
    for size in plan.sizes:
        one, two = loads[1, size].settled_per_second, loads[2, size].settled_per_second
        print(f"scale-out, batch {size}: 2w+2g / 1w+1g = {two / one:.2f}")
    for (replicas, size), (groups, messages, waited) in sorted(grouped.items()):
        if groups:
            print(
                f"group commit, {replicas}w+{replicas}g, batch {size}: {messages / groups:.2f} messages per group "
                f"({groups:.0f} groups), mean wait to be grouped {waited / messages * 1000:.2f} ms"
            )
    statuses = sum((load.statuses for load in loads.values()), Counter[str]())
    print(f"answers over every run: {dict(statuses)}")
    print()
    print(
        f"ledger: empty {empty_inproc:.0f} ops/s, holding {held} movements {full_inproc:.0f} ops/s "
        f"(ratio {full_inproc / empty_inproc:.2f}; in-process apply, batch 50, to the tenants holding them, "
        f"each movement with its applied-operation record; seeded in {seeded_in:.1f} s)"
    )
    print(f"redis: {per_result:.0f} bytes per deduped operation (MEMORY USAGE, {cached} results cached)")
    if plan.profile_dir is not None:
        for name in ("worker", "gateway"):
            print()
            print(profiling.summary(plan.profile_dir / f"{name}.txt"))
    batch_size = 50 if 50 in plan.sizes else max(plan.sizes)
    for line in single_ops.report(wrk_runs, loads[1, batch_size].settled_per_second, batch_size):
        print(line)
    gateway_p50 = statistics.median(through_gateway) * 1000
    direct_p50 = statistics.median(direct) * 1000
    print(
        f"one operation per request: gateway p50 {gateway_p50:.1f} ms, direct FastAPI -> Postgres p50 "
        f"{direct_p50:.1f} ms, ratio {gateway_p50 / direct_p50:.2f}"
    )


async def _drop_database(admin_server_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_server_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def _forget(urls: ServiceUrls, queue: str | None) -> None:
    """Delete the run's queues and Redis keys (the bench database stays, to be reused)."""
    await delete_redis_keys(urls.redis_url, urls.redis_prefix)
    if queue is not None:
        connection = await aio_pika.connect(urls.amqp_url)
        async with connection:
            for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
                channel = await connection.channel()
                await channel.queue_delete(name)
                await channel.close()


def parse_plan(argv: Sequence[str] | None = None) -> Plan:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Plan()
    parser.add_argument("--sizes", type=int, nargs="+", default=list(default.sizes), help="batch sizes")
    parser.add_argument("--seconds", type=float, default=default.seconds, help="length of each timed run")
    parser.add_argument("--devices", type=int, default=default.devices, help="simulated devices")
    parser.add_argument("--tenants", type=int, default=default.tenants, help="tenants the devices belong to")
    parser.add_argument("--ledger-rows", type=int, default=default.ledger_rows, help="movements to seed")
    parser.add_argument("--single-requests", type=int, default=default.single_requests, help="1-op requests to time")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of worker and gateway here")
    parser.add_argument(
        "--wrk-connections", type=int, nargs="+", default=list(default.wrk_connections), help="wrk connection counts"
    )
    parser.add_argument("--wrk-tenants", type=int, default=default.wrk_tenants, help="tenants wrk writes to")
    args = parser.parse_args(argv)
    return Plan(
        sizes=tuple(args.sizes),
        seconds=args.seconds,
        devices=args.devices,
        tenants=args.tenants,
        ledger_rows=args.ledger_rows,
        single_requests=args.single_requests,
        profile_dir=args.profile,
        wrk_connections=tuple(args.wrk_connections),
        wrk_tenants=args.wrk_tenants,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``make bench``: the full plan, on the bench's own database (dropped and made again first).

    A ``TEST_DATABASE_NAME`` that starts with ``stockzen_bench`` names that database instead, so that two
    benches can run side by side without dropping each other's; any other name (a test database) is
    ignored.
    """
    plan = parse_plan(argv)
    if not os.environ.get("TEST_DATABASE_NAME", "").startswith(BENCH_DATABASE):
        os.environ["TEST_DATABASE_NAME"] = BENCH_DATABASE  # tests/support/services names the database from it
    uvloop.run(run(plan))  # the loop the services run on, for the in-process baseline too
    return 0


if __name__ == "__main__":
    sys.exit(main())

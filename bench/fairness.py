"""Fairness between tenants: a quiet tenant's push latency, alone and while another tenant floods.

Starts its own gateway and worker (own queue, own Redis prefix) on the bench's database and times one
device of a quiet tenant pushing batches one after another, alone and then while many devices of
another tenant push big batches back to back (from a process of their own, as other machines would;
each waits out ``Retry-After`` as StockZen's clients do). Alone and flooded alternate for
``--rounds`` rounds, so that a machine's own ups and downs fall on both:

- under a tenant ceiling (``SYNC_TENANT_RATE_LIMIT_PER_MINUTE`` / ``_BURST``; by default a fifth of
  what the worker applied during a first, unlimited flood, in requests of the flood's size: a ceiling
  protects the others when it leaves them room, so it is sized from capacity, not from the defaults);
- once more with no tenant ceiling, for contrast (per-user limits only, as before the ceiling).

It prints the quiet tenant's p50 and p95 each time, their ratio to its value alone (the promise: within
2 x under the ceiling), and how much of the flood was refused and admitted. Every per-user limit is
raised out of the way, as in ``bench.throughput``: only the tenant ceiling is at work.

    make bench                                       # runs it after bench.throughput
    .venv/bin/python -m bench.fairness --seconds 4   # a quicker look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench.throughput import BENCH_DATABASE, Fleet, _auth, _forget, _percentile
from bench.workload import Device
from stockzen_inventory.adapters.migrations import migrate, prepare_database
from tests.support.retry import eventually
from tests.support.services import ServiceUrls, service_urls
from tests.support.stack import Stack, queue_counts

UNLIMITED = {
    "SYNC_RATE_LIMIT_BURST": "1000000",
    "SYNC_RATE_LIMIT_PER_MINUTE": "100000000",
    "SYNC_TENANT_RATE_LIMIT_BURST": "100000000",
    "SYNC_TENANT_RATE_LIMIT_PER_MINUTE": "10000000000",
    "LOG_LEVEL": "WARNING",
}


@dataclass(frozen=True)
class FairnessPlan:
    """How hard the flood, how long each window, and the ceiling under test (``None``: sized from capacity)."""

    seconds: float = 10.0
    rounds: int = 3
    flood_devices: int = 32
    flood_batch: int = 50
    quiet_batch: int = 10
    quiet_interval: float = 0.5  # a push every this many seconds: a tenant well within any ceiling
    ceiling_per_minute: int | None = None
    ceiling_burst: int | None = None
    share: float = 0.2  # the sized ceiling's share of the worker's capacity, in the flood's batches


@dataclass
class Flood:
    """What the flooding tenant's devices got."""

    http: Counter[int] = field(default_factory=Counter)
    settled: int = 0
    seconds: float = 0.0

    @property
    def refused_share(self) -> float:
        total = sum(self.http.values())
        return self.http[429] / total if total else 0.0

    @property
    def admitted_per_second(self) -> float:
        return self.settled / self.seconds if self.seconds else 0.0


async def _pushes(client: httpx.AsyncClient, device: Device, plan: FairnessPlan, seconds: float) -> list[float]:
    """One device of the quiet tenant for ``seconds``: a push every ``plan.quiet_interval``; seconds each."""
    headers = _auth(device.tenant_id, device.user_id)
    timings = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        body = {"operations": device.next_batch(plan.quiet_batch)}
        response = await client.post("/api/sync", json=body, headers=headers)
        if response.status_code not in (200, 202):
            raise RuntimeError(f"the quiet tenant got {response.status_code}: {response.text[:300]}")
        timings.append(time.perf_counter() - started)
        await asyncio.sleep(max(0.0, started + plan.quiet_interval - time.perf_counter()))
    return timings


async def flood(gateway_url: str, devices: int, size: int, seconds: float) -> Flood:
    """``devices`` devices of one new tenant pushing batches of ``size`` back to back for ``seconds``,
    each waiting out ``Retry-After`` when refused."""
    fleet = await Fleet.create(gateway_url, devices, 1)
    print("ready", flush=True)
    result = Flood()
    limits = httpx.Limits(max_connections=devices)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def one(device: Device) -> None:
            headers = _auth(device.tenant_id, device.user_id)
            while time.perf_counter() < deadline:
                response = await client.post("/api/sync", json={"operations": device.next_batch(size)}, headers=headers)
                result.http[response.status_code] += 1
                if response.status_code == 429:
                    wait = float(response.headers.get("retry-after", "1"))
                    await asyncio.sleep(min(wait, max(0.0, deadline - time.perf_counter())))
                elif response.status_code in (200, 202):
                    result.settled += sum(1 for r in response.json()["results"] if r["status"] != "pending")

        await asyncio.gather(*(one(device) for device in fleet.devices))
        result.seconds = time.perf_counter() - started
    return result


async def _flooded(gateway_url: str, plan: FairnessPlan, quiet: Device) -> tuple[list[float], Flood]:
    """The quiet device's timings while a flood runs in a process of its own, and what the flood got."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.fairness",
        "--flood-only",
        gateway_url,
        "--seconds",
        str(plan.seconds + 2),
        "--flood-devices",
        str(plan.flood_devices),
        "--flood-batch",
        str(plan.flood_batch),
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        if (await process.stdout.readline()).strip() != b"ready":
            raise RuntimeError("the flood did not start")
        await asyncio.sleep(1.0)  # let the flood build up before timing
        async with httpx.AsyncClient(base_url=gateway_url, timeout=60) as client:
            timings = await _pushes(client, quiet, plan, plan.seconds)
        report = json.loads(await process.stdout.read())
    finally:
        if process.returncode is None:
            await process.wait()
    got = Flood(Counter({int(k): v for k, v in report["http"].items()}), report["settled"], report["seconds"])
    return timings, got


async def _drained(stack: Stack) -> None:
    """Wait until the queue is empty, so that one flood's backlog never slows what is timed next."""

    async def empty() -> bool:
        return (await asyncio.to_thread(queue_counts, stack.services.amqp_url, stack.queue))[0] == 0

    await eventually(empty, seconds=180)


@contextmanager
def _stack(urls: ServiceUrls, logs: Path) -> Iterator[Stack]:
    stack = Stack(urls, logs, name="fairness")
    stack.env.update(UNLIMITED)
    try:
        stack.start_worker()
        stack.start_gateway()
        yield stack
    finally:
        stack.stop_all()


@dataclass
class Round:
    """One round: the quiet tenant alone, then flooded."""

    alone: list[float]
    flooded: list[float]
    flood: Flood

    def ratio(self, q: float) -> float:
        return _percentile(self.flooded, q) / _percentile(self.alone, q)


def _ms(timings: Sequence[float], q: float) -> float:
    return _percentile(timings, q) * 1000


async def _rounds(stack: Stack, plan: FairnessPlan, quiet: Device, rounds: int) -> list[Round]:
    done = []
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=60) as client:
        await _pushes(client, quiet, plan, min(2.0, plan.seconds))  # warm up
    for _ in range(rounds):
        async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=60) as client:
            alone = await _pushes(client, quiet, plan, plan.seconds)
        flooded, got = await _flooded(stack.gateway_url, plan, quiet)
        await _drained(stack)
        done.append(Round(alone, flooded, got))
    return done


def _report(label: str, rounds: Sequence[Round]) -> str:
    alone = [t for r in rounds for t in r.alone]
    flooded = [t for r in rounds for t in r.flooded]
    refused = statistics.fmean(r.flood.refused_share for r in rounds)
    admitted = statistics.fmean(r.flood.admitted_per_second for r in rounds)
    return (
        f"fairness: {label}: quiet tenant p50 {_ms(alone, 0.5):.1f} ms alone, {_ms(flooded, 0.5):.1f} ms flooded "
        f"(median ratio over {len(rounds)} rounds {statistics.median(r.ratio(0.5) for r in rounds):.2f} x); "
        f"p95 {_ms(alone, 0.95):.1f} / {_ms(flooded, 0.95):.1f} ms "
        f"({statistics.median(r.ratio(0.95) for r in rounds):.2f} x); "
        f"flooding tenant: {refused:.0%} answered 429, {admitted:.0f} ops/s admitted"
    )


async def run(plan: FairnessPlan) -> None:
    """Measure and print the figures (database: ``TEST_DATABASE_NAME``'s)."""
    with service_urls() as urls, tempfile.TemporaryDirectory(prefix="stockzen-fairness-") as log_dir:
        await prepare_database(urls.admin_server_url, urls.app_url)
        await migrate(urls.admin_server_url, urls.app_url)
        queue = None
        try:
            with _stack(urls, Path(log_dir)) as stack:
                queue = stack.queue
                quiet = (await Fleet.create(stack.gateway_url, 1, 1)).devices[0]
                uncapped = await _rounds(stack, plan, quiet, 1)
                per_minute, burst = _ceiling(plan, uncapped[0].flood)
                stack.start_gateway(
                    SYNC_TENANT_RATE_LIMIT_PER_MINUTE=str(per_minute), SYNC_TENANT_RATE_LIMIT_BURST=str(burst)
                )
                capped = await _rounds(stack, plan, quiet, plan.rounds)
        finally:
            await _forget(urls, queue)
    print()
    print(
        f"fairness: one quiet device pushing batches of {plan.quiet_batch} every {plan.quiet_interval} s against {plan.flood_devices} devices of "
        f"another tenant pushing batches of {plan.flood_batch}; {plan.seconds:.0f} s a window"
    )
    print(_report("no tenant ceiling", uncapped))
    print(_report(f"tenant ceiling {per_minute}/min, burst {burst}", capped))
    within = statistics.median(r.ratio(0.5) for r in capped) <= 2
    print(f"fairness: under the ceiling the quiet tenant's p50 is {'within' if within else 'NOT within'} 2 x alone")


def _ceiling(plan: FairnessPlan, unlimited: Flood) -> tuple[int, int]:
    """The ceiling to test: the plan's, or ``plan.share`` of what the worker applied of an unlimited
    flood (never below twice the quiet tenant's own pace, which must stay within it)."""
    sized = round(unlimited.admitted_per_second * plan.share / plan.flood_batch * 60)
    per_minute = plan.ceiling_per_minute or max(sized, math.ceil(2 * 60 / plan.quiet_interval))
    return per_minute, plan.ceiling_burst or max(1, per_minute // 60)


def parse_plan(argv: Sequence[str] | None = None) -> tuple[FairnessPlan, str | None]:
    """Read the command line: the plan, and the gateway to flood when this process is only a flood."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = FairnessPlan()
    parser.add_argument("--seconds", type=float, default=default.seconds, help="length of each timed window")
    parser.add_argument("--rounds", type=int, default=default.rounds, help="alone/flooded rounds under the ceiling")
    parser.add_argument("--flood-devices", type=int, default=default.flood_devices, help="devices of the flood")
    parser.add_argument("--flood-batch", type=int, default=default.flood_batch, help="operations per flood push")
    parser.add_argument("--quiet-batch", type=int, default=default.quiet_batch, help="operations per quiet push")
    parser.add_argument("--quiet-interval", type=float, default=default.quiet_interval, help="seconds between")
    parser.add_argument("--ceiling", type=int, help="tenant pushes per minute (default: sized from capacity)")
    parser.add_argument("--ceiling-burst", type=int, help="tenant burst (default: a second's worth)")
    parser.add_argument("--share", type=float, default=default.share, help="sized ceiling's share of capacity")
    parser.add_argument("--flood-only", metavar="GATEWAY_URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    plan = FairnessPlan(
        seconds=args.seconds,
        rounds=args.rounds,
        flood_devices=args.flood_devices,
        flood_batch=args.flood_batch,
        quiet_batch=args.quiet_batch,
        quiet_interval=args.quiet_interval,
        ceiling_per_minute=args.ceiling,
        ceiling_burst=args.ceiling_burst,
        share=args.share,
    )
    return plan, args.flood_only


def _flood_only(gateway_url: str, plan: FairnessPlan) -> None:
    got = uvloop.run(flood(gateway_url, plan.flood_devices, plan.flood_batch, plan.seconds))
    report: dict[str, Any] = {"http": dict(got.http), "settled": got.settled, "seconds": got.seconds}
    print(json.dumps(report), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``make bench``'s fairness figures, on the bench's database (see :func:`bench.throughput.main`)."""
    plan, flood_only = parse_plan(argv)
    if flood_only is not None:
        _flood_only(flood_only, plan)
        return 0
    if not os.environ.get("TEST_DATABASE_NAME", "").startswith(BENCH_DATABASE):
        os.environ["TEST_DATABASE_NAME"] = BENCH_DATABASE
    uvloop.run(run(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())

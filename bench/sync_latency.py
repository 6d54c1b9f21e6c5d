"""Sync request latency for 1 and for 50 operations, through real gateway and worker processes.

Starts its own gateway and worker (own queue, own Redis prefix) against the local services, sends
sequential requests, prints percentiles and the ratio between the two sizes, and stops everything.
Absolute times on a shared machine are noise; compare the ratios measured in one run.

    make bench            # or: .venv/bin/python bench/sync_latency.py --requests 200
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.ops import create_product, movement
from tests.support.services import service_urls
from tests.support.stack import Stack, delete_redis_keys, user_token


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _measure(
    client: httpx.AsyncClient, tenant: uuid.UUID, product: uuid.UUID, size: int, requests: int
) -> list[float]:
    timings = []
    for _ in range(requests):
        body: dict[str, Any] = {"operations": [movement(tenant, product, "entry", 1) for _ in range(size)]}
        started = time.perf_counter()
        response = await client.post("/api/sync", json=body)
        timings.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"unexpected {response.status_code}: {response.text[:300]}")
    return timings


async def _concurrent(
    client: httpx.AsyncClient, tenants: list[uuid.UUID], products: list[uuid.UUID], each: int
) -> float:
    async def one_client(tenant: uuid.UUID, product: uuid.UUID) -> None:
        token = user_token(tenant, f"bench-{tenant.hex[:6]}")
        for _ in range(each):
            body = {"operations": [movement(tenant, product, "entry", 1)]}
            response = await client.post("/api/sync", json=body, headers={"Authorization": f"Bearer {token}"})
            response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(one_client(t, p) for t, p in zip(tenants, products, strict=True)))
    return len(tenants) * each / (time.perf_counter() - started)


async def run(requests: int) -> None:
    with service_urls() as urls, tempfile.TemporaryDirectory() as logs:
        stack = Stack(urls, Path(logs), name="bench")
        try:
            stack.start_worker()
            stack.start_gateway(SYNC_RATE_LIMIT_BURST="100000", SYNC_RATE_LIMIT_PER_MINUTE="1000000")
            tenants = [uuid.uuid4() for _ in range(9)]
            products = [uuid.uuid4() for _ in tenants]
            async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=60) as client:
                for tenant, product in zip(tenants, products, strict=True):
                    token = user_token(tenant, f"bench-{tenant.hex[:6]}")
                    await client.post(
                        "/api/sync",
                        json={"operations": [create_product(tenant, product)]},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                client.headers["Authorization"] = f"Bearer {user_token(tenants[0], f'bench-{tenants[0].hex[:6]}')}"
                await _measure(client, tenants[0], products[0], 1, 20)  # warm up connections and caches
                one = await _measure(client, tenants[0], products[0], 1, requests)
                fifty = await _measure(client, tenants[0], products[0], 50, max(20, requests // 4))
                del client.headers["Authorization"]
                throughput = await _concurrent(client, tenants[1:], products[1:], max(10, requests // 8))
        finally:
            stack.stop_all()
            await stack.delete_queues()
            await delete_redis_keys(urls.redis_url, urls.redis_prefix)

    def row(name: str, samples: list[float]) -> str:
        ms = [s * 1000 for s in samples]
        return (
            f"{name:<16} n={len(ms):<4} p50={_percentile(ms, 0.5):7.1f} ms  p95={_percentile(ms, 0.95):7.1f} ms"
            f"  mean={statistics.fmean(ms):7.1f} ms"
        )

    print(row("1 operation", one))
    print(row("50 operations", fifty))
    ratio = statistics.median(fifty) / statistics.median(one)
    print(
        f"median(50 ops) / median(1 op) = {ratio:.1f}x  ->  {statistics.median(fifty) / 50 * 1000:.2f} ms per operation in a batch of 50"
    )
    print(f"8 concurrent clients (8 tenants), 1 operation per request: {throughput:.0f} requests/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="sequential 1-operation requests to time")
    asyncio.run(run(parser.parse_args().requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())

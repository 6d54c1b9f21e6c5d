"""The two yardsticks the whole path is held against, and the large ledger.

(a) the worker's own apply code called in-process, straight to Postgres (no HTTP, queue or Redis);
(b) raw asyncpg inserts of the same movement rows into a table shaped like the ledger
    (same columns, constraints and indexes; no trigger, no row-level security).
Both run ``concurrency`` tenants side by side, one transaction per batch, on rows or messages made
before the clock starts (making them is the load generator's and the gateway's work).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.workload import Device, movement_rows
from stockzen_contracts import ApplySyncBatch, RawSyncBatch, SyncBatchApplied, parse_operation
from stockzen_platform.postgres import create_pool
from stockzen_sync_worker.adapters.inventory_database import PostgresInventoryDatabase
from stockzen_sync_worker.domain.outcomes import StoredResult
from stockzen_sync_worker.services import apply_sync_batch, read_batch
from tests.support.ops import create_product

RAW_TABLE = "bench_raw_movements"
_RAW_INSERT = (
    f"INSERT INTO {RAW_TABLE} (tenant_id, id, operation_id, product_id, kind, quantity, reason,"
    " occurred_at, checkpoint) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
Step = Callable[[], Awaitable[int]]
"""One unit of a timed run (a transaction): returns how many rows or operations it did."""


class NoResultCache:
    """The result cache left out: the in-process baseline measures the apply code and Postgres only."""

    async def lookup(
        self, tenant_id: uuid.UUID, operation_ids: Sequence[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, StoredResult], int | None]:
        return {}, None

    async def deliver(
        self,
        tenant_id: uuid.UUID,
        results: dict[uuid.UUID, StoredResult],
        checkpoint: int,
        reply_to: str,
        applied: SyncBatchApplied,
    ) -> None:
        return None


def batch_message(tenant_id: uuid.UUID, operations: list[dict[str, Any]]) -> dict[str, Any]:
    """A queue message as a gateway published it before fingerprints were carried (still read)."""
    return {
        "requestId": uuid.uuid4().hex,
        "tenantId": str(tenant_id),
        "userId": "bench",
        "receivedAt": datetime.now(UTC).isoformat(),
        "replyTo": "bench:none",
        "operations": operations,
    }


def gateway_message(device: Device, batch: int) -> dict[str, Any]:
    """A device's next batch as the gateway publishes it: each operation validated, with its fingerprint."""
    return ApplySyncBatch(
        request_id=uuid.uuid4().hex,
        tenant_id=device.tenant_id,
        user_id="bench",
        received_at=datetime.now(UTC),
        reply_to="bench:none",
        operations=[parse_operation(raw) for raw in device.next_batch(batch)],
    ).to_message()


@dataclass(frozen=True)
class Rate:
    """What a timed run did: units (rows or operations) per second, and this process's CPU per unit."""

    per_second: float
    cpu_per_unit: float  # seconds of this Python process's CPU (the applying code, or the raw client)


async def _timed(workloads: Sequence[Iterator[Step]], seconds: float) -> Rate:
    """Run each workload's steps one after another (workloads side by side) until ``seconds`` have
    passed or its steps run out; each step returns how many units it did."""

    async def one(steps: Iterator[Step]) -> int:
        done = 0
        deadline = time.perf_counter() + seconds
        for step in steps:
            if time.perf_counter() >= deadline:
                break
            done += await step()
        return done

    started, cpu = time.perf_counter(), time.process_time()
    total = sum(await asyncio.gather(*(one(steps) for steps in workloads)))
    return Rate(total / (time.perf_counter() - started), (time.process_time() - cpu) / max(total, 1))


def _made_ahead(rate: float, seconds: float, concurrency: int, batch: int) -> int:
    """How many batches each workload gets made before a timed run, from a rate measured on the fly
    (which the run made ahead beats): three times what that rate would use, and at least a few."""
    return max(4, math.ceil(rate * seconds * 3 / concurrency / batch))


async def raw_inserts(admin_url: str, batch: int, concurrency: int, seconds: float) -> float:
    """Rows per second inserted by plain ``executemany``, ``batch`` rows per transaction.

    The rows are made before the clock starts, as the in-process baseline's messages are: making
    them is the load generator's work, not Postgres'.
    """
    setup = await asyncpg.connect(admin_url)
    try:
        await setup.execute(
            f"CREATE TABLE IF NOT EXISTS {RAW_TABLE} "
            "(LIKE stock_movements INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)"
        )
    finally:
        await setup.close()
    connections = [await asyncpg.connect(admin_url) for _ in range(concurrency)]
    try:

        def steps(connection: asyncpg.Connection, batches: Iterator[list[tuple[Any, ...]]]) -> Iterator[Step]:
            for rows in batches:

                async def insert(rows: list[tuple[Any, ...]] = rows) -> int:
                    async with connection.transaction():
                        await connection.executemany(_RAW_INSERT, rows)
                    return len(rows)

                yield insert

        def on_the_fly(tenant: uuid.UUID, product: uuid.UUID) -> Iterator[list[tuple[Any, ...]]]:
            for n in itertools.count():
                yield movement_rows(tenant, product, batch, first_checkpoint=n * batch + 1)

        sources = [on_the_fly(uuid.uuid4(), uuid.uuid4()) for _ in connections]
        warm = await _timed([steps(c, src) for c, src in zip(connections, sources, strict=True)], min(1.0, seconds))
        ahead = _made_ahead(warm.per_second, seconds, concurrency, batch)
        made = [list(itertools.islice(src, ahead)) for src in sources]
        timed = await _timed([steps(c, iter(rows)) for c, rows in zip(connections, made, strict=True)], seconds)
        return timed.per_second
    finally:
        for connection in connections:
            await connection.close()


async def in_process_apply(
    app_url: str,
    batch: int,
    concurrency: int,
    seconds: float,
    *,
    products_per_tenant: int = 20,
    tenants: Sequence[uuid.UUID] = (),
) -> Rate:
    """Operations per second through the worker's own ``read_batch`` and ``apply_sync_batch`` on the
    app role, no Redis.

    The messages, as the gateway publishes them, are made before the clock starts (enough for three
    times the rate of a short warm-up that makes them on the fly): making them is the devices' and
    the gateway's work, not the worker's. The devices write to ``tenants`` (new ones if not given,
    one per connection).
    """
    pool = await create_pool(app_url, max_size=concurrency + 1)
    database = PostgresInventoryDatabase(pool, tombstone_retention=timedelta(days=30))
    cache = NoResultCache()
    try:
        devices = await _prepared_devices(database, cache, concurrency, products_per_tenant, tenants)

        def steps(messages: Iterator[dict[str, Any]]) -> Iterator[Step]:
            for message in messages:

                async def apply(message: dict[str, Any] = message) -> int:
                    read = read_batch(RawSyncBatch.model_validate(message))
                    await apply_sync_batch(read.command, uuid.uuid4().hex, database, cache, unreadable=read.unreadable)
                    return len(message["operations"])

                yield apply

        def on_the_fly(device: Device) -> Iterator[dict[str, Any]]:
            while True:
                yield gateway_message(device, batch)

        warm = await _timed([steps(on_the_fly(d)) for d in devices], min(1.0, seconds))
        ahead = _made_ahead(warm.per_second, seconds, concurrency, batch)
        made = [[gateway_message(d, batch) for _ in range(ahead)] for d in devices]
        return await _timed([steps(iter(messages)) for messages in made], seconds)
    finally:
        await pool.close()


async def _prepared_devices(
    database: PostgresInventoryDatabase,
    cache: NoResultCache,
    count: int,
    products_per_tenant: int,
    tenants: Sequence[uuid.UUID],
) -> list[Device]:
    devices = []
    for index in range(count):
        tenant = tenants[index % len(tenants)] if tenants else uuid.uuid4()
        products = [uuid.uuid4() for _ in range(products_per_tenant)]
        message = batch_message(tenant, [create_product(tenant, p, name=f"bench {p.hex[:6]}") for p in products])
        read = read_batch(RawSyncBatch.model_validate(message))
        await apply_sync_batch(read.command, uuid.uuid4().hex, database, cache)
        devices.append(Device(tenant, f"bench-{index}", products, random.Random(index)))
    return devices


async def seed_ledger(admin_url: str, movements: int, ids: Sequence[uuid.UUID]) -> None:
    """Give the new tenants ``ids`` a history of ``movements`` stock movements over 20 products each,
    with the applied-operation record the worker keeps for each, fast: one ``generate_series`` insert
    per table as the superuser, with row triggers off for this transaction only (the stock levels
    are then written in one statement from the movements)."""
    tenants = len(ids)
    per_product = max(1, movements // tenants // 20)
    connection = await asyncpg.connect(admin_url)
    try:
        async with connection.transaction():
            await connection.execute("SET LOCAL session_replication_role = replica")
            await connection.execute(
                "INSERT INTO tenants (tenant_id, last_checkpoint) SELECT unnest($1::uuid[]), $2 * 20 + 20",
                ids,
                per_product,
            )
            await connection.execute(
                "INSERT INTO products (tenant_id, id, name, modified_at, checkpoint) "
                "SELECT t, gen_random_uuid(), 'seeded ' || g, now(), $2 * 20 + g "
                "FROM unnest($1::uuid[]) AS t, generate_series(1, 20) AS g",
                ids,
                per_product,
            )
            await connection.execute(
                """
                INSERT INTO stock_movements
                    (tenant_id, id, operation_id, product_id, kind, quantity, occurred_at, checkpoint)
                SELECT p.tenant_id, gen_random_uuid(), gen_random_uuid(), p.id, 'entry', 1, now(),
                       (g - 1) * 20 + p.n
                FROM (SELECT tenant_id, id, row_number() OVER (PARTITION BY tenant_id ORDER BY id) AS n
                      FROM products WHERE tenant_id = ANY($1::uuid[])) AS p,
                     generate_series(1, $2) AS g
                """,
                ids,
                per_product,
            )
            await connection.execute(
                "INSERT INTO applied_operations (tenant_id, operation_id, message_id, entity_type, entity_id, result) "
                "SELECT tenant_id, operation_id, 'seeded', 'stockMovement', id, "
                "jsonb_build_object('operationId', operation_id, 'status', 'applied') "
                "FROM stock_movements WHERE tenant_id = ANY($1::uuid[])",
                ids,
            )
            await connection.execute(
                "INSERT INTO stock_levels (tenant_id, product_id, quantity, movement_count, updated_checkpoint) "
                "SELECT tenant_id, product_id, sum(quantity), count(*), max(checkpoint) FROM stock_movements "
                "WHERE tenant_id = ANY($1::uuid[]) GROUP BY tenant_id, product_id",
                ids,
            )
        await connection.execute("ANALYZE stock_movements, applied_operations")
    finally:
        await connection.close()


async def ledger_size(admin_url: str) -> int:
    """How many movements the ledger holds (all tenants)."""
    connection = await asyncpg.connect(admin_url)
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM stock_movements")
        return count
    finally:
        await connection.close()

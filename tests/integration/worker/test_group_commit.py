"""Group commit on the worker's own adapters: several batches of one tenant in one transaction.

The scenarios of ``settle_group`` run in memory and on Postgres (the ``harness`` fixture); the
poisoned group runs on Postgres only, through the actor's handler, with a real database error in
the group's transaction.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from stockzen_contracts import ApplySyncBatch, ProductState, RecordStockMovement
from stockzen_sync_worker.adapters.inventory_database import PostgresInventoryDatabase, PostgresTenantTransaction
from stockzen_sync_worker.adapters.result_cache import RedisResultCache
from stockzen_sync_worker.config import WorkerSettings
from stockzen_sync_worker.domain.outcomes import Effect
from stockzen_sync_worker.entrypoints.actors import SyncBatchHandler, group_committer
from stockzen_sync_worker.metrics import WorkerMetrics
from stockzen_sync_worker.ports import InventoryDatabase, MovementToRecord, ResultCache
from stockzen_sync_worker.services import BatchOutcome, ReadBatch, answer, apply_sync_batch, look_up, settle_group
from tests.integration.worker.test_set_based_matches_one_by_one import RECEIVED, Step, ledger_state, plans, wire
from tests.support.db import applied_rows, movement_rows, stock_level
from tests.support.harness import T0, Harness, PostgresHarness, apply, command
from tests.support.ops import create_product, movement
from tests.support.services import ServiceUrls
from tests.support.stack import delete_redis_keys


async def test_a_group_applies_its_batches_in_order_in_one_transaction(harness: Harness) -> None:
    tenant, product = uuid.uuid4(), uuid.uuid4()
    await apply(harness, tenant, [create_product(tenant, product, "Mug", T0)])
    first = [movement(tenant, product, "entry", 5)]
    second = [movement(tenant, product, "exit", 2), first[0]]  # repeats an operation of the first
    third = [movement(tenant, product, "entry", 1)]
    batches = [command(tenant, ops) for ops in (first, second, third)]
    looked_up = [await look_up(b, uuid.uuid4().hex, harness.cache) for b in batches]

    settled = await settle_group(looked_up, harness.database)

    outcomes = [
        await answer(b, s, checkpoint, harness.cache) for b, (s, checkpoint) in zip(looked_up, settled, strict=True)
    ]
    statuses = [[r.status.value for r in o.applied.results] for o in outcomes]
    assert statuses == [["applied"], ["applied", "duplicate"], ["applied"]]  # the second saw the first's work
    assert len({checkpoint for _, checkpoint in settled}) == 1  # all as of the group's commit
    assert await harness.level(tenant, product) == 4


async def test_a_group_takes_checkpoints_in_the_order_of_its_batches(
    postgres_harness: PostgresHarness, admin: asyncpg.Connection
) -> None:
    harness = postgres_harness
    tenant, product = uuid.uuid4(), uuid.uuid4()
    await apply(harness, tenant, [create_product(tenant, product, "Mug", T0)])
    batches = [command(tenant, [movement(tenant, product, "entry", n)]) for n in range(1, 6)]
    looked_up = [await look_up(b, uuid.uuid4().hex, harness.cache) for b in batches]

    await settle_group(looked_up, harness.database)

    ids = [b.operations[0].operation_id for b in batches]
    rows = await admin.fetch(
        "SELECT operation_id FROM stock_movements WHERE tenant_id = $1 ORDER BY checkpoint", tenant
    )
    assert [r["operation_id"] for r in rows] == ids  # the order of the group is the order of checkpoints


class _PoisonedTransaction:
    """The real tenant transaction, but a movement with the poisoned id makes Postgres fail the
    transaction with an error that is no refusal of the item (as a bug in the data path would)."""

    def __init__(self, real: PostgresTenantTransaction, poison: uuid.UUID) -> None:
        self._real = real
        self._poison = poison

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def record_movements(self, movements: Sequence[MovementToRecord]) -> list[Effect]:
        if any(m.operation.entity_id == self._poison for m in movements):
            await self._real._db.execute(  # a real database error, inside the group's transaction
                "DO $$ BEGIN RAISE EXCEPTION 'poisoned movement' USING ERRCODE = 'XX000'; END $$"
            )
        return await self._real.record_movements(movements)

    async def record_movement(self, operation: RecordStockMovement, occurred_at: datetime) -> Effect:
        return await self._real.record_movement(operation, occurred_at)

    async def product_states(self, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, ProductState]:
        return await self._real.product_states(product_ids)


class _PoisonedDatabase:
    """The worker's Postgres adapter with :class:`_PoisonedTransaction` in its tenant transactions."""

    def __init__(self, real: PostgresInventoryDatabase, poison: uuid.UUID) -> None:
        self._real = real
        self._poison = poison
        self.transactions = 0

    @asynccontextmanager
    async def for_tenant(self, tenant_id: uuid.UUID) -> AsyncIterator[Any]:
        self.transactions += 1
        async with self._real.for_tenant(tenant_id) as tenant:
            yield _PoisonedTransaction(tenant, self._poison)

    async def read_checkpoint(self, tenant_id: uuid.UUID) -> int:
        return await self._real.read_checkpoint(tenant_id)

    async def product_states(
        self, tenant_id: uuid.UUID, product_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, ProductState]:
        return await self._real.product_states(tenant_id, product_ids)


async def test_a_poisoned_message_in_a_group_leaves_its_companions_applied(
    postgres_harness: PostgresHarness, admin: asyncpg.Connection
) -> None:
    harness = postgres_harness
    tenant, product = uuid.uuid4(), uuid.uuid4()
    await apply(harness, tenant, [create_product(tenant, product, "Mug", T0)])
    poisoned = movement(tenant, product, "entry", 100)
    ops = [movement(tenant, product, "entry", 1), poisoned, movement(tenant, product, "entry", 3)]
    batches = [_with_reply_key(command(tenant, [o]), harness.prefix) for o in ops]
    database = _PoisonedDatabase(harness.database, uuid.UUID(poisoned["entityId"]))
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    # The three wait for each other (up to a second) so that they surely make one group.
    settings = WorkerSettings(GROUP_COMMIT_MAX_MESSAGES=3, GROUP_COMMIT_MAX_WAIT_MS=1000)

    async def adapters() -> tuple[InventoryDatabase, ResultCache]:
        return database, harness.cache

    handler = SyncBatchHandler(adapters, metrics, group_committer(settings, metrics))
    results = await asyncio.gather(
        *(handler.apply(ReadBatch(b, {}), uuid.uuid4().hex) for b in batches), return_exceptions=True
    )

    assert isinstance(results[1], asyncpg.exceptions.InternalServerError)  # its own failure, to be retried
    companions = [results[0], results[2]]
    assert all(isinstance(r, BatchOutcome) for r in companions), results
    assert [[r.status.value for r in o.applied.results] for o in companions if isinstance(o, BatchOutcome)] == [
        ["applied"],
        ["applied"],
    ]
    assert registry.get_sample_value("stockzen_worker_group_commit_messages_count") == 1
    assert registry.get_sample_value("stockzen_worker_group_commit_messages_sum") == 3
    assert registry.get_sample_value("stockzen_worker_group_commit_fallbacks_total") == 1
    assert database.transactions == 4  # the group, then each message alone
    # The companions are applied and answered; nothing of the poisoned one is.
    ids = [o["operationId"] for o in ops]
    assert [await movement_rows(admin, tenant, [i]) for i in ids] == [1, 0, 1]
    assert [await applied_rows(admin, tenant, [i]) for i in ids] == [1, 0, 1]
    assert await stock_level(admin, tenant, product) == 4
    replies = [await _reply(harness.redis, b.reply_to) for b in batches]
    assert [r and [x["status"] for x in r["results"]] for r in replies] == [["applied"], None, ["applied"]]


def _with_reply_key(batch: ApplySyncBatch, prefix: str) -> ApplySyncBatch:
    return batch.model_copy(update={"reply_to": f"{prefix}reply:{uuid.uuid4().hex}"})


async def _reply(redis: aioredis.Redis, key: str) -> dict[str, Any] | None:
    raw: bytes | None = await redis.lpop(key)  # type: ignore[assignment]  # one key, one value
    return None if raw is None else dict(json.loads(raw))


@st.composite
def grouped_plans(draw: st.DrawFn) -> tuple[list[Step], list[list[Step]]]:
    """A history, then the batches of one group (steps of one may repeat those of another)."""
    history, steps = draw(plans())
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(steps) - 1)), max_size=3)))
    bounds = [0, *[c for c in cuts if c < len(steps)], len(steps)]
    return history, [steps[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=grouped_plans())
async def test_a_group_gives_what_its_batches_one_after_another_give(
    plan: tuple[list[Step], list[list[Step]]],
    app_pool: asyncpg.Pool,
    admin_connection: asyncpg.Connection,
    database: ServiceUrls,
) -> None:
    history, group = plan
    products = [uuid.uuid4() for _ in range(3)]
    inventory = PostgresInventoryDatabase(app_pool, tombstone_retention=timedelta(days=30))
    redis = aioredis.Redis.from_url(database.redis_url)
    answers, states = [], []
    try:
        for grouped in (False, True):
            tenant = uuid.uuid4()
            cache = RedisResultCache(
                redis, prefix=f"{database.redis_prefix}grouped:{tenant.hex[:8]}:", result_ttl_seconds=60
            )
            if history:
                history_batch = command(tenant, [wire(tenant, products, s) for s in history], received_at=RECEIVED)
                await apply_sync_batch(history_batch, "history", inventory, cache)
            batches = [command(tenant, [wire(tenant, products, s) for s in b], received_at=RECEIVED) for b in group]
            if grouped:
                looked_up = [await look_up(b, f"m{n}", cache) for n, b in enumerate(batches)]
                settled = await settle_group(looked_up, inventory)
                outcomes = [await answer(b, s, c, cache) for b, (s, c) in zip(looked_up, settled, strict=True)]
            else:
                outcomes = [await apply_sync_batch(b, f"m{n}", inventory, cache) for n, b in enumerate(batches)]
            answers.append([[r.model_dump() for r in o.applied.results] for o in outcomes])
            state = await ledger_state(admin_connection, tenant)
            state["movements"] = [
                (r["operation_id"], r["checkpoint"] - state["checkpoint"])
                for r in await admin_connection.fetch(
                    "SELECT operation_id, checkpoint FROM stock_movements WHERE tenant_id = $1 ORDER BY checkpoint",
                    tenant,
                )
            ]
            for product in state["products"]:
                product["id"] = products.index(product["id"])
            for level in state["levels"]:
                level["product_id"] = products.index(level["product_id"])
            states.append(state)
    finally:
        await redis.aclose()
        await delete_redis_keys(database.redis_url, f"{database.redis_prefix}grouped:")

    assert answers[0] == answers[1]  # every result, server states and their checkpoints included
    assert states[0] == states[1]  # products, levels, the checkpoint count and the ledger's order

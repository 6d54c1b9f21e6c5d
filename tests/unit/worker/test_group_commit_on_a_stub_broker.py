"""Group commit through a real dramatiq ``Worker`` with several threads, on a ``StubBroker``, with
in-memory adapters: the messages of one tenant share a transaction, each gets its own answer, and
one that fails alone is retried and dead-lettered by the usual rules while its companions are applied."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker
from prometheus_client import CollectorRegistry

from stockzen_sync_worker.bootstrap import add_worker_middleware
from stockzen_sync_worker.config import WorkerSettings
from stockzen_sync_worker.entrypoints.actors import SyncBatchActor, declare_actors
from stockzen_sync_worker.metrics import WorkerMetrics
from stockzen_sync_worker.ports import InventoryDatabase, MovementToRecord, ResultCache
from tests.support.harness import T0, command
from tests.support.memory_inventory import MemoryInventoryDatabase, MemoryResultCache, MemoryTenantTransaction
from tests.support.ops import create_product, movement


class BuggyDatabase(MemoryInventoryDatabase):
    """Counts transactions; a movement of ``poison`` raises a bug's exception inside the transaction."""

    def __init__(self) -> None:
        super().__init__()
        self.poison: uuid.UUID | None = None

    @asynccontextmanager
    async def for_tenant(self, tenant_id: uuid.UUID) -> AsyncIterator[MemoryTenantTransaction]:
        async with super().for_tenant(tenant_id) as tenant:
            record = tenant.record_movements

            async def record_movements(movements: Sequence[MovementToRecord]) -> list[Any]:
                if any(m.operation.entity_id == self.poison for m in movements):
                    raise TypeError("a bug")
                return await record(movements)

            tenant.record_movements = record_movements  # type: ignore[method-assign]
            yield tenant


Running = tuple[StubBroker, Worker, SyncBatchActor, CollectorRegistry, BuggyDatabase, MemoryResultCache]


@pytest.fixture
def start() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start_worker(**overrides: Any) -> Running:
        settings = WorkerSettings(
            SYNC_QUEUE=f"sync-{uuid.uuid4().hex[:8]}",
            SYNC_MAX_RETRIES=1,
            SYNC_MIN_BACKOFF_MS=10,
            SYNC_MAX_BACKOFF_MS=20,
            GROUP_COMMIT_MAX_MESSAGES=3,
            GROUP_COMMIT_MAX_WAIT_MS=300,  # so that three messages surely make one group
            **overrides,
        )
        database, cache = BuggyDatabase(), MemoryResultCache()

        async def adapters() -> tuple[InventoryDatabase, ResultCache]:
            return database, cache

        registry = CollectorRegistry()
        metrics = WorkerMetrics(registry)
        broker = StubBroker()
        add_worker_middleware(broker, metrics)
        actor = declare_actors(broker, settings, adapters, metrics)
        broker.emit_after("process_boot")
        worker = Worker(broker, worker_threads=4, worker_timeout=50)
        worker.start()
        started.append((broker, worker, actor, registry, database, cache))
        return started[-1]

    yield start_worker
    for broker, worker, *_ in started:
        worker.stop()
        broker.close()


@pytest.fixture
def grouped(start: Callable[..., Running]) -> Running:
    return start()


def test_a_tenants_messages_in_flight_share_a_transaction_and_a_bad_one_fails_alone(
    grouped: Running,
) -> None:
    broker, worker, actor, registry, database, cache = grouped
    tenant, product, poison = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    database.poison = poison
    setup = command(tenant, [create_product(tenant, product, "Mug", T0)])
    actor.send(setup.to_wire())
    broker.join(actor.queue_name, timeout=20_000)

    bad = movement(tenant, product, "entry", 100)
    bad["entityId"] = str(poison)
    batches = [
        command(tenant, [o]).model_copy(update={"reply_to": f"reply:{n}"})
        for n, o in enumerate([movement(tenant, product, "entry", 1), bad, movement(tenant, product, "entry", 3)])
    ]
    sent = [actor.send(b.to_wire()) for b in batches]
    broker.join(actor.queue_name, fail_fast=False, timeout=20_000)
    worker.join()

    assert [[r.status.value for r in reply.results] for reply in cache.replies["reply:0"]] == [["applied"]]
    assert [[r.status.value for r in reply.results] for reply in cache.replies["reply:2"]] == [["applied"]]
    assert "reply:1" not in cache.replies
    assert database.tenants[tenant].levels[product] == 4
    [dead] = broker.dead_letters  # by the usual rules: retried SYNC_MAX_RETRIES times, then dead-lettered
    assert dead.message_id == sent[1].message_id
    assert registry.get_sample_value("stockzen_worker_group_commit_fallbacks_total") == 1
    # The setup alone, the group of three, then the bad one alone on its one retry.
    assert registry.get_sample_value("stockzen_worker_group_commit_messages_sum") == 1 + 3 + 1
    assert registry.get_sample_value("stockzen_worker_group_commit_messages_count") == 1 + 1 + 1
    assert registry.get_sample_value("stockzen_worker_batch_failures_total", {"kind": "TypeError"}) == 2
    # The setup, the group, each of the three alone after it failed, and the retry.
    assert database.transactions == 1 + 1 + 3 + 1


def test_with_group_commit_off_each_message_has_its_own_transaction(start: Callable[..., Running]) -> None:
    broker, worker, actor, registry, database, cache = start(GROUP_COMMIT=False)
    tenant, product = uuid.uuid4(), uuid.uuid4()
    actor.send(command(tenant, [create_product(tenant, product, "Mug", T0)]).to_wire())
    for n in (1, 2, 3):
        actor.send(command(tenant, [movement(tenant, product, "entry", n)]).to_wire())
    broker.join(actor.queue_name, timeout=20_000)
    worker.join()

    assert len(cache.replies["reply:test"]) == 4
    assert database.tenants[tenant].levels[product] == 1 + 2 + 3
    assert database.transactions == 4
    assert registry.get_sample_value("stockzen_worker_group_commit_messages_count") == 0
